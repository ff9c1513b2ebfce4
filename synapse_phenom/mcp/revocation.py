"""Revoked agents: the MCP server refuses their tokens until an admin re-enables them.

``phenom-chat admin agents revoke`` stores the agent in the ops module's table
(``phenom_agent_revocations``, shared by every Synapse process); every MCP replica reads
the list from ``GET /_synapse/client/phenom/v1/agents/revoked`` with its application
service token, at most every ``ttl_seconds``. A revoked agent's valid Cognito token gets
401 like an invalid one. If Synapse cannot be asked, the last known list stays in force; until
a first list has been read, no agent token is accepted (a check that cannot run must not let a
revoked agent through — and without Synapse or the chat database no tool works anyway).

Implementation B (``backend: hasura``) has no Synapse: ``phenom-chat lite agents revoke``
disables the agent's ``chat.users`` row (``lite/agents.py``) and every replica re-reads the
disabled agents from the chat database the same way (``DisabledAgents``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Protocol

import anyio
import attrs
import httpx2
import psycopg
from mcp.server.auth.provider import AccessToken, TokenVerifier

from synapse_phenom.endpoints import REVOKED_AGENTS_PATH
from synapse_phenom.mcp.config import AgentProfile, McpConfig

logger = logging.getLogger(__name__)


@attrs.define
class _Polled:
    """A revocation list re-read every ``ttl_seconds``; a failed read keeps the last one.
    ``revoked()`` is None until a first read succeeded."""

    ttl_seconds: float = attrs.field(default=5.0, kw_only=True)
    _revoked: frozenset[str] | None = attrs.field(default=None, kw_only=True)
    _fetched_at: float = attrs.field(default=float("-inf"), kw_only=True)

    _lock: anyio.Lock | None = attrs.field(default=None, init=False)  # made in the loop

    async def revoked(self) -> frozenset[str] | None:
        if self._lock is None:
            self._lock = anyio.Lock()
        # While a re-read is under way, calls use the last list; before the first one they
        # wait for it (or they would all be refused during a burst at startup).
        stale = time.monotonic() - self._fetched_at >= self.ttl_seconds
        if not stale or (self._revoked is not None and self._lock.locked()):
            return self._revoked
        async with self._lock:
            if time.monotonic() - self._fetched_at < self.ttl_seconds:
                return self._revoked  # read by the call we waited for
            try:
                fetched = await self._fetch()
            except (httpx2.HTTPError, psycopg.Error, ValueError) as err:
                logger.warning("cannot read revoked agents (keeping the last list): %s", err)
            else:
                if fetched is not None:
                    self._revoked = fetched
            # Not in a `finally`: a read cancelled with its caller leaves the list stale, so
            # the next waiter reads it instead of taking "unknown" as the answer.
            self._fetched_at = time.monotonic()
        return self._revoked

    async def _fetch(self) -> frozenset[str] | None:
        raise NotImplementedError


@attrs.define
class RevokedAgents(_Polled):
    """The revoked agents' Matrix IDs, read from Synapse (the ops module's endpoint)."""

    homeserver_url: str
    as_token: str
    # One client for the process: a new one per read would build a TLS context each time
    # (tens of ms of CPU every ttl_seconds).
    _http: httpx2.AsyncClient | None = attrs.field(default=None, init=False)

    async def _fetch(self) -> frozenset[str] | None:
        if self._http is None:
            self._http = httpx2.AsyncClient(timeout=5)
        resp = await self._http.get(
            self.homeserver_url.rstrip("/") + REVOKED_AGENTS_PATH,
            headers={"Authorization": f"Bearer {self.as_token}"},
        )
        if resp.status_code == 200:
            return frozenset(str(u) for u in resp.json().get("revoked", []))
        if resp.status_code == 404 and self._revoked is None and _unrecognized(resp):
            # Synapse itself does not know the path: the ops module is not loaded, so nothing
            # can be revoked. Only before a list is known: later (or from a proxy) a 404 must
            # not clear the agents revoked so far.
            return frozenset()
        logger.warning("cannot read revoked agents: HTTP %s", resp.status_code)
        return None


def _unrecognized(resp: httpx2.Response) -> bool:
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("errcode") == "M_UNRECOGNIZED"


@attrs.define
class DisabledAgents(_Polled):
    """B's revoked agents: disabled agent rows of ``chat.users``, as Matrix-style IDs."""

    database_url: str
    server_name: str

    async def _fetch(self) -> frozenset[str] | None:
        from synapse_phenom.lite.agents import REVOKED_AGENTS

        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True, connect_timeout=5
        ) as conn:
            rows = await (await conn.execute(REVOKED_AGENTS)).fetchall()
        return frozenset(f"@{r[0]}:{self.server_name}" for r in rows)


class RevocationList(Protocol):
    async def revoked(self) -> frozenset[str] | None: ...


@attrs.define
class RevocationCheckingVerifier(TokenVerifier):
    """Wraps the Cognito verifier: a valid token of a revoked agent is refused (401)."""

    inner: TokenVerifier
    agents: Mapping[str, AgentProfile]
    server_name: str
    revocations: RevocationList

    async def verify_token(self, token: str) -> AccessToken | None:
        access = await self.inner.verify_token(token)
        if access is None or access.client_id not in self.agents:
            return access
        user_id = f"@{self.agents[access.client_id].localpart}:{self.server_name}"
        revoked = await self.revocations.revoked()
        if revoked is None:
            logger.warning("bearer token rejected: the revoked agents could not be read yet")
            return None
        if user_id in revoked:
            logger.info("bearer token rejected: agent %s is revoked", user_id)
            return None
        return access


def with_revocations(verifier: TokenVerifier, config: McpConfig) -> TokenVerifier:
    """``verifier`` that also refuses revoked agents, on either backend."""
    if config.hasura is not None and config.backend == "hasura":
        disabled = DisabledAgents(config.hasura.database_url, config.hasura.server_name)
        return RevocationCheckingVerifier(
            verifier, config.agents, config.hasura.server_name, disabled
        )
    if config.synapse is None:
        return verifier
    from synapse_phenom.mcp.appservice import read_as_token

    revoked = RevokedAgents(
        config.synapse.homeserver_url, read_as_token(config.synapse.registration_file)
    )
    return RevocationCheckingVerifier(verifier, config.agents, config.synapse.server_name, revoked)
