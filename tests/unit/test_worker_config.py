"""Rendering a worker setup: the ``replication`` template value and worker config files.

Synapse's own config loader reads the rendered files, so a key Synapse would reject
fails here rather than at deploy time.
"""

# mypy: disable-error-code="union-attr"
# (attribute access on an Optional result: None fails the test with AttributeError)
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import PRODUCTION_ENV, free_port, redis_available
from synapse.config.homeserver import HomeServerConfig

from synapse_phenom.cli import main as cli_main
from synapse_phenom.ops import devstack, env_vars, hsconfig
from synapse_phenom.ops import replication as workers_config


def _render(values: dict[str, Any]) -> dict[str, Any]:
    return dict(yaml.safe_load(hsconfig.render(values)[0]))


def test_without_replication_the_output_is_unchanged() -> None:
    values = hsconfig.values_from_env(PRODUCTION_ENV)
    plain = hsconfig.render(values)
    assert hsconfig.render({**values, "replication": None}) == plain
    config = yaml.safe_load(plain[0])
    assert not {"instance_map", "redis", "worker_replication_secret_path"} & set(config)
    assert len(config["listeners"]) == 2  # client + metrics
    assert all(
        "replication" not in r["names"]
        for lis in config["listeners"]
        for r in lis.get("resources", [])
    )


def test_replication_value_adds_listener_instance_map_and_redis() -> None:
    values = hsconfig.values_from_env(PRODUCTION_ENV)
    values["replication"] = workers_config.replication_values(
        "synapse-main.internal",
        9093,
        redis_host="redis.internal",
        redis_port=6380,
        bind_address="0.0.0.0",
        instances={"events": {"host": "synapse-events.internal", "port": 9093}},
        secret_path="/run/secrets/replication",
    )
    config = _render(values)
    replication = [
        lis
        for lis in config["listeners"]
        if lis.get("resources", [{}])[0].get("names") == ["replication"]
    ]
    assert replication == [
        {
            "port": 9093,
            "bind_addresses": ["0.0.0.0"],
            "type": "http",
            "tls": False,
            "resources": [{"names": ["replication"], "compress": False}],
        }
    ]
    assert config["instance_map"] == {
        "main": {"host": "synapse-main.internal", "port": 9093},
        "events": {"host": "synapse-events.internal", "port": 9093},
    }
    assert config["redis"] == {"enabled": True, "host": "redis.internal", "port": 6380}
    assert config["worker_replication_secret_path"] == "/run/secrets/replication"
    # Everything else is as without workers.
    plain = _render(hsconfig.values_from_env(PRODUCTION_ENV))
    rest = {
        k: v
        for k, v in config.items()
        if k not in ("listeners", "instance_map", "redis", "worker_replication_secret_path")
    }
    assert rest == {k: v for k, v in plain.items() if k != "listeners"}


def test_render_worker() -> None:
    worker_text, log_text = workers_config.render_worker(
        "client1",
        8083,
        "/data/client1.log.yaml",
        bind_address="0.0.0.0",
        resources=("client", "metrics"),
        x_forwarded=True,
        log_file="/data/client1.log",
    )
    worker = yaml.safe_load(worker_text)
    assert worker == {
        "worker_app": "synapse.app.generic_worker",
        "worker_name": "client1",
        "worker_log_config": "/data/client1.log.yaml",
        "worker_listeners": [
            {
                "port": 8083,
                "bind_addresses": ["0.0.0.0"],
                "type": "http",
                "tls": False,
                "x_forwarded": True,
                "resources": [{"names": ["client", "metrics"], "compress": False}],
            }
        ],
    }
    log = yaml.safe_load(log_text)
    assert log["handlers"]["file"]["filename"] == "/data/client1.log"


def test_synapse_loads_the_rendered_main_and_worker_configs(tmp_path: Path) -> None:
    config_path = devstack.prepare_synapse(
        tmp_path,
        port=18008,
        extra_values={"replication": workers_config.replication_values("127.0.0.1", 19093)},
    )
    worker_path = devstack.prepare_worker(tmp_path, "worker1", 18081)
    assert worker_path == tmp_path.resolve() / "worker1.yaml"
    assert oct(worker_path.stat().st_mode & 0o777) == "0o600"

    main = HomeServerConfig.load_config("", ["-c", str(config_path)])
    assert main.worker.worker_app is None and main.worker.run_background_tasks
    assert [(lis.port, lis.http_options.resources[0].names) for lis in main.server.listeners] == [
        (18008, ["client", "metrics"]),
        (19093, ["replication"]),
    ]

    worker = HomeServerConfig.load_config("", ["-c", str(config_path), "-c", str(worker_path)])
    assert worker.worker.worker_name == "worker1"
    assert worker.worker.worker_app == workers_config.GENERIC_WORKER_APP
    assert not worker.worker.run_background_tasks  # rooms are created by main only
    assert worker.redis.redis_enabled
    assert [lis.port for lis in worker.worker.worker_listeners] == [18081]
    # Synapse calls the main process "master" internally.
    (location,) = worker.worker.instance_map.values()
    assert (location.host, location.port) == ("127.0.0.1", 19093)


def test_production_workers_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(env_vars.MissingVariables, match="PHENOM_MAIN_HOST"):
        hsconfig.values_from_env({**PRODUCTION_ENV, "PHENOM_REDIS_HOST": "redis"})
    env = {**PRODUCTION_ENV, "PHENOM_REDIS_HOST": "redis", "PHENOM_MAIN_HOST": "synapse-main"}
    config = _render(hsconfig.values_from_env(env))
    assert config["instance_map"] == {"main": {"host": "synapse-main", "port": 9093}}
    assert config["redis"] == {"enabled": True, "host": "redis", "port": 6379}

    # `render-config --worker` writes the worker's file from the same environment.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "client1.yaml"
    assert (
        cli_main(["render-config", "--worker", "client1", "--worker-port", "8083", "-o", str(out)])
        == 0
    )
    worker = yaml.safe_load(out.read_text())
    assert worker["worker_name"] == "client1" and worker["worker_log_config"] == "/data/log.yaml"
    (listener,) = worker["worker_listeners"]
    assert listener["port"] == 8083 and listener["x_forwarded"] is True
    assert listener["resources"][0]["names"] == ["client"]
    monkeypatch.delenv("PHENOM_REDIS_HOST")
    assert cli_main(["render-config", "--worker", "client1", "-o", str(out)]) != 0


def test_redis_probe_reports_a_closed_port() -> None:
    assert not redis_available(port=free_port())
