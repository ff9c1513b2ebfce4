"""``phenom-chat sso-login``: sign a test user in through the dev stack's Cognito hosted UI."""

from __future__ import annotations

import argparse
import json

from synapse_phenom.cli._common import add_data_dir, fail


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sso-login",
        help="run the app's SSO sign-in against `phenom-chat dev --sso`; print the Matrix session",
    )
    add_data_dir(p)
    p.add_argument("--email", required=True, help="a Cognito test user, e.g. alice@example.com")
    p.add_argument("--password", help="default: the dev stack's test password")
    p.add_argument("--device-name", default="phenom-chat sso-login", help="Matrix device name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from synapse_phenom.ops import dev_sso, sso_flow
    from synapse_phenom.ops.cognito_emulator import EmulatorError
    from synapse_phenom.ops.devstack import StackError, base_url_of

    config_path = args.data_dir.resolve() / "homeserver.yaml"
    if not (args.data_dir / dev_sso.STATE_FILE).exists() or not config_path.exists():
        return fail(f"no SSO dev stack in {args.data_dir}: run `phenom-chat dev --sso` first")
    public = str(yaml.safe_load(config_path.read_text())["public_baseurl"]).rstrip("/")
    try:
        result = sso_flow.sso_login(
            base_url_of(config_path),
            args.email,
            args.password or dev_sso.DEV_PASSWORD,
            public_url=public,
            device_name=args.device_name,
        )
    except sso_flow.SsoRefused as err:
        return fail(f"Synapse refused the sign-in: {err}", code=1)
    except (EmulatorError, StackError, OSError) as err:
        return fail(f"sign-in failed: {err}", code=1)
    login = result.login
    print(
        json.dumps(
            {
                "homeserver": public,
                "user_id": login["user_id"],
                "access_token": login["access_token"],
                "device_id": login["device_id"],
            },
            indent=2,
        )
    )
    return 0
