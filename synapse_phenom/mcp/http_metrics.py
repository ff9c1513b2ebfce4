"""HTTP status metrics of the MCP server (5xx alerting): one ASGI middleware.

``phenom_mcp_http_responses_total{route,status}`` counts every response by route
(``/mcp``, ``/health``, ``/metrics``, ``/.well-known``, ``other``: a fixed set) and status code.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROUTES = ("/mcp", "/health", "/metrics", "/.well-known")


def route_of(path: str) -> str:
    return next((r for r in ROUTES if path == r or path.startswith(r + "/")), "other")


class HttpMetrics:
    def __init__(self, app: ASGIApp, responses: Counter) -> None:
        self.app = app
        self.responses = responses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(scope.get("path", ""))
        seen = False

        async def counting_send(message: Message) -> None:
            nonlocal seen
            if message["type"] == "http.response.start":
                seen = True
                self.responses.labels(route=route, status=str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            if not seen:  # the server answers 500 for an exception before the response started
                self.responses.labels(route=route, status="500").inc()
            raise


def instrument(app: Starlette, registry: CollectorRegistry) -> None:
    responses = Counter(
        "phenom_mcp_http_responses_total",
        "HTTP responses of the MCP server by route and status code",
        ["route", "status"],
        registry=registry,
    )
    app.add_middleware(HttpMetrics, responses=responses)
