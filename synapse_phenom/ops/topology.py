"""A Synapse worker topology: which worker does what, for ``homeserver.yaml`` and each worker.

One spec describes the whole deployment (``PHENOM_WORKERS``, comma-separated entries)::

    NAME:ROLE[+ROLE...][@HOST[:PORT]]
    persister1:events,pusher1:pusher,background1:background,client1:client,client2:client

``HOST:PORT`` is where the other processes reach a stream writer's replication listener
(default: the worker's name as host name, as container service discovery gives it, and
``PHENOM_REPLICATION_PORT``). Every process renders the same ``homeserver.yaml`` from the
same spec, so they cannot disagree on who writes which stream. Roles: ``ROLES``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from synapse_phenom.ops import replication

ENV_KEY = "PHENOM_WORKERS"

# Stream writers Synapse lets a worker take over (synapse/config/workers.py, WriterLocations).
# `events` is written by event persisters; the others are also client endpoints
# (e.g. PUT /typing) that the load balancer must route to their writer.
STREAMS = ("events", "typing", "to_device", "account_data", "receipts", "presence", "push_rules")
ROLES: dict[str, str] = {
    "client": "serves the client API (route /_matrix/client/... to it)",
    "events": "event persister: the events stream writer (several shard by room)",
    "typing": "typing stream writer (route /typing to it)",
    "to_device": "to-device stream writer (route /sendToDevice to it)",
    "account_data": "account-data stream writer (route /account_data and /tags to it)",
    "receipts": "receipts stream writer (route /receipt and /read_markers to it)",
    "presence": "presence stream writer (route /presence to it)",
    "push_rules": "push-rules stream writer (route /pushrules to it); Phenom's mentions-only "
    "defaults are written there",
    "pusher": "sends push notifications (pusher_instances)",
    "background": "background tasks, incl. Phenom's room creation and cleanups, and the "
    "user directory (run_background_tasks_on, update_user_directory_from_worker)",
}
# Synapse accepts exactly one instance for these (and one background-task instance).
SINGLE = frozenset({"typing", "to_device", "account_data", "presence", "push_rules", "background"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class TopologyError(ValueError):
    """A bad topology spec; the message names the key and the entry."""


@attrs.frozen
class Worker:
    name: str
    roles: tuple[str, ...]
    host: str  # where the others reach its replication listener (stream writers only)
    replication_port: int

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(r for r in self.roles if r in STREAMS)

    @property
    def serves_client(self) -> bool:
        """A client listener: the client role, or a stream whose endpoints clients call."""
        return "client" in self.roles or any(s != "events" for s in self.streams)


@attrs.frozen
class Topology:
    workers: tuple[Worker, ...]

    def get(self, name: str) -> Worker | None:
        return next((w for w in self.workers if w.name == name), None)

    def with_role(self, role: str) -> list[str]:
        return [w.name for w in self.workers if role in w.roles]

    def instances(self) -> dict[str, dict[str, Any]]:
        """``instance_map`` entries besides main: every stream writer (Synapse requires it)."""
        return {
            w.name: {"host": w.host, "port": w.replication_port} for w in self.workers if w.streams
        }

    def settings(self) -> dict[str, Any]:
        """The homeserver.yaml keys that hand work from main to the workers."""
        out: dict[str, Any] = {}
        writers = {s: self.with_role(s) for s in STREAMS if self.with_role(s)}
        if writers:
            out["stream_writers"] = writers
        if self.with_role("pusher"):
            out["pusher_instances"] = self.with_role("pusher")
        background = self.with_role("background")
        if background:
            out["run_background_tasks_on"] = background[0]
            out["update_user_directory_from_worker"] = background[0]
        # notify_appservices_from_worker stays as hsconfig renders it (nobody, when every
        # registration is pull-only); media (and media_instance_running_background_jobs)
        # stays on main, which serves /_matrix/media and the shared media store.
        return out


def parse(spec: str, default_port: int, key: str = ENV_KEY) -> Topology:
    """The topology in ``spec``; ``TopologyError`` names ``key`` and the bad entry."""
    workers: list[Worker] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        workers.append(_parse_entry(entry, default_port, key))
    if not workers:
        raise TopologyError(f"{key}: no workers in {spec!r}")
    names = [w.name for w in workers]
    for name in names:
        if names.count(name) > 1:
            raise TopologyError(f"{key}: worker {name!r} is named twice")
    topology = Topology(tuple(workers))
    for role in SINGLE:
        holders = topology.with_role(role)
        if len(holders) > 1:
            raise TopologyError(
                f"{key}: role {role!r} can have one worker only (Synapse), not {holders}"
            )
    return topology


def _parse_entry(entry: str, default_port: int, key: str) -> Worker:
    name, sep, rest = entry.partition(":")
    if not sep or not rest:
        raise TopologyError(f"{key}: entry {entry!r} is not NAME:ROLE[+ROLE...][@HOST[:PORT]]")
    if not _NAME.match(name) or name == replication.MAIN_INSTANCE:
        raise TopologyError(
            f"{key}: entry {entry!r}: bad worker name {name!r} (letters, digits, _ and -; "
            f"{replication.MAIN_INSTANCE!r} is the main process)"
        )
    roles_text, _, where = rest.partition("@")
    roles = tuple(r.strip() for r in roles_text.split("+") if r.strip())
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise TopologyError(
            f"{key}: entry {entry!r}: unknown role {', '.join(unknown) or '(none)'}; "
            f"known: {', '.join(ROLES)}"
        )
    host, port = name, default_port
    if where:
        host, _, port_text = where.partition(":")
        if port_text:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise TopologyError(f"{key}: entry {entry!r}: bad port {port_text!r}")
            port = int(port_text)
        if not host:
            raise TopologyError(f"{key}: entry {entry!r}: empty host after '@'")
    return Worker(name=name, roles=tuple(dict.fromkeys(roles)), host=host, replication_port=port)


def replication_values(
    topology: Topology | None,
    main_host: str,
    replication_port: int,
    **kwargs: Any,
) -> dict[str, Any]:
    """``replication.replication_values`` plus the topology's instance_map entries and keys."""
    if topology is None:
        return replication.replication_values(main_host, replication_port, **kwargs)
    return replication.replication_values(
        main_host,
        replication_port,
        instances=topology.instances(),
        settings=topology.settings(),
        **kwargs,
    )


