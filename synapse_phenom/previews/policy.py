"""What may be previewed and fetched: link extraction, origin matching, address checks.

Pure functions; the fetchers (httpx2 outside Synapse, Twisted inside) call ``check_addresses``
after DNS resolution and connect only to the address it returned.
"""

from __future__ import annotations

import codecs
import ipaddress
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urljoin, urlsplit, urlunsplit

import attrs

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


class PreviewError(Exception):
    """No card for this link. ``reason`` is a short code (``origin``, ``address``, ``timeout``,
    ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


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
    """Cache key of a link: lower-case scheme/host, default port dropped, fragment dropped."""
    parts = urlsplit(url)
    return f"{origin_of(url) or ''}{parts.path or '/'}{'?' + parts.query if parts.query else ''}"


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
        return self._origin(url, self.origins) is not None

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
            if origin.fetch_from:
                parts = urlsplit(url)
                base = urlsplit(origin.fetch_from)
                url = urlunsplit((base.scheme, base.netloc, parts.path or "/", parts.query, ""))
            return FetchTarget(url=url, trusted=origin.trusted)
        mirror = next((o for o in pool if o.fetch_from and o.fetch_from == origin_str), None)
        if mirror is not None:
            return FetchTarget(url=url, trusted=mirror.trusted)
        raise Refused("origin", f"{origin_str or url[:80]} is not a configured Phenom origin")

    def public_url(self, fetched_url: str) -> str:
        """Map a URL on a ``fetch_from`` copy back to the public origin it stands for."""
        origin = origin_of(fetched_url)
        mirror = next((o for o in self.origins if o.fetch_from and o.fetch_from == origin), None)
        if mirror is None:
            return fetched_url
        parts = urlsplit(fetched_url)
        pub = urlsplit(mirror.url)
        return urlunsplit((pub.scheme, pub.netloc, parts.path, parts.query, ""))


def redirect_target(current: str, location: str) -> str:
    try:
        return urljoin(current, location.strip())
    except ValueError:
        raise FetchFailed(
            "redirect", f"unparseable Location {location[:80]!r} from {current}"
        ) from None


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


def charset_of(header: str | None) -> str | None:
    """The ``charset=`` parameter of a Content-Type header, if it names a known codec."""
    for param in (header or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            value = value.strip().strip('"')
            try:
                return codecs.lookup(value).name
            except LookupError:
                return None
    return None


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
