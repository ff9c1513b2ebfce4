"""The module API the code uses exists on the installed Synapse, and a gap fails at startup.

The uses are derived from the source with an AST walk over ``synapse_phenom/modules``
(``api.x``, ``module_api.x``, ``self._api.x`` and the keyword arguments of every
``register_*_callbacks`` call), so a new use is checked without anyone updating a list.
CI runs this file on the newest Synapse and on the oldest supported one.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import synapse.module_api
from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

from synapse_phenom.modules import _compat

MODULES_DIR = Path(_compat.__file__).parent
API_NAMES = {"api", "module_api"}  # how the modules name the ModuleApi they get
API_SELF_ATTRIBUTES = {"_api", "api", "_module_api"}  # ... and where they keep it


@dataclass
class Uses:
    attributes: set[str] = field(default_factory=set)
    callbacks: dict[str, set[str]] = field(default_factory=dict)
    imported: set[str] = field(default_factory=set)  # names imported from synapse.module_api
    modules: set[str] = field(default_factory=set)  # synapse_phenom.modules.* imported


def _is_api(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in API_NAMES
    # self._api, but also another object's: self._ops.api, module.api, ...
    return isinstance(node, ast.Attribute) and node.attr in API_SELF_ATTRIBUTES


def scan(path: Path) -> Uses:
    uses = Uses()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and _is_api(node.value):
            uses.attributes.add(node.attr)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and _is_api(node.func.value)
            and node.func.attr.startswith("register_")
        ):
            kwargs = {k.arg for k in node.keywords if k.arg is not None}
            if node.func.attr.endswith("_callbacks"):
                uses.callbacks.setdefault(node.func.attr, set()).update(kwargs)
        if isinstance(node, ast.ImportFrom) and node.module == "synapse.module_api":
            uses.imported.update(alias.name for alias in node.names)
        if isinstance(node, ast.ImportFrom) and node.module:
            package, _, name = node.module.rpartition(".")
            if package == "synapse_phenom.modules":
                uses.modules.add(name)
    return uses


def module_key(path: Path) -> str | None:
    """The MODULE_API_NEEDS key of a file: modules/x.py, modules/[_]x_*.py or modules/x/..."""
    first = path.relative_to(MODULES_DIR).parts[0].removesuffix(".py").lstrip("_")
    keys = [k for k in _compat.MODULE_API_NEEDS if first == k or first.startswith(k + "_")]
    return max(keys, key=len) if keys else None


def source_uses() -> dict[Path, Uses]:
    return {p: scan(p) for p in sorted(MODULES_DIR.rglob("*.py"))}


def _init_attributes() -> set[str]:
    """Instance attributes ModuleApi.__init__ sets (``self.x = ...``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(ModuleApi.__init__)))
    names: set[str] = set()
    for node in ast.walk(tree):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        for t in targets:
            if (
                isinstance(t, ast.Attribute)
                and isinstance(t.value, ast.Name)
                and t.value.id == "self"
            ):
                names.add(t.attr)
    return names


def test_the_scan_sees_the_modules_uses() -> None:
    """Guard against a scan that silently finds nothing (e.g. after a rename of ``api``)."""
    everything = Uses()
    for uses in source_uses().values():
        everything.attributes |= uses.attributes
        for register, kwargs in uses.callbacks.items():
            everything.callbacks.setdefault(register, set()).update(kwargs)
    assert {
        "register_web_resource",
        "run_db_interaction",
        "update_room_membership",
    } <= everything.attributes
    assert "check_event_allowed" in everything.callbacks["register_third_party_rules_callbacks"]
    assert "user_may_join_room" in everything.callbacks["register_spam_checker_callbacks"]


def test_the_startup_check_covers_every_use_in_the_source() -> None:
    gaps: list[str] = []
    sources = source_uses()
    for path, uses in sources.items():
        if not uses.attributes:
            continue
        key = module_key(path)
        # A shared helper (modules/_registry.py) is charged to every module that imports it.
        keys = (
            [key]
            if key is not None
            else sorted(
                {
                    k
                    for p, u in sources.items()
                    if path.stem in u.modules and (k := module_key(p)) is not None
                }
            )
        )
        if not keys:
            gaps.append(f"{path.name}: uses the module API but maps to no MODULE_API_NEEDS key")
        for k in keys:
            needs = _compat.MODULE_API_NEEDS[k]
            where = f"{path.name} ({k})"
            gaps += [f"{where}: ModuleApi.{a}" for a in sorted(uses.attributes - needs.attributes)]
            for register, kwargs in uses.callbacks.items():
                missing = kwargs - needs.callbacks.get(register, frozenset())
                gaps += [f"{where}: {register}({kw}=...)" for kw in sorted(missing)]
    assert not gaps, f"add these to synapse_phenom/modules/_compat.py MODULE_API_NEEDS: {gaps}"


def test_every_module_api_use_exists_on_the_installed_synapse() -> None:
    """Checks the table (a superset of the source's uses) against the installed ModuleApi."""
    on_instance = _init_attributes()
    missing: list[str] = []
    for key, needs in _compat.MODULE_API_NEEDS.items():
        missing += [
            f"{key}: ModuleApi.{a}"
            for a in sorted(needs.attributes)
            if not hasattr(ModuleApi, a) and a not in on_instance
        ]
        for register, kwargs in needs.callbacks.items():
            function = getattr(ModuleApi, register, None)
            assert function is not None, f"{key}: ModuleApi.{register}"
            missing += [
                f"{key}: ModuleApi.{register}({kw}=...)"
                for kw in sorted(kwargs)
                if not _compat._accepts(function, kw)
            ]
    assert not missing, f"Synapse {synapse.__version__} lacks: {missing}"


