"""Matrix client API access as the MCP application service, on behalf of each agent.

The base of ``SynapseBackend``: one HTTP client with the application service's token
(aiohttp: its C parser costs a fraction of the CPU of a pure-Python client per call, and
every tool call makes at least one; docs/benchmarks.md),
calls that masquerade as an agent, Matrix errors mapped to backend errors, health, member
lookups, and each agent's one-time setup (register, device, display name, rooms via the
agents module).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import anyio
from yarl import URL

from synapse_phenom.endpoints import AGENT_ROOMS_PATH
from synapse_phenom.mcp import matrix_events as me
from synapse_phenom.mcp.backend import (
    BackendError,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unavailable,
)
from synapse_phenom.mcp.config import ROOM_KEYS, AgentProfile, SynapseBackendConfig

# How long an agent's room ids are used before the agents module is asked again.
_ROOMS_TTL_S = 300.0

logger = logging.getLogger("synapse_phenom.mcp.synapse_backend")


def _q(value: str) -> str:
    return quote(value, safe="")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class AgentSession:
    """The application-service HTTP session, acting as each agent, and the agents' rooms."""

    def __init__(self, config: SynapseBackendConfig, as_token: str) -> None:
        self._config = config
        self._base = config.homeserver_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {as_token}"}
        self._http: aiohttp.ClientSession | None = None  # made inside the running loop
        self._ready: dict[str, dict[str, str]] = {}  # agent localpart -> room key -> room id
        self._ready_at: dict[str, float] = {}  # agent localpart -> when its rooms were read
        self._locks: dict[str, anyio.Lock] = {}
        self._aliases: dict[str, str] = {}

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        json_body: Any = None,
        seconds: float | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON body or None); transport failures raise aiohttp/asyncio
        errors. The path is sent as written (its ids are already percent-encoded)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=200, limit_per_host=200),
                auto_decompress=True,
            )
        url = self._base + path
        if query:
            url += "?" + urlencode({k: _query_value(v) for k, v in query.items()}, quote_via=quote)
        data = None if json_body is None else json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else None
        async with self._http.request(
            method,
            URL(url, encoded=True),
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=seconds or self._config.request_timeout_seconds),
        ) as resp:
            raw = await resp.read()
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, None

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
        try:  # (long polls pass ``wait``: they outlast the default timeout)
            status, body = await self._request(method, path, query, json_body, wait)
        except (TimeoutError, aiohttp.ClientError) as err:
            raise Unavailable(
                f"The chat server is unreachable ({type(err).__name__}); try again shortly."
            ) from None
        if status < 400:
            return body if isinstance(body, dict) else {}
        raise _error(status, body if isinstance(body, dict) else {})

    # -- agents and rooms ------------------------------------------------------------

    async def _ensure_agent(self, agent: AgentProfile) -> dict[str, str]:
        """Register the agent user and its device, set its name (once per process), join
        its rooms (re-read every ``_ROOMS_TTL_S``: a room upgrade moves a room key to a new
        room, which the agent must follow without a restart)."""
        ready = self._fresh(agent.localpart)
        if ready is not None:
            return ready
        lock = self._locks.setdefault(agent.localpart, anyio.Lock())
        async with lock:
            ready = self._fresh(agent.localpart)
            if ready is not None:
                return ready
            if agent.localpart not in self._ready:
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
                    "The chat server is not set up for agents yet (agents module missing); tell "
                    "the operator."
                ) from None
            rooms = {str(k): str(v) for k, v in (result.get("rooms") or {}).items()}
            if rooms != self._ready.get(agent.localpart):
                logger.info("agent %s ready in rooms %s", self.user_id(agent), sorted(rooms))
            self._ready[agent.localpart] = rooms
            self._ready_at[agent.localpart] = anyio.current_time()
            return rooms

    def _fresh(self, localpart: str) -> dict[str, str] | None:
        """The agent's rooms if read less than ``_ROOMS_TTL_S`` ago. "Never read" is no
        timestamp, not 0: the monotonic clock starts near 0 on a freshly booted host (a new
        Fargate task), where 0 + TTL would still be in the future."""
        read_at = self._ready_at.get(localpart)
        if read_at is None or anyio.current_time() >= read_at + _ROOMS_TTL_S:
            return None
        return self._ready[localpart]

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
            # The user exists without our device (e.g. created by an older version): log in
            # to create it.
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
                    f"Not allowed: this agent may not use the {ref} room. Its rooms: "
                    f"{', '.join(sorted(rooms)) or 'none'}."
                )
            return ref, rooms[ref]
        room_id = ref
        if ref.startswith("#") and not ref.endswith(f":{self._config.server_name}"):
            # Agents only use this server's rooms; never make Synapse ask another server.
            raise Forbidden(
                f"Not allowed: {ref} is not a room of this server. Call list_rooms for the rooms "
                "you can use."
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
                f"Not allowed: {ref} is not one of this agent's rooms. Call list_rooms for those "
                "it may use."
            )
        return by_id[room_id], room_id

    # -- shared lookups ------------------------------------------------------------

    async def health(self) -> dict[str, object]:
        try:
            status, _ = await self._request("GET", "/_matrix/client/versions", seconds=3)
            if status != 200:
                return {
                    "ok": False,
                    "backend": "synapse",
                    "error": f"homeserver answered HTTP {status}",
                }
            who, _ = await self._request("GET", "/_matrix/client/v3/account/whoami", seconds=3)
            if who != 200:
                return {
                    "ok": False,
                    "backend": "synapse",
                    "error": "homeserver rejects the application service token "
                    "(is the registration loaded?)",
                }
        except (TimeoutError, aiohttp.ClientError) as err:
            return {
                "ok": False,
                "backend": "synapse",
                "error": f"homeserver unreachable: {type(err).__name__}",
            }
        return {"ok": True, "backend": "synapse"}

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

    async def _creators(self, agent: AgentProfile, room_id: str) -> set[str]:
        """Room creators outrank every power level in room version 12+ and are not listed there."""
        create = await self._call(
            "GET",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/state/m.room.create/",
            agent,
            params={"format": "event"},
        )
        return me.implicit_creators(create)


def _error(status: int, body: dict[str, Any]) -> BackendError:
    errcode = str(body.get("errcode", "M_UNKNOWN"))
    text = str(body.get("error", f"HTTP {status}"))
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        retry_ms = body.get("retry_after_ms")
        return RateLimited(
            f"the chat server is throttling this agent ({text})", (retry_ms or 1000) / 1000
        )
    if status == 413 or errcode == "M_TOO_LARGE":
        return InvalidRequest(
            f"Too large for the chat server ({text}): shorten it or split it into several "
            "messages; retrying unchanged cannot succeed."
        )
    if status == 404:
        return NotFound(f"Not found: {text} ({errcode})")
    if status == 403:
        return Forbidden(f"Not allowed: {text}")
    if status == 400:
        return InvalidRequest(f"{text} ({errcode})")
    logger.warning("homeserver error %s %s: %s", status, errcode, text)
    return Unavailable(f"The chat server failed ({status} {errcode}); try again shortly.")
