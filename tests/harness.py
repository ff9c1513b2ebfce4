"""Test harness: a real Synapse (the dev-stack code path) and a small Matrix client.

Tests talk to Synapse over HTTP exactly as a client would. One Synapse runs per test
session and database engine; tests isolate themselves with fresh users (``unique``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import attrs
import httpx2
import psycopg2

from synapse_phenom.ops import devstack, hsconfig
from synapse_phenom.ops.admin_client import SynapseAdmin, raise_for_matrix

POSTGRES_ENV = "PHENOM_TEST_POSTGRES_DSN"

# The minimal environment `phenom-chat render-config` needs (values are examples).
PRODUCTION_ENV = {
    "PHENOM_SERVER_NAME": "chat.example.org",
    "PHENOM_PUBLIC_BASEURL": "https://chat.example.org/",
    "PHENOM_DB_HOST": "db",
    "PHENOM_DB_NAME": "synapse",
    "PHENOM_DB_USER": "synapse",
    "PHENOM_REGISTRATION_SHARED_SECRET_FILE": "/run/secrets/reg",
    "PHENOM_MACAROON_SECRET_KEY_FILE": "/run/secrets/mac",
    "PHENOM_FORM_SECRET_FILE": "/run/secrets/form",
}


def env_without_phenom(**extra: str) -> dict[str, str]:
    """This process's environment minus PHENOM_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHENOM_")}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def create_postgres_database(dsn: str) -> hsconfig.DevDatabase:
    """A fresh database with the C collation Synapse requires; dropped by the caller."""
    parts = urlsplit(dsn)
    name = f"phenom_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0"
        )
    conn.close()
    return hsconfig.DevDatabase(
        engine="postgres",
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        name=name,
        user=parts.username or "postgres",
        password=parts.password or "",
    )


