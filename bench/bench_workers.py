"""Benchmark: one Synapse process vs Synapse's worker topology, same room, PostgreSQL.

``single``  = bench_send's ``full`` variant: one Synapse process, every Phenom module and the
              MCP appservice registration.
``workers`` = the same config with a worker topology (synapse_phenom/ops/topology.py,
              rendered as ``phenom-chat render-config`` renders PHENOM_WORKERS): main +
              persister1 (events stream writer) + client1 and client2 (client API; the senders
              alternate between them, the reader syncs on client1) + pusher1 +
              background1 (background tasks, user directory) + Redis on 127.0.0.1:6379.

Both grow the same kind of room (bench_send's: owner + 8 senders, then passive members
registered and joined concurrently, ``bcrypt_rounds: 4``, default push rules); the two
are grown in parallel, and rounds alternate between them (bench_send.run_round). Printed per
room size: msgs/s, send -> delivered p50/p95, and CPU per message summed over EVERY process
of the topology (``/proc/<pid>/stat`` before and after each round), split per process, and
the CPU of this machine's PostgreSQL processes over the same rounds.

    .venv/bin/python bench/bench_workers.py \\
        --postgres postgresql://postgres@127.0.0.1:5432/postgres --members 1,1000 \\
        --rounds 3 --messages 60 --json /tmp/workers.jsonl [--cache-factor 12] [--then-mentions]

``--cache-factor F``: ``caches.global_factor`` in both (caches that hold every member of the
room). ``--then-mentions``: after the largest size, every member of both gets the room rule
``dont_notify`` (what #community's ``notifications: mentions_only`` sets, as bench_send's
``*-mentions`` variants) and the rounds run
again in the same rooms, reported as ``single-mentions`` / ``workers-mentions``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import psycopg2
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from concurrent.futures import ThreadPoolExecutor

from bench_send import (
    CACHE_FACTOR,
    OVERRIDES,
    Instance,
    cpu_seconds,
    devstack_free_port,
    pct,
    run_round,
)
from harness import MatrixClient, SynapseStack, create_postgres_database, drop_postgres_database

from synapse_phenom.mcp import dev as mcp_dev
from synapse_phenom.ops import devstack, topology
from synapse_phenom.ops.hsconfig import ROOMS_MODULE

# The dev defaults' unmanaged users plus the bench's (harness.unique: "u" + 10 hex digits).
UNMANAGED = ["^@phenom-admin:", "^@agent-", "^@u[0-9a-f]{10}:"]
TOPOLOGY = {
    "persister1": "events",
    "pusher1": "pusher",
    "background1": "background",
    "client1": "client",
    "client2": "client",
}


class Cluster(Instance):
    """bench_send's Instance interface (stack, process, senders, reader, room) for a topology.

    ``process`` is main (what bench_send reads its own CPU and metrics from); ``procs`` are
    all of them.
    """

    def __init__(self, dsn: str) -> None:  # not Instance's: that starts one process
        self.name = "workers"
        self.dsn = dsn
        self.data_dir = Path(tempfile.mkdtemp(prefix="bench-workers-"))
        database = create_postgres_database(dsn)
        server_name = f"bench{uuid.uuid4().hex[:8]}.localhost"  # Synapse's Redis channel
        workers = topology.parse(topology.local_spec(TOPOLOGY, devstack_free_port), 0)
        registration = mcp_dev.write_registration_file(self.data_dir, server_name)
        port = devstack_free_port()
        config_path = devstack.prepare_synapse(
            self.data_dir,
            port=port,
            database=database,
            server_name=server_name,
            module_overrides=OVERRIDES["full"],
            extra_values={
                "app_service_config_files": [str(registration)],
                "replication": topology.replication_values(
                    workers, "127.0.0.1", devstack_free_port()
                ),
            },
        )
        config = yaml.safe_load(config_path.read_text())
        config["bcrypt_rounds"] = 4
        if CACHE_FACTOR:  # in homeserver.yaml, which every worker reads too
            config["caches"] = {"global_factor": CACHE_FACTOR["global"]}
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process = devstack.start_synapse(config_path)
        self.procs = [self.process]
        self.stack = SynapseStack(
            data_dir=self.data_dir,
            base_url=f"http://127.0.0.1:{port}",
            server_name=server_name,
            engine=database.engine,
            config_path=config_path,
            process=self.process,
            database=database,
        )
        self.client_urls: list[str] = []
        try:
            # Main prepares the schema before it listens; workers may start only then.
            devstack.wait_http(f"{self.stack.base_url}/_matrix/client/versions", self.procs, 120)
            for path, client_port in topology.prepare_local(
                self.data_dir, workers, devstack_free_port
            ).values():
                self.procs.append(devstack.start_worker(config_path, path))
                if client_port:
                    self.client_urls.append(f"http://127.0.0.1:{client_port}")
            for url in self.client_urls:
                devstack.wait_http(f"{url}/_matrix/client/versions", self.procs, 120)
            self.stack.wait_ready()  # the rooms, created by background1's rooms module
        except Exception:
            self.stop()
            raise
        self.senders: list[MatrixClient] = []
        self.reader: MatrixClient | None = None
        self.room_id = ""
        self.members = 0
        self.all_members: list[MatrixClient] = []
        self.blocks: dict[str, float] = {}  # bench_send.run_round adds Measure-block CPU here

    def on_worker(self, client: MatrixClient, i: int) -> MatrixClient:
        url = self.client_urls[i % len(self.client_urls)]
        return MatrixClient(url, client.user_id, client.access_token, client.password)

    def setup(self, senders: int) -> None:
        super().setup(senders)
        assert self.reader is not None
        self.reader = self.on_worker(self.reader, 0)

    def new_member(self, i: int) -> MatrixClient:
        return self.on_worker(self.stack.register(), i)  # registered by main

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        assert self.dsn is not None
        drop_postgres_database(self.dsn, self.stack.database.name)

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        db = self.stack.database
        conn = psycopg2.connect(host=db.host, port=db.port, dbname=db.name, user=db.user)
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                return list(cur.fetchall())
        finally:
            conn.close()


def processes(inst: Instance) -> dict[str, int]:
    """Process name -> pid for every process of ``inst``."""
    if isinstance(inst, Cluster):
        return {("main" if p.name == "synapse" else p.name): p.popen.pid for p in inst.procs}
    return {"main": inst.process.popen.pid}


def postgres_cpu(inst: Instance) -> float:
    """CPU seconds of the PostgreSQL backends serving ``inst``'s database right now.

    Synapse keeps its connections pooled, so the same backends live through a round; one
    opened or closed during the round is counted for the part it was seen (an estimate).
    """
    conn = psycopg2.connect(inst.dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (inst.stack.database.name,)
            )
            pids = [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # exited meanwhile
            total += cpu_seconds(pid)
    return total


def measure(inst: Instance, n: int) -> tuple[float, dict[str, float], list[float], float]:
    """(seconds, CPU seconds per process, latencies ms, PostgreSQL CPU s) of one round."""
    pids = processes(inst)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    pg_before = postgres_cpu(inst)
    seconds, _main_cpu, lat, _txns = run_round(inst, n)
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return seconds, cpu, lat, postgres_cpu(inst) - pg_before


def grow(instances: list[Instance], size: int) -> float:
    """Grow every instance to ``size`` members, in parallel; seconds taken."""
    t = time.perf_counter()
    errors: list[BaseException] = []

    def one(inst: Instance) -> None:
        try:
            inst.grow_to(size)
            run_round(inst, 30)  # settle caches at the new size
        except BaseException as err:  # reported below, in the main thread
            errors.append(err)

    threads = [threading.Thread(target=one, args=(inst,), daemon=True) for inst in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # a timed join lets Ctrl-C / SIGTERM reach the cleanup
            thread.join(1.0)
    if errors:
        raise errors[0]
    return time.perf_counter() - t


def report(
    size: int, built: float, instances: list[Instance], args: argparse.Namespace, data: Any
) -> dict[str, Any]:
    sent = args.messages * args.rounds
    base = instances[0].name
    row: dict[str, Any] = {"members": size, "built_s": built, "topologies": {}}
    print(
        f"{'topology':<16} {'msgs/s':>7} {'ratio':>6} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'CPU ms/msg':>10} {'PG ms/msg':>9}  per process ms/msg | per-round msgs/s"
    )
    for inst in instances:
        secs, cpu, lats, rounds, pg = data[inst.name]
        rate = sent / secs
        total = sum(cpu.values()) / sent * 1000
        split = " ".join(f"{k}={v / sent * 1000:.1f}" for k, v in cpu.items())
        per_round = " ".join(f"{r:.1f}" for r in rounds)
        ratio = rate / (sent / data[base][0])
        p50, p95 = pct(lats, 0.5), pct(lats, 0.95)
        print(
            f"{inst.name:<16} {rate:7.1f} {ratio:6.2f} {p50:7.0f} {p95:7.0f} {total:10.1f} "
            f"{pg / sent * 1000:9.1f}  {split} | {per_round}",
            flush=True,
        )
        row["topologies"][inst.name] = {
            "msgs_s": rate,
            "ratio": ratio,
            "p50_ms": p50,
            "p95_ms": p95,
            "cpu_ms": total,
            "cpu_ms_by_process": {k: v / sent * 1000 for k, v in cpu.items()},
            "postgres_cpu_ms": pg / sent * 1000,
            "rounds": rounds,
        }
    return row


def room_rule(inst: Instance) -> None:
    """Every member of ``inst``'s room: the room rule ``dont_notify`` (bench_send's
    mentions_only), written through main, Synapse's push_rules stream writer."""
    path = f"/_matrix/client/v3/pushrules/global/room/{quote(inst.room_id, safe='')}"
    with httpx2.Client(base_url=inst.stack.base_url, timeout=60) as http:

        def one(member: MatrixClient) -> None:
            auth = {"Authorization": f"Bearer {member.access_token}"}
            http.put(path, headers=auth, json={"actions": ["dont_notify"]}).raise_for_status()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, inst.all_members))


