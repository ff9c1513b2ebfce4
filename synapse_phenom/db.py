"""What every Phenom table module shares: the transaction protocol, schema creation, time.

Functions of the ``*/store.py`` modules take a Synapse ``LoggingTransaction`` (any object
with this ``Txn`` shape) and are run with ``ModuleApi.run_db_interaction``; ``?``
placeholders work on SQLite and PostgreSQL. Pure: no synapse, no twisted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol


class Txn(Protocol):
    def execute(self, sql: str, args: Any = ..., /) -> object: ...
    def fetchone(self) -> tuple[Any, ...] | None: ...
    def fetchall(self) -> list[tuple[Any, ...]]: ...


def create_schema(txn: Txn, statements: Iterable[str]) -> None:
    """Run ``CREATE TABLE/INDEX IF NOT EXISTS`` statements (idempotent, any process)."""
    for sql in statements:
        txn.execute(sql)


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every ``*_ts`` column."""
    return int(time.time() * 1000)
