"""Config parsing shared by every module: pydantic models in, clear errors out.

Synapse shows a ``ConfigError`` at startup; its message must name the offending key
(``modules[rooms].rooms.internal.join_rule``) and what is wrong with it. Pure: the
Synapse-facing ``parse_module_config`` is in ``synapse_phenom.modules._config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class FrozenModel(BaseModel):
    """Base for all config models: immutable, unknown keys rejected (typos fail loudly)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class InvalidConfig(ValueError):
    """Config could not be parsed; ``path`` is the dotted key that is wrong."""

    def __init__(self, message: str, path: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


def describe_validation_error(err: ValidationError, prefix: str) -> str:
    """One line per problem, each naming the full key path."""
    lines = []
    for problem in err.errors():
        loc = ".".join(str(p) for p in problem["loc"])
        key = f"{prefix}.{loc}" if loc else prefix
        lines.append(f"{key}: {problem['msg']}")
    return "; ".join(lines)


def parse_model(model: type[M], raw: Mapping[str, Any] | None, prefix: str) -> M:
    """Validate ``raw`` into ``model``; raise InvalidConfig naming every bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidConfig(f"{prefix}: expected a mapping, got {type(raw).__name__}", (prefix,))
    try:
        return model.model_validate(dict(raw))
    except ValidationError as err:
        raise InvalidConfig(describe_validation_error(err, prefix), (prefix,)) from None
