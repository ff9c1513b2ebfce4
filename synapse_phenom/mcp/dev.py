"""Dev stack files for the MCP sidecar, shared by ``phenom-chat dev`` and the tests.

DIR/mcp-appservice.yaml (registration Synapse loads), DIR/mcp.yaml (server config
trusting the local dev signer), DIR/agent-token (all scopes, for the dev agent).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from synapse_phenom.mcp.appservice import write_registration
from synapse_phenom.mcp.devkeys import DEV_CLIENT_ID, JWKS_FILE, DevSigner
from synapse_phenom.ops import devstack
from synapse_phenom.ops.files import write_private

REGISTRATION_FILE = "mcp-appservice.yaml"
CONFIG_FILE = "mcp.yaml"
TOKEN_FILE = "agent-token"

DEV_AGENTS: dict[str, dict[str, Any]] = {
    DEV_CLIENT_ID: {
        "localpart": "agent-dev",
        "display_name": "Dev Agent",
        "rooms": ["internal", "partners", "community"],
        "rate_limit_per_minute": 6000,
    }
}


@attrs.frozen
class McpDevFiles:
    registration: Path | None  # None on the hasura backend (no application service)
    config: Path
    token: Path
    signer: DevSigner


def write_registration_file(data_dir: Path, server_name: str) -> Path:
    """Step 1, before Synapse's config is rendered: Synapse must load this file."""
    path = data_dir / REGISTRATION_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    write_registration(path, server_name)
    return path


def prepare_mcp(
    data_dir: Path,
    homeserver_url: str,
    server_name: str = "localhost",
    host: str = "127.0.0.1",
    port: int = 3001,
    agents: Mapping[str, Mapping[str, Any]] | None = None,
    registration: Path | None = None,
) -> McpDevFiles:
    """Step 2: signing key + JWKS, the server config and the dev agent's token."""
    data_dir = data_dir.resolve()
    registration = registration or write_registration_file(data_dir, server_name)
    backend = {
        "backend": "synapse",
        "synapse": {
            "homeserver_url": homeserver_url,
            "server_name": server_name,
            "registration_file": str(registration),
        },
    }
    return _write_files(data_dir, host, port, agents, backend, registration)


def prepare_mcp_hasura(
    data_dir: Path,
    database_url: str,
    server_name: str = "localhost",
    host: str = "127.0.0.1",
    port: int = 3001,
    agents: Mapping[str, Mapping[str, Any]] | None = None,
    previews: Mapping[str, Any] | None = None,
) -> McpDevFiles:
    """The same files for the ``hasura`` backend (Implementation B) on ``database_url``."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    section: dict[str, Any] = {"database_url": database_url, "server_name": server_name}
    if previews is not None:
        section["previews"] = dict(previews)
    return _write_files(
        data_dir, host, port, agents, {"backend": "hasura", "hasura": section}, None
    )


def _write_files(
    data_dir: Path,
    host: str,
    port: int,
    agents: Mapping[str, Mapping[str, Any]] | None,
    backend: Mapping[str, Any],
    registration: Path | None,
) -> McpDevFiles:
    signer = DevSigner.load_or_create(data_dir)
    config = {
        "host": host,
        "port": port,
        **backend,
        "auth": {"issuer": signer.issuer, "jwks_file": str(data_dir / JWKS_FILE)},
        "agents": {k: dict(v) for k, v in (agents or DEV_AGENTS).items()},
    }
    config_path = data_dir / CONFIG_FILE
    devstack.write_managed(config_path, yaml.safe_dump(config, sort_keys=False))
    token_path = data_dir / TOKEN_FILE
    write_private(
        token_path,
        signer.token(DEV_CLIENT_ID, ["read", "write", "moderate"], lifetime=30 * 24 * 3600) + "\n",
    )
    return McpDevFiles(
        registration=registration, config=config_path, token=token_path, signer=signer
    )


def start_mcp(config_path: Path, host: str, port: int) -> devstack.ManagedProcess:
    argv = [
        sys.executable,
        "-c",
        "import sys; from synapse_phenom.cli import main; sys.exit(main(sys.argv[1:]))",
        "mcp",
        "--config",
        str(config_path),
        "--host",
        host,
        "--port",
        str(port),
    ]
    return devstack.spawn("mcp", argv, config_path.parent / "mcp.log")
