"""A room's default notification level for a member, as a room-level push rule.

Synapse 1.163's module API cannot create a push rule (``ModuleApi.set_push_rule_action``
only changes the actions of a rule that already exists, and a room rule does not exist
until someone creates it), and Synapse has no server-side push-rule defaults. So this
adapter uses the same two calls as Synapse's own ``PUT /pushrules/global/room/<room_id>``
servlet (``synapse/rest/client/push_rule.py``): ``store.add_push_rule`` (which also bumps
the push-rules stream and invalidates the rule caches) and
``PushRulesHandler.notify_user`` (wakes the member's ``/sync``). Both are private
Synapse API: ``tests/integration/test_notification_defaults.py`` fails if an upgrade
changes them. Only the push-rules stream writer may write (the main process unless
``stream_writers.push_rules`` says otherwise); elsewhere ``available`` is False and the
caller leaves the rule to the writer (the member's next reconcile there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synapse.module_api import ModuleApi

from synapse_phenom.db import now_ms
from synapse_phenom.rooms import store as rooms_store

ROOM_PRIORITY_CLASS = 3  # synapse.push.rulekinds.PRIORITY_CLASS_MAP["room"]
MENTIONS_ONLY_ACTIONS = ["dont_notify"]


def _store(api: ModuleApi) -> Any:
    return api._store  # private: see the module docstring


def available(api: ModuleApi) -> bool:
    return bool(getattr(_store(api), "_is_push_writer", False))


def room_rule_id(room_id: str) -> str:
    return f"global/room/{room_id}"


async def has_room_rule(api: ModuleApi, user_id: str, room_id: str) -> bool:
    """Whether the member already has a room rule for this room (their own choice)."""
    rules = await _store(api).get_push_rules_for_user(user_id)
    wanted = room_rule_id(room_id)
    return any(rule.rule_id == wanted for rule, _enabled in rules.rules())


async def set_room_mentions_only(api: ModuleApi, user_id: str, room_id: str) -> None:
    """What ``PUT /pushrules/global/room/<room_id> {"actions": ["dont_notify"]}`` does."""
    await _store(api).add_push_rule(
        user_id=user_id,
        rule_id=room_rule_id(room_id),
        priority_class=ROOM_PRIORITY_CLASS,
        conditions=[{"kind": "event_match", "key": "room_id", "pattern": room_id}],
        actions=MENTIONS_ONLY_ACTIONS,
    )
    api._push_rules_handler.notify_user(user_id)  # private, as above


async def apply_room_default(api: ModuleApi, user_id: str, room_id: str, level: str) -> bool:
    """Apply a room's notification default to a joined member, once; True if a rule was set.

    Once per (member, room), recorded in ``phenom_notification_defaults``: a member who
    later chooses "all messages" keeps that choice. A member whose own room rule exists
    already keeps it too (recorded, not overwritten).
    """
    if level == "default" or not available(api):
        return False
    if await api.run_db_interaction(
        "phenom_notification_default_applied",
        rooms_store.notification_default_applied,
        user_id,
        room_id,
    ):
        return False
    changed = False
    if not await has_room_rule(api, user_id, room_id):
        await set_room_mentions_only(api, user_id, room_id)
        changed = True
    await api.run_db_interaction(
        "phenom_notification_default_mark",
        rooms_store.mark_notification_default,
        user_id,
        room_id,
        level,
        now_ms(),
    )
    return changed


async def sweep_room(
    api: ModuleApi, room_id: str, level: str, applies_to: Callable[[str], bool]
) -> int:
    """Apply the room's default to every joined member it was never applied to (members
    from before the setting, or who joined while no push writer ran); the number of rules
    set. Members it was applied to once are skipped in one query, whatever they chose."""
    if level == "default" or not available(api):
        return 0
    state = await api.get_room_state(room_id, [("m.room.member", None)])
    joined = [
        user_id
        for (_, user_id), event in state.items()
        if event.content.get("membership") == "join" and applies_to(user_id)
    ]
    done = await api.run_db_interaction(
        "phenom_notification_defaults_of_room", rooms_store.notification_defaults_of_room, room_id
    )
    changed = 0
    for i, user_id in enumerate(u for u in joined if u not in done):
        changed += await apply_room_default(api, user_id, room_id, level)
        if i % 100 == 99:
            await api.sleep(0.05)  # a long backlog must not hold the reactor
    return changed
