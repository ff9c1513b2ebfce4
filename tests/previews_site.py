"""A local stand-in for thephenom.app: Phenom-like pages for link-preview tests and the benchmark.

Served by a real threaded HTTP server on a free 127.0.0.1 port. Every request is logged
(``hits``) so tests can prove an SSRF attempt fetched nothing. The query string is ignored
by the pages, so ``?t=<unique>`` makes a fresh (uncached) link to the same page.
"""

from __future__ import annotations

import io
import json
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from PIL import Image

SLOW_SECONDS = 1.0
HUGE_BYTES = 20 * 1024 * 1024


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 32), colour).save(buf, "PNG")
    return buf.getvalue()


LOGO = _png((200, 30, 90))

FULL = """<!doctype html><html><head>
<title>Ignored tag title</title>
<meta property="og:title" content="Northern Lights over Tromsø">
<meta property="og:description" content="A night of aurora hunting with the Phenom community: where to stand, what to bring, and how to photograph the sky when it finally moves.">
<meta property="og:image" content="/img/aurora.png">
<meta property="og:url" content="https://thephenom.app/p/aurora">
<meta property="og:site_name" content="Phenom">
<meta property="og:type" content="article">
<meta name="twitter:label1" content="Author"><meta name="twitter:data1" content="Ada Lovelace">
<meta name="twitter:label2" content="Reading time"><meta name="twitter:data2" content="4 min">
<meta name="theme-color" content="#1E90FF">
</head><body><h1>Aurora</h1><p>Body text that should not be used.</p></body></html>"""  # noqa: E501 (page data)

# A Phenom page whose card text would break the Community rules if it were the user's:
# a non-allowed domain and a blocked keyword (docs/link-previews.md: card text is not user text).
TRAILER = """<!doctype html><html><head>
<meta property="og:title" content="Trailer night at Phenom">
<meta property="og:description" content="Watch the trailer on youtube.com first. Beware of scammers selling free crypto tickets.">
<meta property="og:site_name" content="Phenom">
</head><body></body></html>"""  # noqa: E501 (page data)

OEMBED_ONLY = """<!doctype html><html><head>
<link rel="alternate" type="application/json+oembed" href="/oembed.json?url=x" title="oEmbed">
</head><body></body></html>"""

OEMBED = {
    "version": "1.0",
    "type": "video",
    "title": "Meteor shower timelapse",
    "author_name": "Grace Hopper",
    "provider_name": "Phenom",
    "thumbnail_url": "/img/meteor.png",
    "cache_age": 7200,
}

JSONLD = """<!doctype html><html><head>
<script type="application/ld+json">{"@context": "https://schema.org", "@type": "NewsArticle",
 "headline": "Comet visible tonight", "description": "Look north-west after sunset.",
 "author": {"@type": "Person", "name": "Carl Sagan"}, "datePublished": "2026-05-01T20:00:00Z",
 "image": {"@type": "ImageObject", "url": "/img/comet.png"},
 "publisher": {"@type": "Organization", "name": "Phenom News"}}</script>
</head><body></body></html>"""

PLAIN = """<!doctype html><html><body><div>nothing</div>
<p>Just a page of text with no metadata at all, written by someone.</p></body></html>"""

BROKEN = """<html><head><meta property="og:title" content="Broken but readable"><title>t
<body><p>unclosed <b><i>tags <div></span></html><script>var x = "</p>"""


# Undeclared UTF-8 (no charset in the header or the page): must not be read as anything else.
UNDECLARED_UTF8 = (
    "<!doctype html><html><head><title>€5 for Ünïcödé</title></head><body></body></html>"
)

# The worst case for an HTML parser: ~750 KB of nested <div>s (quadratic tree building in
# every conforming parser), plus JSON-LD nested far beyond Python's recursion limit.
NESTED = (
    '<!doctype html><html><head><meta property="og:title" content="Deep page">'
    '<script type="application/ld+json">'
    + "[" * 50_000
    + "</script></head><body>"
    + "<div>" * 150_000
    + "</body></html>"
)

