"""Every Phenom module's check_event_for_spam behind one Synapse registration per process."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import create_autospec

from synapse.api.errors import Codes
from synapse.module_api import NOT_SPAM, ModuleApi

from synapse_phenom.modules._event_checks import add_event_check


def _api() -> Any:
    return create_autospec(ModuleApi, instance=True)


def _verdict(verdict: Any) -> Any:
    async def check(event: Any) -> Any:
        return verdict

    return check


def _registered(api: Any) -> list[Any]:
    return [
        call.kwargs["check_event_for_spam"]
        for call in api.register_spam_checker_callbacks.call_args_list
    ]


def test_one_registration_per_process_whatever_the_number_of_modules() -> None:
    first, second = _api(), _api()
    for _ in range(3):
        add_event_check(first, _verdict(NOT_SPAM))
    add_event_check(second, _verdict(NOT_SPAM))
    assert len(_registered(first)) == 1
    assert len(_registered(second)) == 1  # another homeserver: a chain of its own
    assert _registered(first)[0] != _registered(second)[0]


def test_checks_run_in_load_order_and_the_first_verdict_wins() -> None:
    api, seen = _api(), []
    refusal = (Codes.FORBIDDEN, {"error": "no"})

    def check(name: str, verdict: Any) -> Any:
        async def run(event: Any) -> Any:
            seen.append(name)
            return verdict

        return run

    for name, verdict in (("a", NOT_SPAM), ("b", False), ("c", refusal), ("d", NOT_SPAM)):
        add_event_check(api, check(name, verdict))
    assert asyncio.run(_registered(api)[0](object())) == refusal
    assert seen == ["a", "b", "c"]  # "d" is never asked, as Synapse stops at a refusal


def test_an_event_every_check_accepts_is_not_spam() -> None:
    api = _api()
    for verdict in (NOT_SPAM, False):
        add_event_check(api, _verdict(verdict))
    assert asyncio.run(_registered(api)[0](object())) == NOT_SPAM


def test_a_bare_error_code_or_message_is_passed_on_as_synapse_reads_it() -> None:
    for verdict in (Codes.FORBIDDEN, "spam", True):
        api = _api()
        add_event_check(api, _verdict(verdict))
        assert asyncio.run(_registered(api)[0](object())) == verdict
