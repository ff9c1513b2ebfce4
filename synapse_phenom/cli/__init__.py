"""``phenom-chat``: the dev stack, config rendering and operator commands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from synapse_phenom.cli import (
    admin_cmd,
    config_cmd,
    dev_cmd,
    dev_token_cmd,
    doctor_cmd,
    lite_cmd,
    mcp_cmd,
    moderation_cmd,
    provision_cmd,
    reconcile_cmd,
    sso_login_cmd,
)

# Each command module offers add_parser(subparsers) and sets func on its parser.
COMMANDS = [
    dev_cmd,
    config_cmd,
    provision_cmd,
    reconcile_cmd,
    moderation_cmd,
    admin_cmd,
    doctor_cmd,
    mcp_cmd,
    dev_token_cmd,
    sso_login_cmd,
    lite_cmd,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phenom-chat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
