"""``phenom-chat doctor``: pass/fail table of a deployment's health, each failure with its fix.

Dev: ``phenom-chat doctor --data-dir .phenom-dev``. Production: ``phenom-chat doctor
--from-env --mcp-config /config/mcp.yaml --homeserver http://synapse:8008`` with the
``PHENOM_*`` environment of the Synapse task and ``PHENOM_ADMIN_TOKEN``. Exit code 1 when
any check fails (warnings and skips do not count).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from synapse_phenom.cli._common import add_data_dir, console, fail
from synapse_phenom.ops import devstack, hsconfig
from synapse_phenom.ops.doctor import FAIL, Target, run_checks

_STYLE = {
    "pass": "[green]PASS[/]",
    "fail": "[bold red]FAIL[/]",
    "warn": "[yellow]WARN[/]",
    "skip": "[dim]SKIP[/]",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check a deployment (dev or production) and say what to fix")
    add_data_dir(p)
    p.add_argument(
        "--config", type=Path, help="rendered homeserver.yaml (default: DIR/homeserver.yaml)"
    )
    p.add_argument(
        "--from-env",
        action="store_true",
        help="production: render the config from PHENOM_* and check that",
    )
    p.add_argument(
        "--production",
        action="store_true",
        help="production rules (no SQLite; unreachable origins fail)",
    )
    p.add_argument("--homeserver", help="Synapse base URL (default: from the config's listener)")
    p.add_argument(
        "--mcp-config", type=Path, help="mcp.yaml (default: DIR/mcp.yaml when it exists)"
    )
    p.add_argument("--mcp-url", help="MCP base URL (default: from the MCP config's host and port)")
    p.add_argument(
        "--token-file",
        type=Path,
        help="file with an admin access token (else $PHENOM_ADMIN_TOKEN, else the dev admin)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _mcp_url(mcp: dict[str, Any] | None) -> str | None:
    if not mcp:
        return None
    host = str(mcp.get("host", "127.0.0.1"))
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{int(mcp.get('port', 3001))}"


def _admin_token(args: argparse.Namespace, base_url: str, dev_dir: Path | None) -> str | None:
    if args.token_file:
        return args.token_file.read_text().strip() or None
    if os.environ.get("PHENOM_ADMIN_TOKEN"):
        return os.environ["PHENOM_ADMIN_TOKEN"]
    if dev_dir is not None:
        try:
            return devstack.ensure_admin_token(dev_dir.resolve(), base_url)
        except Exception:
            return None  # Synapse down: the homeserver check says so
    return None


def run(args: argparse.Namespace) -> int:
    env = None
    dev_dir: Path | None = None
    if args.from_env:
        env = dict(os.environ)
        try:
            text, _ = hsconfig.render(hsconfig.values_from_env(env))
        except (ValueError, OSError) as err:
            return fail(f"config does not render: {err}", code=1)
        config = yaml.safe_load(text)
        config_path = None
    else:
        config_path = args.config or args.data_dir / "homeserver.yaml"
        try:
            config = yaml.safe_load(config_path.read_text())
        except (OSError, yaml.YAMLError) as err:
            return fail(
                f"config renders: cannot read {config_path}: {err} (dev: run phenom-chat dev "
                "first)",
                code=1,
            )
        if args.config is None:
            dev_dir = args.data_dir
    if args.homeserver:
        base_url = args.homeserver.rstrip("/")
    elif config_path is not None:
        base_url = devstack.base_url_of(config_path)
    else:
        listener = next(x for x in config["listeners"] if x.get("type") == "http")
        base_url = f"http://127.0.0.1:{listener['port']}"
    mcp_path = args.mcp_config or (dev_dir / "mcp.yaml" if dev_dir is not None else None)
    mcp = None
    if mcp_path is not None and (args.mcp_config or mcp_path.exists()):
        try:
            mcp = yaml.safe_load(mcp_path.read_text())
        except (OSError, yaml.YAMLError) as err:
            return fail(f"--mcp-config: {err}", code=1)
    target = Target(
        config=config,
        base_url=base_url,
        admin_token=_admin_token(args, base_url, dev_dir),
        production=args.production or args.from_env,
        mcp_config=mcp,
        mcp_url=args.mcp_url or _mcp_url(mcp),
        env=env,
    )
    results = run_checks(target)
    failed = [r for r in results if r.status == FAIL]
    if args.json:
        console.print_json(
            json.dumps(
                [
                    {"check": r.name, "status": r.status, "detail": r.detail, "fix": r.fix}
                    for r in results
                ]
            )
        )
    else:
        table = Table(
            title=f"phenom-chat doctor: {base_url} ({'production' if target.production else 'dev'})"
        )
        for col in ("check", "result", "detail", "fix"):
            table.add_column(col, overflow="fold")
        for r in results:
            table.add_row(
                r.name, _STYLE[r.status], r.detail, r.fix if r.status in ("fail", "warn") else ""
            )
        console.print(table)
        console.print(f"{len(failed)} failed, {sum(r.status == 'pass' for r in results)} passed")
    return 1 if failed else 0
