"""``phenom-chat dev-token``: an agent access token from the dev stack's local signer."""

from __future__ import annotations

import argparse

from synapse_phenom.cli._common import add_data_dir, fail


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dev-token", help="print a dev agent token (signed by the dev stack's local key)"
    )
    add_data_dir(p)
    p.add_argument(
        "--scopes", default="read,write,moderate", help="comma-separated: read,write,moderate"
    )
    p.add_argument("--client-id", help="app client id (default: the dev agent's)")
    p.add_argument(
        "--lifetime", type=int, default=3600, help="seconds until it expires (default 3600)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synapse_phenom.mcp.auth import SCOPE_NAMES
    from synapse_phenom.mcp.devkeys import DEV_CLIENT_ID, KEY_FILE, DevSigner

    data_dir = args.data_dir.resolve()
    if not (data_dir / KEY_FILE).exists():
        return fail(
            f"no dev signing key in {data_dir}: run `phenom-chat dev --data-dir {data_dir}` first"
        )
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPE_NAMES]
    if unknown:
        return fail(f"--scopes: unknown {', '.join(unknown)}; choose from {', '.join(SCOPE_NAMES)}")
    signer = DevSigner.load_or_create(data_dir)
    print(signer.token(args.client_id or DEV_CLIENT_ID, scopes, lifetime=args.lifetime))
    return 0
