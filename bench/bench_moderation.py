"""Benchmark: the moderation module's cost, all traffic on 127.0.0.1.

(a) Message-send throughput through two real Synapse instances started side by side
    (same machine, same SQLite engine, same clients): one with the moderation module and
    a heavy policy on the benchmark room (10,000 keywords, 10 regexes, link allow-list,
    mention limits, flood control counted in the database, escalation), one without the
    module. Rounds alternate between the two to cancel drift. Target: >= 95 % of bare.
(b) The check alone (``CompiledPolicy.check``): 10,000 keywords + 10 regexes on a 1 KiB
    message. Target: median <= 50 µs.

    .venv/bin/python bench/bench_moderation.py [--messages 1600] [--rounds 8] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness import MatrixClient, SynapseStack, create_postgres_database, drop_postgres_database
from rich.console import Console
from rich.table import Table

from synapse_phenom.moderation.config import POLICY_EVENT_TYPE, RoomPolicy
from synapse_phenom.moderation.rules import CompiledPolicy
from synapse_phenom.ops import hsconfig

console = Console(width=130)
REGEXES = [
    r"(?i)free\s+(?:money|crypto|nitro)",
    r"\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b",
    r"(a+)+$",
    r"(?i)\bwhats?app\s*\+?\d{6,}",
    r"(?i)(?:t\.me|telegram\.me)/\w+",
    r"(?i)\bseed\s+phrase\b",
    r"[\x{1F600}-\x{1F64F}]{12,}",
    r"(?i)\b(?:dm|message)\s+me\s+for\s+(?:pics|price)",
    r"(.)\x00",
    r"(?i)\bcasino\b.*\bbonus\b",
]


def keywords(n: int, rng: random.Random) -> list[str]:
    """n distinct made-up words, spread over Discord's four modes (a few phrases)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    out: set[str] = set()
    while len(out) < n:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(6, 10)))
        mode = rng.random()
        if mode < 0.6:
            out.add(word)
        elif mode < 0.75:
            out.add(word + "*")
        elif mode < 0.85:
            out.add("*" + word)
        elif mode < 0.92:
            out.add("*" + word + "*")
        else:
            out.add(word + " " + "".join(rng.choice(letters) for _ in range(5)))
    return sorted(out)


