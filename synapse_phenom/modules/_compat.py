"""Fail at startup, loudly, on a Synapse whose module API lacks what a module uses.

Each Phenom module calls :func:`require_module_api` first thing in ``__init__``. On a
Synapse that is too old (or has dropped an API), loading stops with a ``ConfigError``
naming the module, every missing API and the supported Synapse range, instead of an
``AttributeError``/``TypeError`` deep in a callback hours later.

``MODULE_API_NEEDS`` lists, per module, the ``ModuleApi`` attributes it touches and the
keyword arguments it passes to each ``register_*_callbacks`` function.
``tests/unit/test_module_api_compat.py`` derives the same lists from the source (an AST
walk over ``synapse_phenom/modules``) and fails if this table misses a use, so a new
call cannot slip past the startup check.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The oldest Synapse the whole real-Synapse suite passes on (see docs/deployment.md).
OLDEST_SUPPORTED_SYNAPSE = "1.155.0"
SUPPORTED_RANGE = f"matrix-synapse>={OLDEST_SUPPORTED_SYNAPSE},<2"


@dataclass(frozen=True)
class ApiNeeds:
    """What one module uses of Synapse's ``ModuleApi``."""

    attributes: frozenset[str]
    # register function name -> the callback keyword arguments the module passes to it
    callbacks: Mapping[str, frozenset[str]] = field(default_factory=dict)


def _needs(attributes: str, **callbacks: str) -> ApiNeeds:
    return ApiNeeds(
        attributes=frozenset(attributes.split()) | frozenset(callbacks),
        callbacks={name: frozenset(kwargs.split()) for name, kwargs in callbacks.items()},
    )


# Keyed by module name: the code of module "x" lives in modules/x.py, modules/[_]x_*.py
# (e.g. _rooms_http.py) or modules/x/ (the test maps files to keys that way).
MODULE_API_NEEDS: dict[str, ApiNeeds] = {
    "agents": _needs("get_user_by_req register_web_resource update_room_membership"),
    "cognito": _needs("run_db_interaction"),
    "link_preview": _needs(
        # _hs: the media repository, to re-host preview images (no module API uploads media).
        "_hs create_and_send_event_into_room defer_to_thread get_room_state get_user_by_req"
        " is_mine looping_background_call register_web_resource run_as_background_process"
        " run_db_interaction server_name should_run_background_tasks sleep",
        register_spam_checker_callbacks="check_event_for_spam",
        register_third_party_rules_callbacks="check_event_allowed",
    ),
    "moderation": _needs(
        # _hs: the homeserver's macaroon secret, from which the card-signing key derives,
        # and (display_names: profile) the third-party-rules dispatcher, for member events.
        # _store: Synapse's cached member lists with room profiles (legacy highlights) and
        # a user's rooms (display names).
        "_hs _store create_and_send_event_into_room defer_to_thread get_profile_for_user"
        " get_room_state get_user_by_req get_userinfo_by_id set_displayname"
        " is_mine is_user_admin lookup_room_alias looping_background_call register_web_resource"
        " run_as_background_process run_db_interaction should_run_background_tasks",
        register_spam_checker_callbacks="check_event_for_spam user_may_invite user_may_join_room",
        register_third_party_rules_callbacks="check_event_allowed on_profile_update",
    ),
    "ops": _needs(
        "check_user_exists create_and_send_event_into_room get_room_state get_user_by_req"
        " is_mine is_user_admin lookup_room_alias looping_background_call register_web_resource"
        " run_db_interaction server_name set_user_admin should_run_background_tasks"
        " update_room_membership worker_name"
    ),
    "rooms": _needs(
        # _store, _push_rules_handler: a room's default notification level is a push rule
        # for the member; the module API cannot create one (_rooms_push_defaults.py).
        # _store also: the system user's rate-limit exemption (_rooms_creation.py).
        "_push_rules_handler _store"
        " check_user_exists create_and_send_event_into_room create_room delayed_background_call"
        " get_room_state get_user_by_req is_mine is_user_admin lookup_room_alias"
        " looping_background_call public_room_list_manager register_user register_web_resource"
        " run_as_background_process"
        " run_db_interaction server_name should_run_background_tasks sleep"
        " update_room_membership worker_name",
        register_spam_checker_callbacks=(
            "check_event_for_spam user_may_invite user_may_join_room user_may_send_3pid_invite"
        ),
        register_account_validity_callbacks="on_user_login on_user_registration",
    ),
}


def _accepts(function: Any, kwarg: str) -> bool:
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):  # not introspectable: let the call itself decide
        return True
    if kwarg in params:
        return params[kwarg].kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def missing_module_api(needs: ApiNeeds, api: object) -> list[str]:
    """The APIs in ``needs`` that ``api`` lacks, as ``ModuleApi.x`` / ``ModuleApi.f(kw=...)``."""
    missing = [f"ModuleApi.{name}" for name in sorted(needs.attributes) if not hasattr(api, name)]
    for register, kwargs in sorted(needs.callbacks.items()):
        function = getattr(api, register, None)
        if function is None:
            continue  # already reported above
        missing += [
            f"ModuleApi.{register}({kwarg}=...)"
            for kwarg in sorted(kwargs)
            if not _accepts(function, kwarg)
        ]
    return missing


def _synapse_version() -> str:
    try:
        from synapse import __version__
    except Exception:  # pragma: no cover - Synapse without a version attribute
        return "unknown"
    return str(__version__)


def require_module_api(module: str, api: object) -> None:
    """Raise ``ConfigError`` if ``api`` lacks anything module ``module`` uses.

    ``module`` is a key of :data:`MODULE_API_NEEDS` (``"rooms"``, ``"moderation"``, …).
    """
    from synapse.module_api.errors import ConfigError

    missing = missing_module_api(MODULE_API_NEEDS[module], api)
    if missing:
        raise ConfigError(
            f"synapse_phenom.modules.{module} cannot run on Synapse {_synapse_version()}: "
            f"its module API lacks {', '.join(missing)}. "
            f"synapse-phenom supports {SUPPORTED_RANGE}; upgrade Synapse."
        )


def requester_app_service_id(requester: Any) -> str | None:
    """The id of the application service behind a request, or None.

    Synapse 1.155 made ``Requester`` a Rust class with ``app_service_id``; older releases
    have ``app_service`` (the ``ApplicationService`` or None) instead.
    """
    if hasattr(requester, "app_service_id"):
        return requester.app_service_id
    service = getattr(requester, "app_service", None)
    return None if service is None else str(service.id)