def listeners(
    worker: Worker,
    client_port: int,
    bind_address: str,
    replication_bind_address: str,
    metrics: tuple[str, int] | None = None,
) -> tuple[tuple[str, ...], list[Mapping[str, Any]]]:
    """(client listener resources, other listeners) of ``worker`` for ``render_worker``.

    Stream writers get an HTTP replication listener on their instance_map port; a worker
    that serves no client endpoint gets no client listener.
    """
    resources: tuple[str, ...] = ("client",) if worker.serves_client else ()
    extra: list[Mapping[str, Any]] = []
    if worker.streams:
        extra.append(
            {
                "port": worker.replication_port,
                "bind_address": replication_bind_address,
                "type": "http",
                "names": ["replication"],
            }
        )
    if metrics is not None:
        extra.append({"port": metrics[1], "bind_address": metrics[0], "type": "metrics"})
    if worker.streams and worker.replication_port == client_port and resources:
        raise TopologyError(
            f"{ENV_KEY}: worker {worker.name!r}: its client port and replication port are "
            f"both {client_port}"
        )
    return resources, extra


def from_env(get: Mapping[str, str]) -> Topology | None:
    """The topology of PHENOM_WORKERS (None when unset); it needs PHENOM_REDIS_HOST."""
    spec = get.get(ENV_KEY) or ""
    if not spec:
        return None
    if not get.get("PHENOM_REDIS_HOST"):
        raise TopologyError(
            f"{ENV_KEY} needs PHENOM_REDIS_HOST and PHENOM_MAIN_HOST (workers replicate "
            "through Redis)"
        )
    return parse(spec, int(get.get("PHENOM_REPLICATION_PORT") or 9093))


def local_spec(entries: Mapping[str, str], free_port: Callable[[], int]) -> str:
    """A one-machine spec: NAME -> roles, each stream writer on 127.0.0.1 and a free port."""
    parts = []
    for name, roles in entries.items():
        where = f"@127.0.0.1:{free_port()}" if set(roles.split("+")) & set(STREAMS) else ""
        parts.append(f"{name}:{roles}{where}")
    return ",".join(parts)


def prepare_local(
    data_dir: Path, workers: Topology, free_port: Callable[[], int]
) -> dict[str, tuple[Path, int | None]]:
    """Write every worker's file for one machine (dev stack, tests, benchmarks).

    Returns NAME -> (its config file, its client port or None).
    """
    from synapse_phenom.ops import devstack

    out: dict[str, tuple[Path, int | None]] = {}
    for worker in workers.workers:
        port = free_port() if worker.serves_client else None
        resources, extra = listeners(worker, port or 0, "127.0.0.1", "127.0.0.1")
        path = devstack.prepare_worker(
            data_dir, worker.name, port or 0, resources=resources, extra_listeners=tuple(extra)
        )
        out[worker.name] = (path, port)
    return out
