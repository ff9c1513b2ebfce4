"""Render homeserver.yaml from the one template in ``homeserver/``.

Production values come from ``PHENOM_*`` environment variables (``values_from_env``);
``phenom-chat dev`` and the test harness pass dev values (``dev_values``). Both go
through ``render``, so dev and production configs cannot drift apart.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import jinja2
import yaml

from synapse_phenom.moderation.config import default_module_config as moderation_defaults
from synapse_phenom.ops.env_vars import ENV_VARS, MissingVariables, cognito_oidc_from_env
from synapse_phenom.ops.files import write_private
from synapse_phenom.previews.config import DEFAULT_ORIGINS, normalise_origin

ROOMS_MODULE = "synapse_phenom.modules.rooms.PhenomRooms"
AGENTS_MODULE = "synapse_phenom.modules.agents.PhenomAgents"
LINK_PREVIEW_MODULE = "synapse_phenom.modules.link_preview.PhenomLinkPreviews"
MODERATION_MODULE = "synapse_phenom.modules.moderation.PhenomModeration"
OPS_MODULE = "synapse_phenom.modules.ops.PhenomOps"


def template_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _load_template(name: str) -> str:
    return resources.files("synapse_phenom").joinpath("templates", name).read_text()


def default_modules(overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The ``modules:`` block: every Phenom module, with per-module config overrides."""
    overrides = dict(overrides or {})
    configs: dict[str, dict[str, Any]] = {
        # Agents (MCP application-service users) get their rooms from modules.agents instead.
        ROOMS_MODULE: {"unmanaged_users": ["^@phenom-admin:", "^@agent-"]},
        AGENTS_MODULE: {},
        LINK_PREVIEW_MODULE: {},
        # Working Community policy (docs/moderation.md); other rooms lenient.
        MODERATION_MODULE: moderation_defaults(),
        # Admin actions (lockdown, bans, agent revocation), health endpoint: docs/operations.md.
        OPS_MODULE: {},
    }
    for name, extra in overrides.items():
        if name not in configs:
            raise ValueError(
                f"module config override for unknown module {name!r}; known: {sorted(configs)}"
            )
        configs[name] = {**configs[name], **(extra or {})}
    return [{"module": name, "config": cfg} for name, cfg in configs.items()]


# No instance has this name: with it as ``notify_appservices_from_worker``, none pushes.
NO_APPSERVICE_PUSH_INSTANCE = "phenom-no-appservice-push"


def appservices_pull_only(files: Sequence[str]) -> bool:
    """True when there are registrations and every one has ``url: null`` (pull only).

    A file that cannot be read here (e.g. mounted only where Synapse runs) counts as
    pushed: Synapse then keeps its default (the main process notifies).
    """
    if not files:
        return False
    for name in files:
        try:
            data = yaml.safe_load(Path(name).read_text())
        except (OSError, yaml.YAMLError):
            return False
        if not isinstance(data, dict) or data.get("url", "") is not None:
            return False
    return True


def render(values: Mapping[str, Any]) -> tuple[str, str]:
    """(homeserver.yaml, log.yaml) text for these template values."""
    env = template_env()
    values = {"no_appservice_push_instance": NO_APPSERVICE_PUSH_INSTANCE, **values}
    if "appservices_pull_only" not in values:
        files = values.get("app_service_config_files") or []
        values["appservices_pull_only"] = appservices_pull_only(files)
    hs = env.get_template("homeserver.yaml.j2").render(**values)
    log = env.get_template("log.yaml.j2").render(**values)
    yaml.safe_load(hs)  # a template bug must fail here, not in Synapse
    return hs, log