def measure_size(
    instances: list[Instance], size: int, built: float, args: argparse.Namespace
) -> None:
    """Alternating rounds at the current size; prints (and appends to --json) the result."""
    data: dict[str, Any] = {i.name: [0.0, {}, [], [], 0.0] for i in instances}
    for r in range(args.rounds):
        for inst in instances[r % 2 :] + instances[: r % 2]:
            s, cpu, lat, pg = measure(inst, args.messages)
            entry = data[inst.name]
            entry[0] += s
            for k, v in cpu.items():
                entry[1][k] = entry[1].get(k, 0.0) + v
            entry[2] += lat
            entry[3].append(args.messages / s)
            entry[4] += pg
    row = report(size, built, instances, args, data)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(row) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", metavar="DSN", required=True)
    parser.add_argument("--members", default="1,1000", help="room sizes, e.g. 1,1000,5000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=60, help="per round per topology")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", metavar="FILE", help="append results (one JSON line per size)")
    parser.add_argument(
        "--cache-factor", type=float, metavar="F", help="caches.global_factor in both"
    )
    parser.add_argument(
        "--then-mentions",
        action="store_true",
        help="after the largest size, every member mentions-only, and measure again",
    )
    args = parser.parse_args()
    if args.cache_factor:
        CACHE_FACTOR["global"] = args.cache_factor
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the Synapses on kill
    # Bench users are not Phenom-managed: the rooms module would also join every one of
    # them to #community, doubling what growing the room costs (the send path is the same).
    OVERRIDES["full"] = {ROOMS_MODULE: {"unmanaged_users": UNMANAGED}}
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} PostgreSQL "
        f"load={os.getloadavg()[0]:.1f} cmd: {' '.join(sys.argv)}",
        flush=True,
    )
    instances: list[Instance] = []
    try:
        instances.append(Instance("full", args.postgres))
        instances[0].name = "single"
        instances.append(Cluster(args.postgres))
        for inst in instances:
            inst.setup(args.concurrency)
            for _ in range(2):
                run_round(inst, 50)  # warm-up
        for size in (int(s) for s in args.members.split(",")):
            built = grow(instances, size)
            print(
                f"## members={size} (built in {built:.0f} s; "
                f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())})",
                flush=True,
            )
            measure_size(instances, size, built, args)
        if args.then_mentions:
            t = time.perf_counter()
            for inst in instances:
                inst.name += "-mentions"
                room_rule(inst)
                run_round(inst, 30)  # settle caches with the new rules
            print(f"## members={size}, every member mentions-only", flush=True)
            measure_size(instances, size, time.perf_counter() - t, args)
        cluster = instances[1]
        assert isinstance(cluster, Cluster)
        print(
            "events by writer:",
            cluster.sql("SELECT instance_name, count(*) FROM events GROUP BY 1"),
        )
        print(
            "rooms created by:",
            cluster.sql("SELECT DISTINCT split_part(owner, ':', 1) FROM phenom_room_claims"),
        )
    finally:
        for inst in instances:
            inst.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
