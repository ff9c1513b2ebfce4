"""Benchmark: plain-message send throughput, bare Synapse vs Synapse with Phenom's modules.

Every variant is its own real Synapse (same machine, same database engine, same clients),
started side by side; rounds alternate between the variants (rotating order) so drift and
other load on the machine fall on all of them alike. Printed: msgs/s, the ratio to bare,
the Synapse process's CPU per message, and send -> delivered latency (a reader member
long-polls ``/sync`` during the rounds; latency = arrival in the reader's sync minus the
start of the send request).

Variants (``--variants``, comma-separated):
  bare          dev config with ``modules:`` and the appservice removed
  bare-again    a second, identical bare Synapse: the A/A control (the method's noise floor)
  full          dev config: every Phenom module + the MCP appservice registration
  no-as         full minus the appservice registration
  no-names      full, moderation with ``display_names: off`` (no display-name checks)
  full-unmanaged full, but bench users are not Phenom-managed (no auto-join to #community)
  full-unmanaged-mentions  full-unmanaged, every member with the room rule dont_notify
  rewrite       full, moderation with ``display_names: rewrite`` (check_event_allowed: Synapse
                loads the room's whole state for every event)
  full-as-push  full, but Synapse runs its appservice stream (no notify_appservices_from_worker)
  no-moderation full minus the moderation module
  no-previews   full minus the link-preview module
  no-rooms      full minus the rooms and agents modules
  bare-mentions bare, every member has a room-level ``dont_notify`` push rule for the room
  full-mentions full, same push rule (what ``notifications: mentions_only`` sets)

    .venv/bin/python bench/bench_send.py --variants bare,full --members 1 --rounds 5 --messages 400
    .venv/bin/python bench/bench_send.py --variants bare,full --members 1,300,1000 \
        --plot docs/img/room-size.png

``--links down``: every message carries a new link on a Phenom origin that never answers (a
tarpit); the breaker must hold the fetches back (the count of connections is printed).
``--blocks N``: per variant, the N Synapse ``Measure`` blocks whose CPU per message differs
most from the first variant's (the modules' own callbacks are blocks of their own).

``bcrypt_rounds: 4`` in every variant so that creating thousands of members is quick.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness import MatrixClient, SynapseStack, create_postgres_database, drop_postgres_database
from previews_site import Tarpit

from synapse_phenom.mcp import dev as mcp_dev
from synapse_phenom.ops import devstack, hsconfig

BODY = "the game tonight was great, see you at the match later " * 4

MODULE_DROPS: dict[str, set[str]] = {
    "full": set(),
    "no-as": set(),
    "no-moderation": {hsconfig.MODERATION_MODULE},
    "no-previews": {hsconfig.LINK_PREVIEW_MODULE},
    "no-rooms": {hsconfig.ROOMS_MODULE, hsconfig.AGENTS_MODULE},
    "full-mentions": set(),
    "full-as-push": set(),
    "no-names": set(),
    "rewrite": set(),
    "full-unmanaged": set(),
    "full-unmanaged-mentions": set(),
}
OVERRIDES: dict[str, dict[str, Any]] = {
    "no-names": {hsconfig.MODERATION_MODULE: {"display_names": "off"}},
    "rewrite": {hsconfig.MODERATION_MODULE: {"display_names": "rewrite"}},
    # Bench users outside Phenom's group rooms: no auto-join to #community, so the reader's
    # /sync covers the bench room alone, as in bare.
    "full-unmanaged": {hsconfig.ROOMS_MODULE: {"unmanaged_users": ["^@"]}},
    "full-unmanaged-mentions": {hsconfig.ROOMS_MODULE: {"unmanaged_users": ["^@"]}},
}
# --cache-factor: Synapse's caches.global_factor in every variant (rooms of thousands need
# caches that hold every member: docs/benchmarks.md, "A cache cliff").
CACHE_FACTOR: dict[str, float] = {}


# --links down: every message carries a new link on a Phenom origin that never answers (a
# tarpit); the modules' per-origin breaker must keep that from costing a fetch per message.
DOWN_ORIGIN = "https://down.thephenom.test"
LINKS: dict[str, Any] = {"mode": "none", "fetch_from": ""}


def module_overrides(name: str) -> dict[str, dict[str, Any]]:
    out = {module: dict(cfg) for module, cfg in OVERRIDES.get(name, {}).items()}
    if LINKS["mode"] == "down":
        out.setdefault(hsconfig.LINK_PREVIEW_MODULE, {}).update(
            origins=[{"url": DOWN_ORIGIN, "fetch_from": LINKS["fetch_from"], "trusted": True}],
            total_timeout_s=2.0,
        )
    return out


def message_body(i: int) -> str:
    if LINKS["mode"] == "down":
        return f"{BODY} {i} {DOWN_ORIGIN}/p/{uuid.uuid4().hex}"
    return f"{BODY} {i}"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Instance:
    def __init__(self, name: str, dsn: str | None) -> None:
        self.name = name
        self.dsn = dsn
        data_dir = Path(tempfile.mkdtemp(prefix=f"bench-send-{name}-"))
        database = create_postgres_database(dsn) if dsn else hsconfig.DevDatabase()
        bare = name.startswith("bare")
        extra: dict[str, Any] = {}
        if bare:
            extra["modules"] = []
        else:
            drop = MODULE_DROPS[name]
            modules = hsconfig.default_modules(module_overrides(name))
            extra["modules"] = [m for m in modules if m["module"] not in drop]
            if name != "no-as":
                reg = mcp_dev.write_registration_file(data_dir, "localhost")
                extra["app_service_config_files"] = [str(reg)]
        port = devstack_free_port()
        config_path = devstack.prepare_synapse(
            data_dir, port=port, database=database, extra_values=extra
        )
        config = yaml.safe_load(config_path.read_text())
        config["bcrypt_rounds"] = 4
        if CACHE_FACTOR:
            config["caches"] = {"global_factor": CACHE_FACTOR["global"]}
        if name == "full-as-push":
            config.pop("notify_appservices_from_worker", None)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process = devstack.start_synapse(config_path)
        self.stack = SynapseStack(
            data_dir=data_dir,
            base_url=f"http://127.0.0.1:{port}",
            server_name="localhost",
            engine=database.engine,
            config_path=config_path,
            process=self.process,
            database=database,
        )
        if bare or name == "no-rooms":  # no rooms module: no rooms to wait for
            devstack.wait_http(
                f"{self.stack.base_url}/_matrix/client/versions", [self.process], 120
            )
        else:
            self.stack.wait_ready()
        self.senders: list[MatrixClient] = []
        self.reader: MatrixClient | None = None
        self.room_id = ""
        self.members = 0
        self.all_members: list[MatrixClient] = []
        self.blocks: dict[str, float] = {}  # Measure-block CPU seconds in measured rounds

    def stop(self) -> None:
        self.process.stop()
        if self.dsn:
            drop_postgres_database(self.dsn, self.stack.database.name)

    def setup(self, senders: int) -> None:
        owner = self.stack.register()
        self.room_id = str(
            owner.call("POST", "/_matrix/client/v3/createRoom", json={"preset": "public_chat"})[
                "room_id"
            ]
        )
        self.reader = owner
        self.all_members = [owner]
        self.senders = self.add_members(senders)
        self.members = 1 + senders

    def new_member(self, i: int) -> MatrixClient:
        """A new user, as the client that will talk to the server (bench_workers: a worker)."""
        return self.stack.register()

    def add_members(self, n: int) -> list[MatrixClient]:
        def one(i: int) -> MatrixClient:
            client = self.new_member(i)
            client.join(self.room_id)
            if self.name.endswith("-mentions"):
                mentions_only(client, self.room_id)
            return client

        with ThreadPoolExecutor(8) as pool:
            added = list(pool.map(one, range(n)))
        self.all_members += added
        self.members += n
        return added

    def grow_to(self, members: int) -> None:
        if members > self.members:
            self.add_members(members - self.members)


def mentions_only(client: MatrixClient, room_id: str) -> None:
    resp = client.request(
        "PUT",
        f"/_matrix/client/v3/pushrules/global/room/{quote(room_id, safe='')}",
        json={"actions": ["dont_notify"]},
    )
    resp.raise_for_status()


AS_TXNS = ("appservice", "get_all_new_event_ids_stream", "get_new_events_for_appservice")


def txn_counts(inst: Instance) -> tuple[float, float]:
    """(all database transactions, appservice-stream ones) so far, from /_synapse/metrics."""
    text = httpx2.get(f"{inst.stack.base_url}/_synapse/metrics", timeout=30).text
    total = appservice = 0.0
    for line in text.splitlines():
        if line.startswith("synapse_storage_transaction_time_count"):
            value = float(line.rsplit(" ", 1)[1])
            total += value
            if any(name in line for name in AS_TXNS):
                appservice += value
    return total, appservice


BLOCK_CPU = (
    "synapse_util_metrics_block_ru_utime_seconds",
    "synapse_util_metrics_block_ru_stime_seconds",
)
_BLOCK = re.compile(r'block_name="([^"]+)"')


def block_cpu(inst: Instance) -> dict[str, float]:
    """CPU seconds so far per Synapse ``Measure`` block (nested blocks count in their parents),
    and the seconds Synapse's garbage collections took per generation (outside any block)."""
    text = httpx2.get(f"{inst.stack.base_url}/_synapse/metrics", timeout=30).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(BLOCK_CPU) and (m := _BLOCK.search(line)):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("python_gc_time_sum"):  # Synapse's own GC timing (wall, ~CPU)
            key = "(python gc, " + line.split("{", 1)[1].split("}", 1)[0] + ")"
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def devstack_free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_round(inst: Instance, n: int) -> tuple[float, float, list[float], tuple[float, float]]:
    """(seconds, Synapse CPU seconds, latencies ms, (txns, appservice txns)) for n messages."""
    assert inst.reader is not None
    started: dict[str, float] = {}
    arrived: dict[str, float] = {}
    stop = threading.Event()
    since = inst.reader.sync(timeout_ms=0)["next_batch"]

    def read() -> None:
        token = since
        while not stop.is_set() or len(arrived) < len(started):
            body = inst.reader.sync(since=token, timeout_ms=1000)  # type: ignore[union-attr]
            now = time.perf_counter()
            token = body["next_batch"]
            room = body.get("rooms", {}).get("join", {}).get(inst.room_id, {})
            for ev in room.get("timeline", {}).get("events", []):
                arrived.setdefault(ev["event_id"], now)
            if stop.is_set() and time.perf_counter() - stopped_at[0] > 30:
                break

    stopped_at = [0.0]
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    lock = threading.Lock()

    def one(i: int) -> None:
        t0 = time.perf_counter()
        resp = inst.senders[i % len(inst.senders)].send_raw(
            inst.room_id, {"msgtype": "m.text", "body": message_body(i)}
        )
        resp.raise_for_status()
        with lock:
            started[resp.json()["event_id"]] = t0

    blocks0 = block_cpu(inst)
    txn0 = txn_counts(inst)
    cpu0 = cpu_seconds(inst.process.popen.pid)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(inst.senders)) as pool:
        list(pool.map(one, range(n)))
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds(inst.process.popen.pid) - cpu0
    txn1 = txn_counts(inst)
    blocks1 = block_cpu(inst)
    for name, value in blocks1.items():
        inst.blocks[name] = inst.blocks.get(name, 0.0) + value - blocks0.get(name, 0.0)
    stopped_at[0] = time.perf_counter()
    stop.set()
    reader.join(40)
    lat = [(arrived[e] - s) * 1000 for e, s in started.items() if e in arrived]
    return seconds, cpu, lat, (txn1[0] - txn0[0], txn1[1] - txn0[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", default="bare,full")
    parser.add_argument("--members", default="1", help="room sizes, e.g. 1,300,1000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=400, help="per round per variant")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--postgres", metavar="DSN")
    parser.add_argument("--json", metavar="FILE", help="append results (one JSON line per size)")
    parser.add_argument("--plot", metavar="PNG", help="plot msgs/s and p50 latency vs members")
    parser.add_argument(
        "--links",
        choices=["none", "down"],
        default="none",
        help="down: each message has a new link on a Phenom origin that never answers",
    )
    parser.add_argument(
        "--blocks",
        type=int,
        default=0,
        metavar="N",
        help="print the N Synapse Measure blocks whose CPU per message differs most from bare",
    )
    parser.add_argument(
        "--cache-factor", type=float, metavar="F", help="caches.global_factor in every variant"
    )
    parser.add_argument(
        "--plot-from", metavar="JSONL", help="only plot the rows a --json run wrote, to --plot"
    )
    args = parser.parse_args()
    if args.plot_from:
        rows = [json.loads(line) for line in Path(args.plot_from).read_text().splitlines()]
        plot(rows, list(rows[0]["variants"]), args.plot, rows[0]["engine"])
        return 0
    variants = args.variants.split(",")
    sizes = [int(s) for s in args.members.split(",")]
    engine = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} engine={engine} "
        f"load={os.getloadavg()[0]:.1f} cmd: {' '.join(sys.argv)}",
        flush=True,
    )
    if args.cache_factor:
        CACHE_FACTOR["global"] = args.cache_factor
    pit = None
    if args.links == "down":
        pit = Tarpit().start()
        LINKS.update(mode="down", fetch_from=pit.origin)
    instances = [Instance(v, args.postgres) for v in variants]
    results: list[dict[str, Any]] = []
    try:
        for inst in instances:
            inst.setup(args.concurrency)
            for _ in range(2):
                run_round(inst, 100)  # warm-up
        for size in sizes:
            t = time.perf_counter()
            with ThreadPoolExecutor(len(instances)) as pool:  # the variants grow in parallel
                list(pool.map(Instance.grow_to, instances, [size] * len(instances)))
            for inst in instances:
                run_round(inst, 50)
            print(f"## members={size} (built in {time.perf_counter() - t:.0f} s)", flush=True)
            secs = {v: 0.0 for v in variants}
            cpu = {v: 0.0 for v in variants}
            lats: dict[str, list[float]] = {v: [] for v in variants}
            per_round: dict[str, list[float]] = {v: [] for v in variants}
            txns = {v: [0.0, 0.0] for v in variants}
            for inst in instances:
                inst.blocks = {}
            for r in range(args.rounds):
                order = instances[r % len(instances) :] + instances[: r % len(instances)]
                for inst in order:
                    s, c, lat, (t_all, t_as) = run_round(inst, args.messages)
                    txns[inst.name][0] += t_all
                    txns[inst.name][1] += t_as
                    secs[inst.name] += s
                    cpu[inst.name] += c
                    lats[inst.name] += lat
                    per_round[inst.name].append(args.messages / s)
            sent = args.messages * args.rounds
            base = variants[0]
            row: dict[str, Any] = {"members": size, "engine": engine, "variants": {}}
            print(
                f"{'variant':<14} {'msgs/s':>8} {'ratio':>7} {'CPU ms/msg':>10} "
                f"{'cpu ratio':>9} {'p50 ms':>8} {'p95 ms':>8} {'txn/msg':>7} {'AS txn':>6}"
                "  per-round msgs/s"
            )
            for v in variants:
                rate = sent / secs[v]
                cpm = cpu[v] / sent * 1000
                ratio = rate / (sent / secs[base])
                cratio = (cpu[base] / sent * 1000) / cpm
                p50, p95 = pct(lats[v], 0.5), pct(lats[v], 0.95)
                rounds = " ".join(f"{x:.1f}" for x in per_round[v])
                print(
                    f"{v:<14} {rate:8.1f} {ratio:7.3f} {cpm:10.2f} {cratio:9.3f} "
                    f"{p50:8.1f} {p95:8.1f} {txns[v][0] / sent:7.2f} {txns[v][1] / sent:6.2f}"
                    f"  {rounds}",
                    flush=True,
                )
                row["variants"][v] = {
                    "msgs_s": rate,
                    "ratio": ratio,
                    "cpu_ms": cpm,
                    "cpu_ratio": cratio,
                    "p50_ms": p50,
                    "txn_per_msg": txns[v][0] / sent,
                    "as_txn_per_msg": txns[v][1] / sent,
                    "p95_ms": p95,
                    "rounds": per_round[v],
                    "median_round_ratio": statistics.median(
                        a / b for a, b in zip(per_round[v], per_round[base], strict=True)
                    ),
                }
            if args.blocks:
                print_blocks(instances, sent, args.blocks)
            results.append(row)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")
    finally:
        for inst in instances:
            inst.stop()
        if pit is not None:
            print(f"connections to the unreachable origin: {pit.connections}")
            pit.stop()
    if args.plot:
        plot(results, variants, args.plot, engine)
    return 0


