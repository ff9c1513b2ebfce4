"""The card table: freshness, failures, bounded size, image dedup (sqlite3, same SQL as Synapse)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import cast

import pytest

from synapse_phenom import db
from synapse_phenom.db import Txn
from synapse_phenom.previews import store as preview_store
from synapse_phenom.previews.card import Card, CardImage


@pytest.fixture
def txn() -> Iterator[Txn]:
    conn = sqlite3.connect(":memory:")
    cur = cast(Txn, conn.cursor())  # what Synapse's LoggingTransaction offers, for this SQL
    db.create_schema(cur, preview_store.SCHEMA)
    yield cur
    conn.close()


def card(url: str) -> Card:
    return Card(url=url, canonical_url=url, title="T")


def test_fresh_card_then_expired(txn: Txn) -> None:
    preview_store.put(txn, "https://a/1", card("https://a/1"), None, now_ms=1000, ttl_s=60)
    assert preview_store.get_cached(txn, "https://a/1", 60_999) == card("https://a/1")
    assert preview_store.get_cached(txn, "https://a/1", 61_000) is None


def test_failure_is_cached_as_its_error_text_and_replaced_by_a_card(txn: Txn) -> None:
    preview_store.put(txn, "https://a/2", None, "timeout: slow", now_ms=0, ttl_s=120)
    assert preview_store.get_many(txn, ["https://a/2", "https://a/3"], 1) == {
        "https://a/2": "timeout: slow",
        "https://a/3": None,
    }
    preview_store.put(txn, "https://a/2", card("https://a/2"), None, now_ms=5, ttl_s=120)
    assert isinstance(preview_store.get_cached(txn, "https://a/2", 6), Card)


def test_prune_drops_expired_then_oldest(txn: Txn) -> None:
    for i in range(15):
        preview_store.put(txn, f"https://a/{i}", card(f"https://a/{i}"), None, now_ms=i, ttl_s=100)
    preview_store.put(txn, "https://a/old", None, "x", now_ms=0, ttl_s=1)
    assert preview_store.prune(txn, now_ms=2000, max_entries=10) == 5
    txn.execute("SELECT url FROM phenom_link_previews ORDER BY fetched_ts")
    assert [r[0] for r in txn.fetchall()] == [f"https://a/{i}" for i in range(5, 15)]


def test_media_dedup_by_url_and_hash(txn: Txn) -> None:
    image = CardImage(mxc="mxc://hs/x", mimetype="image/png", size=3, width=1, height=1)
    preview_store.put_media(txn, "https://a/i.png", "abc", image, now_ms=0)
    assert preview_store.get_media(txn, "https://a/i.png") == image
    assert preview_store.get_media(txn, "https://a/other.png", "abc") == image
    assert preview_store.get_media(txn, "https://a/other.png") is None
