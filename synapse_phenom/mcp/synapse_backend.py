"""The Synapse backend: the Matrix client API as an application service.

Every call masquerades as the calling agent (``?user_id=@agent-x:server``) on one
fixed device per agent (``&device_id=``): rooms show which agent said what, and
Synapse's per-device transaction ids make idempotent sends hold across replicas.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Sequence
from typing import Any

from synapse_phenom.endpoints import PREVIEW_PATH
from synapse_phenom.mcp import matrix_events as me
from synapse_phenom.mcp import synapse_wait
from synapse_phenom.mcp.backend import (
    Forbidden,
    InvalidRequest,
    NotFound,
    OutgoingMessage,
    Unavailable,
)
from synapse_phenom.mcp.config import AgentProfile
from synapse_phenom.mcp.matrix_session import AgentSession, _q
from synapse_phenom.mcp.models import (
    Deletion,
    LinkPreview,
    Member,
    MemberList,
    Message,
    MessagePage,
    Reaction,
    Room,
    RoomList,
    SentMessage,
    WaitResult,
)

logger = logging.getLogger(__name__)

_MESSAGES_FILTER = json.dumps({"types": ["m.room.message"], "lazy_load_members": True})


class SynapseBackend(AgentSession):
    """``ChatBackend`` over Synapse: the chat tools as Matrix client API calls."""

    # -- tools -------------------------------------------------------------------------

    async def list_rooms(self, agent: AgentProfile) -> RoomList:
        rooms = await self._ensure_agent(agent)
        out = []
        for key, room_id in sorted(rooms.items()):
            summary = await self._call(
                "GET",
                f"/_matrix/client/v1/rooms/{_q(room_id)}/hierarchy",
                agent,
                params={"max_depth": 0, "limit": 1},
            )
            info: dict[str, Any] = next(
                (r for r in summary.get("rooms", []) if r.get("room_id") == room_id), {}
            )
            out.append(
                Room(
                    room_id=room_id,
                    key=key,
                    alias=info.get("canonical_alias") or self._config.alias(key),
                    name=info.get("name"),
                    topic=info.get("topic"),
                    member_count=int(info.get("num_joined_members", 0)),
                )
            )
        return RoomList(rooms=out)

    async def get_messages(
        self, agent: AgentProfile, room: str, limit: int, before: str | None, thread_id: str | None
    ) -> MessagePage:
        _, room_id = await self._room(agent, room)
        if thread_id:
            params: dict[str, Any] = {"dir": "b", "limit": limit}
            if before:
                params["from"] = before
            page = await self._call(
                "GET",
                f"/_matrix/client/v1/rooms/{_q(room_id)}/relations/{_q(thread_id)}/m.thread",
                agent,
                params=params,
            )
            events = page.get("chunk", [])
            names = await self._names(agent, room_id, {e.get("sender", "") for e in events})
            cursor = page.get("next_batch")
        else:
            params = {"dir": "b", "limit": limit, "filter": _MESSAGES_FILTER}
            if before:
                params["from"] = before
            page = await self._call(
                "GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/messages", agent, params=params
            )
            events = page.get("chunk", [])
            names = me.display_names(page.get("state", []))
            cursor = page.get("end") if events else None
        messages = [m for m in (me.message_from_event(e, room_id, names) for e in events) if m]
        return MessagePage(messages=messages, next_cursor=cursor)

    async def search_messages(
        self, agent: AgentProfile, query: str, room: str | None, limit: int, cursor: str | None
    ) -> MessagePage:
        if room:
            room_ids = [(await self._room(agent, room))[1]]
        else:
            room_ids = list((await self._ensure_agent(agent)).values())
        term = me.search_query(query)
        if not term:
            raise InvalidRequest(
                f"Nothing to search for in {query!r}: give at least one word (operators, "
                "punctuation and words like 'the' alone match nothing)."
            )
        body = {
            "search_categories": {
                "room_events": {
                    "search_term": term,
                    "order_by": "recent",
                    "filter": {"rooms": room_ids, "limit": limit, "types": ["m.room.message"]},
                    "event_context": {"before_limit": 0, "after_limit": 0, "include_profile": True},
                }
            }
        }
        params = {"next_batch": cursor} if cursor else None
        try:
            found = await self._call(
                "POST", "/_matrix/client/v3/search", agent, params=params, json_body=body
            )
        except Unavailable:
            # Synapse's SQLite full-text search answers 500 to some query syntax (e.g.
            # `a' OR 1=1 --` becomes the MATCH ` OR 1 AND 1 NOT  NOT `); search for the plain
            # words instead, each quoted so that none is read as an operator.
            words = " ".join(f'"{w}"' for w in re.findall(r"\w+", query))
            if not words or words == query:
                raise
            body["search_categories"]["room_events"]["search_term"] = words
            found = await self._call(
                "POST", "/_matrix/client/v3/search", agent, params=params, json_body=body
            )
        events = found.get("search_categories", {}).get("room_events", {})
        messages: list[Message] = []
        for hit in events.get("results", []):
            event = hit.get("result", {})
            profiles = (hit.get("context") or {}).get("profile_info") or {}
            names = {
                u: p["displayname"]
                for u, p in profiles.items()
                if isinstance(p, dict) and p.get("displayname")
            }
            message = me.message_from_event(event, str(event.get("room_id", "")), names)
            if message:
                messages.append(message)
        return MessagePage(messages=messages, next_cursor=events.get("next_batch"))

    async def send_message(
        self, agent: AgentProfile, room: str, message: OutgoingMessage
    ) -> SentMessage:
        _, room_id = await self._room(agent, room)
        txn = (
            me.txn_id("send", agent.localpart, room_id, message.idempotency_key)
            if message.idempotency_key
            else f"mcp.{uuid.uuid4().hex}"
        )
        sent = await self._call(
            "PUT",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/send/m.room.message/{txn}",
            agent,
            json_body=me.message_content(message),
        )
        return SentMessage(
            event_id=str(sent["event_id"]), room_id=room_id, sender=self.user_id(agent)
        )

    async def react(self, agent: AgentProfile, room: str, event_id: str, emoji: str) -> Reaction:
        _, room_id = await self._room(agent, room)
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": emoji}}
        txn = me.txn_id("react", agent.localpart, room_id, event_id, emoji)
        try:
            sent = await self._call(
                "PUT",
                f"/_matrix/client/v3/rooms/{_q(room_id)}/send/m.reaction/{txn}",
                agent,
                json_body=content,
            )
        except InvalidRequest as err:
            if "M_DUPLICATE_ANNOTATION" in str(err):
                raise InvalidRequest(
                    f"This agent already reacted with {emoji} to {event_id}."
                ) from None
            raise
        return Reaction(
            event_id=str(sent["event_id"]), room_id=room_id, reacted_to=event_id, emoji=emoji
        )

    async def list_members(self, agent: AgentProfile, room: str) -> MemberList:
        _, room_id = await self._room(agent, room)
        joined = await self._call(
            "GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/joined_members", agent
        )
        try:
            levels = await self._call(
                "GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/state/m.room.power_levels/", agent
            )
        except NotFound:
            levels = {}
        users = levels.get("users") or {}
        default = int(levels.get("users_default", 0))
        creators = await self._creators(agent, room_id)
        members = []
        for user_id, info in (joined.get("joined") or {}).items():
            power = None if user_id in creators else int(users.get(user_id, default))
            members.append(
                Member(
                    user_id=user_id,
                    display_name=(info or {}).get("display_name"),
                    role=me.role_for(power),
                    power_level=power,
                )
            )
        return MemberList.ranked(room_id, members)

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

        return await synapse_wait.wait(self, agent, room_ids, since, timeout_seconds)

    async def delete_message(
        self, agent: AgentProfile, room: str, event_id: str, reason: str | None
    ) -> Deletion:
        _, room_id = await self._room(agent, room)
        txn = me.txn_id("redact", agent.localpart, room_id, event_id)
        body = {"reason": reason} if reason else {}
        try:
            done = await self._call(
                "PUT",
                f"/_matrix/client/v3/rooms/{_q(room_id)}/redact/{_q(event_id)}/{txn}",
                agent,
                json_body=body,
            )
        except Forbidden:
            raise Forbidden(
                "Not allowed: this agent's power level in the room does not let it delete other "
                "people's messages."
            ) from None
        return Deletion(
            room_id=room_id, event_id=event_id, redaction_event_id=str(done["event_id"])
        )

    async def link_preview(self, agent: AgentProfile, url: str) -> LinkPreview:
        await self._ensure_agent(agent)
        # The link-preview module's endpoint: one resolver (address policy, cache) for
        # chat clients and agents alike.
        try:
            found = await self._call("GET", PREVIEW_PATH, agent, params={"url": url})
        except NotFound as err:
            if "M_UNRECOGNIZED" in str(err):
                raise Unavailable("Link previews are not enabled on this chat server.") from None
            return LinkPreview(url=url, card=None)
        entry = found.get("preview")
        card = me.preview_card({"matched_url": url, **entry}) if isinstance(entry, dict) else None
        return LinkPreview(url=url, card=card)
