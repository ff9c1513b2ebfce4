"""Restarts, a second Synapse on the same database, and bad config: rooms are never duplicated."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from harness import (
    SynapseStack,
    create_postgres_database,
    drop_postgres_database,
    eventually,
    free_port,
    postgres_dsn,
    require_postgres_dsn,
)

from synapse_phenom.ops import devstack, hsconfig

pytestmark = pytest.mark.synapse

MANAGED_NAMES = {"Internal", "Partners", "Community"}


def managed_room_count(stack: SynapseStack) -> dict[str, int]:
    with stack.admin() as admin:
        resp = admin._http.get(
            "/_synapse/admin/v1/rooms",
            params={"limit": 500},
            headers={"Authorization": f"Bearer {stack.admin_token}"},
        )
    resp.raise_for_status()
    counts = dict.fromkeys(MANAGED_NAMES, 0)
    for room in resp.json()["rooms"]:
        if room.get("name") in counts and room.get("creator") == "@phenom:localhost":
            counts[room["name"]] += 1
    return counts


def own_database(engine_db: hsconfig.DevDatabase, data_dir: Path) -> hsconfig.DevDatabase:
    if engine_db.engine == "sqlite":
        return hsconfig.DevDatabase(path=str(data_dir / "shared.db"))
    dsn = postgres_dsn()
    assert dsn
    return create_postgres_database(dsn)


def start_second(first: SynapseStack, data_dir: Path) -> SynapseStack:
    """Another Synapse process (own port, pid, logs) on the first one's database."""
    data_dir.mkdir()
    shutil.copy(first.data_dir / "signing.key", data_dir / "signing.key")
    first.admin_token  # noqa: B018 - make sure the dev admin (a row in the shared database) exists
    shutil.copy(first.data_dir / "admin-credentials.json", data_dir / "admin-credentials.json")
    return SynapseStack.start(data_dir, first.database)


def test_restart_and_second_process_never_duplicate_rooms(
    synapse_database: hsconfig.DevDatabase, tmp_path: Path
) -> None:
    database = own_database(synapse_database, tmp_path)
    first = SynapseStack.start(tmp_path / "a", database)
    second = None

    # Room stats (the admin room list) are updated asynchronously: allow them to catch up.
    def one_of_each() -> bool:
        counts = managed_room_count(first)
        assert counts == dict.fromkeys(MANAGED_NAMES, 1), counts
        return True

    try:
        rooms_before = dict(first.rooms)
        # Let the stats of the new rooms land before the restart: a restart in the middle of
        # stats processing left a room out of the admin list for good on Synapse 1.155.
        eventually(one_of_each, timeout=30)
        first.restart()
        assert first.rooms == rooms_before
        second = start_second(first, tmp_path / "b")
        assert second.rooms == rooms_before
        eventually(one_of_each, timeout=30)
    finally:
        if second:
            second.stop()
        first.stop()
        if database.engine == "postgres":
            drop_postgres_database(postgres_dsn() or "", database.name)


def test_two_processes_racing_on_an_empty_database(tmp_path: Path) -> None:
    """PostgreSQL only: Synapse does not support two processes on one SQLite file."""
    dsn = require_postgres_dsn("two Synapse processes can share PostgreSQL only")
    database = create_postgres_database(dsn)
    # Synapse cannot create its own schema from two processes at once, so let one
    # process create the schema (with the rooms under other aliases) first.
    seed_config = devstack.prepare_synapse(
        tmp_path / "seed",
        port=free_port(),
        database=database,
        module_overrides={
            hsconfig.ROOMS_MODULE: {
                "rooms": {"community": {"alias": "seed", "name": "Seed"}},
                "groups": {},
                "everyone": ["community"],
            }
        },
    )
    seed = devstack.start_synapse(seed_config)
    try:
        devstack.wait_http(f"{devstack.base_url_of(seed_config)}/_matrix/client/versions", [seed])
    finally:
        seed.stop()
    stacks: list[SynapseStack] = []
    errors: list[BaseException] = []

    def boot(name: str) -> None:
        try:
            # Both would register the dev admin at once: check creation once both are up.
            stacks.append(SynapseStack.start(tmp_path / name, database, wait_created=False))
        except BaseException as err:
            errors.append(err)

    # Same signing key for both (one server). The second copies it once written.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    devstack.ensure_signing_key(tmp_path / "a" / "signing.key")
    shutil.copy(tmp_path / "a" / "signing.key", tmp_path / "b" / "signing.key")
    threads = [threading.Thread(target=boot, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        assert stacks[0].rooms == stacks[1].rooms
        stacks[0].wait_rooms_created()
        eventually(
            lambda: managed_room_count(stacks[0]) == dict.fromkeys(MANAGED_NAMES, 1), timeout=30
        )
    finally:
        for stack in stacks:
            stack.stop()
        drop_postgres_database(dsn, database.name)


def test_invalid_module_config_fails_startup_naming_the_key(tmp_path: Path) -> None:
    config_path = devstack.prepare_synapse(
        tmp_path,
        port=free_port(),
        module_overrides={
            hsconfig.ROOMS_MODULE: {"groups": {"team": ["lobby"]}, "everyone": "community"}
        },
    )
    proc = devstack.start_synapse(config_path)
    try:
        proc.popen.wait(60)
    finally:
        proc.stop()
    assert proc.popen.returncode != 0
    log = proc.log_tail(200)
    assert "modules[synapse_phenom.modules.rooms.PhenomRooms].config" in log
    assert "everyone" in log


@pytest.mark.parametrize("key", ["allow_per_room_profiles", "include_profile_data_on_invite"])
def test_profile_display_names_need_global_profiles(tmp_path: Path, key: str) -> None:
    """display_names: profile with per-room profiles allowed (or the invitee's profile in
    invites) would leave names unchecked: Synapse does not start, the error names both keys."""
    config_path = devstack.prepare_synapse(tmp_path, port=free_port())
    with config_path.open("a") as f:
        f.write(f"\n{key}: true\n")  # the last of a duplicate key wins
    proc = devstack.start_synapse(config_path)
    try:
        proc.popen.wait(60)
    finally:
        proc.stop()
    assert proc.popen.returncode != 0
    log = proc.log_tail(200)
    assert f"{key}: false" in log and "display_names" in log, log


def test_rate_limited_group_sync_converges(tmp_path: Path) -> None:
    """A burst of provisioning beyond Synapse's per-room join limit still ends with everyone in."""
    stack = SynapseStack.start(
        tmp_path / "limited",
        hsconfig.DevDatabase(),
        extra_values={"rc_joins_per_second": 1, "rc_joins_burst": 2},
    )
    try:
        users = [stack.user_id(f"burst{i}") for i in range(5)]
        with stack.admin() as admin:
            for user in users:
                admin.provision(user, [])

        def everyone_in() -> bool:
            with stack.admin() as admin:
                members = admin._http.get(
                    f"/_synapse/admin/v1/rooms/{stack.rooms['community']}/members",
                    headers={"Authorization": f"Bearer {stack.admin_token}"},
                ).json()["members"]
            return set(users) <= set(members)

        eventually(everyone_in, timeout=90, interval=0.5)
        log = (stack.data_dir / "homeserver.log").read_text()
        assert "Rate limited reconciling" in log, "the burst should have hit the join limit"
    finally:
        stack.stop()
