"""Production auth path end to end: a real client_credentials token from the Cognito emulator
(ministack), validated through its JWKS URL by a second MCP server in front of the shared
Synapse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
import yaml
from fixtures_cognito import CognitoEmulator
from harness import SynapseStack, free_port
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from synapse_phenom.mcp import dev as mcp_dev
from synapse_phenom.ops import devstack

pytestmark = pytest.mark.synapse


@pytest.fixture
def cognito_mcp(
    synapse: SynapseStack, mcp_registration: Path, cognito: CognitoEmulator, tmp_path: Path
) -> Iterator[tuple[str, str, str]]:
    client_id, secret = cognito.create_machine_client("chat-mcp", ("read", "write", "moderate"))
    port = free_port()
    config = {
        "port": port,
        "synapse": {"homeserver_url": synapse.base_url, "registration_file": str(mcp_registration)},
        "auth": {"issuer": cognito.issuer, "jwks_url": cognito.jwks_url},
        "agents": {
            client_id: {
                "localpart": "agent-cognito",
                "display_name": "Cognito Agent",
                "rooms": ["community"],
            }
        },
    }
    path = tmp_path / "mcp.yaml"
    path.write_text(yaml.safe_dump(config))
    process = mcp_dev.start_mcp(path, "127.0.0.1", port)
    try:
        devstack.wait_http(f"http://127.0.0.1:{port}/health", [process], timeout=60)
        yield f"http://127.0.0.1:{port}/mcp", client_id, secret
    finally:
        process.stop()


def test_cognito_client_credentials_token(
    cognito_mcp: tuple[str, str, str], cognito: CognitoEmulator
) -> None:
    url, client_id, secret = cognito_mcp
    full = cognito.client_credentials_token(client_id, secret)
    read_only = cognito.client_credentials_token(client_id, secret, scope="chat-mcp/read")

    async def main() -> tuple[str, str]:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {full}"}, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            sent = await client.call_tool(
                "send_message", {"room": "community", "body": "signed in with Cognito"}
            )
            assert not sent.is_error, sent.content
            assert sent.structured_content is not None
            sender = str(sent.structured_content["sender"])
        async with (
            httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {read_only}"}, timeout=60
            ) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            assert not (await client.call_tool("list_rooms", {})).is_error
            with pytest.raises(MCPError) as refused:
                await client.call_tool("send_message", {"room": "community", "body": "nope"})
        return sender, str(refused.value)

    sender, refused = anyio.run(main)
    assert sender == "@agent-cognito:localhost"
    assert "chat-mcp/write" in refused
    # A token altered after signing is refused.
    assert (
        httpx2.post(
            url, headers={"Authorization": f"Bearer {full}x"}, json={}, timeout=10
        ).status_code
        == 401
    )
