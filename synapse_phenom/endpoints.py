"""The HTTP contract of the Phenom Synapse modules: every ``/_synapse/client/phenom/...`` path.

The modules register these paths, and the admin CLI, the MCP backend and the tests call
them, all through this one list. Every path is versioned (``/v1/``). Paths that were
documented to clients before versioning stay served as aliases (``LEGACY_*``).
Pure constants: importable without synapse.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "/_synapse/client/phenom"
V1 = f"{PREFIX}/v1"

# Rooms module, admin only: read (GET ?user_id=) or write (POST) a user's groups.
GROUPS_PATH = f"{V1}/groups"
# Rooms module, admin only: the users whose stored groups are not empty (paged), for the
# full Cognito reconcile (synapse_phenom.lambdas.group_sync).
GROUPS_INDEX_PATH = f"{V1}/groups_index"
# Agents module, application-service users only: the rooms of an AI agent.
AGENT_ROOMS_PATH = f"{V1}/agent_rooms"
# Moderation module, admin only: the audit log.
AUDIT_PATH = f"{V1}/moderation/audit"
# Link-preview module, any signed-in user: the card of a link.
PREVIEW_PATH = f"{V1}/preview"
# Documented in docs/link-previews.md before versioning; served as an alias of PREVIEW_PATH.
LEGACY_PREVIEW_PATH = f"{PREFIX}/preview"
PREVIEW_PATHS = (PREVIEW_PATH, LEGACY_PREVIEW_PATH)

# Ops module (docs/operations.md). Public: the loaded Phenom modules of this process.
HEALTH_PATH = f"{V1}/health"
# Ops module, admin only (phenom-chat admin): lockdown (POST; GET lists), slow mode, bans,
# unmute, admin audit rows, revoked agents (POST revoke/enable; GET lists).
LOCKDOWN_PATH = f"{V1}/admin/rooms/lockdown"
SLOW_MODE_PATH = f"{V1}/admin/rooms/slow_mode"
BAN_PATH = f"{V1}/admin/users/ban"
UNMUTE_PATH = f"{V1}/admin/users/unmute"
ADMIN_AUDIT_PATH = f"{V1}/admin/audit"
AGENT_REVOCATIONS_PATH = f"{V1}/admin/agents/revoked"
# Ops module, the MCP application service (its token) or admins: revoked agents' user ids.
REVOKED_AGENTS_PATH = f"{V1}/agents/revoked"
OPS_PATHS = (
    HEALTH_PATH,
    LOCKDOWN_PATH,
    SLOW_MODE_PATH,
    BAN_PATH,
    UNMUTE_PATH,
    ADMIN_AUDIT_PATH,
    AGENT_REVOCATIONS_PATH,
    REVOKED_AGENTS_PATH,
)

ALL_PATHS = (
    GROUPS_PATH,
    GROUPS_INDEX_PATH,
    AGENT_ROOMS_PATH,
    AUDIT_PATH,
    *PREVIEW_PATHS,
    *OPS_PATHS,
)


@dataclass(frozen=True)
class Endpoint:
    """What a path accepts: its methods, query parameters and JSON body fields."""

    path: str
    methods: tuple[str, ...]
    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    who: str = "user"  # who may call it: user, admin or appservice


CONTRACT = {
    GROUPS_PATH: Endpoint(
        GROUPS_PATH, ("GET", "POST"), ("user_id",), ("user_id", "groups", "source"), "admin"
    ),
    GROUPS_INDEX_PATH: Endpoint(GROUPS_INDEX_PATH, ("GET",), ("from", "limit"), (), "admin"),
    AGENT_ROOMS_PATH: Endpoint(AGENT_ROOMS_PATH, ("POST",), (), ("rooms",), "appservice"),
    AUDIT_PATH: Endpoint(
        AUDIT_PATH, ("GET",), ("room_id", "user_id", "since", "limit"), (), "admin"
    ),
    **{p: Endpoint(p, ("GET",), ("url",)) for p in PREVIEW_PATHS},
}


def contract(path: str) -> Endpoint:
    """The declared contract of ``path``; a path without one is swept with every method."""
    return CONTRACT.get(path) or Endpoint(path, ("GET", "POST", "PUT", "DELETE"))
