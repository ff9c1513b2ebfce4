"""A worker topology (PHENOM_WORKERS): parsing, rendering, and Synapse's own config loader.

The last test feeds the rendered main and worker files to ``HomeServerConfig``, so a key
Synapse would reject (e.g. a stream writer missing from ``instance_map``) fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import PRODUCTION_ENV, free_port
from synapse.config.homeserver import HomeServerConfig

from synapse_phenom.cli import main as cli_main
from synapse_phenom.ops import devstack, hsconfig, topology

SPEC = (
    "persister1:events@persister1.internal,pusher1:pusher,background1:background,"
    "client1:client,client2:client"
)
WORKER_ENV = {
    **PRODUCTION_ENV,
    "PHENOM_REDIS_HOST": "redis.internal",
    "PHENOM_MAIN_HOST": "synapse-main.internal",
    "PHENOM_WORKERS": SPEC,
}


def test_spec_gives_stream_writers_pushers_background_and_instance_map() -> None:
    topo = topology.parse(SPEC, 9093)
    assert topo.settings() == {
        "stream_writers": {"events": ["persister1"]},
        "pusher_instances": ["pusher1"],
        "run_background_tasks_on": "background1",
        "update_user_directory_from_worker": "background1",
    }
    # Only stream writers are reached over HTTP replication.
    assert topo.instances() == {"persister1": {"host": "persister1.internal", "port": 9093}}
    sharded = topology.parse("p1:events@10.0.0.5:9100,p2:events+receipts,c:client+typing", 9093)
    assert sharded.settings()["stream_writers"] == {
        "events": ["p1", "p2"],
        "typing": ["c"],
        "receipts": ["p2"],
    }
    assert sharded.instances() == {
        "p1": {"host": "10.0.0.5", "port": 9100},
        "p2": {"host": "p2", "port": 9093},
        "c": {"host": "c", "port": 9093},
    }
    # A typing writer serves /typing, so it has a client listener; a persister does not.
    assert [w.serves_client for w in sharded.workers] == [False, True, True]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("persister1:event", "unknown role event"),
        ("persister1", "is not NAME:ROLE"),
        ("main:events", "bad worker name 'main'"),
        ("a b:client", "bad worker name"),
        ("w1:client,w1:pusher", "'w1' is named twice"),
        ("b1:background,b2:background", "role 'background' can have one worker only"),
        ("t1:typing,t2:typing", "role 'typing' can have one worker only"),
        ("p1:events@host:99999", "bad port '99999'"),
        ("p1:events@:9000", "empty host"),
        (" , ", "no workers"),
    ],
)
def test_bad_specs_are_refused_naming_the_key_and_entry(spec: str, says: str) -> None:
    with pytest.raises(topology.TopologyError) as err:
        topology.parse(spec, 9093)
    assert str(err.value).startswith("PHENOM_WORKERS")
    assert says in str(err.value)


def test_production_render_with_workers() -> None:
    config = yaml.safe_load(hsconfig.render(hsconfig.values_from_env(WORKER_ENV))[0])
    assert config["stream_writers"] == {"events": ["persister1"]}
    assert config["pusher_instances"] == ["pusher1"]
    assert config["run_background_tasks_on"] == "background1"
    assert config["update_user_directory_from_worker"] == "background1"
    assert config["instance_map"] == {
        "main": {"host": "synapse-main.internal", "port": 9093},
        "persister1": {"host": "persister1.internal", "port": 9093},
    }
    # Without PHENOM_WORKERS none of these keys appear (main does it all).
    plain = yaml.safe_load(
        hsconfig.render(hsconfig.values_from_env({**WORKER_ENV, "PHENOM_WORKERS": ""}))[0]
    )
    assert not {"stream_writers", "pusher_instances", "run_background_tasks_on"} & set(plain)
    # Workers without Redis are a config error naming the key.
    with pytest.raises(topology.TopologyError, match="PHENOM_WORKERS needs PHENOM_REDIS_HOST"):
        hsconfig.values_from_env({**PRODUCTION_ENV, "PHENOM_WORKERS": SPEC})


def _listeners(path: Path) -> list[tuple[int, str, list[str]]]:
    worker = yaml.safe_load(path.read_text())
    return [
        (lis["port"], lis["type"], [n for r in lis.get("resources", []) for n in r["names"]])
        for lis in worker["worker_listeners"]
    ]


def test_render_config_writes_each_workers_listeners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in WORKER_ENV.items():
        monkeypatch.setenv(name, value)
    assert cli_main(["render-config", "--worker-dir", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"{n}.yaml" for n in ("background1", "client1", "client2", "persister1")] + [
        "pusher1.yaml"
    ]
    # Persister: replication (its instance_map port) + metrics, no client API.
    assert _listeners(tmp_path / "persister1.yaml") == [
        (9093, "http", ["replication"]),
        (9000, "metrics", []),
    ]
    assert _listeners(tmp_path / "client1.yaml") == [
        (8008, "http", ["client"]),
        (9000, "metrics", []),
    ]
    assert _listeners(tmp_path / "background1.yaml") == [(9000, "metrics", [])]
    out = tmp_path / "one.yaml"
    args = ["render-config", "--worker", "client2", "--worker-port", "8083", "-o", str(out)]
    assert cli_main(args) == 0
    assert _listeners(out)[0] == (8083, "http", ["client"])
    assert cli_main(["render-config", "--worker", "nobody", "-o", str(out)]) != 0
    monkeypatch.setenv("PHENOM_WORKERS", "persister1:events,persister1:pusher")
    assert cli_main(["render-config", "-o", str(out)]) != 0


def _load(*paths: Path) -> Any:
    return HomeServerConfig.load_config("", [arg for p in paths for arg in ("-c", str(p))])


def test_synapse_loads_the_topology(tmp_path: Path) -> None:
    spec = topology.local_spec(
        {
            "persister1": "events",
            "pusher1": "pusher",
            "background1": "background",
            "client1": "client",
            "client2": "client",
        },
        free_port,
    )
    topo = topology.parse(spec, 0)
    config_path = devstack.prepare_synapse(
        tmp_path,
        port=free_port(),
        database=hsconfig.DevDatabase(engine="postgres", host="127.0.0.1", name="x", user="x"),
        extra_values={"replication": topology.replication_values(topo, "127.0.0.1", free_port())},
    )
    files = topology.prepare_local(tmp_path, topo, free_port)
    main = _load(config_path)
    assert main.worker.writers.events == ["persister1"]
    assert not main.worker.run_background_tasks and not main.worker.start_pushers
    assert not main.worker.should_update_user_directory
    by_name = {name: _load(config_path, path) for name, (path, _) in files.items()}
    assert by_name["background1"].worker.run_background_tasks
    assert by_name["background1"].worker.should_update_user_directory
    assert by_name["pusher1"].worker.start_pushers
    assert [n for n, c in by_name.items() if c.worker.run_background_tasks] == ["background1"]
    persister = by_name["persister1"].worker
    assert [lis.http_options.resources[0].names for lis in persister.worker_listeners] == [
        ["replication"]
    ]
    assert persister.worker_listeners[0].port == topo.instances()["persister1"]["port"]
    client1 = by_name["client1"].worker
    assert client1.worker_listeners[0].port == files["client1"][1]
    assert by_name["pusher1"].worker.worker_listeners == []