IRI_PAGE = """<!doctype html><html><head><meta property="og:title" content="Tromsø by night">
</head><body></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    server: PhenomSite.Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean; hits are recorded instead

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _html(self, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(200, text.encode(), "text/html; charset=utf-8", headers)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.server.site.record(self.headers.get("Host", ""), path)
        routes: dict[str, Callable[[], None]] = {
            "/p/full": lambda: self._html(FULL, {"Cache-Control": "public, max-age=600"}),
            "/p/oembed": lambda: self._html(OEMBED_ONLY),
            "/p/trailer": lambda: self._html(TRAILER),
            "/oembed.json": lambda: self._send(
                200, json.dumps(OEMBED).encode(), "application/json"
            ),
            "/p/jsonld": lambda: self._html(JSONLD),
            "/p/plain-page": lambda: self._html(PLAIN),
            "/p/broken": lambda: self._html(BROKEN),
            "/p/huge": self._huge,
            "/p/slow": self._slow,
            "/p/binary": lambda: self._send(
                200, b"\x00\x01binary" * 100, "application/octet-stream"
            ),
            "/p/redirect-metadata": lambda: self._redirect(
                "http://169.254.169.254/latest/meta-data/"
            ),
            "/p/redirect-loopback": lambda: self._redirect(
                f"http://localhost:{self.server.server_port}/internal/secret"
            ),
            "/p/redirect-ok": lambda: self._redirect("/p/full"),
            "/internal/secret": lambda: self._html("<title>secret</title>"),
            "/p/utf8-undeclared": lambda: self._send(200, UNDECLARED_UTF8.encode(), "text/html"),
            "/p/nested": lambda: self._send(200, NESTED.encode(), "text/html"),
            # The link is written https://.../p/tromsø-night: it arrives percent-encoded.
            "/p/troms%C3%B8-night": lambda: self._html(IRI_PAGE),
        }
        if path.startswith("/img/"):
            self._send(200, LOGO, "image/png")
        elif path in routes:
            routes[path]()
        else:
            self._send(404, b"not found", "text/plain")

    def _slow(self) -> None:
        time.sleep(SLOW_SECONDS)
        self._html(FULL.replace("Northern Lights over Tromsø", "Slow page"))

    def _huge(self) -> None:
        # No Content-Length: the limit must hold while streaming, not only on the header.
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        chunk = b"<p>" + b"x" * 65_530 + b"</p>"
        try:
            for _ in range(HUGE_BYTES // len(chunk)):
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the fetcher hung up once over its limit: that is the point


class PhenomSite:
    """The running site; ``origin`` is trusted in tests, ``untrusted_origin`` is not."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        site: PhenomSite

        def handle_error(self, request: object, client_address: object) -> None:
            if isinstance(sys.exc_info()[1], ConnectionError):
                return  # a fetcher hung up (timeout, size limit): expected here
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = PhenomSite.Server(("127.0.0.1", 0), _Handler)
        self._server.site = self
        self.scheme = "https" if tls else "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self._lock = threading.Lock()
        self.hits: list[tuple[str, str]] = []  # (Host header, path)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def untrusted_origin(self) -> str:
        # Same server, named so that only DNS reveals it is loopback.
        return f"{self.scheme}://localhost:{self.port}"

    def record(self, host: str, path: str) -> None:
        with self._lock:
            self.hits.append((host, path))

    def hit_paths(self) -> list[str]:
        with self._lock:
            return [p for _, p in self.hits]

    def start(self) -> PhenomSite:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Tarpit:
    """An unreachable origin: accepts connections and never answers (each fetch times out).
    ``connections`` counts the attempts, so a test can prove the breaker held them back."""

    def __init__(self) -> None:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._held: list[object] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._held)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with self._lock:
                self._held.append(conn)

    def start(self) -> Tarpit:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            for conn in self._held:
                conn.close()  # type: ignore[attr-defined]
        self._sock.close()