def test_names_imported_from_synapse_module_api_exist() -> None:
    package = MODULES_DIR.parent
    imported = {name for p in package.rglob("*.py") for name in scan(p).imported}
    assert {"ModuleApi", "NOT_SPAM"} <= imported
    assert not [n for n in sorted(imported) if not hasattr(synapse.module_api, n)]


def test_media_repository_upload_keeps_its_signature() -> None:
    """link_preview re-hosts images through the media repository (no module API for it)."""
    from synapse.media.media_repository import MediaRepository

    params = list(inspect.signature(MediaRepository.create_or_update_content).parameters)
    assert params[1:6] == ["media_type", "upload_name", "content", "content_length", "auth_user"]


def test_the_declared_range_starts_at_the_oldest_tested_synapse() -> None:
    """Package metadata, the startup check's message and scripts/test-oldest agree."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement
    from packaging.version import Version

    (declared,) = [
        Requirement(r) for r in requires("synapse-phenom") or [] if r.startswith("matrix-synapse")
    ]
    lower = [s.version for s in declared.specifier if s.operator == ">="]
    assert lower == [_compat.OLDEST_SUPPORTED_SYNAPSE]
    assert declared.specifier.contains("1.999.0")  # no upper pin below the next major version
    assert not declared.specifier.contains("2.0.0")
    # synapse.__version__ may carry git details ("1.163.2 (b=main,…)"): use the metadata.
    assert declared.specifier.contains(Version(importlib.metadata.version("matrix-synapse")))


def test_requester_attributes_the_modules_read_exist() -> None:
    """``get_user_by_req`` returns a Requester; its shape changed in 1.155 (Rust class)."""
    from synapse.types import Requester

    used = set()
    for path in MODULES_DIR.rglob("*.py"):
        if path.name == "_compat.py":  # the shim that reads either shape
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "requester"
            ):
                used.add(node.attr)
    assert "user" in used
    assert not [a for a in sorted(used) if not hasattr(Requester, a)], used


def test_requester_app_service_id_on_both_shapes() -> None:
    rust_shape = SimpleNamespace(app_service_id="phenom-mcp")
    attrs_shape = SimpleNamespace(app_service=SimpleNamespace(id="phenom-mcp"))
    assert _compat.requester_app_service_id(rust_shape) == "phenom-mcp"
    assert _compat.requester_app_service_id(attrs_shape) == "phenom-mcp"
    assert _compat.requester_app_service_id(SimpleNamespace(app_service_id=None)) is None
    assert _compat.requester_app_service_id(SimpleNamespace(app_service=None)) is None


# -- the startup check itself ------------------------------------------------------------


class _Api:
    """A stand-in with every attribute the modules use (unit test of the check only)."""

    def __init__(self, omit: str = "") -> None:
        for needs in _compat.MODULE_API_NEEDS.values():
            for name in needs.attributes - set(needs.callbacks):
                if name != omit:
                    setattr(self, name, SimpleNamespace())

    def register_spam_checker_callbacks(
        self, *, check_event_for_spam: Any = None, user_may_join_room: Any = None
    ) -> None:  # no user_may_invite: an old Synapse
        pass

    def register_third_party_rules_callbacks(self, **kwargs: Any) -> None:
        pass

    def register_account_validity_callbacks(self, **kwargs: Any) -> None:
        pass


def test_a_missing_attribute_fails_naming_the_module_and_the_api() -> None:
    with pytest.raises(ConfigError) as err:
        _compat.require_module_api("agents", _Api(omit="update_room_membership"))
    message = str(err.value)
    assert "synapse_phenom.modules.agents" in message
    assert "ModuleApi.update_room_membership" in message
    assert _compat.SUPPORTED_RANGE in message


def test_a_register_function_without_the_callback_kwarg_fails() -> None:
    with pytest.raises(ConfigError) as err:
        _compat.require_module_api("rooms", _Api())
    message = str(err.value)
    assert "synapse_phenom.modules.rooms" in message
    assert "ModuleApi.register_spam_checker_callbacks(user_may_invite=...)" in message
    assert "ModuleApi.register_account_validity_callbacks" not in message  # **kwargs
    assert "user_may_join_room" not in message  # accepted


def test_a_complete_api_passes() -> None:
    _compat.require_module_api("agents", _Api())
    _compat.require_module_api("link_preview", _Api())  # **kwargs accepts any callback


def _module_class(key: str) -> Any:
    from synapse_phenom.modules.agents import PhenomAgents
    from synapse_phenom.modules.cognito import CognitoMappingProvider
    from synapse_phenom.modules.link_preview import PhenomLinkPreviews
    from synapse_phenom.modules.moderation import PhenomModeration
    from synapse_phenom.modules.ops import PhenomOps
    from synapse_phenom.modules.rooms import PhenomRooms

    classes: dict[str, Any] = {
        "agents": PhenomAgents,
        "cognito": CognitoMappingProvider,
        "link_preview": PhenomLinkPreviews,
        "moderation": PhenomModeration,
        "ops": PhenomOps,
        "rooms": PhenomRooms,
    }
    return classes[key]


@pytest.mark.parametrize("key", sorted(_compat.MODULE_API_NEEDS))
def test_every_module_checks_the_api_before_anything_else(key: str) -> None:
    """Each module's __init__ runs the check first: an empty API fails with the check's error."""
    with pytest.raises(ConfigError, match=rf"synapse_phenom\.modules\.{key} cannot run on Synapse"):
        _module_class(key)(None, SimpleNamespace())
