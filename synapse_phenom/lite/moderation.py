"""Moderation of a message sent to Implementation B: the same core, rules and texts as A.

``synapse_phenom.modules.moderation`` runs this sequence inside Synapse; here it runs over
PostgreSQL for the Hasura Action: the room's policy (``ModerationConfig``, same config
and defaults), the pure content check (``CompiledPolicy.check``), exemptions (power level
-> membership role, exempt groups for people, never for agents), then the shared-state
gate (mute, flood) and the audit/escalation writes of ``moderation.store`` run unchanged
on ``chat.moderation_*`` through ``ChatTxn``.

Not applied in B: Matrix ban lists (policy rooms exist only in A) and the notices A posts
to the moderators' room (B moderators read ``moderation_audit`` through Hasura).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs
import psycopg

from synapse_phenom.moderation import store
from synapse_phenom.moderation.config import DEFAULT_POLICY, ModerationConfig
from synapse_phenom.moderation.rules import (
    CompiledPolicy,
    Violation,
    flood_counts,
    flood_violation,
    mute_violation,
)

MESSAGE_TYPE = "m.room.message"
# Membership role -> the power level A's exemptions compare with.
ROLE_POWER = {"admin": 100, "moderator": 50, "member": 0}


class ChatTxn:
    """``moderation.store``'s transaction interface on a psycopg connection: ``?`` becomes
    ``%s`` and A's ``phenom_moderation_*`` tables become B's ``chat.moderation_*`` (same
    columns), so the store's SQL runs as written."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._cur = conn.cursor()

    def execute(self, sql: str, args: Any = ()) -> None:
        self._cur.execute(
            sql.replace("phenom_moderation_", "chat.moderation_").replace("?", "%s"),
            args,
        )

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._cur.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cur.fetchall()


@attrs.frozen
class Sender:
    user_id: str
    is_agent: bool
    groups: frozenset[str]
    role: str  # membership role in the room
    created_s: float  # account creation, epoch seconds


def message_content(body: str, formatted_body: str | None) -> dict[str, Any]:
    """The Matrix content A's rules read, for a B message."""
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    if formatted_body is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = formatted_body
    return content


class LiteModeration:
    def __init__(self, config: ModerationConfig) -> None:
        self.config = config
        self._compiled: dict[str, CompiledPolicy] = {}

    def policy(self, room_key: str) -> CompiledPolicy:
        name = room_key if room_key in self.config.policies else DEFAULT_POLICY
        compiled = self._compiled.get(name)
        if compiled is None:
            compiled = CompiledPolicy(
                name,
                self.config.policies[name],
                max_scan_chars=self.config.max_scan_chars,
                regex_max_mem=self.config.regex_max_mem,
            )
            self._compiled[name] = compiled
        return compiled

    @staticmethod
    def is_exempt(compiled: CompiledPolicy, sender: Sender) -> bool:
        ex = compiled.policy.exemptions
        if ex.power_level is not None and ROLE_POWER.get(sender.role, 0) >= ex.power_level:
            return True
        # As in A: groups exempt people (staff), never agents (their groups only admit them).
        return bool(ex.groups) and not sender.is_agent and not sender.groups.isdisjoint(ex.groups)

    def check(
        self,
        conn: psycopg.Connection[Any],
        room_key: str,
        room_id: str,
        sender: Sender,
        content: Mapping[str, Any],
        now_ms: int | None = None,
        event_type: str = MESSAGE_TYPE,
    ) -> Violation | None:
        """None when the message may be sent; otherwise the violation, already audited (and
        escalated to a mute when the policy says so). Run inside the caller's transaction.
        ``event_type``: the Matrix type A would see (``m.reaction`` for a reaction)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        compiled = self.policy(room_key)
        policy = compiled.policy
        new_until = None
        if policy.new_accounts is not None and policy.new_accounts.min_age_seconds:
            until = sender.created_s + policy.new_accounts.min_age_seconds
            new_until = until if until > now_ms / 1000 else None
        violation = compiled.check(event_type, content, new_account_until_s=new_until)
        needs_gate = bool(policy.flood or policy.escalation)
        if (violation is not None or needs_gate) and self.is_exempt(compiled, sender):
            return None
        txn = ChatTxn(conn)
        if needs_gate:
            flood = None
            if (
                violation is None
                and policy.flood
                and flood_counts(event_type, False, policy.flood.exempt_event_types)
            ):
                flood = (int(policy.flood.per_seconds * 1000), policy.flood.messages)
            gate = store.gate(txn, sender.user_id, room_id, now_ms, flood)
            if gate.muted_until is not None:
                return mute_violation(gate.muted_until, now_ms)
            if gate.flood is not None and not gate.flood.allowed and policy.flood:
                violation = flood_violation(
                    gate.flood, policy.flood.messages, policy.flood.per_seconds
                )
        if violation is None:
            return None
        esc = policy.escalation
        escalation = (
            (esc.violations, esc.window_seconds * 1000, esc.mute_seconds * 1000) if esc else None
        )
        row = store.AuditRow(
            now_ms,
            room_id,
            sender.user_id,
            compiled.name,
            violation.rule,
            "block",
            event_type,
            violation.detail,
        )
        store.record(txn, row, escalation)
        return violation
