"""``phenom-chat render-config``: production homeserver.yaml from PHENOM_* variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synapse_phenom.cli._common import console, fail
from synapse_phenom.ops import env_vars, hsconfig, replication, topology
from synapse_phenom.ops.files import write_private


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render-config",
        help="render homeserver.yaml (and log.yaml) from PHENOM_* environment variables",
        description="Variables:\n"
        + "\n".join(
            f"  {v.name}{'' if v.required else f' (default {v.default!r})'}: {v.help}"
            for v in env_vars.ENV_VARS
        )
        + "\n\nPHENOM_WORKERS roles (NAME:ROLE[+ROLE...][@HOST[:PORT]], comma-separated):\n"
        + "\n".join(f"  {role}: {help}" for role, help in topology.ROLES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--output", "-o", type=Path, help="write homeserver.yaml here (default: stdout)")
    p.add_argument("--log-config", type=Path, help="write the log config here")
    p.add_argument(
        "--worker",
        metavar="NAME",
        help="render the config file of worker NAME instead (run it with -c homeserver.yaml "
        "-c NAME.yaml; needs PHENOM_REDIS_HOST and PHENOM_MAIN_HOST; with PHENOM_WORKERS, NAME "
        "must be one of its workers and gets the listeners of its roles; see "
        "docs/deployment.md#workers)",
    )
    p.add_argument(
        "--worker-port", type=int, help="the worker's client listener port (default: PHENOM_PORT)"
    )
    p.add_argument(
        "--worker-dir",
        type=Path,
        metavar="DIR",
        help="render DIR/NAME.yaml for every worker of PHENOM_WORKERS (client port PHENOM_PORT)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        values = hsconfig.values_from_env(os.environ)
        get = {v.name: os.environ.get(v.name) or v.default or "" for v in env_vars.ENV_VARS}
        workers = topology.from_env(get)
        if (args.worker or args.worker_dir) and not values["replication"]:
            return fail(
                "--worker and --worker-dir need PHENOM_REDIS_HOST and PHENOM_MAIN_HOST (workers "
                "replicate through Redis)"
            )
        if args.worker_dir:
            if workers is None:
                return fail("--worker-dir needs PHENOM_WORKERS (the workers to render)")
            args.worker_dir.mkdir(parents=True, exist_ok=True)
            for worker in workers.workers:
                text, _ = _worker_file(values, get, workers, worker.name, None, args.log_config)
                write_private(args.worker_dir / f"{worker.name}.yaml", text)
            console.print(
                f"wrote {len(workers.workers)} worker files to {args.worker_dir}", style="green"
            )
            return 0
        if args.worker:
            hs_text, log_text = _worker_file(
                values, get, workers, args.worker, args.worker_port, args.log_config
            )
        else:
            hs_text, log_text = hsconfig.render(values)
    except env_vars.MissingVariables as err:
        return fail(str(err))
    except (OSError, ValueError) as err:
        return fail(f"cannot render config: {err}")
    if args.output:
        write_private(args.output, hs_text)  # may hold the database password
        console.print(f"wrote {args.output}", style="green")
    else:
        print(hs_text, end="")
    if args.log_config:
        args.log_config.write_text(log_text)
    return 0


def _worker_file(
    values: Mapping[str, Any],
    get: Mapping[str, str],
    workers: topology.Topology | None,
    name: str,
    port: int | None,
    log_config: Path | None,
) -> tuple[str, str]:
    """(NAME.yaml, its log config): a client worker, or NAME's roles in PHENOM_WORKERS."""
    client_port = port or int(values["port"])
    resources: tuple[str, ...] = (
        ("client", "metrics") if values["metrics_on_main_listener"] else ("client",)
    )
    extra: list[Mapping[str, Any]] = []
    if workers is not None:
        worker = workers.get(name)
        if worker is None:
            names = ", ".join(w.name for w in workers.workers)
            raise ValueError(f"PHENOM_WORKERS has no worker {name!r} (it has: {names})")
        metrics = values["metrics_port"]
        resources, extra = topology.listeners(
            worker,
            client_port,
            values["bind_address"],
            get["PHENOM_REPLICATION_BIND_ADDRESS"],
            metrics=(values["metrics_bind_address"], metrics) if metrics else None,
        )
    return replication.render_worker(
        name,
        client_port,
        str(log_config or values["log_config_path"]),
        bind_address=values["bind_address"],
        resources=resources,
        x_forwarded=values["x_forwarded"],
        log_file=values["log_file"],
        console_log_level=values["console_log_level"],
        extra_listeners=extra,
    )
