"""``phenom-chat render-config``: production homeserver.yaml from PHENOM_* variables."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from synapse_phenom.cli._common import console, fail
from synapse_phenom.ops import hsconfig
from synapse_phenom.ops.files import write_private


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render-config",
        help="render homeserver.yaml (and log.yaml) from PHENOM_* environment variables",
        description="Variables:\n"
        + "\n".join(
            f"  {v.name}{'' if v.required else f' (default {v.default!r})'}: {v.help}"
            for v in hsconfig.ENV_VARS
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--output", "-o", type=Path, help="write homeserver.yaml here (default: stdout)")
    p.add_argument("--log-config", type=Path, help="write the log config here")
    p.add_argument(
        "--worker",
        metavar="NAME",
        help="render the config file of generic worker NAME instead (run it with "
        "-c homeserver.yaml -c NAME.yaml; needs PHENOM_REDIS_HOST and PHENOM_MAIN_HOST, see "
        "docs/deployment.md#workers)",
    )
    p.add_argument(
        "--worker-port", type=int, help="the worker's client listener port (default: PHENOM_PORT)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        values = hsconfig.values_from_env(os.environ)
        if args.worker:
            if not values["replication"]:
                return fail(
                    "--worker needs PHENOM_REDIS_HOST and PHENOM_MAIN_HOST (workers replicate "
                    "through Redis)"
                )
            hs_text, log_text = hsconfig.render_worker(
                args.worker,
                args.worker_port or values["port"],
                str(args.log_config or values["log_config_path"]),
                bind_address=values["bind_address"],
                resources=("client", "metrics")
                if values["metrics_on_main_listener"]
                else ("client",),
                x_forwarded=values["x_forwarded"],
                log_file=values["log_file"],
                console_log_level=values["console_log_level"],
            )
        else:
            hs_text, log_text = hsconfig.render(values)
    except hsconfig.MissingVariables as err:
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
