"""``phenom-chat doctor``: check a deployment and say exactly what to fix.

Each check returns ``Check`` results (pass / fail / warn / skip, a detail and a concrete
fix). Blocking I/O (httpx2, psycopg2, sockets): run from the CLI, never inside Synapse.
"""

from __future__ import annotations

from collections.abc import Callable

from synapse_phenom.ops.doctor_core import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    Check,
    Target,
    check_config,
    check_database,
    check_homeserver,
    check_modules,
)
from synapse_phenom.ops.doctor_matrix import check_appservice, check_rooms, check_system_user
from synapse_phenom.ops.doctor_services import check_mcp, check_oidc, check_origin, check_workers

__all__ = ["FAIL", "PASS", "SKIP", "WARN", "Check", "Target", "run_checks"]

CHECKS: tuple[Callable[[Target], Check | list[Check]], ...] = (
    check_config,
    check_database,
    check_homeserver,
    check_modules,
    check_rooms,
    check_system_user,
    check_appservice,
    check_mcp,
    check_oidc,
    check_origin,
    check_workers,
)


def run_checks(t: Target) -> list[Check]:
    results: list[Check] = []
    for check in CHECKS:
        try:
            got = check(t)
        except Exception as err:  # one broken check must not hide the others
            got = Check(
                check.__name__.removeprefix("check_"),
                FAIL,
                f"check crashed: {type(err).__name__}: {err}",
                "report this",
            )
        results.extend(got if isinstance(got, list) else [got])
    return results
