"""The ``hasura`` backend (Implementation B, "Hasura Lite"): the ``chat`` schema in PostgreSQL.

Straight to PostgreSQL with psycopg 3: an ``AsyncConnectionPool`` for tool calls and one
LISTEN connection per process (``pg_notify.MessageNotifier``) that wakes
``wait_for_messages``. Agents are ``chat.users`` rows (id = Cognito app client id, username
= profile localpart), placed in their profile's rooms by the rooms core on first use, as
on Synapse. Sending goes through the send Action's code (``synapse_phenom.lite``): one path,
the same moderation and previews as the app's sends. SQL and row mapping: ``hasura_sql``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from synapse_phenom.mcp import hasura_sql as q
from synapse_phenom.mcp.backend import (
    Forbidden,
    NotFound,
    OutgoingMessage,
    Unavailable,
)
from synapse_phenom.mcp.config import ROOM_KEYS, AgentProfile, HasuraBackendConfig
from synapse_phenom.mcp.hasura_send import provision
from synapse_phenom.mcp.hasura_wait import wait
from synapse_phenom.mcp.models import (
    Deletion,
    LinkPreview,
    MemberList,
    MessagePage,
    Reaction,
    RoomList,
    SentMessage,
    WaitResult,
)
from synapse_phenom.mcp.pg_notify import MessageNotifier

if TYPE_CHECKING:
    from synapse_phenom.lite.actions import ActionHandler

logger = logging.getLogger(__name__)

_SEQ_MAX = 2**63 - 1


class HasuraBackend:
    def __init__(self, config: HasuraBackendConfig, agents: Mapping[str, AgentProfile]) -> None:
        self._config = config
        # The backend is called with profiles; rows are keyed by the app client id.
        self._client_ids = {profile.localpart: client_id for client_id, profile in agents.items()}
        self._pool = AsyncConnectionPool(
            config.database_url,
            min_size=config.pool_min_size,
            max_size=config.pool_max_size,
            open=False,
            kwargs={
                "autocommit": True,
                "options": f"-c statement_timeout={config.statement_timeout_ms}",
            },
            name="phenom-mcp",
        )
        self._notifier = MessageNotifier(config.database_url)
        self._started: asyncio.Lock | None = None
        self._open = False
        self._ready: dict[str, dict[str, str]] = {}  # localpart -> room key -> room uuid
        self._agent_locks: dict[str, asyncio.Lock] = {}
        self._actions: ActionHandler | None = None
        self._actions_lock = asyncio.Lock()

    # -- lifecycle ------------------------------------------------------------------------

    async def _start(self) -> None:
        if self._open:
            return
        self._started = self._started or asyncio.Lock()
        async with self._started:
            if self._open:
                return
            try:
                await self._pool.open(wait=True, timeout=15)
            except Exception as err:
                raise Unavailable(
                    f"The chat database is unreachable ({type(err).__name__}); try again shortly."
                ) from None
            await self._notifier.start()
            self._open = True

    async def aclose(self) -> None:
        await self._notifier.aclose()
        await self._pool.close()
        if self._actions is not None:
            await self._actions.drain()
            await asyncio.to_thread(self._actions.pool.close)

    async def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        await self._start()
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(sql, params)
                return await cur.fetchall() if cur.description else []
        except psycopg.errors.QueryCanceled:
            raise Unavailable(
                "The chat database took too long to answer; try again shortly."
            ) from None
        except psycopg.OperationalError as err:  # connection lost, pool exhausted (PoolTimeout)
            raise Unavailable(
                f"The chat database failed ({type(err).__name__}); try again shortly."
            ) from None
        except psycopg.Error:
            logger.exception("chat database error")
            raise Unavailable("The chat database failed; try again shortly.") from None

    def _user_id(self, agent: AgentProfile) -> str:
        return q.user_ref(agent.localpart, self._config.server_name)

    def _row_id(self, agent: AgentProfile) -> str:
        return self._client_ids.get(agent.localpart, agent.localpart)

    # -- agents and rooms -----------------------------------------------------------------

    async def _ensure_agent(self, agent: AgentProfile) -> dict[str, str]:
        """Provision the agent row and its rooms (once per process); room key -> room uuid."""
        ready = self._ready.get(agent.localpart)
        if ready is not None:
            return ready
        await self._start()
        lock = self._agent_locks.setdefault(agent.localpart, asyncio.Lock())
        async with lock:
            if agent.localpart in self._ready:
                return self._ready[agent.localpart]
            try:
                await asyncio.to_thread(provision, self._config, self._row_id(agent), agent)
            except psycopg.OperationalError as err:
                raise Unavailable(
                    f"The chat database failed ({type(err).__name__}); try again shortly."
                ) from None
            rows = await self._fetch(
                q.AGENT_ROOMS, {"keys": list(agent.rooms), "agent": self._row_id(agent)}
            )
            rooms = {str(key): str(room_id) for key, room_id in rows}
            logger.info("agent %s ready in rooms %s", self._user_id(agent), sorted(rooms))
            self._ready[agent.localpart] = rooms
            return rooms

    async def _room(self, agent: AgentProfile, ref: str) -> tuple[str, str]:
        """(key, room uuid) of one of the agent's rooms; Forbidden/NotFound otherwise."""
        rooms = await self._ensure_agent(agent)
        by_id = {room_id: key for key, room_id in rooms.items()}
        if ref in ROOM_KEYS:
            if ref not in rooms:
                raise Forbidden(
                    f"Not allowed: this agent may not use the {ref} room. "
                    f"Its rooms: {', '.join(sorted(rooms)) or 'none'}."
                )
            return ref, rooms[ref]
        server = self._config.server_name
        if ref.startswith("#"):
            if not ref.endswith(f":{server}"):
                raise Forbidden(
                    f"Not allowed: {ref} is not a room of this server. "
                    "Call list_rooms for the rooms you can use."
                )
            local = ref[1:].rsplit(":", 1)[0]
            found = await self._fetch(q.ROOM_BY_ALIAS, {"alias": ref, "local": local})
            if not found:
                raise NotFound(f"Room not found: no room has the alias {ref}. Call list_rooms.")
            room_id = str(found[0][0])
        else:
            parsed = q.parse_uuid(ref.split(":", 1)[0] if ref.endswith(f":{server}") else ref, "!")
            room_id = str(parsed) if parsed else ref
        if room_id not in by_id:
            raise Forbidden(
                f"Not allowed: {ref} is not one of this agent's rooms. "
                "Call list_rooms for those it may use."
            )
        return by_id[room_id], room_id

    # -- tools --------------------------------------------------------------------------------

    async def health(self) -> dict[str, object]:
        try:
            await self._start()
            await self._fetch("SELECT 1 FROM chat.rooms LIMIT 1", {})
        except Exception as err:  # health must not raise
            return {"ok": False, "backend": "hasura", "error": f"chat database: {err}"}
        if not self._notifier.listening:
            return {"ok": False, "backend": "hasura", "error": "the LISTEN connection is down"}
        return {"ok": True, "backend": "hasura"}

    async def list_rooms(self, agent: AgentProfile) -> RoomList:
        await self._ensure_agent(agent)
        rows = await self._fetch(q.ROOMS, {"keys": list(agent.rooms), "agent": self._row_id(agent)})
        return RoomList(rooms=[q.room(row, self._config.server_name) for row in rows])

    async def get_messages(
        self, agent: AgentProfile, room: str, limit: int, before: str | None, thread_id: str | None
    ) -> MessagePage:
        _, room_id = await self._room(agent, room)
        start = q.parse_seq_cursor(before, "b", "before")
        thread = q.parse_uuid(thread_id, "$") if thread_id else None
        if thread_id and thread is None:
            raise NotFound(f"Not found: no thread {thread_id} in this room.")
        rows = await self._fetch(
            q.PAGE,
            {
                "room": room_id,
                "before": _SEQ_MAX if start is None else start,
                "thread": thread,
                "agent": self._row_id(agent),
                "limit": limit + 1,
            },
        )
        return self._page(rows, limit, "b")

    def _page(self, rows: Sequence[tuple[Any, ...]], limit: int, prefix: str) -> MessagePage:
        more = len(rows) > limit
        rows = rows[:limit]
        messages = [q.message(row, self._config.server_name) for row in rows]
        return MessagePage(
            messages=messages, next_cursor=f"{prefix}.{rows[-1][1]}" if more else None
        )

    async def search_messages(
        self, agent: AgentProfile, query: str, room: str | None, limit: int, cursor: str | None
    ) -> MessagePage:
        if room:
            room_ids = [(await self._room(agent, room))[1]]
        else:
            room_ids = list((await self._ensure_agent(agent)).values())
        start = q.parse_seq_cursor(cursor, "s", "cursor")
        rows = await self._fetch(
            q.SEARCH,
            {
                "query": query,
                "rooms": room_ids,
                "before": _SEQ_MAX if start is None else start,
                "agent": self._row_id(agent),
                "limit": limit + 1,
            },
        )
        return self._page(rows, limit, "s")

    async def send_message(
        self, agent: AgentProfile, room: str, message: OutgoingMessage
    ) -> SentMessage:
        from synapse_phenom.mcp.hasura_send import send

        _, room_id = await self._room(agent, room)
        message_id = await send(self, agent, room_id, message)
        return SentMessage(
            event_id=q.event_ref(message_id),
            room_id=q.room_ref(room_id),
            sender=self._user_id(agent),
        )

    async def react(self, agent: AgentProfile, room: str, event_id: str, emoji: str) -> Reaction:
        from synapse_phenom.mcp.hasura_send import react

        _, room_id = await self._room(agent, room)
        target = q.parse_uuid(event_id, "$")
        # Moderated like a message, as A does for m.reaction (lite/react.py).
        reaction_id = await react(self, agent, room_id, str(target), emoji) if target else None
        if reaction_id is None:
            raise NotFound(f"Not found: no message {event_id} in this room (or it was deleted).")
        return Reaction(
            event_id=q.event_ref(reaction_id),
            room_id=q.room_ref(room_id),
            reacted_to=event_id,
            emoji=emoji,
        )

    async def list_members(self, agent: AgentProfile, room: str) -> MemberList:
        _, room_id = await self._room(agent, room)
        rows = await self._fetch(q.MEMBERS, {"room": room_id, "agent": self._row_id(agent)})
        members = [q.member(row, self._config.server_name) for row in rows]
        members.sort(key=lambda m: (-(m.power_level or 0), m.user_id))
        return MemberList(room_id=q.room_ref(room_id), members=members)

    async def wait_for_messages(
        self,
        agent: AgentProfile,
        rooms: Sequence[str] | None,
        since: str | None,
        timeout_seconds: int,
    ) -> WaitResult:
        if rooms:
            room_ids = [(await self._room(agent, r))[1] for r in rooms]
        else:
            room_ids = list((await self._ensure_agent(agent)).values())
        return await wait(self, agent, room_ids, since, timeout_seconds)

    async def delete_message(
        self, agent: AgentProfile, room: str, event_id: str, reason: str | None
    ) -> Deletion:
        _, room_id = await self._room(agent, room)
        target = q.parse_uuid(event_id, "$")
        params = {"id": target, "room": room_id, "agent": self._row_id(agent), "reason": reason}
        rows = await self._fetch(q.DELETE, params) if target else []
        if not rows:
            exists = await self._fetch(q.MESSAGE_IN_ROOM, params) if target else []
            if not exists:
                raise NotFound(f"Not found: no message {event_id} in this room.")
            raise Forbidden(
                "Not allowed: this agent's power level in the room does not let it delete "
                "other people's messages."
            )
        assert target is not None
        return Deletion(
            room_id=q.room_ref(room_id),
            event_id=event_id,
            redaction_event_id=q.redaction_ref(target),
        )

    async def link_preview(self, agent: AgentProfile, url: str) -> LinkPreview:
        from synapse_phenom.mcp.hasura_send import preview_card

        await self._ensure_agent(agent)
        card = await preview_card(self, url)
        return LinkPreview(url=url, card=card)

    # -- for hasura_send ----------------------------------------------------------------------

    @property
    def config(self) -> HasuraBackendConfig:
        return self._config

    async def fetch(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return await self._fetch(sql, params)

    @property
    def notifier(self) -> MessageNotifier:
        return self._notifier

    def row_id(self, agent: AgentProfile) -> str:
        return self._row_id(agent)

    async def actions(self) -> ActionHandler:
        """The send Action's handler (its own blocking pool, used from worker threads)."""
        async with self._actions_lock:
            if self._actions is None:
                from synapse_phenom.mcp.hasura_send import action_handler

                handler = action_handler(self._config)
                await asyncio.to_thread(handler.pool.open, True, 15)
                self._actions = handler
        return self._actions
