"""URLs as browsers read them: the WHATWG URL Standard (``ada-url``), not ``urllib``.

Links are written by people as IRIs (``https://thephenom.app/p/tromsø-night``); browsers
percent-encode the path and query as UTF-8 and turn the host into IDNA. Everything the
previews fetch, cache or compare goes through ``parse`` first, so the fetchers only ever see
ASCII URLs, and ``\\``, tabs, credentials and odd ports are handled as a browser does.
"""

from __future__ import annotations

import attrs
from ada_url import URL, join_url


@attrs.frozen
class Parsed:
    href: str  # serialised, ASCII (percent-encoded, punycode host)
    scheme: str  # "http" / "https" / ...
    host: str  # hostname as serialised (IPv6 in brackets)
    port: int | None  # explicit non-default port, else None
    path: str
    query: str  # without "?"
    has_credentials: bool

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port else "")

    @property
    def hostname(self) -> str:
        return self.host.strip("[]")

    def default_port(self) -> int:
        return self.port or (443 if self.scheme == "https" else 80)

    def without_fragment(self) -> str:
        return f"{self.origin}{self.path or '/'}" + (f"?{self.query}" if self.query else "")


def parse(url: str, base: str | None = None) -> Parsed | None:
    """The WHATWG parse of ``url`` (relative to ``base``); None when a browser would fail too."""
    try:
        joined = join_url(base, url) if base else url
        u = URL(joined)
    except (ValueError, TypeError):
        return None
    return Parsed(
        href=u.href,
        scheme=u.protocol.rstrip(":"),
        host=u.hostname,
        port=int(u.port) if u.port else None,
        path=u.pathname,
        query=u.search[1:] if u.search else "",
        has_credentials=bool(u.username or u.password),
    )


def http_url(url: str, base: str | None = None) -> Parsed | None:
    """Like ``parse``, but only http(s) URLs with a host and without credentials."""
    parsed = parse(url, base)
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.host
        or parsed.has_credentials
    ):
        return None
    return parsed


def origin_of(url: str) -> str | None:
    """``HTTPS://Host:443/x`` -> ``https://host``; None for non-http(s) URLs and URLs with
    credentials or that do not parse."""
    parsed = http_url(url.strip())
    return parsed.origin if parsed else None


def join(base: str, ref: str) -> str | None:
    """``ref`` resolved against ``base`` as an absolute http(s) URL, or None."""
    parsed = http_url(ref.strip(), base)
    return parsed.href if parsed else None
