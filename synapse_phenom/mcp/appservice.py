"""The application service registration through which the MCP server acts as agents.

Synapse loads the file (``app_service_config_files``); the MCP server reads its
``as_token``. Agents are ``@agent-<name>:<server>`` users in an exclusive namespace,
so no human can register such a name and the rooms module leaves them alone.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from synapse_phenom.config import InvalidConfig
from synapse_phenom.ops.files import write_private

APPSERVICE_ID = "phenom-mcp"
SENDER_LOCALPART = "phenom-mcp"


def registration(
    server_name: str,
    agent_prefix: str = "agent-",
    as_id: str = APPSERVICE_ID,
    sender_localpart: str = SENDER_LOCALPART,
) -> dict[str, Any]:
    """A fresh registration with random tokens.

    ``url: null``: Synapse pushes no transactions (the MCP server pulls with /sync).
    ``rate_limited: false``: agents are throttled per agent by the MCP server instead.
    ``receive_ephemeral: false``: no typing/receipts/presence for the service.
    Only the agents' exclusive user namespace; no room or alias interests. With every
    registration pull-only, the rendered homeserver.yaml turns Synapse's appservice
    stream off altogether (``hsconfig.appservices_pull_only``).
    """
    return {
        "id": as_id,
        "url": None,
        "as_token": secrets.token_urlsafe(32),
        "hs_token": secrets.token_urlsafe(32),
        "sender_localpart": sender_localpart,
        "rate_limited": False,
        "receive_ephemeral": False,
        "namespaces": {
            "users": [
                {
                    "exclusive": True,
                    "regex": f"@{re.escape(agent_prefix)}.*:{re.escape(server_name)}",
                }
            ],
            "aliases": [],
            "rooms": [],
        },
    }


def write_registration(path: Path, server_name: str, agent_prefix: str = "agent-") -> bool:
    """Create the file (owner-only) unless it exists; True when written.

    Existing tokens are kept: Synapse and running MCP replicas already use them.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, yaml.safe_dump(registration(server_name, agent_prefix), sort_keys=False))
    return True


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InvalidConfig(f"mcp.synapse.registration_file: cannot read {path}: {err}") from None
    return data if isinstance(data, dict) else {}


def read_as_token(path: Path) -> str:
    token = _read(path).get("as_token")
    if not isinstance(token, str) or not token:
        raise InvalidConfig(f"mcp.synapse.registration_file: {path} has no as_token")
    return token


def check_agents_in_namespace(path: Path, server_name: str, localparts: Mapping[str, str]) -> None:
    """Every agent's user ID (``localparts``: client id -> localpart) must lie in one of the
    registration's user namespaces, or Synapse refuses to act for it on every call."""
    users = (_read(path).get("namespaces") or {}).get("users") or []
    patterns = [u.get("regex") for u in users if isinstance(u, dict)]
    for client_id, localpart in localparts.items():
        user_id = f"@{localpart}:{server_name}"
        if not any(isinstance(p, str) and re.fullmatch(p, user_id) for p in patterns):
            raise InvalidConfig(
                f"mcp.agents.{client_id}.localpart: {user_id} is outside the user namespace of "
                f"{path} ({', '.join(map(str, patterns)) or 'none'}); use its prefix"
            )
