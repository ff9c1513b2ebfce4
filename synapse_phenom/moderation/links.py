"""Links and mentions: find URLs in text, classify Matrix links, match domains."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

import attrs

from synapse_phenom.moderation.normalize import fold

# Bare domains are recognised by a common TLD (clients linkify those).
_TLDS = (
    "com|net|org|info|biz|io|app|dev|co|me|ly|gg|tv|xyz|online|site|shop|store|link|click|"
    "top|live|news|club|ru|cn|de|uk|fr|nl|eu|us|ca|au|in|jp|br|es|it|pl|ch|se|no|tk|ml|ga|cf|gq"
)
_TLD_AT = re.compile(r"(?i)\.(?:" + _TLDS + r")(?![a-z0-9-])")
_TAIL = re.compile(r"[^\s<>\"'`]*")
_DOMAIN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-."
_SCHEMES = ("https", "http", "ftp")
_MATRIX_URI = re.compile(r"(?i)\bmatrix:(?:r|roomid|u|user)/[^\s<>\"'`]+")
# A bare user ID typed into the body: @localpart:server
_MXID = re.compile(r"(?<![\w/#])@[a-z0-9._=\-/+]+:[a-z0-9.\-]+(?::\d+)?", re.IGNORECASE)


def find_urls(text: str) -> list[str]:
    """URL-like strings in ``text``: scheme URLs, ``www.`` hosts, bare domains with a
    common TLD, ``matrix:`` URIs. Driven by literal markers (``://``, ``www.``, ``.tld``)
    so ordinary chat costs a few substring searches, not a regex over every word."""
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
    for m in _TLD_AT.finditer(text):
        dot = m.start()
        if covered(dot):
            continue
        head = text[max(0, dot - 253) : dot]
        start = dot - (len(head) - len(head.rstrip(_DOMAIN_CHARS)))
        while start < dot and text[start] in ".-":
            start += 1
        if start == dot or (start > 0 and text[start - 1] == "@"):
            continue  # no label, or an e-mail address
        if start > 0 and text[start - 1] == ":" and _word_before(text, start - 1).startswith("@"):
            continue  # the server of a user ID (@alice:matrix.org), shown as a mention
        end = m.end()
        if end < len(text) and text[end] in "/?#:":
            end = _TAIL.match(text, end).end()  # type: ignore[union-attr]
        found.append(text[start:end])
    if "matrix:" in low:
        found.extend(_MATRIX_URI.findall(text))
    return found


def _word_before(text: str, pos: int) -> str:
    return text[max(text.rfind(" ", 0, pos), text.rfind("\n", 0, pos)) + 1 : pos]


def find_mxids(text: str) -> list[str]:
    return _MXID.findall(text) if "@" in text else []


@attrs.frozen
class Link:
    url: str
    host: str  # lower-case, no port; "" for matrix: URIs
    kind: str  # "web" | "room" (matrix.to / matrix: room, alias or event) | "user" (pill)
    target: str = ""  # room/user identifier for Matrix links


def classify(url: str) -> Link:
    raw = url.strip().rstrip(".,;:!?)]}'\"")
    if raw.lower().startswith("matrix:"):
        kind = "user" if raw[7:].lower().startswith(("u/", "user/")) else "room"
        return Link(raw, "", kind, raw[7:])
    try:
        parts = urlsplit(raw if "://" in raw else f"http://{raw}")
    except ValueError:
        # Unparseable ("http://[x"): still a link to judge, never an exception (the
        # module would fail open and let the whole message through).
        return Link(raw, _rough_host(raw), "web")
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "matrix.to":
        target = unquote(parts.fragment.lstrip("/"))
        if target.startswith("@"):
            return Link(raw, host, "user", target.split("?", 1)[0].split("/", 1)[0])
        if target.startswith(("#", "!")):
            return Link(raw, host, "room", target)
        return Link(raw, host, "web")
    return Link(raw, host, "web")


def _rough_host(url: str) -> str:
    """The host text of a URL ``urlsplit`` refuses: after the scheme and any userinfo,
    before the path, without brackets and port."""
    netloc = re.split(r"[/?#]", url.split("://", 1)[-1], maxsplit=1)[0].rpartition("@")[2]
    host = netloc.strip("[]")
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".").lower()


def domain_matches(host: str, domains: Iterable[str], lookalikes: bool = False) -> bool:
    """``host`` is one of ``domains`` or a subdomain of one. With ``lookalikes`` (block
    lists) homoglyph spellings count too; never for allow lists, where a lookalike is
    someone else's domain."""
    variants = {host}
    if not host.isascii() and lookalikes:
        variants.add(fold(host))
        with contextlib.suppress(UnicodeError):
            variants.add(host.encode("idna").decode())
    for h in variants:
        for d in domains:
            if h == d or h.endswith("." + d):
                return True
    return False
