"""The local dev stack: config generation and process supervision.

``phenom-chat dev`` and the test harness share this code path: the harness starts the
very same Synapse the README's dev command starts, only in a temporary directory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import httpx2

from synapse_phenom.ops import hsconfig, replication
from synapse_phenom.ops.admin_client import MatrixError, SynapseAdmin
from synapse_phenom.ops.files import write_private

logger = logging.getLogger(__name__)

ADMIN_LOCALPART = "phenom-admin"


class StackError(RuntimeError):
    pass


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_managed(path: Path, text: str) -> bool:
    """Write a generated file unless the user has edited it since we last wrote it."""
    stamp = path.with_name(f".{path.name}.sha256")
    if path.exists():
        current = _sha(path.read_text())
        if not stamp.exists() or stamp.read_text().strip() != current:
            if current != _sha(text):
                logger.warning("%s was edited by hand; keeping it (delete it to regenerate)", path)
            return False
    write_private(path, text)
    stamp.write_text(_sha(text))
    return True


def ensure_signing_key(path: Path) -> None:
    if not path.exists():
        # signedjson comes with matrix-synapse: the MCP-only install has no dev stack.
        from signedjson.key import generate_signing_key, write_signing_keys

        key = generate_signing_key("a_" + secrets.token_hex(2))
        buf = io.StringIO()
        write_signing_keys(buf, [key])
        write_private(path, buf.getvalue())


def prepare_synapse(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8008,
    database: hsconfig.DevDatabase | None = None,
    server_name: str = "localhost",
    module_overrides: Mapping[str, Any] | None = None,
    extra_values: Mapping[str, Any] | None = None,
) -> Path:
    """Write DIR/homeserver.yaml (+ log config, secrets, signing key); return its path."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    values = hsconfig.dev_values(data_dir, host, port, database, server_name, module_overrides)
    values.update(extra_values or {})
    hsconfig.write_secret_files(values)
    ensure_signing_key(Path(values["signing_key_path"]))
    hs_text, log_text = hsconfig.render(values)
    config_path = data_dir / "homeserver.yaml"
    write_managed(config_path, hs_text)
    write_managed(data_dir / "log.yaml", log_text)
    (data_dir / "media_store").mkdir(exist_ok=True)
    return config_path


def prepare_worker(
    data_dir: Path,
    name: str,
    port: int,
    host: str = "127.0.0.1",
    resources: tuple[str, ...] = ("client",),
    extra_listeners: tuple[Mapping[str, Any], ...] = (),
) -> Path:
    """Write DIR/<name>.yaml (+ its log config) for a generic worker; return its path.

    DIR/homeserver.yaml must have been prepared with the ``replication`` value
    (``replication.replication_values``) so main and worker can reach each other.
    """
    data_dir = data_dir.resolve()
    log_config = data_dir / f"{name}.log.yaml"
    worker_text, log_text = replication.render_worker(
        name,
        port,
        str(log_config),
        bind_address=host,
        resources=resources,
        log_file=str(data_dir / f"{name}.log"),
        console_log_level="WARNING",
        extra_listeners=extra_listeners,
    )
    path = data_dir / f"{name}.yaml"
    write_managed(path, worker_text)
    write_managed(log_config, log_text)
    return path


@attrs.define
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        # Each child leads its own process group: signal the group, so nothing strays.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def spawn(
    name: str, argv: list[str], log_path: Path, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    log = log_path.open("ab")
    popen = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    log.close()
    return ManagedProcess(name=name, popen=popen, log_path=log_path)


def start_synapse(config_path: Path) -> ManagedProcess:
    data_dir = config_path.parent
    # Synapse refuses to start over a pid file left by a killed run.
    pid_file = data_dir / "homeserver.pid"
    if pid_file.exists():
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().strip())
            try:
                os.kill(pid, 0)
                raise StackError(f"Synapse already runs with this data dir (pid {pid})")
            except ProcessLookupError:
                pid_file.unlink()
    argv = [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config_path)]
    return spawn("synapse", argv, data_dir / "synapse.stdout.log")


