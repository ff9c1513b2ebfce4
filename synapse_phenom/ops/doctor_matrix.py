"""Doctor checks through Synapse: rooms, the system user, the MCP application service."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import yaml

from synapse_phenom.ops import hsconfig
from synapse_phenom.ops.doctor_core import FAIL, PASS, SKIP, Check, Target


def _room_specs(t: Target) -> tuple[str, dict[str, Any]]:
    from synapse_phenom.rooms.config import RoomsConfig

    cfg = RoomsConfig.model_validate(t.module_config(hsconfig.ROOMS_MODULE) or {})
    return cfg.system_user, {k: spec for k, spec in cfg.rooms.items()}


def check_rooms(t: Target) -> list[Check]:
    if not t.admin_token:
        return [
            Check("rooms", SKIP, "no admin token", "set PHENOM_ADMIN_TOKEN or pass --token-file")
        ]
    system_local, specs = _room_specs(t)
    system = f"@{system_local}:{t.server_name}"
    out = []
    for key, spec in specs.items():
        alias = f"#{spec.alias}:{t.server_name}"
        resp = t.get(f"{t.base_url}/_matrix/client/v3/directory/room/{quote(alias)}")
        if resp.status_code != 200:
            out.append(
                Check(
                    f"room {key}",
                    FAIL,
                    f"{alias} does not resolve (HTTP {resp.status_code})",
                    "restart Synapse (the rooms module creates missing rooms) or restore the "
                    "alias: "
                    f"PUT /_matrix/client/v3/directory/room/{alias} as the system user; see "
                    "docs/operations.md",
                )
            )
            continue
        room_id = resp.json()["room_id"]
        state = t.admin_get(f"/_synapse/admin/v1/rooms/{quote(room_id)}/state")
        if state.status_code != 200:
            out.append(
                Check(
                    f"room {key}",
                    FAIL,
                    f"{room_id}: admin state HTTP {state.status_code}",
                    "check the admin token",
                )
            )
            continue
        events = state.json()["state"]
        pl: dict[str, Any] = next(
            (e["content"] for e in events if e["type"] == "m.room.power_levels"), {}
        )
        create: dict[str, Any] = next((e for e in events if e["type"] == "m.room.create"), {})
        version = str((create.get("content") or {}).get("room_version", "1"))
        # Room v12+: creators outrank every power level and are not listed in "users".
        creator = create.get("sender") == system and version.isdigit() and int(version) >= 12
        problems = []
        if not creator and (pl.get("users") or {}).get(system, 0) < 100:
            problems.append(f"{system} is not at power 100")
        for field, want in (spec.power_levels or {}).items():
            if (
                field != "users"
                and pl.get(field) != want
                and not (field == "events_default" and pl.get(field, 0) >= 50)
            ):
                problems.append(f"{field} is {pl.get(field)!r}, config says {want!r}")
        if problems:
            out.append(
                Check(
                    f"room {key}",
                    FAIL,
                    f"{alias} {room_id}: " + "; ".join(problems),
                    "restore the power levels with the admin API "
                    "(docs/operations.md#troubleshooting)",
                )
            )
        else:
            locked = " (under lockdown)" if pl.get("events_default", 0) >= 50 else ""
            out.append(Check(f"room {key}", PASS, f"{alias} -> {room_id}, power levels ok{locked}"))
    return out


def check_system_user(t: Target) -> Check:
    if not t.admin_token:
        return Check(
            "system user", SKIP, "no admin token", "set PHENOM_ADMIN_TOKEN or pass --token-file"
        )
    system_local, _ = _room_specs(t)
    user_id = f"@{system_local}:{t.server_name}"
    resp = t.admin_get(f"/_synapse/admin/v2/users/{quote(user_id)}")
    if resp.status_code == 404:
        return Check(
            "system user",
            FAIL,
            f"{user_id} does not exist",
            "restart Synapse: the rooms module creates it",
        )
    info = resp.json()
    if resp.status_code != 200:
        return Check(
            "system user", FAIL, f"HTTP {resp.status_code}: {info}", "check the admin token"
        )
    if info.get("deactivated") or info.get("suspended"):
        return Check(
            "system user",
            FAIL,
            f"{user_id} is deactivated/suspended",
            "reactivate/unsuspend it with the admin API",
        )
    if not info.get("admin"):
        return Check(
            "system user",
            FAIL,
            f"{user_id} is not a server admin",
            "restart Synapse (the ops module promotes it within 30 s) or: curl -X PUT -H "
            f"'Authorization: Bearer $PHENOM_ADMIN_TOKEN' {t.base_url}/_synapse/admin/v2/users/"
            f"{quote(user_id)} -d '{{\"admin\": true}}'",
        )
    return Check("system user", PASS, f"{user_id} exists and is a server admin")


def _load_yaml(path: str | Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def check_appservice(t: Target) -> Check:
    if t.mcp_config is None:
        return Check(
            "appservice", SKIP, "no MCP config given", "pass --mcp-config (dev: DIR/mcp.yaml)"
        )
    reg_path = (t.mcp_config.get("synapse") or {}).get("registration_file")
    mcp_reg = _load_yaml(reg_path) if reg_path else None
    if mcp_reg is None:
        return Check(
            "appservice",
            FAIL,
            f"MCP registration {reg_path} unreadable",
            "mount the registration file the MCP config names",
        )
    loaded = [
        r for r in (_load_yaml(p) for p in t.config.get("app_service_config_files") or []) if r
    ]
    same_id = [r for r in loaded if r.get("id") == mcp_reg.get("id")]
    if not same_id:
        return Check(
            "appservice",
            FAIL,
            f"Synapse loads no registration with id {mcp_reg.get('id')!r}",
            "add the MCP registration to PHENOM_APPSERVICE_FILES and restart Synapse",
        )
    if same_id[0].get("as_token") != mcp_reg.get("as_token") or same_id[0].get(
        "hs_token"
    ) != mcp_reg.get("hs_token"):
        return Check(
            "appservice",
            FAIL,
            "the MCP registration's tokens differ from the one Synapse loads",
            "mount the same registration file in Synapse and MCP, restart both",
        )
    resp = httpx2.get(
        f"{t.base_url}/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {mcp_reg.get('as_token')}"},
        timeout=t.timeout,
    )
    if resp.status_code != 200:
        return Check(
            "appservice",
            FAIL,
            f"Synapse rejects the MCP as_token (HTTP {resp.status_code})",
            "restart Synapse after changing the registration (it reads it at startup)",
        )
    regex = [n.get("regex", "") for n in (mcp_reg.get("namespaces") or {}).get("users", [])]

    agents = [str(p.get("localpart")) for p in (t.mcp_config.get("agents") or {}).values()]
    outside = [
        a for a in agents if not any(re.fullmatch(r, f"@{a}:{t.server_name}") for r in regex)
    ]
    if outside:
        return Check(
            "appservice",
            FAIL,
            f"agents outside the user namespace {regex}: {outside}",
            "rename the agents to agent-*",
        )
    return Check(
        "appservice",
        PASS,
        f"id {mcp_reg.get('id')}, token accepted as {resp.json().get('user_id')}",
    )
