"""Revoked agents in the MCP verifier: the poll's states (pure logic; the reads are scripted,
and Synapse's endpoint is an httpx2 mock transport)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import attrs
import httpx2
import pytest
from mcp.server.auth.provider import AccessToken

from synapse_phenom.endpoints import REVOKED_AGENTS_PATH
from synapse_phenom.mcp import revocation
from synapse_phenom.mcp.config import AgentProfile

AGENT = "@agent-dev:localhost"


@attrs.define
class Scripted(revocation._Polled):
    """Each read takes the next step: a list, None (an answer that is not a list) or an error."""

    steps: list[frozenset[str] | Exception | None] = attrs.field(factory=list)
    reads: int = 0
    delay: float = 0.0

    async def _fetch(self) -> frozenset[str] | None:
        self.reads += 1
        await anyio.sleep(self.delay)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


@attrs.define
class AnyToken:
    async def verify_token(self, token: str) -> AccessToken | None:
        return AccessToken(token=token, client_id="dev-client", scopes=[])


def verifier(revoked: revocation.RevocationList) -> revocation.RevocationCheckingVerifier:
    agents = {"dev-client": AgentProfile(localpart="agent-dev")}
    return revocation.RevocationCheckingVerifier(AnyToken(), agents, "localhost", revoked)


def accepted(check: revocation.RevocationCheckingVerifier) -> bool:
    return anyio.run(check.verify_token, "t") is not None


def test_no_agent_token_is_accepted_before_a_first_list_is_read() -> None:
    down = httpx2.ConnectError("connection refused")
    polled = Scripted(ttl_seconds=0, steps=[down, None, frozenset(), down, frozenset({AGENT})])
    check = verifier(polled)
    assert not accepted(check)  # unreachable: unknown, refused
    assert not accepted(check)  # answered, but not with a list: still unknown
    assert accepted(check)  # nothing revoked
    assert accepted(check)  # unreachable again: the last list stays in force
    assert not accepted(check)  # revoked
    assert polled.reads == 5


def test_a_burst_at_startup_waits_for_the_one_first_read() -> None:
    polled = Scripted(ttl_seconds=60, steps=[frozenset()], delay=0.05)
    check = verifier(polled)
    results: list[bool] = []

    async def burst() -> None:
        async def one() -> None:
            results.append(await check.verify_token("t") is not None)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)

    anyio.run(burst)
    assert results == [True] * 20
    assert polled.reads == 1


def test_calls_during_a_re_read_use_the_last_list() -> None:
    polled = Scripted(ttl_seconds=0, steps=[frozenset({AGENT}), frozenset()], delay=0.05)
    check = verifier(polled)
    assert not accepted(check)
    seen: list[bool] = []

    async def overlap() -> None:
        async def late() -> None:
            await anyio.sleep(0.01)  # the first call's re-read is under way
            seen.append(await check.verify_token("t") is not None)

        async with anyio.create_task_group() as tg:
            tg.start_soon(late)
            seen.append(await check.verify_token("t") is not None)

    anyio.run(overlap)
    assert sorted(seen) == [False, True]  # the late call: the last list (revoked)
    assert polled.reads == 2


@pytest.mark.parametrize(
    ("respond", "expected"),
    [
        (lambda: httpx2.Response(200, json={"revoked": [AGENT]}), frozenset({AGENT})),
        (lambda: httpx2.Response(404, json={"errcode": "M_UNRECOGNIZED"}), frozenset()),
        (lambda: httpx2.Response(404, text="<html>not found</html>"), None),  # a proxy's
        (lambda: httpx2.Response(502, text="bad gateway"), None),
        (lambda: httpx2.Response(200, text="<html>"), None),
    ],
)
def test_synapse_answers(
    respond: Callable[[], httpx2.Response], expected: frozenset[str] | None
) -> None:
    """Synapse's own 404 = the ops module is not loaded: nothing can be revoked. Anything else
    that is not a list leaves the list unknown."""
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.path)
        return respond()

    polled = revocation.RevokedAgents("http://synapse.test", "as-token")
    polled._http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    assert anyio.run(polled.revoked) == expected
    assert seen == [REVOKED_AGENTS_PATH]


def test_a_first_read_cancelled_with_its_caller_is_done_by_the_next_waiter() -> None:
    polled = Scripted(ttl_seconds=60, steps=[frozenset(), frozenset()], delay=0.2)
    check = verifier(polled)
    seen: list[bool] = []

    async def scenario() -> None:
        async def waiter() -> None:
            await anyio.sleep(0.01)  # queued behind the first read
            seen.append(await check.verify_token("t") is not None)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            with anyio.move_on_after(0.05):  # the first caller gives up mid-read
                await check.verify_token("t")

    anyio.run(scenario)
    assert seen == [True]
    assert polled.reads == 2


def test_a_later_404_does_not_clear_the_revoked_agents() -> None:
    answers = [
        httpx2.Response(200, json={"revoked": [AGENT]}),
        httpx2.Response(404, json={"errcode": "M_UNRECOGNIZED"}),
    ]
    polled = revocation.RevokedAgents("http://synapse.test", "as-token", ttl_seconds=0)
    polled._http = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r: answers.pop(0)))
    check = verifier(polled)
    assert not accepted(check)
    assert not accepted(check)  # still revoked after the 404
    assert answers == []
