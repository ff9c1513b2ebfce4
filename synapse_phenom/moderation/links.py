"""Links and mentions: find URLs in text, classify Matrix links, match domains."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import ada_url
import attrs
import regex
from publicsuffixlist import PublicSuffixList

from synapse_phenom.moderation.normalize import fold

# Bare domains are recognised by their TLD, from the Public Suffix List: every TLD a
# client's linkifier knows (linkifyjs, used by Element, links `evil.lol` too).
_PSL = PublicSuffixList()
_DOT_LABEL = re.compile(r"\.([^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})(?![\w-])", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def is_tld(label: str) -> bool:
    return _PSL.publicsuffix("x." + label.lower(), accept_unknown=False) is not None


_TAIL = re.compile(r"[^\s<>\"'`]*")
# The labels before a TLD, IDN labels included (clients link пример.рф too).
# The label characters before a dot, matched on the reversed text from the dot backwards
# (a search anchored at the dot's end would be quadratic in the worst case), at most a
# host name's 253 characters; a host starts at its run's first letter or digit.
_LABEL_RUNS = re.compile(r"[\w.-]*")
# Browsers and linkifiers (linkifyjs, Android's Linkify) also take symbols, emoji and
# combining marks as label characters (IDNA maps them: "💩.la", "i❤.ws", "evil\u0338.com"):
# for non-ASCII text a second, wider reading of the labels is checked as well.
_WIDE_LABEL_RUNS = regex.compile(r"(?:[\w.-]|[^\x00-\x7f\s\p{P}\p{C}\p{Z}])*")
_SCHEMES = ("https", "http", "ftp")
_MATRIX_URI = re.compile(r"(?i)\bmatrix:(?:r|roomid|u|user)/[^\s<>\"'`]+")
# A bare user ID typed into the body: @localpart:server
_MXID = re.compile(r"(?<![\w/#])@[a-z0-9._=\-/+]+:[a-z0-9.\-]+(?::\d+)?", re.IGNORECASE)


# A bare IPv4 address (Android's Linkify, used by many mobile clients, links
# ``192.168.0.1:8080/x`` without a scheme). Found from its first dot: a pattern that starts
# with a literal is a fast scan in ``re``; the leading octet is read back by hand.
_IPV4_TAIL = re.compile(r"\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(?![\w]|\.[0-9])")


def _bare_ipv4(text: str) -> list[tuple[int, str]]:
    """(start, address with any port/path) of each bare IPv4 address in ``text``."""
    out = []
    for m in _IPV4_TAIL.finditer(text):
        dot = m.start()
        start = dot
        while start > max(0, dot - 3) and "0" <= text[start - 1] <= "9":
            start -= 1
        before = text[start - 1] if start > 0 else " "
        if start == dot or before.isalnum() or before in "._-@":
            continue  # no first octet, or part of a longer name or number
        if any(int(octet) > 255 for octet in (text[start:dot], *m.groups())):
            continue
        end = m.end()
        if end < len(text) and text[end] in "/?#:":
            end = _TAIL.match(text, end).end()  # type: ignore[union-attr]
        out.append((start, text[start:end]))
    return out


def find_urls(text: str) -> list[str]:
    """URL-like strings in ``text``: scheme URLs, ``www.`` hosts, bare domains with a
    known TLD, bare IPv4 addresses, ``matrix:`` URIs. Driven by literal markers (``://``,
    ``www.``, ``.tld``) so ordinary chat costs a few substring searches, not a regex over
    every word."""
    if "." not in text and ":" not in text:
        return []
    low = text.lower()
    found: list[str] = []
    spans: list[tuple[int, int]] = []

    def covered(pos: int) -> bool:
        return any(s <= pos < e for s, e in spans)

    i = low.find("://")
    while i != -1:
        end = _TAIL.match(text, i + 3).end()  # type: ignore[union-attr]
        scheme = next((s for s in _SCHEMES if low.startswith(s, i - len(s))), None)
        if scheme is not None and end > i + 3:
            found.append(text[i - len(scheme) : end])
            spans.append((i - len(scheme), end))
        i = low.find("://", max(end, i + 3))
    i = low.find("www.")
    while i != -1:
        if not covered(i):
            end = _TAIL.match(text, i).end()  # type: ignore[union-attr]
            found.append(text[i:end])
            spans.append((i, end))
        i = low.find("www.", i + 4)
    reverse: str | None = None
    patterns: list[Any] = []
    for m in _DOT_LABEL.finditer(text):
        if not is_tld(m.group(1)):
            continue
        dot = m.start()
        if covered(dot):
            continue
        end = m.end()
        if end < len(text) and text[end] in "/?#:":
            end = _TAIL.match(text, end).end()  # type: ignore[union-attr]
        if reverse is None:
            reverse = text[::-1]
            patterns = [_LABEL_RUNS] if text.isascii() else [_LABEL_RUNS, _WIDE_LABEL_RUNS]
        starts = {_run_start(p, reverse, dot) for p in patterns}
        for start in {_label_start(text, dot, s) for s in starts}:
            if start is not None:
                found.append(text[start:end])
    found.extend(u for start, u in _bare_ipv4(text) if not covered(start))
    if "matrix:" in low:
        found.extend(_MATRIX_URI.findall(text))
    return found


def _run_start(pattern: Any, reverse: str, dot: int) -> int:
    """Where the run of ``pattern`` characters ending at ``dot`` starts (at most 253
    back), read on ``reverse`` (the text reversed): one anchored match, never a search."""
    pos = len(reverse) - dot
    m = pattern.match(reverse, pos, min(len(reverse), pos + 253))
    return dot - (m.end() - pos) if m else dot


def _label_start(text: str, dot: int, start: int) -> int | None:
    """Where the host before ``dot`` starts (``start``: where its run of label characters
    starts), None when it is no host (no label, an e-mail address, a user ID's server)."""
    while start < dot and text[start] in "_.-":
        start += 1
    if start == dot or (start > 0 and text[start - 1] == "@"):
        return None  # no label, or an e-mail address
    if start > 0 and text[start - 1] == ":" and _word_before(text, start - 1).startswith("@"):
        return None  # the server of a user ID (@alice:matrix.org), shown as a mention
    return start


def _word_before(text: str, pos: int) -> str:
    return text[max(text.rfind(" ", 0, pos), text.rfind("\n", 0, pos)) + 1 : pos]


def find_mxids(text: str) -> list[str]:
    return _MXID.findall(text) if "@" in text else []


@attrs.frozen
class Link:
    url: str
    host: str  # lower-case ASCII (IDNA), no port, no trailing dot; "" when none
    kind: str  # "web" | "room" (matrix.to / matrix: room, alias or event) | "user" (pill)
    target: str = ""  # room/user identifier for Matrix links


# Where a relative link target would lead is the client's own origin: not a site anybody
# listed, so an allow list refuses it (fail closed), a block list ignores it.
_RELATIVE_BASE = "https://relative.invalid/"
_SIMPLE_WEB_URL = re.compile(
    r"(?:https?|ftp)://((?:[a-z0-9-]+\.)*[a-z][a-z0-9-]*)\.?(?::[0-9]{1,5})?(?=[/?#]|$)", re.ASCII
)
_HAS_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_C0_AND_SPACE = "".join(chr(c) for c in range(0x21))


def _matrix_uri(raw: str) -> Link:
    rest = raw[7:]
    path = unquote(rest.split("?", 1)[0])
    kind, _, ident = path.partition("/")
    if kind.lower() in ("u", "user"):
        return Link(raw, "", "user", "@" + ident.split("/", 1)[0])
    return Link(raw, "", "room", path)


def classify(url: str, href: bool = False) -> Link:
    """What a client does with ``url``: parsed by the WHATWG URL standard (``ada-url``),
    as browsers do (``\\`` is ``/`` in http(s), userinfo, IDNA, percent-encoding, tabs
    and newlines removed, IPv4 in any notation). ``href``: an HTML link target, which may
    be relative (``//evil.com``); otherwise a URL found in text, which may lack a scheme."""
    raw = url if href else url.strip().rstrip(".,;:!?)]}'\"")
    # Browsers strip leading/trailing C0 controls and spaces and drop tabs and newlines.
    cleaned = raw.strip(_C0_AND_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
    if cleaned[:7].lower() == "matrix:":
        return _matrix_uri(cleaned)
    if not href and not _HAS_SCHEME.match(cleaned):
        cleaned = "http://" + cleaned  # a bare domain or www. host: clients link it as http
    simple = _SIMPLE_WEB_URL.match(cleaned)
    if simple is not None and simple.group(1) != "matrix.to":
        # Already canonical (lower-case ASCII labels, no userinfo, no escapes, a name not
        # a number): every WHATWG step leaves the host as written. Saves the full parse.
        return Link(raw, simple.group(1), "web")
    parsed: ada_url.URL | None = None
    with contextlib.suppress(ValueError):
        parsed = ada_url.URL(cleaned, _RELATIVE_BASE) if href else ada_url.URL(cleaned)
    if parsed is None:
        # Not a URL a browser would open; judge the rough host text (never raise).
        return Link(raw, _rough_host(cleaned), "web")
    host = parsed.hostname.rstrip(".").lower()
    if host == "relative.invalid":
        host = ""
    if host == "matrix.to":
        target = unquote(parsed.hash.lstrip("#").lstrip("/"))
        if target.startswith("@"):
            return Link(raw, host, "user", target.split("?", 1)[0].split("/", 1)[0])
        if target.startswith(("#", "!")):
            return Link(raw, host, "room", target)
    return Link(raw, host, "web")


def unicode_host(host: str) -> str:
    """The Unicode form of an IDNA host (for look-alike matching of block lists)."""
    if "xn--" not in host:
        return host
    try:
        return str(ada_url.idna_to_unicode(host))
    except Exception:
        return host


def _rough_host(url: str) -> str:
    """The host text of a URL no parser accepts: after the scheme and any userinfo,
    before the path (``\\`` included), without brackets and port."""
    netloc = re.split(r"[/?#\\]", url.split("://", 1)[-1], maxsplit=1)[0].rpartition("@")[2]
    host = netloc.strip("[]")
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".").lower()


def domain_matches(host: str, domains: Iterable[str], lookalikes: bool = False) -> bool:
    """``host`` is one of ``domains`` or a subdomain of one. With ``lookalikes`` (block
    lists) homoglyph spellings count too; never for allow lists, where a lookalike is
    someone else's domain."""
    host = host.rstrip(".").lower()
    variants = {host}
    if lookalikes:
        readable = unicode_host(host)
        variants.update({readable, fold(readable), fold(host)})
        with contextlib.suppress(UnicodeError, ValueError):
            variants.add(str(ada_url.idna_to_ascii(readable)))
    for h in variants:
        for d in domains:
            if h == d or h.endswith("." + d):
                return True
    return False
