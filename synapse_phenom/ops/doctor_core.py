"""``phenom-chat doctor`` core: results, the target, and the configuration/database checks.

Each check returns a ``Check`` (pass / fail / warn / skip, a detail and a concrete fix).
Blocking I/O (httpx2, psycopg2, sockets): run from the CLI, never inside Synapse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import httpx2

from synapse_phenom.endpoints import HEALTH_PATH
from synapse_phenom.ops import hsconfig

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
ORIGIN_FIX = "allow outbound HTTPS to the origin; dev offline: phenom-chat dev --content-origin URL"
PHENOM_MODULES = (
    hsconfig.ROOMS_MODULE,
    hsconfig.AGENTS_MODULE,
    hsconfig.LINK_PREVIEW_MODULE,
    hsconfig.MODERATION_MODULE,
    hsconfig.OPS_MODULE,
)


@attrs.frozen
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


@attrs.define
class Target:
    """What to check: the rendered homeserver config, optional MCP config, credentials."""

    config: dict[str, Any]
    base_url: str
    admin_token: str | None
    production: bool
    mcp_config: dict[str, Any] | None = None
    mcp_url: str | None = None
    env: Mapping[str, str] | None = None  # PHENOM_* to re-render the production config
    timeout: float = 5.0

    def get(self, url: str, **kwargs: Any) -> httpx2.Response:
        return httpx2.get(url, timeout=self.timeout, **kwargs)

    def admin_get(self, path: str, **kwargs: Any) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx2.get(self.base_url + path, headers=headers, timeout=self.timeout, **kwargs)

    def module_config(self, module: str) -> dict[str, Any] | None:
        for entry in self.config.get("modules") or []:
            if entry.get("module") == module:
                return dict(entry.get("config") or {})
        return None

    @property
    def server_name(self) -> str:
        return str(self.config["server_name"])


def check_config(t: Target) -> Check:
    if t.env is not None:
        try:
            hsconfig.render(hsconfig.values_from_env(t.env))
        except (ValueError, OSError) as err:
            return Check(
                "config renders",
                FAIL,
                str(err).splitlines()[0],
                "set the variables named (docs/deployment.md)",
            )
    missing = [k for k in ("server_name", "database", "listeners", "modules") if k not in t.config]
    if missing:
        return Check(
            "config renders",
            FAIL,
            f"homeserver.yaml lacks {missing}",
            "re-render it: phenom-chat render-config",
        )
    return Check(
        "config renders", PASS, f"server_name {t.server_name}, {len(t.config['modules'])} modules"
    )


def check_database(t: Target) -> Check:
    db = t.config["database"]
    if db.get("name") == "sqlite3":
        if t.production:
            return Check("database", FAIL, "SQLite in production", "use PostgreSQL (PHENOM_DB_*)")
        return Check("database", PASS, f"SQLite {db['args'].get('database')} (dev only)")
    try:
        import psycopg2
    except ImportError:
        fix = "install the synapse extra: pip install 'synapse-phenom[synapse]'"
        return Check("database", FAIL, "psycopg2 is not installed here", fix)

    args = {
        k: v
        for k, v in db.get("args", {}).items()
        if k in ("host", "port", "dbname", "user", "password")
    }
    try:
        conn = psycopg2.connect(connect_timeout=int(t.timeout), **args)
    except psycopg2.Error as err:
        where = f"{args.get('user')}@{args.get('host')}:{args.get('port')}/{args.get('dbname')}"
        return Check(
            "database",
            FAIL,
            f"cannot connect to {where}: {str(err).strip()[:200]}",
            "check PHENOM_DB_* and the security group / pg_hba",
        )
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT datcollate, datctype FROM pg_database WHERE datname = current_database()"
            )
            collate, ctype = cur.fetchone() or ("?", "?")
    finally:
        conn.close()
    if (collate, ctype) != ("C", "C"):
        return Check(
            "database",
            FAIL,
            f"collation {collate}/{ctype}, Synapse needs C/C",
            "CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE "
            "template0 (and restore into it)",
        )
    return Check("database", PASS, f"PostgreSQL {args.get('dbname')} reachable, collation C")


def check_homeserver(t: Target) -> Check:
    try:
        resp = t.get(f"{t.base_url}/_matrix/client/versions")
    except httpx2.TransportError as err:
        return Check(
            "homeserver",
            FAIL,
            f"{t.base_url} unreachable: {err}",
            "start Synapse; see its log (docs/operations.md#synapse-down)",
        )
    if resp.status_code != 200:
        return Check(
            "homeserver",
            FAIL,
            f"{t.base_url}/_matrix/client/versions: HTTP {resp.status_code}",
            "check the Synapse log",
        )
    return Check("homeserver", PASS, f"{t.base_url} answers")


def check_modules(t: Target) -> Check:
    configured = [m["module"] for m in t.config.get("modules") or []]
    absent = [m for m in PHENOM_MODULES if m not in configured]
    try:
        resp = t.get(t.base_url + HEALTH_PATH)
    except httpx2.TransportError as err:
        return Check("modules loaded", FAIL, f"health endpoint unreachable: {err}", "start Synapse")
    if resp.status_code != 200:
        return Check(
            "modules loaded",
            FAIL,
            f"{HEALTH_PATH}: HTTP {resp.status_code} (ops module not loaded?)",
            f"add {hsconfig.OPS_MODULE} to modules (phenom-chat render-config does)",
        )
    loaded = set(resp.json().get("modules", []))
    not_loaded = [m for m in configured if m.startswith("synapse_phenom.") and m not in loaded]
    if absent or not_loaded:
        return Check(
            "modules loaded",
            FAIL,
            f"not configured: {absent}; configured but not loaded: {not_loaded}",
            "re-render homeserver.yaml (phenom-chat render-config) and restart Synapse; check its "
            "log for import errors",
        )
    return Check(
        "modules loaded",
        PASS,
        f"{len(loaded)} Phenom modules: " + ", ".join(sorted(m.rsplit(".", 1)[1] for m in loaded)),
    )
