"""Cognito identity → Matrix account: pure claim mapping, no Synapse.

One set of rules for both ways a Cognito user reaches Matrix: the OIDC mapping
provider (claims of the ID token) and the user-provisioner Lambda (the
PostAuthentication event's user attributes plus ``admin_list_groups_for_user``).
Both must pick the same Matrix ID, display name, email and groups.
"""

from __future__ import annotations

import itertools
import logging
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from synapse_phenom.rooms.membership import normalise_groups

logger = logging.getLogger(__name__)

# Synapse accepts these in a localpart (types.mxid_localpart_allowed_characters).
_INVALID_LOCALPART_RUN = re.compile(r"[^a-z0-9._=\-/+]+")
_EDGE_JUNK = "._-=/+"
# The whole user ID may be 255 characters; leave room for ":server" and a suffix.
MAX_LOCALPART = 64


@attrs.frozen
class CognitoIdentity:
    """What Phenom takes from a Cognito user, whichever way it arrived."""

    sub: str
    # Normalised localpart before collision suffixes; None when nothing usable exists.
    localpart: str | None
    display_name: str | None
    email: str | None
    groups: tuple[str, ...]


class ClaimError(ValueError):
    """The claims cannot identify a user (no ``sub``)."""


def remote_user_id(claims: Mapping[str, Any]) -> str:
    """The stable Cognito id: ``sub``. Never the username (users can be renamed/recreated)."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise ClaimError("the Cognito token has no 'sub' claim")
    return sub.strip()


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def normalise_localpart(raw: str) -> str | None:
    """A valid Matrix localpart from free text, or None if nothing usable is left.

    Lower-cases, folds accents to ASCII, turns runs of other characters into ``_``,
    trims punctuation at the edges (a leading ``_`` is refused by Synapse) and
    prefixes all-digit names (reserved for guests).
    """
    folded = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode().lower()
    local = (
        _INVALID_LOCALPART_RUN.sub("_", folded).strip(_EDGE_JUNK)[:MAX_LOCALPART].rstrip(_EDGE_JUNK)
    )
    if not local:
        return None
    if local.isdigit():
        local = f"u{local}"
    return local


def _text(claims: Mapping[str, Any], key: str) -> str | None:
    value = claims.get(key)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def username_of(claims: Mapping[str, Any]) -> str | None:
    """The human-chosen name: preferred_username, else a non-UUID cognito:username.

    In email-username pools ``cognito:username`` is the sub UUID: useless as a name.
    """
    preferred = _text(claims, "preferred_username")
    if preferred:
        return preferred
    username = _text(claims, "cognito:username")
    if username and not is_uuid(username):
        return username
    return None


def email_of(claims: Mapping[str, Any]) -> str | None:
    """The email, only when Cognito says it is verified.

    ``email_verified`` is the string "true" in user attributes and userinfo, a JSON
    boolean in ID tokens: accept both, nothing else.
    """
    email = _text(claims, "email")
    verified = claims.get("email_verified")
    is_verified = verified is True or (
        isinstance(verified, str) and verified.strip().lower() == "true"
    )
    if email and is_verified and "@" in email:
        return email
    return None


def localpart_of(claims: Mapping[str, Any]) -> str | None:
    """Localpart from the username, else the email's local part (verified or not:
    it only names the account, it grants nothing)."""
    for raw in (username_of(claims), (_text(claims, "email") or "").split("@", 1)[0]):
        if raw:
            local = normalise_localpart(raw)
            if local:
                return local
    return None


def display_name_of(claims: Mapping[str, Any]) -> str | None:
    """``name``, else given + family name, else the username, else the email's local part."""
    name = _text(claims, "name")
    if name:
        return name
    parts = [p for p in (_text(claims, "given_name"), _text(claims, "family_name")) if p]
    if parts:
        return " ".join(parts)
    username = username_of(claims)
    if username:
        return username
    email = _text(claims, "email")
    return email.split("@", 1)[0] if email else None


def groups_of(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """``cognito:groups`` sorted and de-duplicated; a missing claim means no groups.

    Names Cognito could not have produced are dropped (and logged), never trusted.
    """
    raw = claims.get("cognito:groups")
    if raw is None:
        return ()
    items: Iterable[Any] = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    if not isinstance(raw, (str, list)):
        logger.warning("Ignoring cognito:groups of unexpected type %s", type(raw).__name__)
    groups: set[str] = set()
    for item in items:
        try:
            groups.update(normalise_groups([item]) if isinstance(item, str) else ())
            if isinstance(item, str):
                continue
        except ValueError:
            pass
        logger.warning("Ignoring invalid Cognito group name %r", item)
    return tuple(sorted(groups))


def identity_from_claims(claims: Mapping[str, Any]) -> CognitoIdentity:
    """Everything Phenom needs from ID-token claims (or Lambda user attributes)."""
    return CognitoIdentity(
        sub=remote_user_id(claims),
        localpart=localpart_of(claims),
        display_name=display_name_of(claims),
        email=email_of(claims),
        groups=groups_of(claims),
    )


def claims_from_user_attributes(
    user_attributes: Mapping[str, Any], user_name: str, groups: Iterable[str]
) -> dict[str, Any]:
    """ID-token-shaped claims from a Cognito trigger event, so one mapping serves both."""
    claims: dict[str, Any] = {k: v for k, v in user_attributes.items() if isinstance(v, str)}
    claims["cognito:username"] = user_name
    claims["cognito:groups"] = list(groups)
    return claims


def candidate_localpart(
    base: str | None,
    sub: str,
    failures: int,
    reserved: Iterable[str] = (),
    reserved_prefixes: Iterable[str] = (),
) -> str:
    """The localpart to try after ``failures`` collisions: ``ann``, ``ann1``, ``ann2``...

    Without a usable base the sub names the account (``cognito-<first 8 hex>``).
    Reserved localparts (the system user...) count as taken; a base in a reserved
    namespace (the MCP agents' ``agent-``) is not usable.
    """
    if failures < 0:
        raise ValueError("failures must be >= 0")
    if base and any(base.startswith(p) for p in reserved_prefixes):
        base = None
    root = base or normalise_localpart(f"cognito-{sub.replace('-', '')[:8]}") or "cognito"
    taken = set(reserved)
    # Reserved names are skipped without costing the caller a Synapse round-trip.
    free = 0
    for attempt in itertools.count():
        suffix = str(attempt) if attempt else ""
        local = root[: MAX_LOCALPART - len(suffix)] + suffix
        if local in taken:
            continue
        if free == failures:
            return local
        free += 1
    raise AssertionError("unreachable")


def external_id(idp_id: str, sub: str) -> dict[str, str]:
    """The ``external_ids`` entry Synapse records for this user on provider ``idp_id``."""
    return {"auth_provider": f"oidc-{idp_id}", "external_id": sub}
