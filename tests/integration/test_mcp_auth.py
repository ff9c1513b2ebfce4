"""Bearer-token checks of the MCP server over real HTTP: 401 for every bad token, 403 per tool
scope."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from fixtures_mcp import FULL, McpStack
from mcp.shared.exceptions import MCPError

from synapse_phenom.mcp.devkeys import DevSigner

pytestmark = pytest.mark.synapse

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def post(stack: McpStack, token: str | None, body: dict[str, Any] = LIST) -> httpx2.Response:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.post(stack.url, headers=headers, json=body, timeout=10)


def bad_tokens(stack: McpStack) -> dict[str, str]:
    signer = stack.signer
    claims = signer.claims(FULL, ["read", "write", "moderate"])
    other_issuer = DevSigner(
        signer.private_key,
        signer.kid,
        issuer="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other",
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    hs256 = (
        signing_input
        + "."
        + b64(hmac.new(signer.public_pem(), signing_input.encode(), hashlib.sha256).digest())
    )
    none_header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": signer.kid}).encode())
    good = signer.sign(claims)
    head, _, sig = good.split(".")
    forged = {**claims, "client_id": "someone-else", "sub": "someone-else"}
    return {
        "expired": signer.sign({**claims, "exp": claims["iat"] - 60}),
        "wrong issuer": other_issuer.token(FULL, ["read"]),
        "unknown client": signer.token("not-an-agent", ["read"]),
        "alg none": f"{none_header}.{b64(json.dumps(claims).encode())}.",
        "HS256 with the public key": hs256,
        "id token": signer.sign({**claims, "token_use": "id"}),
        # A person's access token for the agent's app client (a user auth flow enabled on it).
        "user token for the agent's client": signer.sign(
            {**claims, "sub": "0b7c8d1e-user", "username": "alice"}
        ),
        "unknown kid": signer.sign(claims, kid="rotated-away"),
        "tampered payload": f"{head}.{b64(json.dumps(forged).encode())}.{sig}",
        "other key": jwt.encode(
            claims, _other_key(), algorithm="RS256", headers={"kid": signer.kid}
        ),
        "garbage": "not.a.jwt",
    }


def _other_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_every_bad_token_gets_401_pointing_at_metadata(mcp_stack: McpStack) -> None:
    base = mcp_stack.base_url.replace("127.0.0.1", "localhost")
    metadata = f"{base}/.well-known/oauth-protected-resource/mcp"
    for name, token in {"no token": None, **bad_tokens(mcp_stack)}.items():
        resp = post(mcp_stack, token)
        assert resp.status_code == 401, f"{name}: {resp.status_code} {resp.text[:200]}"
        challenge = resp.headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and f'resource_metadata="{metadata}"' in challenge, (
            name
        )
    assert post(mcp_stack, mcp_stack.token()).status_code == 200


def test_missing_scope_is_403_per_tool(mcp_stack: McpStack) -> None:
    read_only = mcp_stack.token(scopes=("read",))
    write = mcp_stack.token(scopes=("read", "write"))

    def call(token: str, tool: str, args: dict[str, Any]) -> httpx2.Response:
        return post(
            mcp_stack,
            token,
            {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {"name": tool, "arguments": args},
            },
        )

    send = call(read_only, "send_message", {"room": "community", "body": "must not appear"})
    assert send.status_code == 403
    assert 'error="insufficient_scope"' in send.headers["www-authenticate"]
    assert 'scope="chat-mcp/write"' in send.headers["www-authenticate"]
    assert "chat-mcp/write" in send.json()["error"]["message"]
    delete = call(write, "delete_message", {"room": "community", "event_id": "$x"})
    assert (
        delete.status_code == 403
        and 'scope="chat-mcp/moderate"' in delete.headers["www-authenticate"]
    )
    no_scopes = mcp_stack.token(scopes=())
    assert call(no_scopes, "list_rooms", {}).status_code == 403

    async def main() -> tuple[list[str], str, list[str]]:
        async with mcp_stack.client(read_only) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            rooms = await client.call_tool("list_rooms", {})
            assert not rooms.is_error
            with pytest.raises(MCPError) as refused:
                await client.call_tool(
                    "send_message", {"room": "community", "body": "must not appear"}
                )
        community = mcp_stack.synapse.rooms["community"]
        bodies = [
            e["content"].get("body")
            for e in mcp_stack.synapse.register().messages(community, limit=100)
        ]
        return tools, str(refused.value), bodies

    tools, refused, bodies = anyio.run(main)
    assert len(tools) == 9
    assert "Insufficient scope" in refused and "chat-mcp/write" in refused
    assert "must not appear" not in bodies


def test_mcp_client_without_token_cannot_connect(mcp_stack: McpStack) -> None:
    async def main() -> None:
        async with mcp_stack.client(token=""):
            pass

    with pytest.raises(BaseExceptionGroup) as refused:
        anyio.run(main)
    assert refused.group_contains(MCPError)


def test_oversized_body_is_refused_before_buffering(mcp_stack: McpStack) -> None:
    huge = (
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"x": "'
        + b"a" * (5 * 1024 * 1024)
        + b'"}}'
    )
    resp = httpx2.post(
        mcp_stack.url,
        headers={
            "Authorization": f"Bearer {mcp_stack.token()}",
            "Content-Type": "application/json",
        },
        content=huge,
        timeout=30,
    )
    assert resp.status_code == 413
