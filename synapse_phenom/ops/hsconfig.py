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
from synapse_phenom.ops.files import write_private
from synapse_phenom.previews.config import DEFAULT_ORIGINS, normalise_origin

ROOMS_MODULE = "synapse_phenom.modules.rooms.PhenomRooms"
AGENTS_MODULE = "synapse_phenom.modules.agents.PhenomAgents"
LINK_PREVIEW_MODULE = "synapse_phenom.modules.link_preview.PhenomLinkPreviews"
MODERATION_MODULE = "synapse_phenom.modules.moderation.PhenomModeration"
OPS_MODULE = "synapse_phenom.modules.ops.PhenomOps"


@attrs.frozen
class Var:
    name: str
    help: str
    default: str | None = None  # None: required

    @property
    def required(self) -> bool:
        return self.default is None


# Every environment variable `render-config` reads. Secrets are files, never values.
ENV_VARS: tuple[Var, ...] = (
    Var("PHENOM_SERVER_NAME", "Matrix server name, e.g. chat.thephenom.app"),
    Var("PHENOM_PUBLIC_BASEURL", "public URL clients use, e.g. https://chat.thephenom.app/"),
    Var("PHENOM_DB_HOST", "PostgreSQL host"),
    Var("PHENOM_DB_NAME", "PostgreSQL database (C collation)"),
    Var("PHENOM_DB_USER", "PostgreSQL user"),
    Var("PHENOM_DB_PASSWORD_FILE", "file holding the PostgreSQL password ('' for none)", ""),
    Var("PHENOM_DB_PORT", "PostgreSQL port", "5432"),
    Var("PHENOM_REGISTRATION_SHARED_SECRET_FILE", "file holding the registration shared secret"),
    Var("PHENOM_MACAROON_SECRET_KEY_FILE", "file holding the macaroon secret key"),
    Var("PHENOM_FORM_SECRET_FILE", "file holding the form secret"),
    Var("PHENOM_DATA_DIR", "directory for media, pid and logs", "/data"),
    Var("PHENOM_SIGNING_KEY_PATH", "server signing key file", "/data/signing.key"),
    Var("PHENOM_BIND_ADDRESS", "address the client listener binds", "0.0.0.0"),
    Var("PHENOM_PORT", "client listener port", "8008"),
    Var("PHENOM_METRICS_PORT", "Prometheus metrics port ('' disables)", "9000"),
    Var("PHENOM_MODULE_CONFIG_FILE", "optional YAML: module class -> config overrides", ""),
    Var("PHENOM_APPSERVICE_FILES", "comma-separated application service registration files", ""),
    Var(
        "PHENOM_FEDERATION",
        "'true': other Matrix servers may federate with this one ('false' = app users only)",
        "false",
    ),
    # Cognito sign-in: set PHENOM_COGNITO_USER_POOL_ID to enable; then CLIENT_ID and
    # CLIENT_SECRET_FILE are required too (see cognito_oidc_from_env).
    Var(
        "PHENOM_COGNITO_USER_POOL_ID",
        "Cognito user pool id, e.g. eu-west-1_AbC123 ('' = no Cognito SSO)",
        "",
    ),
    Var("PHENOM_COGNITO_REGION", "AWS region of the pool ('' = from the pool id)", ""),
    Var("PHENOM_COGNITO_CLIENT_ID", "Cognito app client id used by Synapse", ""),
    Var("PHENOM_COGNITO_CLIENT_SECRET_FILE", "file holding that app client's secret", ""),
    Var("PHENOM_COGNITO_IDP_ID", "idp_id (URLs and external ids use oidc-<idp_id>)", "cognito"),
    Var("PHENOM_COGNITO_IDP_NAME", "name shown on Synapse's SSO pages", "Phenom"),
    Var(
        "PHENOM_COGNITO_REQUIRED_GROUP",
        "only members of this Cognito group may sign in ('' = anyone)",
        "",
    ),
    Var(
        "PHENOM_SSO_CLIENT_WHITELIST",
        "comma-separated redirect prefixes sent straight back, e.g. phenom://",
        "",
    ),
    # Workers (docs/deployment.md#workers): set PHENOM_REDIS_HOST to enable; then
    # PHENOM_MAIN_HOST is required too (see replication_from_env).
    Var(
        "PHENOM_REDIS_HOST", "Redis host for worker replication ('' = one process, no workers)", ""
    ),
    Var("PHENOM_REDIS_PORT", "Redis port", "6379"),
    Var(
        "PHENOM_MAIN_HOST", "host name workers reach the main process on (replication listener)", ""
    ),
    Var("PHENOM_REPLICATION_PORT", "main process replication listener port", "9093"),
    Var("PHENOM_REPLICATION_BIND_ADDRESS", "address the replication listener binds", "0.0.0.0"),
    Var(
        "PHENOM_REPLICATION_SECRET_FILE",
        "file holding the replication shared secret ('' for none)",
        "",
    ),
    Var("PHENOM_WORKERS", "worker topology (docs/deployment.md#workers; '' = none)", ""),
)


class MissingVariables(ValueError):
    def __init__(self, missing: list[Var]) -> None:
        self.missing = missing
        names = "\n".join(f"  {v.name}: {v.help}" for v in missing)
        super().__init__(f"missing environment variables ({len(missing)}):\n{names}")


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


def cognito_oidc_from_env(get: Mapping[str, str]) -> list[dict[str, Any]]:
    """The Cognito ``oidc_providers`` entry, or none when no user pool is configured.

    All or nothing: any PHENOM_COGNITO_* setting without the pool id, or a pool id
    without client id and secret file, is an error naming what is missing.
    """
    from pydantic import ValidationError

    from synapse_phenom.cognito.config import CognitoOidcSettings, oidc_provider

    fields = {
        "user_pool_id": "PHENOM_COGNITO_USER_POOL_ID",
        "region": "PHENOM_COGNITO_REGION",
        "client_id": "PHENOM_COGNITO_CLIENT_ID",
        "client_secret_path": "PHENOM_COGNITO_CLIENT_SECRET_FILE",
        "idp_id": "PHENOM_COGNITO_IDP_ID",
        "idp_name": "PHENOM_COGNITO_IDP_NAME",
        "required_group": "PHENOM_COGNITO_REQUIRED_GROUP",
    }
    required = (
        "PHENOM_COGNITO_USER_POOL_ID",
        "PHENOM_COGNITO_CLIENT_ID",
        "PHENOM_COGNITO_CLIENT_SECRET_FILE",
    )
    if not any(
        get[name]
        for name in fields.values()
        if name not in ("PHENOM_COGNITO_IDP_ID", "PHENOM_COGNITO_IDP_NAME")
    ):
        return []
    missing = [v for v in ENV_VARS if v.name in required and not get[v.name]]
    if missing:
        raise MissingVariables(missing)
    try:
        settings = CognitoOidcSettings.model_validate({f: get[name] for f, name in fields.items()})
    except ValidationError as err:
        problems = [
            f"{fields.get(str(p['loc'][0]) if p['loc'] else 'region', 'PHENOM_COGNITO_*')}: "
            f"{p['msg']}"
            for p in err.errors()
        ]
        raise ValueError("; ".join(problems)) from None
    return [oidc_provider(settings)]


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
