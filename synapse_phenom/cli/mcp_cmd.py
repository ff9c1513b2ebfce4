"""``phenom-chat mcp`` (the MCP sidecar) and ``phenom-chat mcp-registration``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from synapse_phenom.cli._common import console, fail
from synapse_phenom.config import InvalidConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mcp", help="run the MCP server for AI agents (see docs/mcp.md)")
    p.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("PHENOM_MCP_CONFIG"),
        help="MCP config YAML (default: $PHENOM_MCP_CONFIG); BACKEND_TYPE overrides its backend",
    )
    p.add_argument("--host", help="address to bind (overrides the config)")
    p.add_argument("--port", type=int, help="port (overrides the config; default 3001)")
    p.set_defaults(func=run)

    r = sub.add_parser(
        "mcp-registration",
        help="write the application service registration Synapse loads for the MCP server",
    )
    r.add_argument(
        "--output", type=Path, required=True, help="registration YAML to create (kept if it exists)"
    )
    r.add_argument(
        "--server-name", required=True, help="Matrix server name, e.g. chat.thephenom.app"
    )
    r.add_argument(
        "--agent-prefix", default="agent-", help="localpart prefix of agent users (default agent-)"
    )
    r.set_defaults(func=run_registration)


def run(args: argparse.Namespace) -> int:
    from synapse_phenom.mcp.config import load_config
    from synapse_phenom.mcp.server import serve

    if args.config is None:
        return fail("pass --config FILE or set PHENOM_MCP_CONFIG (see docs/mcp.md)")
    try:
        config = load_config(Path(args.config), os.environ)
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        if overrides:
            config = config.model_copy(update=overrides)
        serve(config)
    except InvalidConfig as err:
        return fail(str(err))
    except NotImplementedError as err:
        return fail(str(err))
    return 0


def run_registration(args: argparse.Namespace) -> int:
    from synapse_phenom.mcp.appservice import write_registration

    if write_registration(args.output, args.server_name, args.agent_prefix):
        console.print(
            f"wrote {args.output}; add it to Synapse's app_service_config_files "
            "(PHENOM_APPSERVICE_FILES)"
        )
    else:
        console.print(f"{args.output} exists; kept it (its tokens are in use)")
    return 0
