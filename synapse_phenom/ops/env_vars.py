"""The ``PHENOM_*`` environment variables ``render-config`` reads, and the Cognito OIDC
provider they describe. Secrets are files, never values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


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
