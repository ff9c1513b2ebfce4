"""``phenom-chat render-config``: production homeserver.yaml from PHENOM_* variables."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from synapse_phenom import hsconfig
from synapse_phenom.cli._common import console, fail


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        values = hsconfig.values_from_env(os.environ)
        hs_text, log_text = hsconfig.render(values)
    except hsconfig.MissingVariables as err:
        return fail(str(err))
    except (OSError, ValueError) as err:
        return fail(f"cannot render config: {err}")
    if args.output:
        args.output.write_text(hs_text)
        args.output.chmod(0o600)
        console.print(f"wrote {args.output}", style="green")
    else:
        print(hs_text, end="")
    if args.log_config:
        args.log_config.write_text(log_text)
    return 0
