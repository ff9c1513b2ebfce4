"""MCP protocol details the SDK's defaults get wrong for this server.

* Only what exists is advertised: tools. No ``prompts`` or ``resources`` capability (the
  SDK advertises both and answers ``prompts/get`` with error code 0), no subscription
  stream (the tool list never changes).
* An unknown tool is the JSON-RPC error -32602 (invalid params), not a tool result.
* ``serverInfo.version`` is the package version.
* Stateless streamable HTTP has nothing to push on a standalone ``GET /mcp`` stream and no
  session to ``DELETE``: both answer 405 (``Allow: POST``) instead of holding a stream open.
* The backend's connections are closed at shutdown (the SDK's lifespan knows nothing of it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

_UNSERVED = (
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
)


def package_version() -> str:
    try:
        return version("synapse-phenom")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0+unknown"


class PhenomMCP(MCPServer):
    """``MCPServer`` that serves tools only and calls unknown tools invalid params."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, version=package_version(), subscriptions=False, **kwargs)
        handlers = getattr(self._lowlevel_server, "_request_handlers", None)
        if not isinstance(handlers, dict) or "prompts/list" not in handlers:
            # An SDK change: refuse to start rather than advertise what we do not serve.
            raise RuntimeError("cannot find the MCP SDK's request handlers to unregister prompts")
        for method in _UNSERVED:
            handlers.pop(method, None)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if self._tool_manager.get_tool(name) is None:
            raise MCPError(
                INVALID_PARAMS,
                f"Unknown tool: {name!r}. Call tools/list for the tools this server has.",
            )
        return await super().call_tool(name, arguments, context)


class PostOnly:
    """405 for anything but POST on the stateless MCP endpoint (before authentication)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "POST":
            await self.app(scope, receive, send)
            return
        body = (
            b'{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":'
            b'"Method not allowed: this stateless MCP server only answers POST"}}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 405,
                "headers": [
                    (b"allow", b"POST"),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def close_on_shutdown(app: Starlette, close: Callable[[], Awaitable[None]]) -> None:
    """Run ``close`` after the app's own lifespan (the SDK's session manager) has ended."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running: Starlette) -> AsyncIterator[Any]:
        try:
            async with inner(running) as state:
                yield state
        finally:
            await close()

    app.router.lifespan_context = lifespan
