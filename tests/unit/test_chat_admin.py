"""Synapse Admin UI config (deploy/chat-admin): written at container start, pinned to this HS."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "chat-admin" / "40-phenom-config.sh"


def render(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "config.json"
    return subprocess.run(
        ["sh", str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "PHENOM_ADMIN_UI_CONFIG": str(out), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_config_restricts_the_ui_to_this_homeserver(tmp_path: Path) -> None:
    done = render(
        tmp_path,
        PHENOM_PUBLIC_BASEURL="https://chat.thephenom.app/",
        PHENOM_SERVER_NAME="chat.thephenom.app",
    )
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["restrictBaseUrl"] == "https://chat.thephenom.app"
    assert config["externalAuthProvider"] is True  # Cognito SSO: no password changes in the UI
    patterns = [re.compile(p) for p in config["asManagedUsers"]]
    for protected in (
        "@phenom:chat.thephenom.app",
        "@phenom-mcp:chat.thephenom.app",
        "@agent-helper:chat.thephenom.app",
    ):
        assert any(p.search(protected) for p in patterns), protected
    assert not any(p.search("@alice:chat.thephenom.app") for p in patterns)
    assert not any(p.search("@phenom:chatXthephenom.app") for p in patterns)  # dots are escaped


def test_missing_settings_fail_the_start(tmp_path: Path) -> None:
    done = render(tmp_path, PHENOM_SERVER_NAME="chat.thephenom.app")
    assert done.returncode != 0 and "PHENOM_PUBLIC_BASEURL" in done.stderr
    assert not (tmp_path / "config.json").exists()


def test_nginx_serves_the_ui_under_chat_admin() -> None:
    conf = (ROOT / "deploy" / "chat-admin" / "nginx.conf").read_text()
    assert "location /chat-admin/" in conf and "try_files $uri $uri/ /chat-admin/index.html" in conf
    dockerfile = (ROOT / "docker" / "Dockerfile.chat-admin").read_text()
    assert "etkecc/synapse-admin" in dockerfile and "/usr/share/nginx/html/chat-admin" in dockerfile