def values_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Production template values; raise MissingVariables naming every missing one."""
    missing = [v for v in ENV_VARS if v.required and not env.get(v.name)]
    if missing:
        raise MissingVariables(missing)
    get = {v.name: env.get(v.name) or v.default or "" for v in ENV_VARS}
    from synapse_phenom.ops.replication import replication_from_env  # it imports this module

    data_dir = get["PHENOM_DATA_DIR"]
    password = ""
    if get["PHENOM_DB_PASSWORD_FILE"]:
        password = Path(get["PHENOM_DB_PASSWORD_FILE"]).read_text().strip()
    federation = get["PHENOM_FEDERATION"].strip().lower()
    if federation not in ("true", "false"):
        raise ValueError(f"PHENOM_FEDERATION must be 'true' or 'false', not {federation!r}")
    overrides: dict[str, Any] = {}
    if get["PHENOM_MODULE_CONFIG_FILE"]:
        overrides = yaml.safe_load(Path(get["PHENOM_MODULE_CONFIG_FILE"]).read_text()) or {}
    return {
        "profile": "production",
        "server_name": get["PHENOM_SERVER_NAME"],
        "public_baseurl": get["PHENOM_PUBLIC_BASEURL"],
        "data_dir": data_dir,
        "signing_key_path": get["PHENOM_SIGNING_KEY_PATH"],
        "log_config_path": f"{data_dir}/log.yaml",
        "log_file": "",
        "console_log_level": "INFO",
        # Closed by default: Cognito decides who is in the rooms, and a remote server's
        # users would join Community without ever passing the group gate.
        "federation": federation == "true",
        "trusted_key_servers": [{"server_name": "matrix.org"}] if federation == "true" else [],
        "bind_address": get["PHENOM_BIND_ADDRESS"],
        "port": int(get["PHENOM_PORT"]),
        "x_forwarded": True,
        "metrics_port": int(get["PHENOM_METRICS_PORT"]) if get["PHENOM_METRICS_PORT"] else None,
        "metrics_on_main_listener": False,
        "metrics_bind_address": "0.0.0.0",
        "database": {
            "engine": "postgres",
            "host": get["PHENOM_DB_HOST"],
            "port": int(get["PHENOM_DB_PORT"]),
            "name": get["PHENOM_DB_NAME"],
            "user": get["PHENOM_DB_USER"],
            "password": password,
        },
        "registration_shared_secret_path": get["PHENOM_REGISTRATION_SHARED_SECRET_FILE"],
        "macaroon_secret_key_path": get["PHENOM_MACAROON_SECRET_KEY_FILE"],
        "form_secret_path": get["PHENOM_FORM_SECRET_FILE"],
        "password_login": False,
        "rc_message_per_second": 0.5,
        "rc_message_burst": 20,
        "rc_joins_per_second": 0.5,
        "rc_joins_burst": 20,
        "rc_login_per_second": 0.3,
        "rc_login_burst": 10,
        "app_service_config_files": [f for f in get["PHENOM_APPSERVICE_FILES"].split(",") if f],
        "oidc_providers": cognito_oidc_from_env(get),
        "sso_client_whitelist": [
            p.strip() for p in get["PHENOM_SSO_CLIENT_WHITELIST"].split(",") if p.strip()
        ],
        "modules": default_modules(overrides),
        "replication": replication_from_env(get),
    }


@attrs.frozen
class DevDatabase:
    """SQLite (the embedded default) or a PostgreSQL database (tests on CI)."""

    engine: str = "sqlite"
    path: str = ""  # SQLite file; default DIR/homeserver.db
    host: str = ""
    port: int = 5432
    name: str = ""
    user: str = ""
    password: str = ""


def content_origin_overrides(content_origin: str) -> dict[str, Any]:
    """Module overrides pointing Phenom links at a local/staging copy of the site.

    Links to the default Phenom origins are fetched from ``content_origin`` (trusted, so it
    may be loopback or private), and links to ``content_origin`` itself get cards too.
    """
    local = normalise_origin(content_origin)
    origins = [
        {"url": o, "fetch_from": local, "trusted": True} for o in DEFAULT_ORIGINS if o != local
    ]
    # Links to the local copy are Phenom links for moderation too: every room policy that
    # allows only Phenom's domains (Community's link rule) allows the local host as well.
    host = urlsplit(local).hostname or ""
    phenom_hosts = {urlsplit(o).hostname for o in DEFAULT_ORIGINS}
    moderation = moderation_defaults()
    for policy in moderation["policies"].values():
        links = policy.get("links") or {}
        domains = list(links.get("domains") or [])
        if links.get("mode") == "allow" and phenom_hosts & set(domains) and host not in domains:
            links["domains"] = [*domains, host]
    return {
        LINK_PREVIEW_MODULE: {"origins": [*origins, {"url": local, "trusted": True}]},
        MODERATION_MODULE: moderation,
    }


def dev_values(
    data_dir: Path,
    host: str,
    port: int,
    database: DevDatabase | None = None,
    server_name: str = "localhost",
    module_overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Template values for the local dev stack (and the test harness)."""
    database = database or DevDatabase()
    db: dict[str, Any] = attrs.asdict(database)
    if database.engine == "sqlite" and not database.path:
        db["path"] = str(data_dir / "homeserver.db")
    public_host = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1") else host
    return {
        "profile": "dev",
        "server_name": server_name,
        "public_baseurl": f"http://{public_host}:{port}/",
        "data_dir": str(data_dir),
        "signing_key_path": str(data_dir / "signing.key"),
        "log_config_path": str(data_dir / "log.yaml"),
        "log_file": str(data_dir / "homeserver.log"),
        "console_log_level": "WARNING",
        "federation": False,
        "trusted_key_servers": [],
        "bind_address": host,
        "port": port,
        "x_forwarded": False,
        "metrics_port": None,
        "metrics_bind_address": "127.0.0.1",
        # Dev and tests read /_synapse/metrics on the client port.
        "metrics_on_main_listener": True,
        "database": db,
        "registration_shared_secret_path": str(data_dir / "registration_shared_secret"),
        "macaroon_secret_key_path": str(data_dir / "macaroon_secret_key"),
        "form_secret_path": str(data_dir / "form_secret"),
        "password_login": True,
        # Generous limits so local testing and the test suite are not throttled.
        "rc_message_per_second": 1000,
        "rc_message_burst": 10000,
        "rc_joins_per_second": 1000,
        "rc_joins_burst": 10000,
        "rc_login_per_second": 1000,
        "rc_login_burst": 10000,
        "app_service_config_files": [],
        "oidc_providers": [],
        "sso_client_whitelist": [],
        "modules": default_modules(module_overrides),
    }


def write_secret_files(values: Mapping[str, Any]) -> None:
    """Create the dev secret files (once; kept across runs), owner-only."""
    for key in ("registration_shared_secret_path", "macaroon_secret_key_path", "form_secret_path"):
        path = Path(values[key])
        if not path.exists():
            write_private(path, secrets.token_urlsafe(32))
