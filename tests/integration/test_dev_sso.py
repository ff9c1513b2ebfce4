"""`phenom-chat dev --sso`: the whole Cognito sign-in on one machine, offline (issue 16, item 3)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import yaml
from harness import free_port, read_banner, spawn_dev

from synapse_phenom.ops import dev_sso, sso_flow
from synapse_phenom.ops.cognito_emulator import EmulatorError

BIN = Path(sys.executable).parent / "phenom-chat"


def start(data_dir: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = spawn_dev(data_dir, *args, columns=250)
    return proc, read_banner(proc, timeout=180)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    assert proc.returncode == 0


def sign_in(port: int, public: str, email: str) -> dict[str, object]:
    return sso_flow.sso_login(
        f"http://127.0.0.1:{port}", email, dev_sso.DEV_PASSWORD, public_url=public
    ).login


def test_dev_sso_signs_in_test_users_through_the_hosted_ui(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    port, cognito_port = free_port(), free_port()
    public = f"http://127.0.0.1:{port}"
    args = ("--port", str(port), "--sso", "--cognito-port", str(cognito_port))
    proc, banner = start(data_dir, *args, "--public-url", public)
    try:
        # The banner names the test users, their password and groups, and the SSO URL.
        for email, _groups, _name in dev_sso.DEV_USERS:
            assert email in banner
        assert dev_sso.DEV_PASSWORD in banner
        sso_url = (
            f"{public}/_matrix/client/v3/login/sso/redirect/oidc-cognito"
            "?redirectUrl=phenom%3A%2F%2Fauth"
        )
        assert sso_url in banner.replace("\n", "")
        config = yaml.safe_load((data_dir / "homeserver.yaml").read_text())
        assert config["public_baseurl"] == f"{public}/"  # follows --public-url

        login = sign_in(port, public, "alice@example.com")
        assert login["user_id"] == "@alice:localhost"
        headers = {"Authorization": f"Bearer {login['access_token']}"}
        joined = httpx2.get(f"{public}/_matrix/client/v3/joined_rooms", headers=headers, timeout=10)
        assert len(joined.json()["joined_rooms"]) == 3  # alice is in `team`
        assert "sso-login --data-dir" in banner
        # From the command line, as the banner says:
        cli = subprocess.run(
            [str(BIN), "sso-login", "--data-dir", str(data_dir), "--email", "bob@example.com"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        bob = json.loads(cli.stdout)
        assert bob["user_id"] == "@bob:localhost" and bob["homeserver"] == public
        headers = {"Authorization": f"Bearer {bob['access_token']}"}
        joined = httpx2.get(f"{public}/_matrix/client/v3/joined_rooms", headers=headers, timeout=10)
        assert len(joined.json()["joined_rooms"]) == 2  # partners: Partners + Community
        carol = sign_in(port, public, "carol@example.com")
        headers = {"Authorization": f"Bearer {carol['access_token']}"}
        joined = httpx2.get(f"{public}/_matrix/client/v3/joined_rooms", headers=headers, timeout=10)
        assert len(joined.json()["joined_rooms"]) == 1  # no group: Community only
        with pytest.raises(EmulatorError, match="sign-in failed"):
            sso_flow.sso_login(
                f"http://127.0.0.1:{port}", "alice@example.com", "wrong-1A", public_url=public
            )
    finally:
        stop(proc)

    # Next run: same pool, same users, same sub, so the same Matrix account.
    proc, banner = start(data_dir, *args, "--public-url", public)
    try:
        assert sign_in(port, public, "alice@example.com")["user_id"] == "@alice:localhost"
    finally:
        stop(proc)


def test_public_url_follows_host() -> None:
    lan = dev_sso.lan_address()
    assert dev_sso.public_base_url("0.0.0.0", 8008) == f"http://{lan}:8008/"
    assert dev_sso.public_base_url("127.0.0.1", 8008) == "http://localhost:8008/"
    assert dev_sso.public_base_url("192.168.1.20", 8008) == "http://192.168.1.20:8008/"
    assert dev_sso.public_base_url("::1", 8008) == "http://[::1]:8008/"
    assert (
        dev_sso.public_base_url("0.0.0.0", 8008, "https://dev.example/") == "https://dev.example/"
    )
    with pytest.raises(ValueError, match="not an http"):
        dev_sso.public_base_url("0.0.0.0", 8008, "phone.local:8008")
