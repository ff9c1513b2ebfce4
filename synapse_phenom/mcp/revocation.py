"""Revoked agents: the MCP server refuses their tokens until an admin re-enables them.

``phenom-chat admin agents revoke`` stores the agent in the ops module's table
(``phenom_agent_revocations``, shared by every Synapse process); every MCP replica reads
the list from ``GET /_synapse/client/phenom/v1/agents/revoked`` with its application
service token, at most every ``ttl_seconds``. A revoked agent's valid Cognito token gets
401 like an invalid one. If Synapse cannot be asked, the last known list stays in force.

Implementation B (``backend: hasura``) has no Synapse: ``phenom-chat lite agents revoke``
disables the agent's ``chat.users`` row (``lite/agents.py``) and every replica re-reads the
disabled agents from the chat database the same way (``DisabledAgents``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Protocol

import attrs
import httpx2
import psycopg
from mcp.server.auth.provider import AccessToken, TokenVerifier

from synapse_phenom.endpoints import REVOKED_AGENTS_PATH
from synapse_phenom.mcp.config import AgentProfile, McpConfig

logger = logging.getLogger(__name__)


@attrs.define
class RevokedAgents:
    """The revoked agents' Matrix IDs, re-read from Synapse every ``ttl_seconds``."""

    homeserver_url: str
    as_token: str
    ttl_seconds: float = 5.0
    _revoked: frozenset[str] = frozenset()
    _fetched_at: float = float("-inf")

    async def revoked(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._fetched_at < self.ttl_seconds:
            return self._revoked
        self._fetched_at = now
        try:
            async with httpx2.AsyncClient(timeout=5) as http:
                resp = await http.get(
                    self.homeserver_url.rstrip("/") + REVOKED_AGENTS_PATH,
                    headers={"Authorization": f"Bearer {self.as_token}"},
                )
            if resp.status_code == 200:
                self._revoked = frozenset(str(u) for u in resp.json().get("revoked", []))
            elif resp.status_code != 404:  # 404: the ops module is not loaded (nothing revoked)
                logger.warning("cannot read revoked agents: HTTP %s", resp.status_code)
        except (httpx2.HTTPError, ValueError) as err:
            logger.warning("cannot read revoked agents (keeping the last list): %s", err)
        return self._revoked


@attrs.define
class DisabledAgents:
    """B's revoked agents: disabled agent rows of ``chat.users``, as Matrix-style IDs."""

    database_url: str
    server_name: str
    ttl_seconds: float = 5.0
    _revoked: frozenset[str] = frozenset()
    _fetched_at: float = float("-inf")

    async def revoked(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._fetched_at < self.ttl_seconds:
            return self._revoked
        self._fetched_at = now
        from synapse_phenom.lite.agents import REVOKED_AGENTS

        try:
            async with await psycopg.AsyncConnection.connect(
                self.database_url, autocommit=True, connect_timeout=5
            ) as conn:
                rows = await (await conn.execute(REVOKED_AGENTS)).fetchall()
            self._revoked = frozenset(f"@{r[0]}:{self.server_name}" for r in rows)
        except psycopg.Error as err:
            logger.warning("cannot read revoked agents (keeping the last list): %s", err)
        return self._revoked


class RevocationList(Protocol):
    async def revoked(self) -> frozenset[str]: ...


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
        if user_id in await self.revocations.revoked():
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
