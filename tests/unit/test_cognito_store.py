"""The SSO group hand-over tables, run on SQLite (same SQL as in Synapse)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from synapse_phenom.cognito import store as cs


@pytest.fixture
def txn() -> Iterator[sqlite3.Cursor]:
    conn = sqlite3.connect(":memory:")
    cur = conn.cursor()
    # Synapse's table, as far as the hand-over reads it.
    cur.execute(
        "CREATE TABLE user_external_ids (auth_provider TEXT, external_id TEXT, user_id TEXT)"
    )
    cur.execute("INSERT INTO user_external_ids VALUES ('oidc-cognito', 'sub-1', '@ann:hs')")
    cs.create_schema(cur)
    cs.create_schema(cur)  # idempotent
    yield cur
    conn.close()


def test_groups_reach_the_linked_user_once(txn: sqlite3.Cursor) -> None:
    cs.put_pending_groups(txn, "sub-1", ["team"], "https://issuer", 1000)
    cs.put_pending_groups(
        txn, "sub-1", ["partners", "team"], "https://issuer", 2000
    )  # newer login wins
    assert cs.take_pending_groups(txn, "oidc-cognito", "@ann:hs", 0) == ["partners", "team"]
    assert cs.take_pending_groups(txn, "oidc-cognito", "@ann:hs", 0) is None  # consumed


def test_groups_need_the_right_provider_and_freshness(txn: sqlite3.Cursor) -> None:
    cs.put_pending_groups(txn, "sub-1", [], "https://issuer", 1000)
    assert cs.take_pending_groups(txn, "oidc-other", "@ann:hs", 0) is None
    assert cs.take_pending_groups(txn, "oidc-cognito", "@bob:hs", 0) is None
    # Too old: ignored (and dropped).
    assert cs.take_pending_groups(txn, "oidc-cognito", "@ann:hs", 5000) is None
    cs.put_pending_groups(txn, "sub-1", [], "https://issuer", 6000)
    assert (
        cs.take_pending_groups(txn, "oidc-cognito", "@ann:hs", 5000) == []
    )  # empty list: no groups


def test_login_mark_is_consumed_by_one_token_login(txn: sqlite3.Cursor) -> None:
    assert cs.take_sso_mark(txn, "@ann:hs", 0) is False
    cs.mark_sso_reconciled(txn, "@ann:hs", 1000)
    assert cs.take_sso_mark(txn, "@ann:hs", 500) is True
    assert cs.take_sso_mark(txn, "@ann:hs", 500) is False
    cs.mark_sso_reconciled(txn, "@ann:hs", 1000)
    assert cs.take_sso_mark(txn, "@ann:hs", 2000) is False  # stale mark: reconcile again


def test_purge_drops_abandoned_rows(txn: sqlite3.Cursor) -> None:
    cs.put_pending_groups(txn, "sub-1", ["team"], "https://issuer", 1000)
    cs.mark_sso_reconciled(txn, "@ann:hs", 1000)
    cs.purge_stale_pending(txn, 2000)
    txn.execute("SELECT COUNT(*) FROM phenom_sso_pending_groups")
    assert txn.fetchone() == (0,)
    txn.execute("SELECT COUNT(*) FROM phenom_sso_login_marks")
    assert txn.fetchone() == (0,)
