"""`phenom-chat dev --content-origin`: Phenom links previewed from a local copy of the site."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import yaml
from harness import free_port, start_dev_command, unique
from previews_site import PhenomSite

from synapse_phenom.moderation.config import ModerationConfig
from synapse_phenom.ops import devstack, hsconfig
from synapse_phenom.ops.admin_client import SynapseAdmin
from synapse_phenom.previews.config import LinkPreviewConfig

BIN = Path(sys.executable).parent / "phenom-chat"


def test_content_origin_overrides_are_valid_module_config() -> None:
    overrides = hsconfig.content_origin_overrides("http://127.0.0.1:3000/")
    config = LinkPreviewConfig.model_validate(overrides[hsconfig.LINK_PREVIEW_MODULE])
    by_url = {o.url: o for o in config.origins}
    assert by_url["https://thephenom.app"].fetch_from == "http://127.0.0.1:3000"
    assert all(o.trusted for o in config.origins)
    assert "http://127.0.0.1:3000" in by_url
    # Links to the local copy pass Community's link rule too (it allows Phenom links only).
    moderation = ModerationConfig.model_validate(overrides[hsconfig.MODERATION_MODULE])
    community = moderation.policies["community"].links
    assert community.mode == "allow" and {"thephenom.app", "127.0.0.1"} <= set(community.domains)
    with pytest.raises(ValueError, match="origin only"):
        hsconfig.content_origin_overrides("http://127.0.0.1:3000/some/path")


def test_bad_content_origin_fails_before_starting(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN), "dev", "--data-dir", str(tmp_path / "d"), "--content-origin", "ftp://x"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2
    assert "--content-origin" in result.stderr and "http" in result.stderr
    assert not (tmp_path / "d" / "homeserver.yaml").exists()


@pytest.mark.slow  # dev tooling: not in the oldest-Synapse run (scripts/test-oldest)
@pytest.mark.synapse
def test_dev_content_origin_serves_cards_from_local_site(
    tmp_path: Path, phenom_site: PhenomSite
) -> None:
    data_dir = tmp_path / "dev"
    port = free_port()
    proc = start_dev_command(data_dir, port, "--content-origin", phenom_site.origin)
    try:
        base_url = f"http://127.0.0.1:{port}"
        rendered = yaml.safe_load((data_dir / "homeserver.yaml").read_text())
        module = next(m for m in rendered["modules"] if m["module"] == hsconfig.LINK_PREVIEW_MODULE)
        assert module["config"]["origins"][0]["fetch_from"] == phenom_site.origin

        token = devstack.ensure_admin_token(data_dir, base_url)
        public_link = f"https://thephenom.app/p/full?t={unique()}"
        resp = httpx2.get(
            f"{base_url}/_synapse/client/phenom/preview",
            params={"url": public_link},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        card = resp.json()["card"]
        assert card["title"] == "Northern Lights over Tromsø"
        assert card["url"] == public_link  # the link stays public; only the fetch went local
        assert card["image"]["mxc"].startswith("mxc://localhost/")

        # A member posts a link to the local copy in #community: a Phenom link, accepted;
        # a link elsewhere is still refused by the link rule.
        with SynapseAdmin(base_url) as api:
            person = api.register_with_shared_secret(
                devstack.read_shared_secret(data_dir / "homeserver.yaml"), unique(), unique()
            )
        auth = {"Authorization": f"Bearer {person['access_token']}"}
        room_id = httpx2.get(
            f"{base_url}/_matrix/client/v3/directory/room/%23community:localhost", timeout=30
        ).json()["room_id"]
        joined = httpx2.post(
            f"{base_url}/_matrix/client/v3/join/{room_id}", headers=auth, json={}, timeout=30
        )
        assert joined.status_code == 200, joined.text

        def post(body: str) -> httpx2.Response:
            return httpx2.put(
                f"{base_url}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{unique()}",
                json={"msgtype": "m.text", "body": body},
                headers=auth,
                timeout=30,
            )

        local_link = post(f"look {phenom_site.origin}/p/full?t={unique()}")
        assert local_link.status_code == 200, local_link.text
        elsewhere = post("look http://example.org/x")
        assert elsewhere.status_code == 403 and "links" in elsewhere.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0
