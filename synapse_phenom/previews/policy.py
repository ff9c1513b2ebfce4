"""What may be previewed and fetched: link extraction, origin matching, address checks.

Pure functions; the fetchers (httpx2 outside Synapse, Twisted inside) call ``check_addresses``
after DNS resolution and connect only to the address it returned.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import attrs

from synapse_phenom.previews import urls
from synapse_phenom.previews.config import OriginConfig, ResolverConfig, origin_of

PAGE_TYPES = (
    "text/html",
    "application/xhtml+xml",
    "application/json",
    "application/json+oembed",
    "text/json",
)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")

# Candidate links in a message body; trailing punctuation is trimmed afterwards.
_LINK = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?'\"*_~"
_PAIRS = {")": "(", "]": "[", "}": "{"}

# Cloud metadata endpoints that are not covered by the generic "private" ranges.
_METADATA = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba
)
# 100.64/10 (CGNAT, also used for AWS VPC services) is not is_private for Python, nor is
# the deprecated IPv6 site-local fec0::/10 (still routed inside some networks).
_EXTRA_BLOCKED = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("fec0::/10"),
)


# What users (composer endpoint, Lambda, MCP) are told per reason. Never the detail: it can
# name internal fetch addresses (``fetch_from``, resolved IPs) and Python exception text.
PUBLIC_REASONS = {
    "origin": "not a link to a configured Phenom origin",
    "url": "not a valid http(s) link",
    "address": "the site's address is not allowed",
    "dns": "the site's name could not be resolved",
    "redirect": "the page redirects too often or to a place that is not allowed",
    "status": "the page answered with an error",
    "content_type": "the link is not a web page",
    "too_large": "the page is too large",
    "timeout": "the page took too long to answer",
    "connect": "the site could not be reached",
    "unavailable": "the site is not reachable at the moment; try again later",
    "no_metadata": "the page gives no preview",
}


class PreviewError(Exception):
    """No card for this link. ``reason`` is a short code (``origin``, ``address``, ``timeout``,
    ...).

    ``detail`` is for logs only; ``public`` is the text that may be shown to users.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def public(self) -> str:
        return public_error(self.reason)


def public_error(reason: str | None) -> str:
    return PUBLIC_REASONS.get(reason or "", "no preview available")


# Failures that say the origin itself is unreachable (not this one page): they open the
# per-origin circuit breaker.
ORIGIN_FAILURES = frozenset({"dns", "timeout", "connect"})


class Refused(PreviewError):
    """A fetch the policy forbids; nothing was (or will be) fetched."""


class FetchFailed(PreviewError):
    """The site did not deliver (timeout, connection error, HTTP error)."""


def _trim(link: str) -> str:
    while link:
        last = link[-1]
        if last in _TRAILING:
            link = link[:-1]
        elif last in _PAIRS and link.count(last) > link.count(_PAIRS[last]):
            link = link[:-1]  # "(see https://x/y)" — the parenthesis is prose, not URL
        else:
            break
    return link


def find_links(text: str) -> list[str]:
    """http(s) links in ``text``, exactly as written (MSC4095's matched_url must match the body)."""
    return [
        t for t in (_trim(m.group(0)) for m in _LINK.finditer(text)) if "://" in t and len(t) > 8
    ]


def normalise_url(url: str) -> str:
    """Cache key and fetch URL of a link: the WHATWG serialisation (IRI -> URI: UTF-8
    percent-encoded path/query, IDNA host), default port and fragment dropped."""
    parsed = urls.parse(url.strip())
    if parsed is None:
        return url
    return parsed.without_fragment()


@attrs.frozen
class FetchTarget:
    """Where a URL is really fetched from, and whether private addresses are allowed there."""

    url: str
    trusted: bool


