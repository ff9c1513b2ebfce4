"""Users, rooms and group-based memberships in Implementation B (PostgreSQL ``chat`` schema).

The rooms core (``synapse_phenom.rooms.membership``) plans who belongs where, exactly as for
Implementation A: the same ``RoomsConfig``, the same ``plan_memberships`` (a ban outranks
groups), the same removal reasons. This module only carries the plan out, in one
transaction per user, so a failure leaves nothing half-done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import psycopg
from psycopg import errors as pg_errors

from synapse_phenom.cognito import claims as cognito_claims
from synapse_phenom.cognito.config import CognitoMappingConfig
from synapse_phenom.rooms.config import RoomsConfig
from synapse_phenom.rooms.membership import (
    MembershipPlan,
    groups_for_rooms,
    normalise_groups,
    plan_agent_rooms,
    plan_memberships,
    removal_reason,
)

MAX_USERNAME_TRIES = 20
_RESERVED = tuple(CognitoMappingConfig().reserved_localparts)
_RESERVED_PREFIXES = tuple(CognitoMappingConfig().reserved_prefixes)


@attrs.frozen
class LiteUser:
    """A person (id = Cognito ``sub``) or an agent (id = its Cognito app client id)."""

    id: str
    username: str | None  # wanted handle before collision suffixes; None: derived from the id
    display_name: str | None = None
    email: str | None = None
    groups: tuple[str, ...] = ()
    is_agent: bool = False


@attrs.frozen
class LiteProvisionResult:
    user_id: str
    username: str
    created: bool
    groups: tuple[str, ...]
    joined: tuple[str, ...]
    removed: tuple[str, ...]


def user_from_identity(identity: cognito_claims.CognitoIdentity) -> LiteUser:
    """The B user for a Cognito identity (same name rules as A's account)."""
    return LiteUser(
        id=identity.sub,
        username=identity.localpart,
        display_name=identity.display_name,
        email=identity.email,
        groups=identity.groups,
    )


def ensure_rooms(conn: psycopg.Connection[Any], config: RoomsConfig) -> dict[str, str]:
    """Create or update the managed rooms from ``config``; room key -> room id."""
    ids: dict[str, str] = {}
    for key, spec in config.rooms.items():
        row = conn.execute(
            """
            INSERT INTO chat.rooms (key, alias, name, topic, join_rule, published)
            VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (key) DO UPDATE SET
                alias = excluded.alias, name = excluded.name, topic = excluded.topic,
                join_rule = excluded.join_rule, published = excluded.published
            WHERE (chat.rooms.alias, chat.rooms.name, chat.rooms.topic, chat.rooms.join_rule,
                   chat.rooms.published)
               IS DISTINCT FROM (excluded.alias, excluded.name, excluded.topic,
                                 excluded.join_rule, excluded.published)
            RETURNING id::text
            """,
            (key, spec.alias, spec.name, spec.topic, spec.join_rule, spec.published),
        ).fetchone()
        if row is None:  # unchanged: nothing returned
            row = conn.execute("SELECT id::text FROM chat.rooms WHERE key = %s", (key,)).fetchone()
        assert row is not None
        ids[key] = row[0]
    return ids


def _current(
    conn: psycopg.Connection[Any], user_id: str, rooms: Mapping[str, str]
) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT room_id::text, membership FROM chat.memberships WHERE user_id = %s", (user_id,)
    ).fetchall()
    by_room = {room_id: membership for room_id, membership in rows}
    return {key: by_room.get(room_id) for key, room_id in rooms.items()}


def _apply(
    conn: psycopg.Connection[Any],
    config: RoomsConfig,
    user_id: str,
    rooms: Mapping[str, str],
    plan: MembershipPlan,
) -> None:
    for key in plan.join:
        conn.execute(
            """
            INSERT INTO chat.memberships (room_id, user_id, membership, reason)
            VALUES (%s, %s, 'join', NULL)
            ON CONFLICT (room_id, user_id) DO UPDATE SET membership = 'join', reason = NULL
            """,
            (rooms[key], user_id),
        )
    for key in plan.remove:
        conn.execute(
            "UPDATE chat.memberships SET membership = 'leave', reason = %s"
            " WHERE room_id = %s AND user_id = %s",
            (removal_reason(config, key), rooms[key], user_id),
        )


