"""A loopback HTTP proxy that adds ``Authorization: Bearer <token>`` to every request.

For clients that cannot send one (the MCP conformance suite). Everything else, Host and
Origin included, is forwarded as sent, so the server's DNS-rebinding checks still see what
the client sent. Responses are buffered (the stateless MCP endpoint ends each response).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import httpx2
from loopback import serve

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
}


@contextmanager
def auth_proxy(upstream: str, token: str) -> Iterator[str]:
    """Serve on a free loopback port; yields the proxy's base URL (``http://127.0.0.1:P``)."""
    client = httpx2.Client(base_url=upstream, timeout=120)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
            if not any(k.lower() == "authorization" for k, _ in headers):
                headers.append(("Authorization", f"Bearer {token}"))
            try:
                resp = client.request(self.command, self.path, headers=headers, content=body)
            except httpx2.HTTPError as err:
                self.send_error(502, f"upstream: {type(err).__name__}")
                return
            self.send_response(resp.status_code)
            for key, value in resp.headers.multi_items():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-encoding":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(resp.content)))
            self.end_headers()
            self.wfile.write(resp.content)

        do_GET = do_POST = do_DELETE = do_PUT = do_OPTIONS = _forward

    try:
        with serve(Handler) as url:
            yield url
    finally:
        client.close()
