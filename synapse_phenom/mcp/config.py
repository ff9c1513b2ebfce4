"""Configuration of the MCP sidecar (``phenom-chat mcp``): a frozen pydantic model from YAML.

Loaded from the file named by ``--config`` / ``PHENOM_MCP_CONFIG``; ``BACKEND_TYPE`` in
the environment overrides ``backend``. Errors name the exact key (``mcp.agents.x.rooms``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator

from synapse_phenom.config import FrozenModel, InvalidConfig, parse_model
from synapse_phenom.moderation.config import ModerationConfig
from synapse_phenom.previews.config import ResolverConfig
from synapse_phenom.rooms.config import RoomsConfig

ROOM_KEYS = ("internal", "partners", "community")
AGENT_LOCALPART = re.compile(r"^[a-z0-9._=\-/]+$")
DEFAULT_AGENT_PREFIX = "agent-"
DATABASE_URL_ENV = "CHAT_DATABASE_URL"


class AgentProfile(FrozenModel):
    """One Cognito app client allowed to act as an agent."""

    # Matrix localpart; must lie in the application service's user namespace.
    localpart: str
    display_name: str | None = None
    # Room keys this agent may use; "internal" only when listed here.
    rooms: tuple[Literal["internal", "partners", "community"], ...] = ("community",)
    # Tool calls per minute (all tools); bursts up to one minute's worth.
    rate_limit_per_minute: int = Field(60, gt=0, le=100_000)

    @field_validator("localpart")
    @classmethod
    def _localpart(cls, v: str) -> str:
        v = v.removeprefix("@").split(":", 1)[0]
        if not AGENT_LOCALPART.match(v):
            raise ValueError("must be a Matrix localpart such as 'agent-helper'")
        return v


class AuthConfig(FrozenModel):
    """Cognito (or the dev signer): which tokens are accepted."""

    # Exact `iss` of accepted tokens, e.g. https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC
    issuer: str
    # Default: <issuer>/.well-known/jwks.json (Cognito's location).
    jwks_url: str | None = None
    # Dev only: a local JWKS file (written by `phenom-chat dev`) instead of jwks_url.
    jwks_file: Path | None = None
    # Seconds between forced JWKS refetches caused by an unknown `kid`.
    # (At least 1 s: tokens with junk kids must not turn into one JWKS fetch each.)
    jwks_cooldown_seconds: float = Field(30.0, ge=1, le=3600)
    jwks_cache_seconds: float = Field(300.0, gt=0, le=86_400)
    # Cognito resource server identifier: scopes are <id>/read, <id>/write, <id>/moderate.
    resource_server: str = "chat-mcp"
    leeway_seconds: int = Field(0, ge=0, le=300)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError(
                "must be the token issuer URL, e.g. https://cognito-idp.<region>.amazonaws.com/<pool>"
            )
        return v.rstrip("/")

    @property
    def effective_jwks_url(self) -> str:
        return self.jwks_url or f"{self.issuer}/.well-known/jwks.json"


class SynapseBackendConfig(FrozenModel):
    homeserver_url: str = "http://127.0.0.1:8008"
    server_name: str = "localhost"
    # The application service registration written by `phenom-chat mcp-registration`.
    registration_file: Path
    # Device every agent uses: Synapse remembers transaction ids per device for 24 h,
    # which makes idempotency keys hold across MCP replicas and restarts.
    device_id: str = "PHENOM_MCP"
    request_timeout_seconds: float = Field(30.0, gt=0, le=300)
    # Room aliases per key, default #<key>:<server_name>.
    room_aliases: dict[str, str] = Field(default_factory=dict)

    @field_validator("homeserver_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/")

    def alias(self, key: str) -> str:
        return self.room_aliases.get(key) or f"#{key}:{self.server_name}"


class HasuraBackendConfig(FrozenModel):
    """Implementation B ("Hasura Lite"): the chat tables in PostgreSQL, reached directly."""

    # libpq URL of the database holding the `chat` schema (hasura/migrations/default).
    # CHAT_DATABASE_URL in the environment overrides it (keep passwords out of files).
    database_url: str
    # Connection pool of the tool calls (the LISTEN connection for wait_for_messages is extra).
    pool_min_size: int = Field(1, ge=0, le=100)
    pool_max_size: int = Field(10, ge=1, le=500)
    # Every statement of a tool call is cancelled after this long.
    statement_timeout_ms: int = Field(10_000, ge=100, le=300_000)
    # Shown in IDs (@agent-x:<server_name>, #community:<server_name>), as on Synapse.
    server_name: str = "localhost"
    # The rooms core's config (same keys as the rooms module's): agents get the smallest
    # groups granting their profile's rooms, as on Synapse.
    rooms: RoomsConfig = Field(default_factory=RoomsConfig)
    # The previews core's config for get_link_preview and cards on sent messages (same keys
    # as the link-preview module's).
    previews: ResolverConfig = Field(default_factory=ResolverConfig)
    # The moderation core's config for sends (the moderation module's keys); default: the
    # shipped policies, as on Synapse and in the send Action.
    moderation: ModerationConfig | None = None

    @field_validator("database_url")
    @classmethod
    def _dsn(cls, v: str) -> str:
        if not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a PostgreSQL URL such as postgresql://user@host:5432/phenom")
        return v

    @model_validator(mode="after")
    def _pool(self) -> HasuraBackendConfig:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size is larger than pool_max_size")
        return self


class McpConfig(FrozenModel):
    host: str = "127.0.0.1"
    port: int = Field(3001, ge=1, le=65535)
    # Public base URL clients use; the resource is <public_url>/mcp (RFC 9728 metadata).
    public_url: str | None = None
    # DNS-rebinding protection: Host and Origin headers accepted (":*" = any port).
    allowed_hosts: tuple[str, ...] = ("127.0.0.1:*", "localhost:*")
    allowed_origins: tuple[str, ...] = ("http://127.0.0.1:*", "http://localhost:*")
    backend: Literal["synapse", "hasura"] = "synapse"
    synapse: SynapseBackendConfig | None = None
    hasura: HasuraBackendConfig | None = None
    auth: AuthConfig
    # Cognito app client id -> agent profile.
    agents: dict[str, AgentProfile] = Field(min_length=1)
    # Upper bound of wait_for_messages' long poll.
    max_wait_seconds: int = Field(60, ge=1, le=300)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _consistent(self) -> McpConfig:
        if self.backend == "synapse" and self.synapse is None:
            raise ValueError(
                "backend 'synapse' needs a 'synapse' section (homeserver_url, registration_file)"
            )
        if self.backend == "hasura" and self.hasura is None:
            raise ValueError(
                "backend 'hasura' needs a 'hasura' section (database_url, or set CHAT_DATABASE_URL)"
            )
        seen: dict[str, str] = {}
        for client_id, profile in self.agents.items():
            if profile.localpart in seen:
                raise ValueError(
                    f"agents.{client_id} and agents.{seen[profile.localpart]} share one localpart"
                )
            seen[profile.localpart] = client_id
        return self

    @property
    def base_url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::", "127.0.0.1") else self.host
        return (self.public_url or f"http://{host}:{self.port}").rstrip("/")

    @property
    def resource_url(self) -> str:
        return f"{self.base_url}/mcp"


def load_config(path: Path, env: Mapping[str, str]) -> McpConfig:
    """Parse the YAML file; raise InvalidConfig naming the bad key or the unreadable file."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise InvalidConfig(f"cannot read MCP config {path}: {err}") from None
    except yaml.YAMLError as err:
        raise InvalidConfig(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise InvalidConfig(f"{path}: expected a mapping at the top level")
    if env.get("BACKEND_TYPE"):
        raw["backend"] = env["BACKEND_TYPE"]
    if env.get(DATABASE_URL_ENV):
        section = raw.get("hasura")
        raw["hasura"] = {
            **(section if isinstance(section, dict) else {}),
            "database_url": env[DATABASE_URL_ENV],
        }
    return parse_model(McpConfig, raw, "mcp")
