"""What ``phenom-chat admin`` does, as a blocking client of Synapse (never import into Synapse).

Room actions and bans go through the ops module's admin endpoints (the system user owns
the rooms); user actions use Synapse's admin API, then write an audit row through the
ops module. Every action checks the current state first: repeating it changes nothing,
and ``dry_run`` only reports what would change. Each returns an ``Outcome``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import attrs
import httpx2

from synapse_phenom.admin import core
from synapse_phenom.endpoints import AUDIT_PATH, GROUPS_PATH
from synapse_phenom.ops.admin_client import MatrixError, raise_for_matrix

# Hasura Lite (implementation B) keeps its own chat tables: these commands do not touch them.
SCOPE_NOTE = "acts on Synapse (implementation A) only; Hasura Lite chat tables are not changed"


@attrs.frozen
class Outcome:
    target: str
    changes: list[str]
    dry_run: bool
    extra: dict[str, Any] = attrs.field(factory=dict)


class AdminOps:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx2.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
        self.me = str(
            raise_for_matrix(self.http.get("/_matrix/client/v3/account/whoami"))["user_id"]
        )
        self.server_name = self.me.split(":", 1)[1]

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AdminOps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return raise_for_matrix(self.http.request(method, path, **kwargs))

    def user_id(self, user: str) -> str:
        return user if user.startswith("@") else f"@{user}:{self.server_name}"

    def get_user(self, user_id: str) -> dict[str, Any]:
        resp = self.http.get(f"/_synapse/admin/v2/users/{quote(user_id)}")
        if resp.status_code == 404:
            raise MatrixError(404, "M_NOT_FOUND", f"{user_id} does not exist")
        return raise_for_matrix(resp)

    def audit(
        self, command: str, user_id: str, changes: list[str], reason: str, room_id: str = ""
    ) -> None:
        body = {
            "command": command,
            "user_id": user_id,
            "room_id": room_id,
            "changes": changes,
            "reason": reason,
        }
        self._call("POST", core.ADMIN_AUDIT_PATH, json=body)

    # -- rooms ----------------------------------------------------------------------------

    def lockdown(self, room: str, until_s: int | None, reason: str, dry_run: bool) -> Outcome:
        until = int((time.time() + until_s) * 1000) if until_s else None
        body = {"room": room, "lock": True, "until_ts": until, "reason": reason, "dry_run": dry_run}
        result = self._call("POST", core.LOCKDOWN_PATH, json=body)
        return Outcome(
            result["room_id"], list(result["changes"]), dry_run, {"lockdown": result["lockdown"]}
        )

    def unlock(self, room: str, reason: str, dry_run: bool) -> Outcome:
        body = {"room": room, "lock": False, "reason": reason, "dry_run": dry_run}
        result = self._call("POST", core.LOCKDOWN_PATH, json=body)
        return Outcome(result["room_id"], list(result["changes"]), dry_run)

    def slow_mode(self, room: str, seconds: int, reason: str, dry_run: bool) -> Outcome:
        body = {"room": room, "seconds": seconds, "reason": reason, "dry_run": dry_run}
        result = self._call("POST", core.SLOW_MODE_PATH, json=body)
        return Outcome(result["room_id"], list(result["changes"]), dry_run)

    def lockdowns(self) -> list[dict[str, Any]]:
        return list(self._call("GET", core.LOCKDOWN_PATH)["lockdowns"])

    # -- users ----------------------------------------------------------------------------

    def suspend(self, user: str, suspend: bool, reason: str, dry_run: bool) -> Outcome:
        user_id = self.user_id(user)
        current = bool(self.get_user(user_id).get("suspended"))
        changes = [] if current == suspend else [f"suspended: {current} -> {suspend}"]
        if changes and not dry_run:
            self._call(
                "PUT", f"/_synapse/admin/v1/suspend/{quote(user_id)}", json={"suspend": suspend}
            )
            self.audit("suspend" if suspend else "unsuspend", user_id, changes, reason)
        return Outcome(user_id, changes, dry_run)

    def shadow_ban(self, user: str, on: bool, reason: str, dry_run: bool) -> Outcome:
        user_id = self.user_id(user)
        current = bool(self.get_user(user_id).get("shadow_banned"))
        changes = [] if current == on else [f"shadow_banned: {current} -> {on}"]
        if changes and not dry_run:
            self._call(
                "POST" if on else "DELETE",
                f"/_synapse/admin/v1/users/{quote(user_id)}/shadow_ban",
                json={},
            )
            self.audit("shadow_ban" if on else "unshadow_ban", user_id, changes, reason)
        return Outcome(user_id, changes, dry_run)

    def ban(self, user: str, unban: bool, reason: str, dry_run: bool) -> Outcome:
        user_id = self.user_id(user)
        self.get_user(user_id)
        body = {"user_id": user_id, "unban": unban, "reason": reason, "dry_run": dry_run}
        changes = list(self._call("POST", core.BAN_PATH, json=body)["changes"])
        if unban and changes and not dry_run:
            # Back into the rooms their groups allow (the rooms module's reconcile).
            groups = list(self._call("GET", GROUPS_PATH, params={"user_id": user_id})["groups"])
            body = {"user_id": user_id, "groups": groups, "source": "admin-unban"}
            joined = self._call("POST", GROUPS_PATH, json=body)["joined"]
            changes.extend(
                f"rejoined {alias} (groups: {', '.join(groups) or 'none'})" for alias in joined
            )
        return Outcome(user_id, changes, dry_run)

    def unmute(self, user: str, room: str | None, reason: str, dry_run: bool) -> Outcome:
        """Lift moderation mutes now (an appeal granted); they otherwise end by themselves."""
        user_id = self.user_id(user)
        body = {"user_id": user_id, "room": room, "reason": reason, "dry_run": dry_run}
        changes = list(self._call("POST", core.UNMUTE_PATH, json=body)["changes"])
        return Outcome(user_id, changes, dry_run)

    def redact(
        self, user: str, since_ms: int | None, reason: str, dry_run: bool, wait_s: float = 60.0
    ) -> Outcome:
        """Synapse's user-redaction task (messages and joins, in every room of the user;
        already-redacted events are skipped, so it is safe to repeat)."""
        user_id = self.user_id(user)
        self.get_user(user_id)
        rooms = self._call("GET", f"/_synapse/admin/v1/users/{quote(user_id)}/joined_rooms")[
            "joined_rooms"
        ]
        since = (
            "the beginning"
            if since_ms is None
            else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since_ms / 1000))
        )
        plan = [
            f"redact messages since {since} in {len(rooms)} joined rooms (and rooms they are "
            "banned from)"
        ]
        if dry_run:
            return Outcome(user_id, plan, True)
        body: dict[str, Any] = {"rooms": [], "use_admin": False}
        if reason:
            body["reason"] = reason
        if since_ms is not None:
            body["after_ts"] = since_ms
        redact_id = self._call(
            "POST", f"/_synapse/admin/v1/user/{quote(user_id)}/redact", json=body
        )["redact_id"]
        status: dict[str, Any] = {"status": "scheduled"}
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            status = self._call("GET", f"/_synapse/admin/v1/user/redact_status/{quote(redact_id)}")
            if status["status"] in ("complete", "failed"):
                break
            time.sleep(0.5)
        failed = status.get("failed_redactions") or {}
        changes = [*plan, f"redaction task {redact_id}: {status['status']}, {len(failed)} failed"]
        self.audit("redact", user_id, changes, reason)
        return Outcome(user_id, changes, False, {"redact_id": redact_id, "status": status})

    def deactivate(self, user: str, erase: bool, reason: str, dry_run: bool) -> Outcome:
        user_id = self.user_id(user)
        current = bool(self.get_user(user_id).get("deactivated"))
        changes = (
            []
            if current
            else [f"deactivated{' and erased' if erase else ''} (logged out, left every room)"]
        )
        if changes and not dry_run:
            self._call(
                "POST", f"/_synapse/admin/v1/deactivate/{quote(user_id)}", json={"erase": erase}
            )
            self.audit("deactivate", user_id, changes, reason)
        return Outcome(user_id, changes, dry_run)

    def show(self, user: str, actions: int = 10) -> dict[str, Any]:
        user_id = self.user_id(user)
        info = self.get_user(user_id)
        groups = self._call("GET", GROUPS_PATH, params={"user_id": user_id})
        rooms = self._call("GET", f"/_synapse/admin/v1/users/{quote(user_id)}/joined_rooms")[
            "joined_rooms"
        ]
        devices = self._call("GET", f"/_synapse/admin/v2/users/{quote(user_id)}/devices")["devices"]
        audit = self._call("GET", AUDIT_PATH, params={"user_id": user_id, "limit": actions})[
            "entries"
        ]
        last_seen = max((d.get("last_seen_ts") or 0 for d in devices), default=0) or None
        return {
            "user_id": user_id,
            "displayname": info.get("displayname"),
            "admin": bool(info.get("admin")),
            "deactivated": bool(info.get("deactivated")),
            "suspended": bool(info.get("suspended")),
            "shadow_banned": bool(info.get("shadow_banned")),
            "created_ts": int(info["creation_ts"]) * 1000
            if info.get("creation_ts")
            else None,  # API: seconds
            "external_ids": info.get("external_ids") or [],
            "groups": groups.get("groups", []),
            "rooms": rooms,
            "devices": devices,
            "last_seen_ts": last_seen,
            "moderation": audit,
        }

    # -- agents ---------------------------------------------------------------------------

    def agents(
        self, configured: dict[str, str] | None = None, prefix: str = "agent-"
    ) -> list[dict[str, Any]]:
        """Agent users (``@agent-*``, plus ``configured`` localpart -> client id from the MCP
        config, even before their first call) with last activity and revocation state."""
        users = self._call(
            "GET",
            "/_synapse/admin/v2/users",
            params={"name": prefix, "limit": 1000, "deactivated": "true"},
        )["users"]
        revoked = {
            r["user_id"]: r for r in self._call("GET", core.AGENT_REVOCATIONS_PATH)["revoked"]
        }
        clients = {self.user_id(lp): cid for lp, cid in (configured or {}).items()}
        known = {str(u["name"]): u for u in users if str(u["name"]).startswith(f"@{prefix}")}
        out = []
        for name in sorted(set(known) | set(clients) | set(revoked)):
            exists = name in known
            devices = (
                self._call("GET", f"/_synapse/admin/v2/users/{quote(name)}/devices")["devices"]
                if exists
                else []
            )
            last = max((d.get("last_seen_ts") or 0 for d in devices), default=0)
            out.append(
                {
                    "user_id": name,
                    "client_id": clients.get(name),
                    "displayname": known[name].get("displayname") if exists else None,
                    "exists": exists,
                    "last_seen_ts": last or None,
                    "suspended": bool(self.get_user(name).get("suspended")) if exists else False,
                    "revoked": name in revoked,
                    "revocation": revoked.get(name),
                }
            )
        return out

    def agent_revoke(self, agent: str, revoke: bool, reason: str, dry_run: bool) -> Outcome:
        """Revoke: the MCP server refuses the agent's tokens and its Matrix user is suspended
        (it cannot send, join or invite). Re-enable undoes both."""
        user_id = self.user_id(agent if agent.startswith(("@", "agent-")) else f"agent-{agent}")
        resp = self.http.get(f"/_synapse/admin/v2/users/{quote(user_id)}")
        info = raise_for_matrix(resp) if resp.status_code != 404 else None
        body = {"user_id": user_id, "revoked": revoke, "reason": reason, "dry_run": dry_run}
        changes = list(self._call("POST", core.AGENT_REVOCATIONS_PATH, json=body)["changes"])
        if info is None:
            return Outcome(
                user_id,
                changes,
                dry_run,
                {"note": "no Matrix user yet (created on its first call)"},
            )
        suspended = bool(info.get("suspended"))
        if suspended != revoke:
            changes.append(f"Matrix user suspended: {suspended} -> {revoke}")
            if not dry_run:
                self._call(
                    "PUT", f"/_synapse/admin/v1/suspend/{quote(user_id)}", json={"suspend": revoke}
                )
                self.audit("suspend" if revoke else "unsuspend", user_id, [changes[-1]], reason)
        return Outcome(user_id, changes, dry_run)