@attrs.frozen
class OriginPolicy:
    """Configured origins: which links get previews and which URLs may be fetched."""

    origins: tuple[OriginConfig, ...]
    image_origins: tuple[OriginConfig, ...] = ()

    @classmethod
    def from_config(cls, config: ResolverConfig) -> OriginPolicy:
        return cls(origins=config.origins, image_origins=config.image_origins)

    def _origin(self, url: str, pool: Iterable[OriginConfig]) -> OriginConfig | None:
        origin = origin_of(url)
        return next((o for o in pool if o.url == origin), None) if origin else None

    def is_phenom_link(self, url: str) -> bool:
        """A link to a configured origin, read the same way by every URL parser a client
        may use (see ``reads_unambiguously``): only such links get a card."""
        return self._origin(url, self.origins) is not None and reads_unambiguously(url)

    def phenom_links(self, text: str, limit: int) -> list[str]:
        """Distinct Phenom links of a message body, as written, first ``limit`` of them."""
        seen: dict[str, str] = {}
        for link in find_links(text):
            if self.is_phenom_link(link):
                seen.setdefault(normalise_url(link), link)
        return list(seen.values())[:limit]

    def fetch_target(self, url: str, images: bool = False) -> FetchTarget:
        """Map a URL to what is fetched; raise Refused for anything off the configured origins.

        Accepts both a configured origin (mapped to its ``fetch_from`` when set) and a
        ``fetch_from`` base itself (redirects served by a local copy of the site).
        """
        origin_str = origin_of(url)
        if origin_str is None:
            raise Refused("url", f"not an http(s) URL without credentials: {url[:80]!r}")
        pool = self.origins + (self.image_origins if images else ())
        origin = self._origin(url, pool)
        if origin is not None:
            url = normalise_url(url)
            if origin.fetch_from:
                parts = urls.parse(url)
                assert parts is not None  # it has an origin
                url = origin.fetch_from + parts.without_fragment()[len(parts.origin) :]
            return FetchTarget(url=url, trusted=origin.trusted)
        mirror = next((o for o in pool if o.fetch_from and o.fetch_from == origin_str), None)
        if mirror is not None:
            return FetchTarget(url=normalise_url(url), trusted=mirror.trusted)
        raise Refused("origin", f"{origin_str or url[:80]} is not a configured Phenom origin")

    def public_url(self, fetched_url: str) -> str:
        """Map a URL on a ``fetch_from`` copy back to the public origin it stands for."""
        origin = origin_of(fetched_url)
        mirror = next((o for o in self.origins if o.fetch_from and o.fetch_from == origin), None)
        if mirror is None:
            return fetched_url
        parts = urls.parse(fetched_url)
        if parts is None:
            return fetched_url
        return mirror.url + parts.without_fragment()[len(parts.origin) :]


def reads_unambiguously(url: str) -> bool:
    """Whether an RFC 3986 reader (urllib, Android's ``Uri``, many apps' host checks) finds
    the same host and port as a browser (WHATWG). A card says "this is Phenom's page": it
    must not sit on ``https://thephenom.app\\@evil.example/`` (a browser: thephenom.app; an
    RFC 3986 reader: user info, then evil.example), nor on a link with credentials, a
    backslash or a percent-encoded host in its authority."""
    parsed = urls.http_url(url.strip())
    if parsed is None:
        return False
    try:
        parts = urlsplit(url.strip())
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii").lower()
    except (ValueError, UnicodeError):
        return False
    if "@" in parts.netloc or "\\" in parts.netloc or "%" in parts.netloc:
        return False
    return host == parsed.hostname.lower() and (port or parsed.default_port()) == (
        parsed.default_port()
    )


def redirect_target(current: str, location: str) -> str:
    target = urls.parse(location.strip(), current)
    if target is None:
        raise FetchFailed("redirect", f"unparseable Location {location[:80]!r} from {current}")
    return target.without_fragment()


def is_forbidden_address(address: str) -> bool:
    """Private, loopback, link-local, metadata, multicast, reserved or unspecified."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and ip.sixtofour is not None:
        return True  # 6to4 can tunnel to any IPv4 address; never needed for Phenom's sites
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in net for net in (*_METADATA, *_EXTRA_BLOCKED))
    )


def check_addresses(host: str, addresses: Sequence[str], trusted: bool) -> str:
    """The address to connect to, after checking every address ``host`` resolved to.

    Any forbidden address refuses the whole host (like Synapse's previewer): a name that
    resolves to both a public and a private address is an attack, not a mirror.
    """
    if not addresses:
        raise Refused("dns", f"{host} did not resolve")
    if not trusted:
        bad = [a for a in addresses if is_forbidden_address(a)]
        if bad:
            raise Refused("address", f"{host} resolves to a non-public address ({bad[0]})")
    # Every address passed; prefer IPv4 (dev servers often listen on 127.0.0.1 only).
    return sorted(addresses, key=lambda a: ":" in a)[0]


def content_type_of(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def check_content_type(header: str | None, accept: Sequence[str]) -> str:
    ctype = content_type_of(header)
    if ctype not in accept:
        raise Refused(
            "content_type", f"content type {ctype or 'missing'!r} is not one of {', '.join(accept)}"
        )
    return ctype


def check_length(header: str | None, limit: int) -> None:
    """Refuse early when Content-Length announces more than ``limit`` bytes."""
    if header and header.strip().isdigit() and int(header) > limit:
        raise Refused("too_large", f"body of {int(header)} bytes exceeds the {limit}-byte limit")
