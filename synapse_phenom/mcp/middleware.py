"""ASGI middleware of the MCP sidecar: the per-tool scope gate and the 401 counter, and where
they go in the SDK's app (``install_gates``)."""

from __future__ import annotations

import json
import os
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, RequireAuthMiddleware
from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synapse_phenom.mcp.auth import short_scopes
from synapse_phenom.mcp.config import McpConfig
from synapse_phenom.mcp.fastpath import ToolsCallFastPath
from synapse_phenom.mcp.observability import Metrics
from synapse_phenom.mcp.protocol import PostOnly
from synapse_phenom.mcp.tools import TOOL_SCOPES


class ScopeGate:
    """HTTP 403 ``insufficient_scope`` for a tools/call whose tool needs a scope the token lacks.

    Runs after authentication, before the MCP transport; the body is read once and
    replayed. The JSON-RPC error body lets MCP clients show the reason.
    """

    def __init__(
        self, app: ASGIApp, resource_server: str, metadata_url: str, metrics: Metrics
    ) -> None:
        self.app = app
        self.resource_server = resource_server
        self.metadata_url = metadata_url
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if (
                size > DEFAULT_MAX_REQUEST_BODY_SIZE
            ):  # the transport's own cap, enforced before buffering
                await Response("Request body too large", status_code=413)(scope, receive, send)
                return
            more = message.get("more_body", False)
        body = b"".join(chunks)
        missing = self._missing_scope(scope, body)
        if missing is not None:
            await self._forbid(send, *missing)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _missing_scope(self, scope: Scope, body: bytes) -> tuple[Any, str, str] | None:
        try:
            parsed = json.loads(body)
        except ValueError:
            return None  # the transport answers malformed JSON itself
        user = scope.get("user")
        granted = (
            short_scopes(user.access_token, self.resource_server)
            if isinstance(user, AuthenticatedUser)
            else frozenset()
        )
        for request in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(request, dict) or request.get("method") != "tools/call":
                continue
            params = request.get("params")
            tool = params.get("name") if isinstance(params, dict) else None
            needed = TOOL_SCOPES.get(tool) if isinstance(tool, str) else None
            if needed is not None and needed not in granted:
                return request.get("id"), str(tool), needed
        return None

    async def _forbid(self, send: Send, request_id: Any, tool: str, needed: str) -> None:
        self.metrics.auth_failures.labels(status="403").inc()
        full = f"{self.resource_server}/{needed}"
        text = (
            f"Insufficient scope: {tool} needs {full}; ask the operator to allow it for this "
            "app client."
        )
        body = json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32001, "message": text}}
        ).encode()
        challenge = (
            f'Bearer error="insufficient_scope", scope="{full}", '
            f'error_description="{tool} needs {full}", resource_metadata="{self.metadata_url}"'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class CountUnauthorized:
    """Counts 401 answers (the SDK's auth middleware sends them)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.metrics.auth_failures.labels(status="401").inc()
            await send(message)

        await self.app(scope, receive, counting_send)


def install_gates(
    app: Starlette,
    mcp: MCPServer,
    config: McpConfig,
    metrics: Metrics,
    security: TransportSecuritySettings,
) -> None:
    """Wrap the SDK's authenticated /mcp route: authentication (401) first, then the per-tool
    scope check (403), then the light tools/call path, then the SDK's transport; and list the
    tools' scopes in the protected-resource metadata (the SDK would list none)."""
    metadata_url = str(build_resource_metadata_url(AnyHttpUrl(config.resource_url)))
    scopes = [f"{config.auth.resource_server}/{s}" for s in ("read", "write", "moderate")]
    gated = False
    for i, route in enumerate(app.router.routes):
        if not isinstance(route, Route):
            continue
        if route.path == "/mcp" and isinstance(route.app, RequireAuthMiddleware):
            inner = route.app.app
            if os.environ.get("PHENOM_MCP_SDK_ONLY") != "1":  # escape hatch, and for bench
                inner = ToolsCallFastPath(inner, mcp, security)
            route.app.app = ScopeGate(inner, config.auth.resource_server, metadata_url, metrics)
            route.app = PostOnly(CountUnauthorized(route.app, metrics))
            gated = True
        elif route.path.startswith("/.well-known/oauth-protected-resource"):
            app.router.routes[i] = create_protected_resource_routes(
                AnyHttpUrl(config.resource_url),
                [AnyHttpUrl(config.auth.issuer)],
                scopes_supported=scopes,
                resource_name="Phenom chat MCP",
            )[0]
    if not gated:  # an SDK change moved the auth wrapper: refuse to run without the scope gate
        raise RuntimeError("cannot find the authenticated /mcp route to install the scope check on")