def message_1k(rng: random.Random) -> str:
    """About 1 KiB of ordinary chat: common words, a Phenom link, punctuation."""
    words = [
        "the",
        "a",
        "to",
        "and",
        "of",
        "in",
        "is",
        "it",
        "you",
        "that",
        "for",
        "on",
        "this",
        "with",
        "are",
        "be",
        "have",
        "we",
        "was",
        "but",
        "not",
        "what",
        "all",
        "just",
        "can",
        "like",
        "so",
        "about",
        "out",
        "up",
        "time",
        "if",
        "get",
        "one",
        "your",
        "my",
        "do",
        "how",
        "when",
        "game",
        "tonight",
        "team",
        "score",
        "season",
        "phenom",
        "match",
        "great",
        "play",
        "watch",
        "friends",
        "later",
    ]
    parts: list[str] = []
    size = 0
    while size < 1000:
        w = rng.choice(words)
        parts.append(w)
        size += len(w) + 1
    parts.insert(len(parts) // 2, "https://thephenom.app/events/123")
    return " ".join(parts)[:1019] + " end."


def heavy_policy(rng: random.Random) -> dict[str, Any]:
    return {
        "keywords": [
            {"name": "bench words", "keywords": keywords(10_000, rng), "allow": ["scampi"]}
        ],
        "regexes": [{"name": f"r{i}", "pattern": p} for i, p in enumerate(REGEXES)],
        "links": {"mode": "allow", "domains": ["thephenom.app"], "block_room_links": True},
        "mentions": {"max_user_mentions": 5, "allow_room_mention": False},
        "escalation": {"violations": 5, "window_seconds": 600, "mute_seconds": 300},
        "exemptions": {"power_level": 101, "groups": ["team"]},
    }


def bench_check(policy: dict[str, Any], rng: random.Random, n: int) -> dict[str, float]:
    compiled = CompiledPolicy("bench", RoomPolicy.model_validate(policy))
    body = message_1k(rng)
    assert len(body.encode()) >= 1000
    plain = {"msgtype": "m.text", "body": body}
    html = {**plain, "format": "org.matrix.custom.html", "formatted_body": f"<p>{body}</p>"}
    emoji = {"msgtype": "m.text", "body": body[:1010] + " \U0001f389\u00e9"}
    results = {}
    cases = (
        ("1 KiB plain text", plain),
        ("1 KiB text + emoji/accent", emoji),
        ("1 KiB text + HTML body", html),
    )
    for name, content in cases:
        assert compiled.check("m.room.message", content) is None
        timings = []
        for _ in range(n):
            start = time.perf_counter_ns()
            compiled.check("m.room.message", content)
            timings.append((time.perf_counter_ns() - start) / 1000)
        timings.sort()
        results[name] = timings[len(timings) // 2]
        results[name + " p95"] = timings[int(len(timings) * 0.95)]
    return results


def cpu_seconds(stack: SynapseStack) -> float:
    """User + system CPU time of the Synapse process so far (Linux /proc)."""
    fields = Path(f"/proc/{stack.process.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send_batch(clients: list[MatrixClient], room_id: str, n: int, body: str) -> float:
    def one(i: int) -> None:
        resp = clients[i % len(clients)].send_raw(room_id, {"msgtype": "m.text", "body": body})
        resp.raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - start


def database(dsn: str | None) -> hsconfig.DevDatabase:
    return create_postgres_database(dsn) if dsn else hsconfig.DevDatabase()


def start_pair(policy: dict[str, Any], dsn: str | None) -> tuple[SynapseStack, SynapseStack]:
    with_dir = Path(tempfile.mkdtemp(prefix="bench-moderation-on-"))
    bare_dir = Path(tempfile.mkdtemp(prefix="bench-moderation-off-"))
    overrides = {hsconfig.MODERATION_MODULE: {"policies": {"default": policy}}}
    bare_modules = [
        m for m in hsconfig.default_modules() if m["module"] != hsconfig.MODERATION_MODULE
    ]
    on = SynapseStack.start(with_dir, database(dsn), module_overrides=overrides)
    try:
        off = SynapseStack.start(bare_dir, database(dsn), extra_values={"modules": bare_modules})
    except Exception:
        on.stop()
        raise
    return on, off


def setup_room(
    stack: SynapseStack, concurrency: int, live: dict[str, Any] | None = None
) -> tuple[list[MatrixClient], str]:
    owner = stack.register()
    room_id = str(
        owner.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "public_chat"})[
            "room_id"
        ]
    )
    if live is not None:
        owner.send_state(room_id, POLICY_EVENT_TYPE, live).raise_for_status()
    senders = [stack.register() for _ in range(concurrency)]
    for client in senders:
        client.join(room_id)
    return senders, room_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1600, help="messages per instance")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--checks", type=int, default=20_000, help="iterations of the check alone")
    parser.add_argument("--skip-synapse", action="store_true", help="only (b)")
    parser.add_argument(
        "--postgres", metavar="DSN", help="run both Synapses on PostgreSQL (fresh databases)"
    )
    args = parser.parse_args()
    rng = random.Random(42)
    policy = heavy_policy(rng)

    check = bench_check(policy, random.Random(7), args.checks)
    table = Table(title="(b) check alone: 10,000 keywords + 10 regexes (RE2), µs")
    for column in ("message", "median", "p95", "target"):
        table.add_column(column)
    for name in ("1 KiB plain text", "1 KiB text + emoji/accent", "1 KiB text + HTML body"):
        table.add_row(
            name,
            f"{check[name]:.1f}",
            f"{check[name + ' p95']:.1f}",
            "median <= 50" if "plain" in name else "-",
        )
    console.print(table)
    if args.skip_synapse:
        return 0

    with console.status("starting two Synapse instances…"):
        on, off = start_pair(policy, args.postgres)
    try:
        body = message_1k(random.Random(7))
        # Rooms: bare Synapse; the module with the heavy policy (no database work per
        # message); the same plus flood control (one database transaction per message); and
        # the module with an empty policy (separates process-to-process noise from rule cost).
        flood = {"flood": {"messages": 1_000_000, "per_seconds": 10}}
        empty: dict[str, Any] = {
            "keywords": [],
            "regexes": [],
            "links": {"mode": "off"},
            "mentions": {},
            "escalation": None,
        }
        stack_of = {"bare": off}
        rooms = {
            "bare": setup_room(off, args.concurrency),
            "with moderation": setup_room(on, args.concurrency),
            "with moderation + flood counter": setup_room(on, args.concurrency, flood),
            "with moderation, empty policy": setup_room(on, args.concurrency, empty),
        }
        # Confirm the module is really checking: a blocked link where it is loaded.
        for name, (clients, room_id) in rooms.items():
            resp = clients[0].send_raw(
                room_id, {"msgtype": "m.text", "body": "see https://example.com"}
            )
            assert (resp.status_code == 403) == (
                name not in ("bare", "with moderation, empty policy")
            ), (
                name,
                resp.text,
            )
            send_batch(clients, room_id, 100, body)  # warm-up
        per_round = max(1, args.messages // args.rounds)
        seconds = {name: 0.0 for name in rooms}
        cpu = {name: 0.0 for name in rooms}
        for r in range(args.rounds):
            order = list(rooms)[r % len(rooms) :] + list(rooms)[: r % len(rooms)]
            for name in order:
                clients, room_id = rooms[name]
                stack = stack_of.get(name, on)
                before = cpu_seconds(stack)
                seconds[name] += send_batch(clients, room_id, per_round, body)
                cpu[name] += cpu_seconds(stack) - before
        sent = per_round * args.rounds
        rate = {name: sent / s for name, s in seconds.items()}
        engine = "PostgreSQL" if args.postgres else "SQLite"
        table = Table(
            title=f"(a) send throughput ({engine}), {sent} x 1 KiB messages per room, "
            f"{args.concurrency} clients"
        )
        for column in ("room", "msgs/s", "of bare", "Synapse CPU ms/msg", "capacity of bare (CPU)"):
            table.add_column(column)
        per_msg = {name: cpu[name] / sent * 1000 for name in rooms}
        for name in rooms:
            table.add_row(
                name,
                f"{rate[name]:.1f}",
                f"{rate[name] / rate['bare'] * 100:.1f} %",
                f"{per_msg[name]:.2f}",
                f"{per_msg['bare'] / per_msg[name] * 100:.1f} %",
            )
        console.print(table)
        console.print(
            "target: >= 95 % of bare;",
            f"check median plain: {check['1 KiB plain text']:.1f} µs (target <= 50 µs)",
        )
    finally:
        on.stop()
        off.stop()
        if args.postgres:
            for stack in (on, off):
                drop_postgres_database(args.postgres, stack.database.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
