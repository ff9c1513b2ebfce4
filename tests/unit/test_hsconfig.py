"""The homeserver template: production from env, dev values, one template for both."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from harness import PRODUCTION_ENV as PROD_ENV

from synapse_phenom.ops import env_vars, hsconfig


def test_missing_variables_are_all_named() -> None:
    with pytest.raises(env_vars.MissingVariables) as err:
        hsconfig.values_from_env({"PHENOM_SERVER_NAME": "x"})
    text = str(err.value)
    for name in PROD_ENV:
        if name != "PHENOM_SERVER_NAME":
            assert name in text
    assert "PHENOM_SERVER_NAME" not in text


def test_production_render(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("s3cret\n")
    env = {**PROD_ENV, "PHENOM_DB_PASSWORD_FILE": str(password_file)}
    hs_text, log_text = hsconfig.render(hsconfig.values_from_env(env))
    config = yaml.safe_load(hs_text)
    assert config["server_name"] == "chat.example.org"
    assert config["database"]["name"] == "psycopg2"
    assert config["database"]["args"]["password"] == "s3cret"
    assert config["registration_shared_secret_path"] == "/run/secrets/reg"
    assert config["enable_registration"] is False
    assert config["listeners"][0]["x_forwarded"] is True
    modules = [m["module"] for m in config["modules"]]
    assert hsconfig.ROOMS_MODULE in modules
    assert yaml.safe_load(log_text)["version"] == 1


def test_dev_and_production_share_the_template(tmp_path: Path) -> None:
    dev = yaml.safe_load(hsconfig.render(hsconfig.dev_values(tmp_path, "127.0.0.1", 8008))[0])
    prod = yaml.safe_load(hsconfig.render(hsconfig.values_from_env(PROD_ENV))[0])
    assert dev["database"]["name"] == "sqlite3"
    assert dev["trusted_key_servers"] == []
    assert dev["report_stats"] is False
    # Same keys: dev differs in values only, so the two cannot drift.
    assert set(dev) - set(prod) <= {"metrics"} and set(prod) - set(dev) <= set()
    assert [m["module"] for m in dev["modules"]] == [m["module"] for m in prod["modules"]]


def test_module_override_for_unknown_module_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown module"):
        hsconfig.default_modules({"nope.Module": {}})


def test_module_config_file_overrides(tmp_path: Path) -> None:
    override = tmp_path / "modules.yaml"
    override.write_text(yaml.safe_dump({hsconfig.ROOMS_MODULE: {"system_user": "bot"}}))
    values = hsconfig.values_from_env({**PROD_ENV, "PHENOM_MODULE_CONFIG_FILE": str(override)})
    rooms = next(m for m in values["modules"] if m["module"] == hsconfig.ROOMS_MODULE)
    assert rooms["config"]["system_user"] == "bot"


def test_pull_only_appservices_turn_synapse_appservice_stream_off(tmp_path: Path) -> None:
    from synapse_phenom.mcp.appservice import registration

    pull = tmp_path / "pull.yaml"
    pull.write_text(yaml.safe_dump(registration("localhost")))
    pushed = tmp_path / "pushed.yaml"
    pushed.write_text(yaml.safe_dump({**registration("localhost"), "url": "http://as:9000"}))

    def rendered(files: list[str]) -> dict[str, object]:
        values = hsconfig.dev_values(tmp_path, "127.0.0.1", 8008, None, "localhost", None)
        return dict(
            yaml.safe_load(hsconfig.render({**values, "app_service_config_files": files})[0])
        )

    key = "notify_appservices_from_worker"
    assert rendered([str(pull)])[key] == hsconfig.NO_APPSERVICE_PUSH_INSTANCE
    assert key not in rendered([str(pull), str(pushed)])  # one pushed service: default
    assert key not in rendered([str(tmp_path / "missing.yaml")])  # unreadable: default
    assert key not in rendered([])
    assert registration("localhost")["receive_ephemeral"] is False
    assert registration("localhost")["namespaces"]["rooms"] == []
