"""Admin actions of the ops module besides lockdowns: slow mode, bans, audit rows, agents.

Each is ``handler(ops, admin_user_id, body) -> JSON``, served by ``ops_resources.Endpoint``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes, SynapseError

from synapse_phenom.admin import core, store
from synapse_phenom.moderation.config import POLICY_EVENT_TYPE
from synapse_phenom.modules._registry import rooms_module

if TYPE_CHECKING:
    from synapse_phenom.modules.ops import PhenomOps


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


# -- slow mode, bans ------------------------------------------------------------------


async def slow_mode(ops: PhenomOps, by: str, body: dict[str, Any]) -> dict[str, Any]:
    room_id = await ops.room(body.get("room"))
    seconds = body.get("seconds")
    if not isinstance(seconds, int) or not 0 <= seconds <= 86400:
        raise SynapseError(400, "'seconds' must be 0 (off) to 86400", Codes.INVALID_PARAM)
    dry_run, reason = bool(body.get("dry_run", False)), str(body.get("reason") or "")
    state = await ops.api.get_room_state(room_id, [(POLICY_EVENT_TYPE, "")])
    event = state.get((POLICY_EVENT_TYPE, ""))
    live = dict(event.get_dict()["content"]) if event is not None else {}
    content = core.slow_mode_content(live, seconds)
    changes = []
    if content != live:
        before = live.get("flood", "configured")
        changes.append(f"live policy flood: {before} -> {content.get('flood', 'configured')}")
    if changes and not dry_run:
        await ops.send(room_id, {"type": POLICY_EVENT_TYPE, "state_key": "", "content": content})
        await ops.audit(
            room_id,
            by,
            "slow_mode",
            "slow_mode",
            core.audit_detail(by, reason, changes=changes),
        )
    return {"room_id": room_id, "dry_run": dry_run, "changes": changes}


async def ban(ops: PhenomOps, by: str, body: dict[str, Any]) -> dict[str, Any]:
    user_id = body.get("user_id")
    if not isinstance(user_id, str) or not user_id.startswith("@") or not ops.api.is_mine(user_id):
        raise SynapseError(400, "'user_id' must be a user of this server", Codes.INVALID_PARAM)
    unban, dry_run = bool(body.get("unban", False)), bool(body.get("dry_run", False))
    reason = str(body.get("reason") or "")
    rooms = rooms_module(ops.api)
    if rooms is None:
        raise SynapseError(503, "The Phenom rooms module is not loaded", Codes.UNKNOWN)
    system = ops.system_user()
    changes: list[str] = []
    for key, room_id in (await rooms.room_ids()).items():
        current = await rooms.membership_of(room_id, user_id)
        if unban and current == "ban":
            changes.append(f"{key}: unbanned")
            if not dry_run:
                await ops.api.update_room_membership(system, user_id, room_id, "leave")
        elif not unban and current != "ban":
            changes.append(f"{key}: banned (was {current or 'not a member'})")
            if not dry_run:
                content = {"reason": reason} if reason else {}
                await ops.api.update_room_membership(
                    system, user_id, room_id, "ban", content=content
                )
    if changes and not dry_run:
        action = "unban" if unban else "ban"
        await ops.audit("", user_id, action, action, core.audit_detail(by, reason, changes=changes))
    return {"user_id": user_id, "dry_run": dry_run, "changes": changes}


# -- audit, agents ---------------------------------------------------------------------


async def write_audit(ops: PhenomOps, by: str, body: dict[str, Any]) -> dict[str, Any]:
    command, user_id, room_id = (
        body.get("command"),
        body.get("user_id", ""),
        body.get("room_id", ""),
    )
    if not isinstance(command, str) or not command.replace("_", "").isalpha() or len(command) > 40:
        raise SynapseError(400, "'command' must be a word such as 'suspend'", Codes.INVALID_PARAM)
    if not isinstance(user_id, str) or not isinstance(room_id, str):
        raise SynapseError(400, "'user_id' and 'room_id' must be strings", Codes.INVALID_PARAM)
    changes = body.get("changes") or []
    if not isinstance(changes, list) or not all(isinstance(c, str) for c in changes):
        raise SynapseError(400, "'changes' must be a list of strings", Codes.INVALID_PARAM)
    detail = core.audit_detail(by, str(body.get("reason") or ""), changes=changes)
    await ops.audit(room_id, user_id or by, command, command, detail)
    return {"written": True}


async def revocations(ops: PhenomOps, by: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"revoked": await ops.db("phenom_ops_revoked", store.revoked_agents)}


async def revoke(ops: PhenomOps, by: str, body: dict[str, Any]) -> dict[str, Any]:
    user_id, revoked = body.get("user_id"), body.get("revoked")
    if not isinstance(user_id, str) or not user_id.startswith("@") or not isinstance(revoked, bool):
        raise SynapseError(
            400,
            "'user_id' (an agent's Matrix ID) and 'revoked' (bool) are required",
            Codes.INVALID_PARAM,
        )
    reason, dry_run = str(body.get("reason") or ""), bool(body.get("dry_run", False))
    rows = await ops.db("phenom_ops_revoked", store.revoked_agents)
    is_revoked = any(r["user_id"] == user_id for r in rows)
    changes = (
        []
        if is_revoked == revoked
        else [f"MCP tokens {'refused' if revoked else 'accepted again'}"]
    )
    if changes and not dry_run:
        await ops.db(
            "phenom_ops_set_revoked", store.set_revoked, user_id, revoked, by, reason, _now_ms()
        )
        action = "agent_revoke" if revoked else "agent_enable"
        await ops.audit("", user_id, action, action, core.audit_detail(by, reason, changes=changes))
    return {"user_id": user_id, "dry_run": dry_run, "changes": changes}


async def unmute(ops: PhenomOps, by: str, body: dict[str, Any]) -> dict[str, Any]:
    """Lift the moderation module's mutes of a user (all rooms, or ``room``) now."""
    user_id = body.get("user_id")
    if not isinstance(user_id, str) or not user_id.startswith("@"):
        raise SynapseError(400, "'user_id' must be a Matrix user ID", Codes.INVALID_PARAM)
    room_id = await ops.room(body["room"]) if body.get("room") else None
    dry_run, reason = bool(body.get("dry_run", False)), str(body.get("reason") or "")
    now = _now_ms()
    mutes = await ops.db("phenom_ops_mutes", store.active_mutes, user_id, now)
    changes = [
        f"mute in {room} lifted ({(until - now) // 1000} s early)"
        for room, until in mutes
        if room_id is None or room == room_id
    ]
    if changes and not dry_run:
        await ops.db("phenom_ops_unmute", store.lift_mutes, user_id, room_id, now)
        detail = core.audit_detail(by, reason, changes=changes)
        await ops.audit(room_id or "", user_id, "unmute", "unmute", detail)
    return {"user_id": user_id, "dry_run": dry_run, "changes": changes}
