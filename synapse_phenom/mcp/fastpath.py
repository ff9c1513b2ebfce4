"""A lighter ``tools/call`` for initialize-era clients on the stateless endpoint.

The SDK serves every legacy (2024-11-05 … 2025-11-25) stateless request with a fresh
transport, JSON-RPC dispatcher, session and SSE writer: about two thirds of the sidecar's CPU
per call. A ``tools/call`` that needs none of that (a single request, no ``progressToken``,
so no notification can ever be sent on it; a client that accepts JSON) is answered here with
plain JSON (the spec lets a server answer a POST with ``application/json``), through the same
tool (``MCPServer.call_tool``: argument validation, structured and text result) and the same
Host/Origin/Content-Type checks. Everything else (initialize, tools/list, progress, batches,
anything odd) goes to the SDK unchanged.

A 2026-07-28 (per-request envelope) ``tools/call`` of the same kind goes to the SDK's own
modern handler in its JSON mode: the SDK's validation ladder, result sieve and serverInfo
stamp, without the deferral stream, task group and disconnect watcher of its SSE mode (no
notification can be sent on such a request, so the JSON mode loses nothing).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mcp.server._streamable_http_modern import handle_modern_request
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_VERSION_HEADER = b"mcp-protocol-version"


class ToolsCallFastPath:
    """In front of the SDK's streamable-HTTP app, after authentication and the scope gate."""

    def __init__(self, app: ASGIApp, mcp: MCPServer, security: TransportSecuritySettings) -> None:
        self.app = app
        self.mcp = mcp
        self.security_settings = security
        self.security = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        version = next((v for k, v in scope["headers"] if k == _VERSION_HEADER), None)
        body = await _read_body(receive)
        request = _fast_request(body)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if version is not None and version.decode("latin-1") not in HANDSHAKE_PROTOCOL_VERSIONS:
            if request is None:  # the SDK's own path (SSE mode: progress can be streamed)
                await self.app(scope, replay, send)
                return
            await handle_modern_request(
                self.mcp._lowlevel_server,
                self.security_settings,
                True,  # JSON mode: nothing can be notified on this request
                self.mcp.session_manager._lifespan_state,
                scope,
                replay,
                send,
            )
            return
        if request is not None:
            http = Request(scope)
            has_json, _ = check_accept_headers(http)
            refused = await self.security.validate_request(http, is_post=True)
            if has_json and refused is None:
                await self._answer(request, send)
                return
        await self.app(scope, replay, send)

    async def _answer(self, request: dict[str, Any], send: Send) -> None:
        params = request["params"]
        message: dict[str, Any]
        try:
            result = await self.mcp.call_tool(params["name"], params.get("arguments") or {})
            message = {"jsonrpc": "2.0", "id": request["id"], "result": _dump(result)}
        except MCPError as err:
            message = {
                "jsonrpc": "2.0",
                "id": request["id"],
                "error": err.error.model_dump(by_alias=True, mode="json", exclude_none=True),
            }
        except Exception as exc:  # as MCPServer._handle_call_tool: an isError result
            if not isinstance(exc, ToolError) or isinstance(exc, UnexpectedToolError):
                logger.exception("Tool %r raised an unexpected exception", params["name"])
            failed = CallToolResult(
                content=[TextContent(type="text", text=str(exc))], is_error=True
            )
            message = {"jsonrpc": "2.0", "id": request["id"], "result": _dump(failed)}
        payload = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _dump(result: Any) -> Any:
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def _fast_request(body: bytes) -> dict[str, Any] | None:
    """The JSON-RPC tools/call this path may answer, or None (the SDK answers)."""
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if (
        not isinstance(request, dict)
        or request.get("jsonrpc") != "2.0"
        or request.get("method") != "tools/call"
        or not isinstance(request.get("id"), str | int)
        or isinstance(request.get("id"), bool)
    ):
        return None
    params = request.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("name"), str):
        return None
    arguments = params.get("arguments")
    if arguments is not None and not isinstance(arguments, dict):
        return None
    meta = params.get("_meta")
    if meta is not None and (not isinstance(meta, dict) or "progressToken" in meta):
        return None  # progress may be reported: the SDK's SSE stream carries it
    return request


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)
