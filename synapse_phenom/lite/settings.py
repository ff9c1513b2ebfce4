"""Where B's database and rooms config come from (CLI flags, environment)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import yaml

from synapse_phenom.config import InvalidConfig, parse_model
from synapse_phenom.rooms.config import RoomsConfig

DSN_ENV = "CHAT_DATABASE_URL"
ROOMS_CONFIG_ENV = "PHENOM_ROOMS_CONFIG"


def dsn_from(explicit: str | None, env: Mapping[str, str]) -> str:
    dsn = explicit or env.get(DSN_ENV, "")
    if not dsn:
        raise InvalidConfig(f"no chat database: pass --dsn or set {DSN_ENV} (postgresql://...)")
    return dsn


def rooms_config(path: Path | None, env: Mapping[str, str]) -> RoomsConfig:
    """The rooms module's config (same model as A): a YAML file, else $PHENOM_ROOMS_CONFIG
    (JSON), else the defaults (internal/partners/community; team and partners groups)."""
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise InvalidConfig(f"{path}: {err}") from None
        return parse_model(RoomsConfig, raw, str(path))
    if env.get(ROOMS_CONFIG_ENV):
        try:
            raw = json.loads(env[ROOMS_CONFIG_ENV])
        except ValueError as err:
            raise InvalidConfig(f"{ROOMS_CONFIG_ENV}: not JSON ({err})") from None
        return parse_model(RoomsConfig, raw, ROOMS_CONFIG_ENV)
    return RoomsConfig()
