"""Worker settings of the rendered config: the ``replication`` template value (replication
listener, instance_map, Redis, the topology's keys) and each worker's own YAML file.

``topology`` turns ``PHENOM_WORKERS`` into the stream writers and listeners used here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from synapse_phenom.ops.env_vars import ENV_VARS, MissingVariables
from synapse_phenom.ops.hsconfig import template_env

# Main process name in instance_map (Synapse's default).
MAIN_INSTANCE = "main"
GENERIC_WORKER_APP = "synapse.app.generic_worker"


def replication_values(
    main_host: str,
    replication_port: int,
    redis_host: str = "127.0.0.1",
    redis_port: int = 6379,
    bind_address: str = "127.0.0.1",
    instances: Mapping[str, Mapping[str, Any]] | None = None,
    secret_path: str = "",
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``replication`` template value: set it to run Synapse with workers.

    Adds a replication listener on the main process (``bind_address:replication_port``),
    ``instance_map`` (``main`` at ``main_host:replication_port`` plus ``instances``, e.g.
    stream writers) and Redis. Without it the rendered config has no worker settings.
    ``settings``: further top-level keys (stream_writers, pusher_instances, ...; see
    ``topology.Topology.settings``).
    """
    instance_map: dict[str, Any] = {MAIN_INSTANCE: {"host": main_host, "port": replication_port}}
    instance_map.update({name: dict(where) for name, where in (instances or {}).items()})
    return {
        "port": replication_port,
        "bind_address": bind_address,
        "instance_map": instance_map,
        "redis_host": redis_host,
        "redis_port": redis_port,
        "secret_path": secret_path,
        "settings": dict(settings or {}),
    }


def render_worker(
    name: str,
    port: int,
    log_config_path: str,
    bind_address: str = "127.0.0.1",
    resources: tuple[str, ...] = ("client",),
    app: str = GENERIC_WORKER_APP,
    x_forwarded: bool = False,
    log_file: str = "",
    console_log_level: str = "INFO",
    extra_listeners: Sequence[Mapping[str, Any]] = (),
) -> tuple[str, str]:
    """(worker.yaml, its log.yaml) text; Synapse reads worker.yaml after the shared
    homeserver.yaml. No ``resources``: no client listener; ``extra_listeners``: dicts of
    port, bind_address, type (http|metrics), names (see ``topology.listeners``)."""
    env = template_env()
    listeners: list[Mapping[str, Any]] = []
    if resources:
        listeners.append(
            {
                "port": port,
                "bind_address": bind_address,
                "type": "http",
                "names": list(resources),
                "x_forwarded": x_forwarded,
            }
        )
    listeners += extra_listeners
    text = env.get_template("worker.yaml.j2").render(
        worker_app=app,
        worker_name=name,
        worker_log_config=log_config_path,
        worker_listeners=listeners,
    )
    log = env.get_template("log.yaml.j2").render(
        profile=f"worker {name}", console_log_level=console_log_level, log_file=log_file
    )
    yaml.safe_load(text)  # a template bug must fail here, not in Synapse
    return text, log


def replication_from_env(get: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``replication`` value, or None (no workers) when PHENOM_REDIS_HOST is unset."""
    from synapse_phenom.ops import topology  # it imports this module

    workers = topology.from_env(get)
    if not get["PHENOM_REDIS_HOST"]:
        return None
    if not get["PHENOM_MAIN_HOST"]:
        raise MissingVariables([v for v in ENV_VARS if v.name == "PHENOM_MAIN_HOST"])
    return topology.replication_values(
        workers,
        get["PHENOM_MAIN_HOST"],
        int(get["PHENOM_REPLICATION_PORT"]),
        redis_host=get["PHENOM_REDIS_HOST"],
        redis_port=int(get["PHENOM_REDIS_PORT"]),
        bind_address=get["PHENOM_REPLICATION_BIND_ADDRESS"],
        secret_path=get["PHENOM_REPLICATION_SECRET_FILE"],
    )
