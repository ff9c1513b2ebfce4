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
from urllib.parse import quote

import anyio
import httpx2

from synapse_phenom.agent_rooms import AGENT_ROOMS_PATH
from synapse_phenom.mcp import matrix_events as me
from synapse_phenom.mcp.backend import (
    BackendError,
    Forbidden,
    InvalidRequest,
    NotFound,
    OutgoingMessage,
    RateLimited,
    Unavailable,
)
from synapse_phenom.mcp.config import ROOM_KEYS, AgentProfile, SynapseBackendConfig
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

PREVIEW_PATH = "/_synapse/client/phenom/preview"
_MESSAGES_FILTER = json.dumps({"types": ["m.room.message"], "lazy_load_members": True})


def _q(value: str) -> str:
    return quote(value, safe="")


class SynapseBackend:
    def __init__(
        self, config: SynapseBackendConfig, as_token: str, http: httpx2.AsyncClient | None = None
    ) -> None:
        self._config = config
        self._http = http or httpx2.AsyncClient(
            base_url=config.homeserver_url,
            headers={"Authorization": f"Bearer {as_token}"},
            timeout=config.request_timeout_seconds,
            limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self._ready: dict[str, dict[str, str]] = {}  # agent localpart -> room key -> room id
        self._locks: dict[str, anyio.Lock] = {}
        self._aliases: dict[str, str] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    def user_id(self, agent: AgentProfile) -> str:
        return f"@{agent.localpart}:{self._config.server_name}"

    # -- HTTP ------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        agent: AgentProfile | None = None,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        wait: float | None = None,
        device: bool = True,
    ) -> dict[str, Any]:
        query = dict(params or {})
        if agent is not None:
            query["user_id"] = self.user_id(agent)
            if device:
                query["device_id"] = self._config.device_id
        kwargs: dict[str, Any] = {"params": query}
        if json_body is not None:
            kwargs["json"] = json_body
        if wait is not None:  # long polls outlast the default timeout
            kwargs["timeout"] = wait
        try:
            resp = await self._http.request(method, path, **kwargs)
        except httpx2.TransportError as err:
            raise Unavailable(
                f"The chat server is unreachable ({type(err).__name__}); try again shortly."
            ) from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code < 400:
            return body if isinstance(body, dict) else {}
        raise _error(resp.status_code, body if isinstance(body, dict) else {})

    # -- agents and rooms ------------------------------------------------------------

    async def _ensure_agent(self, agent: AgentProfile) -> dict[str, str]:
        """Register the agent user and its device, set its name, join its rooms (once per process)."""
        ready = self._ready.get(agent.localpart)
        if ready is not None:
            return ready
        lock = self._locks.setdefault(agent.localpart, anyio.Lock())
        async with lock:
            if agent.localpart in self._ready:
                return self._ready[agent.localpart]
            await self._register(agent)
            if agent.display_name:
                await self._call(
                    "PUT",
                    f"/_matrix/client/v3/profile/{_q(self.user_id(agent))}/displayname",
                    agent,
                    json_body={"displayname": agent.display_name},
                )
            try:
                result = await self._call(
                    "POST", AGENT_ROOMS_PATH, agent, json_body={"rooms": list(agent.rooms)}
                )
            except NotFound:
                logger.error(
                    "Synapse does not serve %s: load synapse_phenom.modules.agents.PhenomAgents",
                    AGENT_ROOMS_PATH,
                )
                raise Unavailable(
                    "The chat server is not set up for agents yet (agents module missing); tell the operator."
                ) from None
            rooms = {str(k): str(v) for k, v in (result.get("rooms") or {}).items()}
            logger.info("agent %s ready in rooms %s", self.user_id(agent), sorted(rooms))
            self._ready[agent.localpart] = rooms
            return rooms

    async def _register(self, agent: AgentProfile) -> None:
        try:
            await self._call(
                "POST",
                "/_matrix/client/v3/register",
                json_body={
                    "type": "m.login.application_service",
                    "username": agent.localpart,
                    "device_id": self._config.device_id,
                    "initial_device_display_name": "Phenom MCP",
                },
            )
            return
        except InvalidRequest as err:
            if "M_USER_IN_USE" not in str(err):
                raise
        try:
            await self._call(
                "GET",
                f"/_matrix/client/v3/devices/{_q(self._config.device_id)}",
                agent,
                device=False,
            )
        except NotFound:
            # The user exists without our device (e.g. created by an older version): log in to create it.
            await self._call(
                "POST",
                "/_matrix/client/v3/login",
                json_body={
                    "type": "m.login.application_service",
                    "identifier": {"type": "m.id.user", "user": agent.localpart},
                    "device_id": self._config.device_id,
                    "initial_device_display_name": "Phenom MCP",
                },
            )

    async def _room(self, agent: AgentProfile, ref: str) -> tuple[str | None, str]:
        """(key, room id) of one of the agent's rooms; Forbidden/NotFound otherwise."""
        rooms = await self._ensure_agent(agent)
        by_id = {rid: key for key, rid in rooms.items()}
        if ref in ROOM_KEYS:
            if ref not in rooms:
                raise Forbidden(
                    f"Not allowed: this agent may not use the {ref} room. Its rooms: {', '.join(sorted(rooms)) or 'none'}."
                )
            return ref, rooms[ref]
        room_id = ref
        if ref.startswith("#") and not ref.endswith(f":{self._config.server_name}"):
            # Agents only use this server's rooms; never make Synapse ask another server.
            raise Forbidden(
                f"Not allowed: {ref} is not a room of this server. Call list_rooms for the rooms you can use."
            )
        if ref.startswith("#"):
            room_id = self._aliases.get(ref) or ""
            if not room_id:
                try:
                    found = await self._call("GET", f"/_matrix/client/v3/directory/room/{_q(ref)}")
                except NotFound:
                    raise NotFound(
                        f"Room not found: no room has the alias {ref}. Call list_rooms."
                    ) from None
                room_id = self._aliases[ref] = str(found["room_id"])
        if room_id not in by_id:
            raise Forbidden(
                f"Not allowed: {ref} is not one of this agent's rooms. Call list_rooms for those it may use."
            )
        return by_id[room_id], room_id

    # -- tools -------------------------------------------------------------------------

    async def health(self) -> dict[str, object]:
        try:
            resp = await self._http.get("/_matrix/client/versions", timeout=3)
            if resp.status_code != 200:
                return {
                    "ok": False,
                    "backend": "synapse",
                    "error": f"homeserver answered HTTP {resp.status_code}",
                }
            who = await self._http.get("/_matrix/client/v3/account/whoami", timeout=3)
            if who.status_code != 200:
                return {
                    "ok": False,
                    "backend": "synapse",
                    "error": "homeserver rejects the application service token (is the registration loaded?)",
                }
        except httpx2.TransportError as err:
            return {
                "ok": False,
                "backend": "synapse",
                "error": f"homeserver unreachable: {type(err).__name__}",
            }
        return {"ok": True, "backend": "synapse"}

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

    async def _names(self, agent: AgentProfile, room_id: str, senders: set[str]) -> dict[str, str]:
        names = {}
        for sender in senders:
            try:
                member = await self._call(
                    "GET",
                    f"/_matrix/client/v3/rooms/{_q(room_id)}/state/m.room.member/{_q(sender)}",
                    agent,
                )
            except NotFound:
                continue
            if isinstance(member.get("displayname"), str):
                names[sender] = member["displayname"]
        return names

    async def search_messages(
        self, agent: AgentProfile, query: str, room: str | None, limit: int, cursor: str | None
    ) -> MessagePage:
        if room:
            room_ids = [(await self._room(agent, room))[1]]
        else:
            room_ids = list((await self._ensure_agent(agent)).values())
        body = {
            "search_categories": {
                "room_events": {
                    "search_term": query,
                    "order_by": "recent",
                    "filter": {"rooms": room_ids, "limit": limit, "types": ["m.room.message"]},
                    "event_context": {"before_limit": 0, "after_limit": 0, "include_profile": True},
                }
            }
        }
        params = {"next_batch": cursor} if cursor else None
        try:
            found = await self._call("POST", "/_matrix/client/v3/search", agent, params=params, json_body=body)
        except Unavailable:
            # Synapse's SQLite full-text search answers 500 to some query syntax (e.g.
            # `a' OR 1=1 --` becomes the MATCH ` OR 1 AND 1 NOT  NOT `); search for the plain
            # words instead, each quoted so that none is read as an operator.
            words = " ".join(f'"{w}"' for w in re.findall(r"\w+", query))
            if not words or words == query:
                raise
            body["search_categories"]["room_events"]["search_term"] = words
            found = await self._call("POST", "/_matrix/client/v3/search", agent, params=params, json_body=body)
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
                    role=me.role_for(power),  # type: ignore[arg-type]
                    power_level=power,
                )
            )
        members.sort(
            key=lambda m: (-(m.power_level if m.power_level is not None else 2**63), m.user_id)
        )
        return MemberList(room_id=room_id, members=members)

    async def _creators(self, agent: AgentProfile, room_id: str) -> set[str]:
        """Room creators outrank every power level in room version 12+ and are not listed there."""
        create = await self._call(
            "GET",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/state/m.room.create/",
            agent,
            params={"format": "event"},
        )
        return me.implicit_creators(create)

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

        def sync_filter(limit: int) -> str:
            return json.dumps(
                {
                    "presence": {"not_types": ["*"]},
                    "account_data": {"not_types": ["*"]},
                    "room": {
                        "rooms": room_ids,
                        "timeline": {
                            "types": ["m.room.message"],
                            "limit": limit,
                            "not_senders": [self.user_id(agent)],
                        },
                        # Redundant members too: every poll must name its senders, whatever
                        # an earlier poll on this (shared) device already received.
                        "state": {
                            "lazy_load_members": True,
                            "include_redundant_members": True,
                            "types": ["m.room.member"],
                        },
                        "ephemeral": {"not_types": ["*"]},
                        "account_data": {"not_types": ["*"]},
                    },
                }
            )

        if not since:
            # "From now on": an empty sync only to learn the current position.
            first = await self._call(
                "GET",
                "/_matrix/client/v3/sync",
                agent,
                params={"filter": sync_filter(1), "timeout": 0},
            )
            since = str(first["next_batch"])
        try:
            result = await self._call(
                "GET",
                "/_matrix/client/v3/sync",
                agent,
                params={
                    "filter": sync_filter(100),
                    "since": since,
                    "timeout": timeout_seconds * 1000,
                },
                wait=timeout_seconds + 30,
            )
        except InvalidRequest:
            raise InvalidRequest(
                "since is not a cursor returned by wait_for_messages; omit it to start from now."
            ) from None
        messages: list[Message] = []
        for room_id, data in (result.get("rooms", {}).get("join") or {}).items():
            if room_id not in room_ids:
                continue
            timeline = data.get("timeline", {}).get("events", [])
            names = me.display_names([*data.get("state", {}).get("events", []), *timeline])
            messages.extend(
                m for m in (me.message_from_event(e, room_id, names) for e in timeline) if m
            )
        messages.sort(key=lambda m: m.timestamp)
        return WaitResult(
            messages=messages, next_cursor=str(result["next_batch"]), timed_out=not messages
        )

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
                "Not allowed: this agent's power level in the room does not let it delete other people's messages."
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


def _error(status: int, body: dict[str, Any]) -> BackendError:
    errcode = str(body.get("errcode", "M_UNKNOWN"))
    text = str(body.get("error", f"HTTP {status}"))
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        retry_ms = body.get("retry_after_ms")
        return RateLimited(
            f"the chat server is throttling this agent ({text})", (retry_ms or 1000) / 1000
        )
    if status == 404:
        return NotFound(f"Not found: {text} ({errcode})")
    if status == 403:
        return Forbidden(f"Not allowed: {text}")
    if status == 400:
        return InvalidRequest(f"{text} ({errcode})")
    logger.warning("homeserver error %s %s: %s", status, errcode, text)
    return Unavailable(f"The chat server failed ({status} {errcode}); try again shortly.")
