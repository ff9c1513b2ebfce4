"""One LISTEN connection per process, fanned out to every waiting ``wait_for_messages`` call.

The ``chat.notify_message`` trigger sends ``NOTIFY chat_message '{"room_id": …, "seq": …}'``
when a message insert commits. ``MessageNotifier`` keeps a single dedicated connection
LISTENing on that channel and wakes the waiters whose rooms got a message. Waiters always
re-read the table after waking, so a notification is only a hint: a lost one (the listening
connection dropped) costs at most the wait, and every reconnect wakes everyone once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Iterator

import psycopg

logger = logging.getLogger(__name__)

CHANNEL = "chat_message"


class _Waiter:
    __slots__ = ("event", "rooms")

    def __init__(self, rooms: frozenset[str]) -> None:
        self.rooms = rooms
        self.event = asyncio.Event()


class MessageNotifier:
    def __init__(self, dsn: str, channel: str = CHANNEL, retry_seconds: float = 1.0) -> None:
        self._dsn = dsn
        self._channel = channel
        self._retry = retry_seconds
        self._waiters: set[_Waiter] = set()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.notifications = 0  # received so far (tests, health)

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def start(self, ready_within: float = 10.0) -> None:
        """Start the listener task; wait (bounded) until LISTEN is in place."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="chat-message-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), ready_within)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._listening.clear()

    @contextlib.contextmanager
    def subscribe(self, rooms: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set when one of ``rooms`` (room UUIDs as text) may have a new message.

        Subscribe BEFORE reading the table, so a message committed between the read and the
        wait still wakes the caller. Clear the event before each re-read."""
        waiter = _Waiter(frozenset(rooms))
        self._waiters.add(waiter)
        try:
            yield waiter.event
        finally:
            self._waiters.discard(waiter)

    def _wake(self, room_id: str | None) -> None:
        for waiter in self._waiters:
            if room_id is None or room_id in waiter.rooms:
                waiter.event.set()

    async def _run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True
                ) as conn:
                    await conn.execute(
                        psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(self._channel))
                    )
                    self._listening.set()
                    self._wake(None)  # anything may have happened while we were not listening
                    async for note in conn.notifies():
                        self.notifications += 1
                        self._wake(_room_of(note.payload))
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a dropped connection or a restarting server: retry
                logger.warning("LISTEN %s connection lost (%s); reconnecting", self._channel, err)
            self._listening.clear()
            self._wake(None)
            await asyncio.sleep(self._retry)


def _room_of(payload: str) -> str | None:
    """The room of a notification; None (wake everyone) when the payload is unexpected."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    room = data.get("room_id") if isinstance(data, dict) else None
    return str(room) if room is not None else None