def print_blocks(instances: list[Instance], sent: int, top: int) -> None:
    """Per variant, the Measure blocks' CPU ms per message minus the first variant's."""
    base = instances[0].blocks
    for inst in instances[1:]:
        names = set(base) | set(inst.blocks)
        delta = {n: (inst.blocks.get(n, 0.0) - base.get(n, 0.0)) * 1000 / sent for n in names}
        worst = sorted(delta.items(), key=lambda kv: -abs(kv[1]))[:top]
        print(
            f"  {inst.name} - {instances[0].name}, Measure-block CPU ms/msg: "
            + ", ".join(
                f"{n} {d:+.2f} ({inst.blocks.get(n, 0.0) * 1000 / sent:.2f})" for n, d in worst
            ),
            flush=True,
        )


def plot(results: list[dict[str, Any]], variants: list[str], path: str, engine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = [r["members"] for r in results]
    for v in variants:
        ax1.plot(sizes, [r["variants"][v]["msgs_s"] for r in results], marker="o", label=v)
        ax2.plot(sizes, [r["variants"][v]["p50_ms"] for r in results], marker="o", label=v)
    for ax, title in ((ax1, "send throughput (msgs/s)"), (ax2, "send -> delivered p50 (ms)")):
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("room members")
        ax.set_title(f"{title}, {engine}, 8 senders")
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax1.set_yscale("log")
    ax2.set_yscale("log")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
