"""``parse_config`` of every Synapse module: the pure config parsing, Synapse's error type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from synapse.module_api.errors import ConfigError

from synapse_phenom.config import InvalidConfig, parse_model

M = TypeVar("M", bound=BaseModel)


def parse_module_config(model: type[M], raw: Mapping[str, Any] | None, module: str) -> M:
    """Validate ``raw`` into ``model``; Synapse's ``ConfigError`` names every bad key."""
    try:
        return parse_model(model, raw, f"modules[{module}].config")
    except InvalidConfig as err:
        raise ConfigError(str(err)) from None
