"""A lighter ``tools/call`` on the stateless endpoint, for both protocol eras.

The SDK serves every legacy (2024-11-05 … 2025-11-25) stateless request with a fresh
transport, JSON-RPC dispatcher, session and SSE writer, and every 2026-07-28 request with its
per-request runner and middleware chain: most of the sidecar's CPU per call. A ``tools/call``
that needs none of that (a single request, no ``progressToken``, so no notification can ever
be sent on it; a client that accepts JSON and SSE, as the SDK requires; a known tool) is
answered here with plain JSON (the spec lets a server answer a POST with
``application/json``), through the same tool
(``MCPServer.call_tool``: argument validation, structured and text result) and the same
Host/Origin/Content-Type checks. A 2026-07-28 request first passes the SDK's own envelope
ladder (``classify_inbound_request``, duplicated routing headers) and its result gets the
SDK's per-version sieve, ``resultType`` and serverInfo stamp. Everything else (initialize,
tools/list, progress, batches, ``Mcp-Param-*`` headers, rejections, anything odd) goes to the
SDK unchanged, which answers it exactly as without this path.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.runner import modern_error_data
from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PARAM_HEADER_PREFIX,
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    INTERNAL_ERROR,
    SERVER_INFO_META_KEY,
    CallToolResult,
    TextContent,
)
from mcp_types import methods as sdk_methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_VERSION_HEADER = b"mcp-protocol-version"
_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower()


class ToolsCallFastPath:
    """In front of the SDK's streamable-HTTP app, after authentication and the scope gate."""

    def __init__(self, app: ASGIApp, mcp: MCPServer, security: TransportSecuritySettings) -> None:
        self.app = app
        self.mcp = mcp
        self.security = TransportSecurityMiddleware(security)
        self._tools: frozenset[str] | None = None  # the tool list never changes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        request = _fast_request(body)
        if request is not None and await self._answered(scope, request, send):
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _answered(self, scope: Scope, request: dict[str, Any], send: Send) -> bool:
        """Answer ``request`` here if it qualifies; False: the SDK must answer it."""
        http = Request(scope)
        # Both, as the SDK requires of a POST (json_response=False): it answers 406 otherwise.
        has_json, has_sse = check_accept_headers(http)
        if not (has_json and has_sse):
            return False
        if await self.security.validate_request(http, is_post=True) is not None:
            return False
        if self._tools is None:
            self._tools = frozenset(tool.name for tool in await self.mcp.list_tools())
        if request["params"]["name"] not in self._tools:
            return False  # the SDK's unknown-tool error, era-exact
        version = next((v for k, v in scope["headers"] if k == _VERSION_HEADER), None)
        if version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS:
            era = DEFAULT_NEGOTIATED_VERSION if version is None else version.decode("latin-1")
            message, status = await self._call(request, era, None)
        else:
            if find_duplicated_routing_header(http.headers.items()) is not None or any(
                name.startswith(_PARAM_PREFIX) for name in http.headers
            ):
                return False
            verdict = classify_inbound_request(request, headers=dict(http.headers))
            if not isinstance(verdict, InboundModernRoute):
                return False  # the SDK's rejection, with its status
            message, status = await self._call(request, verdict.protocol_version, verdict)
        payload = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return True

    async def _call(
        self, request: dict[str, Any], version: str, modern: InboundModernRoute | None
    ) -> tuple[dict[str, Any], int]:
        """(JSON-RPC response, HTTP status) of one tool call."""
        params, rid = request["params"], request["id"]
        arguments = params.get("arguments") or {}
        try:
            result = await self.mcp.call_tool(params["name"], arguments)
        except MCPError as err:
            error = modern_error_data(err) if modern is not None else err.error
            status = ERROR_CODE_HTTP_STATUS.get(error.code, 200) if modern is not None else 200
            dumped_error = error.model_dump(by_alias=True, mode="json", exclude_none=True)
            return {"jsonrpc": "2.0", "id": rid, "error": dumped_error}, status
        except Exception as exc:  # as MCPServer._handle_call_tool: an isError result
            if not isinstance(exc, ToolError) or isinstance(exc, UnexpectedToolError):
                logger.exception("Tool %r raised an unexpected exception", params["name"])
            result = CallToolResult(
                content=[TextContent(type="text", text=str(exc))], is_error=True
            )
        dumped = _dump(result)
        try:  # the SDK's per-version sieve (e.g. no resultType for handshake-era clients)
            dumped = sdk_methods.serialize_server_result("tools/call", version, dumped)
        except ValidationError:  # a server bug: the SDK's answer, details in the log
            logger.exception("tool %r returned an invalid result", params["name"])
            failed = {"code": INTERNAL_ERROR, "message": "Handler returned an invalid result"}
            status = ERROR_CODE_HTTP_STATUS.get(INTERNAL_ERROR, 500) if modern else 200
            return {"jsonrpc": "2.0", "id": rid, "error": failed}, status
        if modern is not None:  # what the SDK's runner adds to a 2026-era result
            dumped.setdefault("resultType", "complete")
            meta = dumped.get("_meta")
            if meta is None or (isinstance(meta, dict) and meta.get(SERVER_INFO_META_KEY) is None):
                stamp = self.mcp._lowlevel_server.server_info_stamp
                dumped["_meta"] = {**(meta or {}), SERVER_INFO_META_KEY: stamp}
        return {"jsonrpc": "2.0", "id": rid, "result": dumped}, 200


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