def _upsert_user(
    conn: psycopg.Connection[Any], user: LiteUser, groups: list[str], source: str
) -> tuple[str, bool]:
    """(username, created). An existing user keeps name and profile; only groups change."""
    row = conn.execute(
        "UPDATE chat.users SET groups = %s, groups_source = %s WHERE id = %s"
        " RETURNING username, is_agent",
        (groups, source, user.id),
    ).fetchone()
    if row is not None:
        if row[1] != user.is_agent:
            what = "an agent" if row[1] else "a person"
            raise ValueError(f"user id {user.id!r} already belongs to {what}")
        return row[0], False
    reserved = () if user.is_agent else _RESERVED
    prefixes = () if user.is_agent else _RESERVED_PREFIXES
    for failures in range(MAX_USERNAME_TRIES):
        username = cognito_claims.candidate_localpart(
            user.username, user.id, failures, reserved, prefixes
        )
        try:
            with conn.transaction():  # savepoint: a taken name does not abort the outer transaction
                inserted = conn.execute(
                    """
                    INSERT INTO chat.users
                        (id, username, display_name, email, groups, groups_source, is_agent)
                    VALUES (%s, %s, %s, %s, %s, %s, %s)
                    ON CONFLICT (id) DO NOTHING
                    RETURNING username
                    """,
                    (
                        user.id,
                        username,
                        user.display_name,
                        user.email,
                        groups,
                        source,
                        user.is_agent,
                    ),
                ).fetchone()
        except pg_errors.UniqueViolation:
            continue  # username taken: try the next candidate
        if inserted is None:  # created concurrently by another provisioner
            return _upsert_user(conn, user, groups, source)
        return inserted[0], True
    raise ValueError(f"no free username for {user.username!r} after {MAX_USERNAME_TRIES} tries")


def provision_user(
    conn: psycopg.Connection[Any],
    config: RoomsConfig,
    user: LiteUser,
    source: str = "cli",
    display_name: str | None = None,
) -> LiteProvisionResult:
    """Create or update ``user``, store groups, reconcile memberships; one transaction.

    ``display_name`` (the CLI's --display-name) overwrites the stored one. Group names are
    validated before anything is written.
    """
    if user.is_agent:
        raise ValueError(
            "agents are provisioned with provision_agent (their rooms come from their profile)"
        )
    groups = normalise_groups(user.groups)
    with conn.transaction():
        rooms = ensure_rooms(conn, config)
        username, created = _upsert_user(conn, user, groups, source)
        if display_name is not None:
            conn.execute(
                "UPDATE chat.users SET display_name = %s WHERE id = %s", (display_name, user.id)
            )
        current = _current(conn, user.id, rooms)
        plan = plan_memberships(config, groups, current)
        _apply(conn, config, user.id, rooms, plan)
    return LiteProvisionResult(user.id, username, created, tuple(groups), plan.join, plan.remove)


def provision_agent(
    conn: psycopg.Connection[Any],
    config: RoomsConfig,
    agent_id: str,
    username: str,
    wanted_rooms: Iterable[str],
    display_name: str | None = None,
) -> LiteProvisionResult:
    """An agent row (id = app client id, username = its localpart) in exactly ``wanted_rooms``,
    with the same smallest granting groups A gives it (``rooms.membership``)."""
    wanted = sorted(set(wanted_rooms))
    for key in wanted:
        if key not in config.rooms:
            raise ValueError(f"unknown room {key!r}; known: {sorted(config.rooms)}")
    groups = groups_for_rooms(config, wanted)
    user = LiteUser(agent_id, username, display_name, None, tuple(groups), is_agent=True)
    with conn.transaction():
        rooms = ensure_rooms(conn, config)
        name, created = _upsert_user(conn, user, groups, "agent")
        if display_name is not None:
            conn.execute(
                "UPDATE chat.users SET display_name = %s WHERE id = %s", (display_name, agent_id)
            )
        plan = plan_agent_rooms(config, wanted, _current(conn, agent_id, rooms))
        _apply(conn, config, agent_id, rooms, plan)
    return LiteProvisionResult(agent_id, name, created, tuple(groups), plan.join, plan.remove)
