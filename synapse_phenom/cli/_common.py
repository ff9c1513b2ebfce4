"""Bits shared by the CLI commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

console = Console()
err_console = Console(stderr=True)

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
