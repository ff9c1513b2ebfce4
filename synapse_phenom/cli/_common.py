"""Bits shared by the CLI commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from rich.console import Console


def _console(stream: TextIO, stderr: bool = False) -> Console:
    """A rich console; into a pipe or file (logs, CI, a script) it never wraps lines, so
    printed commands and paths stay copy-pasteable whatever COLUMNS says."""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if terminal:
        return Console(stderr=stderr)
    return Console(stderr=stderr, soft_wrap=True, width=10_000)


console = _console(sys.stdout)
err_console = _console(sys.stderr, stderr=True)

DEFAULT_DATA_DIR = Path(".phenom-dev")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="dev stack directory (default: ./.phenom-dev)",
    )


def fail(message: str, code: int = 2) -> int:
    err_console.print(f"[bold red]error:[/] {message}")
    return code


def add_admin_target(parser: argparse.ArgumentParser) -> None:
    """--data-dir, --homeserver and --admin-token-env: how a command reaches Synapse as an admin."""
    add_data_dir(parser)
    parser.add_argument("--homeserver", help="base URL (default: from DIR/homeserver.yaml)")
    parser.add_argument(
        "--admin-token-env",
        default="PHENOM_ADMIN_TOKEN",
        help="env var holding an admin token (default PHENOM_ADMIN_TOKEN; "
        "without it the dev admin user of DIR is used)",
    )


class CliError(Exception):
    """A failure the command reports as ``error: <message>`` (exit code 2)."""


def admin_target(args: argparse.Namespace) -> tuple[str, str]:
    """(homeserver base URL, admin access token) for a command with ``add_admin_target``.

    The URL comes from --homeserver or DIR/homeserver.yaml; the token from
    $<--admin-token-env>, else the dev admin user of DIR (created on first use).
    """
    import os

    from synapse_phenom.ops import devstack

    config_path = args.data_dir / "homeserver.yaml"
    if args.homeserver:
        base_url = str(args.homeserver).rstrip("/")
    elif config_path.exists():
        base_url = devstack.base_url_of(config_path)
    else:
        raise CliError(
            f"{config_path} not found: pass --data-dir of a dev stack or --homeserver URL"
        )
    token = os.environ.get(args.admin_token_env)
    if token:
        return base_url, token
    if not config_path.exists():
        raise CliError(f"set {args.admin_token_env} to an admin access token")
    try:
        return base_url, devstack.ensure_admin_token(args.data_dir.resolve(), base_url)
    except (OSError, devstack.StackError) as err:
        raise CliError(f"cannot reach the homeserver at {base_url}: {err}") from None
