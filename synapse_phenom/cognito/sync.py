"""Group changes in Cognito → chat, without a sign-in: the pure part.

Two ways in (docs/cognito.md, "Group changes without a sign-in"):

- an EventBridge rule forwards CloudTrail's record of a group change
  (``AdminAddUserToGroup`` and friends) to the group-sync Lambda, which re-reads that
  user's groups and stores them in chat (rooms follow at once);
- a scheduled full reconcile (Lambda or ``phenom-chat reconcile``) compares every
  Cognito group's members with the groups chat has stored, and fixes the differences.

This module decides *what* to do; ``synapse_phenom.lambdas.group_sync`` does the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs
from pydantic import BaseModel, ConfigDict, ValidationError

# CloudTrail writes this instead of a value it treats as sensitive (Cognito's
# ``Username`` is marked sensitive in the API model).
REDACTED = "HIDDEN_DUE_TO_SECURITY_REASONS"
DETAIL_TYPE = "AWS API Call via CloudTrail"
SOURCE = "aws.cognito-idp"
EVENT_SOURCE = "cognito-idp.amazonaws.com"

# Calls that change which groups a user has (or whether the user counts at all).
USER_EVENTS = frozenset(
    {
        "AdminAddUserToGroup",
        "AdminRemoveUserFromGroup",
        "AdminDisableUser",
        "AdminEnableUser",
        "AdminDeleteUser",
    }
)
# Calls that change many users at once: only a full reconcile answers them.
POOL_EVENTS = frozenset({"DeleteGroup"})
SUPPORTED_EVENTS = USER_EVENTS | POOL_EVENTS


class _Detail(BaseModel):
    model_config = ConfigDict(extra="allow")
    eventSource: str
    eventName: str
    requestParameters: dict[str, Any] | None = None
    additionalEventData: dict[str, Any] | None = None
    errorCode: str | None = None
    awsRegion: str = ""


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    detail_type: str = ""
    source: str = ""
    detail: _Detail


class EventError(ValueError):
    """The event is not a CloudTrail record this Lambda can act on (nothing done)."""


@attrs.frozen
class GroupEvent:
    """What a CloudTrail record says happened.

    ``scope`` is ``"user"`` when ``username`` (or ``sub``) names the user, ``"pool"`` when
    only a full reconcile of ``user_pool_id`` can answer it (username redacted, a group
    deleted), ``"ignore"`` for a failed call or an event of no interest.
    """

    scope: Literal["user", "pool", "ignore"]
    event_name: str
    user_pool_id: str = ""
    username: str | None = None
    sub: str | None = None
    group: str | None = None
    region: str = ""
    reason: str = ""


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return None if not value or value == REDACTED else value


def parse_event(event: Any) -> GroupEvent:
    """Read an EventBridge "AWS API Call via CloudTrail" event from ``aws.cognito-idp``.

    Raises ``EventError`` for anything else (a wrongly wired rule: nothing to do).
    """
    if not isinstance(event, Mapping):
        raise EventError("the event is not a JSON object")
    data = dict(event)
    data["detail_type"] = data.pop("detail-type", "")
    try:
        envelope = _Envelope.model_validate(data)
    except ValidationError as err:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:3]
        )
        raise EventError(f"not a CloudTrail API-call event ({where})") from None
    detail = envelope.detail
    if envelope.detail_type != DETAIL_TYPE or detail.eventSource != EVENT_SOURCE:
        raise EventError(
            f"expected detail-type {DETAIL_TYPE!r} from {EVENT_SOURCE}, got "
            f"{envelope.detail_type!r} from {detail.eventSource!r}"
        )
    name = detail.eventName
    if name not in SUPPORTED_EVENTS:
        return GroupEvent(scope="ignore", event_name=name, reason="not a group change")
    if detail.errorCode:
        return GroupEvent(
            scope="ignore", event_name=name, reason=f"the call failed ({detail.errorCode})"
        )
    params = detail.requestParameters or {}
    pool = _clean(params.get("userPoolId"))
    if pool is None:
        raise EventError(f"{name}: requestParameters.userPoolId is missing")
    extra = detail.additionalEventData or {}
    username = _clean(params.get("username"))
    sub = _clean(extra.get("sub"))
    group = _clean(params.get("groupName"))
    region = detail.awsRegion
    if name in POOL_EVENTS or (username is None and sub is None):
        why = "a group changed as a whole" if name in POOL_EVENTS else "the username is redacted"
        return GroupEvent("pool", name, pool, group=group, region=region, reason=why)
    return GroupEvent("user", name, pool, username=username, sub=sub, group=group, region=region)


# -- full reconcile -------------------------------------------------------------


@attrs.frozen
class CognitoMember:
    """A user as ``ListUsersInGroup`` returns them."""

    sub: str
    username: str
    enabled: bool


def desired_groups(members_by_group: Mapping[str, Iterable[CognitoMember]]) -> dict[str, list[str]]:
    """sub → sorted groups, for every enabled user in at least one group.

    Disabled users are left out: they keep no group in chat while disabled.
    """
    out: dict[str, set[str]] = {}
    for group, members in members_by_group.items():
        for member in members:
            if member.enabled:
                out.setdefault(member.sub, set()).add(group)
    return {sub: sorted(groups) for sub, groups in out.items()}


@attrs.frozen
class Change:
    user_id: str
    groups: list[str]
    was: list[str]


def plan_reconcile(
    desired: Mapping[str, list[str]],
    accounts: Mapping[str, str],
    stored: Mapping[str, list[str]],
    linked_subs: Mapping[str, str | None],
) -> list[Change]:
    """The group writes that make chat match Cognito.

    - ``desired``: sub → groups from Cognito (``desired_groups``);
    - ``accounts``: sub → chat user id, for the desired subs that have a chat account;
    - ``stored``: chat user id → non-empty stored groups (every such user);
    - ``linked_subs``: chat user id (of ``stored`` users not in ``accounts``) → the Cognito
      sub it is linked to, or None when it is not a Cognito account (left alone).

    A Cognito-linked chat user whose sub has no desired groups (removed from every group,
    disabled, deleted from the pool) gets ``[]``: Community only.
    """
    changes: list[Change] = []
    covered: set[str] = set()
    for sub, groups in sorted(desired.items()):
        user_id = accounts.get(sub)
        if user_id is None:
            continue  # never signed in to chat: their account is made at first sign-in
        covered.add(user_id)
        was = sorted(stored.get(user_id, []))
        if was != sorted(groups):
            changes.append(Change(user_id=user_id, groups=sorted(groups), was=was))
    for user_id, was in sorted(stored.items()):
        if user_id in covered or not was:
            continue
        linked = linked_subs.get(user_id)
        if linked is None or linked in desired:
            continue
        changes.append(Change(user_id=user_id, groups=[], was=sorted(was)))
    return changes
