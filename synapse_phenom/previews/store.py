"""Tables of the link-preview module (run with ``ModuleApi.run_db_interaction``).

``phenom_link_previews``: one row per normalised link — the card JSON, or the error of a
failed resolution (``card_json`` NULL) — until ``expires_ts``. Bounded by ``prune``.
``phenom_preview_media``: re-hosted images, so each is uploaded once (by source URL, and
by content hash when several URLs serve the same bytes).
"""

from __future__ import annotations

from synapse_phenom.db import Txn
from synapse_phenom.previews.card import Card, CardImage
from synapse_phenom.previews.limits import Bucket, OriginHealth, Taken, after_failure, take

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS phenom_link_previews (
        url TEXT NOT NULL PRIMARY KEY,
        card_json TEXT,
        error TEXT,
        fetched_ts BIGINT NOT NULL,
        expires_ts BIGINT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS phenom_link_previews_fetched ON phenom_link_previews (fetched_ts)",
    """
    CREATE TABLE IF NOT EXISTS phenom_preview_media (
        source_url TEXT NOT NULL PRIMARY KEY,
        sha256 TEXT NOT NULL,
        mxc TEXT NOT NULL,
        mimetype TEXT NOT NULL,
        size BIGINT NOT NULL,
        width INTEGER,
        height INTEGER,
        created_ts BIGINT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS phenom_preview_media_sha ON phenom_preview_media (sha256)",
    # Origins that were unreachable: not tried again before retry_ts (one probe per interval).
    """
    CREATE TABLE IF NOT EXISTS phenom_preview_origins (
        origin TEXT NOT NULL PRIMARY KEY,
        failures INTEGER NOT NULL,
        retry_ts BIGINT NOT NULL
    )
    """,
    # Token bucket per user for the composer endpoint.
    """
    CREATE TABLE IF NOT EXISTS phenom_preview_ratelimit (
        user_id TEXT NOT NULL PRIMARY KEY,
        tokens DOUBLE PRECISION NOT NULL,
        updated_ts BIGINT NOT NULL
    )
    """,
)

# What a lookup found: a fresh card, a fresh failure (error text), or nothing usable.
Cached = Card | str | None


def get_cached(txn: Txn, url: str, now_ms: int) -> Cached:
    txn.execute(
        "SELECT card_json, error FROM phenom_link_previews WHERE url = ? AND expires_ts > ?",
        (url, now_ms),
    )
    row = txn.fetchone()
    if row is None:
        return None
    if row[0] is None:
        return str(row[1] or "failed")
    return Card.model_validate_json(row[0])


def get_many(txn: Txn, urls: list[str], now_ms: int) -> dict[str, Cached]:
    return {url: get_cached(txn, url, now_ms) for url in urls}


def put(txn: Txn, url: str, card: Card | None, error: str | None, now_ms: int, ttl_s: int) -> None:
    txn.execute(
        """
        INSERT INTO phenom_link_previews (url, card_json, error, fetched_ts, expires_ts)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (url) DO UPDATE SET
            card_json = excluded.card_json, error = excluded.error,
            fetched_ts = excluded.fetched_ts, expires_ts = excluded.expires_ts
        """,
        (url, card.model_dump_json() if card else None, error, now_ms, now_ms + ttl_s * 1000),
    )


def prune(txn: Txn, now_ms: int, max_entries: int) -> int:
    """Drop expired rows, then the oldest beyond ``max_entries``; return how many went."""
    txn.execute("DELETE FROM phenom_link_previews WHERE expires_ts <= ?", (now_ms,))
    txn.execute("SELECT COUNT(*) FROM phenom_link_previews")
    row = txn.fetchone()
    excess = int(row[0]) - max_entries if row else 0
    if excess > 0:
        txn.execute(
            """
            DELETE FROM phenom_link_previews WHERE url IN (
                SELECT url FROM phenom_link_previews ORDER BY fetched_ts ASC LIMIT ?
            )
            """,
            (excess,),
        )
    return max(excess, 0)


def get_media(txn: Txn, source_url: str, sha256: str | None = None) -> CardImage | None:
    if sha256 is None:
        txn.execute(
            "SELECT mxc, mimetype, size, width, height FROM phenom_preview_media WHERE "
            "source_url = ?",
            (source_url,),
        )
    else:
        txn.execute(
            "SELECT mxc, mimetype, size, width, height FROM phenom_preview_media WHERE sha256 = "
            "? LIMIT 1",
            (sha256,),
        )
    row = txn.fetchone()
    if row is None:
        return None
    return CardImage(mxc=row[0], mimetype=row[1], size=int(row[2]), width=row[3], height=row[4])


def put_media(txn: Txn, source_url: str, sha256: str, image: CardImage, now_ms: int) -> None:
    txn.execute(
        """
        INSERT INTO phenom_preview_media
            (source_url, sha256, mxc, mimetype, size, width, height, created_ts)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (source_url) DO UPDATE SET
            sha256 = excluded.sha256, mxc = excluded.mxc, mimetype = excluded.mimetype,
            size = excluded.size, width = excluded.width, height = excluded.height
        """,
        (
            source_url,
            sha256,
            image.mxc,
            image.mimetype,
            image.size,
            image.width,
            image.height,
            now_ms,
        ),
    )


def origin_health(txn: Txn, origin: str) -> OriginHealth | None:
    txn.execute("SELECT failures, retry_ts FROM phenom_preview_origins WHERE origin = ?", (origin,))
    row = txn.fetchone()
    return OriginHealth(failures=int(row[0]), retry_ms=int(row[1])) if row else None


def claim_origin(txn: Txn, origin: str, now_ms: int, probe_ms: int) -> tuple[bool, int]:
    """(may this process fetch from ``origin`` now, until when it is closed otherwise).

    A healthy origin (no row) is always allowed. A failed one is allowed to exactly one
    caller across all processes once its retry time has passed: that caller moves the retry
    time ``probe_ms`` ahead in the same statement, so concurrent callers see it taken.
    """
    health = origin_health(txn, origin)
    if health is None:
        return True, 0
    if health.retry_ms > now_ms:
        return False, health.retry_ms
    txn.execute(
        "UPDATE phenom_preview_origins SET retry_ts = ? WHERE origin = ? AND retry_ts = ?",
        (now_ms + probe_ms, origin, health.retry_ms),
    )
    claimed = txn.rowcount == 1  # type: ignore[attr-defined]
    return claimed, now_ms + probe_ms


def record_origin(
    txn: Txn, origin: str, reachable: bool, now_ms: int, interval_ms: int, max_interval_ms: int
) -> int:
    """Store the outcome of a fetch; returns the retry time (0 when healthy)."""
    if reachable:
        txn.execute("DELETE FROM phenom_preview_origins WHERE origin = ?", (origin,))
        return 0
    health = after_failure(origin_health(txn, origin), now_ms, interval_ms, max_interval_ms)
    txn.execute(
        """
        INSERT INTO phenom_preview_origins (origin, failures, retry_ts) VALUES (?, ?, ?)
        ON CONFLICT (origin) DO UPDATE SET
            failures = excluded.failures, retry_ts = excluded.retry_ts
        """,
        (origin, health.failures, health.retry_ms),
    )
    return health.retry_ms


def take_token(txn: Txn, user_id: str, now_ms: int, rate_per_s: float, burst: int) -> Taken:
    """One token from ``user_id``'s bucket (read and written in one transaction)."""
    txn.execute(
        "SELECT tokens, updated_ts FROM phenom_preview_ratelimit WHERE user_id = ?", (user_id,)
    )
    row = txn.fetchone()
    taken = take(Bucket(float(row[0]), int(row[1])) if row else None, now_ms, rate_per_s, burst)
    txn.execute(
        """
        INSERT INTO phenom_preview_ratelimit (user_id, tokens, updated_ts) VALUES (?, ?, ?)
        ON CONFLICT (user_id) DO UPDATE SET
            tokens = excluded.tokens, updated_ts = excluded.updated_ts
        """,
        (user_id, taken.bucket.tokens, taken.bucket.updated_ms),
    )
    return taken