def drop_postgres_database(dsn: str, name: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    conn.close()


@attrs.frozen
class SynapseConfigPart:
    """What one area's fixtures add to the shared test Synapse's config.

    ``extra_values`` are homeserver template values (e.g. ``oidc_providers``,
    ``app_service_config_files``); ``module_overrides`` map a module class path to
    config merged over its dev defaults (see ``hsconfig.default_modules``).
    """

    extra_values: Mapping[str, Any] = attrs.field(factory=dict)
    module_overrides: Mapping[str, Any] = attrs.field(factory=dict)


def merge_parts(parts: list[SynapseConfigPart]) -> SynapseConfigPart:
    values: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    for part in parts:
        for key, value in part.extra_values.items():
            if isinstance(value, list) and isinstance(values.get(key), list):
                values[key] = [*values[key], *value]
            else:
                values[key] = value
        for module, cfg in part.module_overrides.items():
            overrides[module] = {**overrides.get(module, {}), **cfg}
    return SynapseConfigPart(extra_values=values, module_overrides=overrides)


@attrs.define
class SynapseStack:
    """A running Synapse with all Phenom modules, started like ``phenom-chat dev``."""

    data_dir: Path
    base_url: str
    server_name: str
    engine: str
    config_path: Path
    process: devstack.ManagedProcess
    database: hsconfig.DevDatabase
    rooms: dict[str, str] = attrs.field(factory=dict)  # room key -> room id
    _admin_token: str | None = None

    @classmethod
    def start(
        cls,
        data_dir: Path,
        database: hsconfig.DevDatabase,
        module_overrides: Mapping[str, Any] | None = None,
        extra_values: Mapping[str, Any] | None = None,
        port: int | None = None,
        server_name: str = "localhost",
        wait_created: bool = True,
    ) -> SynapseStack:
        """Start Synapse; ``wait_created=False`` skips the (admin-token) creation check."""
        port = port or free_port()
        config_path = devstack.prepare_synapse(
            data_dir,
            port=port,
            database=database,
            server_name=server_name,
            module_overrides=module_overrides,
            extra_values=extra_values,
        )
        proc = devstack.start_synapse(config_path)
        base_url = f"http://127.0.0.1:{port}"
        stack = cls(
            data_dir=data_dir,
            base_url=base_url,
            server_name=server_name,
            engine=database.engine,
            config_path=config_path,
            process=proc,
            database=database,
        )
        try:
            stack.wait_ready(wait_created)
        except Exception:
            proc.stop()
            raise
        return stack

    def wait_ready(self, wait_created: bool = True) -> None:
        devstack.wait_http(f"{self.base_url}/_matrix/client/versions", [self.process], timeout=120)
        found = devstack.wait_rooms(
            self.base_url, [self.alias(k) for k in ("internal", "partners", "community")]
        )
        self.rooms = {alias[1:].split(":")[0]: rid for alias, rid in found.items()}
        if wait_created:
            self.wait_rooms_created()

    def wait_rooms_created(self) -> None:
        # Synapse points the alias at a new room before it sends the room's initial state:
        # wait for the whole creation, or a restart right now would cut it short.
        eventually(lambda: all(self._room_created(rid) for rid in self.rooms.values()), 60)

    def _room_created(self, room_id: str) -> bool:
        with self.admin() as admin:
            resp = admin._http.get(
                f"/_synapse/admin/v1/rooms/{quote(room_id)}/state",
                headers={"Authorization": f"Bearer {self.admin_token}"},
            )
        types = {event["type"] for event in resp.json().get("state", [])}
        return {"m.room.power_levels", "m.room.join_rules", "m.room.name"} <= types

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        self.process.stop()
        self.process = devstack.start_synapse(self.config_path)
        self.wait_ready()

    def alias(self, key: str) -> str:
        return f"#{key}:{self.server_name}"

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    @property
    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = devstack.ensure_admin_token(self.data_dir, self.base_url)
        return self._admin_token

    def admin(self) -> SynapseAdmin:
        return SynapseAdmin(self.base_url, self.admin_token)

    def joined_rooms_of(self, user_id: str) -> set[str]:
        """The rooms ``user_id`` is joined to, as the admin API reports them."""
        resp = httpx2.get(
            f"{self.base_url}/_synapse/admin/v1/users/{quote(user_id)}/joined_rooms",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
        )
        resp.raise_for_status()
        return set(resp.json()["joined_rooms"])

    def register(
        self, localpart: str | None = None, admin: bool = False, displayname: str | None = None
    ) -> MatrixClient:
        """A new user registered with the shared secret, logged in."""
        localpart = localpart or unique()
        password = uuid.uuid4().hex
        with SynapseAdmin(self.base_url) as api:
            result = api.register_with_shared_secret(
                devstack.read_shared_secret(self.config_path),
                localpart,
                password,
                admin=admin,
                displayname=displayname,
            )
        return MatrixClient(self.base_url, result["user_id"], result["access_token"], password)

    def login(self, localpart: str, password: str, base_url: str | None = None) -> MatrixClient:
        """Password login, at ``base_url`` if given (e.g. a worker's client port)."""
        base_url = base_url or self.base_url
        resp = httpx2.post(
            f"{base_url}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
            },
            timeout=30,
        )
        body = raise_for_matrix(resp)
        return MatrixClient(base_url, body["user_id"], body["access_token"], password)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus metric's samples matching ``labels`` (0 when absent)."""
        text = httpx2.get(f"{self.base_url}/_synapse/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total


@attrs.define
class MatrixClient:
    """Just enough of the client-server API for tests; every call returns parsed JSON."""

    base_url: str
    user_id: str
    access_token: str
    password: str = ""
    _http: httpx2.Client = attrs.field(init=False)
    _txn: int = 0

    def __attrs_post_init__(self) -> None:
        self._http = httpx2.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.access_token}"},
            timeout=30,
        )

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]

    def request(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        return self._http.request(method, path, **kwargs)

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Request; raise MatrixError on an error response."""
        return raise_for_matrix(self.request(method, path, **kwargs))

    def join(self, room: str) -> dict[str, Any]:
        return self.call("POST", f"/_matrix/client/v3/join/{quote(room)}", json={})

    def try_join(self, room: str) -> httpx2.Response:
        return self.request("POST", f"/_matrix/client/v3/join/{quote(room)}", json={})

    def invite(self, room_id: str, user_id: str) -> httpx2.Response:
        return self.request(
            "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite", json={"user_id": user_id}
        )

    def leave(self, room_id: str) -> dict[str, Any]:
        return self.call("POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/leave", json={})

    def send_raw(
        self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message"
    ) -> httpx2.Response:
        self._txn += 1
        txn = f"t{time.time_ns()}{self._txn}"
        return self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/send/{event_type}/{txn}",
            json=content,
        )

    def send(self, room_id: str, body: str, **extra: Any) -> str:
        content = {"msgtype": "m.text", "body": body, **extra}
        return str(raise_for_matrix(self.send_raw(room_id, content))["event_id"])

    def send_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> httpx2.Response:
        return self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{event_type}/{quote(state_key)}",
            json=content,
        )

    def joined_rooms(self) -> set[str]:
        return set(self.call("GET", "/_matrix/client/v3/joined_rooms")["joined_rooms"])

    def event(self, room_id: str, event_id: str) -> dict[str, Any]:
        return self.call(
            "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}"
        )

    def messages(self, room_id: str, limit: int = 20) -> list[dict[str, Any]]:
        return list(
            self.call(
                "GET",
                f"/_matrix/client/v3/rooms/{quote(room_id)}/messages",
                params={"dir": "b", "limit": limit},
            )["chunk"]
        )

    def state(self, room_id: str, event_type: str, state_key: str = "") -> httpx2.Response:
        return self.request(
            "GET",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{event_type}/{quote(state_key)}",
        )

    def sync(self, since: str | None = None, timeout_ms: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"timeout": timeout_ms}
        if since:
            params["since"] = since
        return self.call(
            "GET", "/_matrix/client/v3/sync", params=params, timeout=timeout_ms / 1000 + 30
        )


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Retry ``check`` until it returns a truthy value; the last AssertionError is raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            error: Exception = AssertionError(f"condition still false after {timeout}s")
        except AssertionError as err:
            error = err
        if time.monotonic() > deadline:
            raise error
        time.sleep(interval)


def postgres_dsn() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


def require_postgres_dsn(why: str = "this test needs PostgreSQL") -> str:
    """The DSN; without one, skip locally but fail on CI (which must run PostgreSQL)."""
    import pytest

    dsn = postgres_dsn()
    if dsn:
        return dsn
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL suite: {POSTGRES_ENV} is not set")
    pytest.skip(f"{why}: set {POSTGRES_ENV} (CI does)")


REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def redis_available(host: str = REDIS_HOST, port: int = REDIS_PORT) -> bool:
    """True when a Redis server answers PING (workers replicate through it)."""
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def require_redis(why: str = "this test needs Redis") -> None:
    """Without Redis on 127.0.0.1:6379, skip locally but fail on CI (.ci/run starts it)."""
    import pytest

    if redis_available():
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run Redis on {REDIS_HOST}:{REDIS_PORT} (.ci/run starts it)")
    pytest.skip(f"{why}: start redis-server on {REDIS_HOST}:{REDIS_PORT} (CI does)")


def spawn_dev(data_dir: Path, *args: str, columns: int = 200) -> subprocess.Popen[str]:
    """``phenom-chat dev --data-dir data_dir *args`` as a developer runs it, output piped
    (``COLUMNS``: how wide the banner may be). The MCP port is free-chosen unless ``args``
    name one: never the fixed default 3001 in tests."""
    argv = [str(Path(sys.executable).parent / "phenom-chat"), "dev", "--data-dir", str(data_dir)]
    if "--mcp-port" not in args:
        argv += ["--mcp-port", str(free_port())]
    return subprocess.Popen(
        [*argv, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": str(columns)},
    )


def read_banner(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """Everything ``phenom-chat dev`` printed up to its banner's last line; on exit or
    timeout first, an AssertionError with that output (the process killed)."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while "Ctrl-C stops everything" not in (seen[-1] if seen else ""):
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("phenom-chat dev did not come up:\n" + "".join(seen))
        seen.append(line)
    return "".join(seen)


def start_dev_command(
    data_dir: Path, port: int, *extra_args: str, timeout: float = 120
) -> subprocess.Popen[str]:
    """Run ``phenom-chat dev`` as a developer would; return once its banner is printed.

    The caller stops it with SIGINT/SIGTERM and ``wait()``.
    """
    proc = spawn_dev(data_dir, "--port", str(port), *extra_args)
    read_banner(proc, timeout)
    return proc