def start_worker(config_path: Path, worker_path: Path) -> ManagedProcess:
    """Run the worker described by ``worker_path`` with the shared ``config_path``."""
    argv = [
        sys.executable,
        "-m",
        "synapse.app.generic_worker",
        "-c",
        str(config_path),
        "-c",
        str(worker_path),
    ]
    return spawn(worker_path.stem, argv, worker_path.with_suffix(".stdout.log"))


def busy_ports(wanted: Iterable[tuple[str, int, str]]) -> list[str]:
    """Which of ``(host, port, what)`` cannot be listened on, one readable line each.

    Checked before anything starts, so the stack never says "up" and then dies.
    """
    problems: list[str] = []
    seen: dict[int, str] = {}
    for host, port, what in wanted:
        if port in seen:
            problems.append(f"{what} and {seen[port]} cannot both use port {port}")
            continue
        seen[port] = what
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As servers do: a port in TIME_WAIT is free, one being listened on is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as err:
                reason = "already in use" if err.errno == errno.EADDRINUSE else err.strerror
                problems.append(f"{what}: port {port} on {host} is {reason}")
    return problems


def wait_http(url: str, procs: Iterable[ManagedProcess], timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers 200; fail early if a process died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise StackError(
                    f"{proc.name} exited with code {proc.popen.returncode}:\n{proc.log_tail()}"
                )
        try:
            resp = httpx2.get(url, timeout=2.0)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except httpx2.TransportError as err:
            last = str(err)
        time.sleep(0.1)
    raise StackError(f"{url} did not answer within {timeout:.0f}s ({last})")


def wait_rooms(base_url: str, aliases: Iterable[str], timeout: float = 60.0) -> dict[str, str]:
    """Wait until every alias resolves; return alias -> room id."""
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    pending = list(aliases)
    while pending and time.monotonic() < deadline:
        for alias in list(pending):
            resp = httpx2.get(
                f"{base_url}/_matrix/client/v3/directory/room/{quote(alias)}", timeout=5
            )
            if resp.status_code == 200:
                found[alias] = resp.json()["room_id"]
                pending.remove(alias)
        if pending:
            time.sleep(0.2)
    if pending:
        raise StackError(f"rooms not created within {timeout:.0f}s: {', '.join(pending)}")
    return found


def read_shared_secret(config_path: Path) -> str:
    import yaml

    config = yaml.safe_load(config_path.read_text())
    if config.get("registration_shared_secret"):
        return str(config["registration_shared_secret"])
    return Path(config["registration_shared_secret_path"]).read_text().strip()


def base_url_of(config_path: Path) -> str:
    import yaml

    config = yaml.safe_load(config_path.read_text())
    listener = next(lis for lis in config["listeners"] if lis.get("type") == "http")
    host = listener.get("bind_addresses", ["127.0.0.1"])[0]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{listener['port']}"


def ensure_admin_token(data_dir: Path, base_url: str) -> str:
    """An access token of the dev admin user, created with the shared secret on first use.

    Kept in DIR/admin-credentials.json (owner-only), re-used across runs.
    """
    creds_path = data_dir / "admin-credentials.json"
    creds: dict[str, str] = {}
    if creds_path.exists():
        creds = json.loads(creds_path.read_text())
        with SynapseAdmin(base_url, creds.get("access_token")) as admin:
            try:
                admin.whoami()
                return creds["access_token"]
            except MatrixError:
                pass
        # Token no longer valid: log in again with the stored password.
        resp = httpx2.post(
            f"{base_url}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": ADMIN_LOCALPART},
                "password": creds["password"],
            },
            timeout=10,
        )
        if resp.status_code == 200:
            creds["access_token"] = resp.json()["access_token"]
            _write_private_json(creds_path, creds)
            return creds["access_token"]
        raise StackError(f"cannot log in as {ADMIN_LOCALPART}: {resp.text}; delete {creds_path}")
    password = secrets.token_urlsafe(24)
    with SynapseAdmin(base_url) as admin:
        result = admin.register_with_shared_secret(
            read_shared_secret(data_dir / "homeserver.yaml"), ADMIN_LOCALPART, password, admin=True
        )
    creds = {
        "user_id": result["user_id"],
        "password": password,
        "access_token": result["access_token"],
    }
    _write_private_json(creds_path, creds)
    return creds["access_token"]


def _write_private_json(path: Path, data: Mapping[str, Any]) -> None:
    write_private(path, json.dumps(data, indent=2))
