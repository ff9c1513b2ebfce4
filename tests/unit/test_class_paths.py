"""Operators notice nothing: every class path the docs and templates tell them to put in
homeserver.yaml still loads, the way Synapse loads it (import the module, take the class)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "README.md",
    *sorted((ROOT / "synapse_phenom" / "templates").glob("*.j2")),
    ROOT / "synapse_phenom" / "ops" / "hsconfig.py",
    ROOT / "synapse_phenom" / "cognito" / "config.py",
]
CLASS_PATH = re.compile(r"\bsynapse_phenom(?:\.[a-z_][a-z0-9_]*)+\.[A-Z][A-Za-z0-9]+\b")


def documented_class_paths() -> list[str]:
    found: set[str] = set()
    for source in SOURCES:
        found.update(CLASS_PATH.findall(source.read_text()))
    return sorted(found)


def test_the_known_module_classes_are_documented() -> None:
    paths = documented_class_paths()
    for expected in (
        "synapse_phenom.modules.rooms.PhenomRooms",
        "synapse_phenom.modules.moderation.PhenomModeration",
        "synapse_phenom.modules.link_preview.PhenomLinkPreviews",
        "synapse_phenom.modules.agents.PhenomAgents",
        "synapse_phenom.modules.cognito.CognitoMappingProvider",
    ):
        assert expected in paths


@pytest.mark.parametrize("path", documented_class_paths())
def test_documented_class_path_loads(path: str) -> None:
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type)
    if module.startswith("synapse_phenom.modules."):
        # What Synapse calls first: a static parse_config that accepts the default config.
        parse_config = getattr(cls, "parse_config")  # noqa: B009
        assert callable(parse_config)
        parse_config({})
