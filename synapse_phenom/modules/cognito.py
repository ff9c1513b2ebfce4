"""Cognito sign-in: the OIDC user mapping provider and the login-time group sync.

Configure in ``oidc_providers`` (``phenom-chat render-config`` writes this block)::

    oidc_providers:
      - idp_id: cognito
        issuer: https://cognito-idp.<region>.amazonaws.com/<pool id>
        ...
        user_mapping_provider:
          module: synapse_phenom.modules.cognito.CognitoMappingProvider
          config: {}   # see docs/cognito.md

How groups from the ID token reach rooms, once per SSO login:

1. ``CognitoMappingProvider.get_extra_attributes`` (every login, before a first
   login registers the user) stores ``cognito:groups`` keyed by ``sub``;
2. the rooms module's ``on_user_login`` calls ``on_login`` here: for the
   ``m.login.sso`` half it takes those groups (user → sub via Synapse's external
   ids), stores them for the user, reconciles rooms and leaves a mark;
3. the ``m.login.token`` half of the same login (maybe another worker) consumes the
   mark instead of reconciling again.

Everything crosses through the database: the provider and the ``modules:``
instances are separate objects, possibly in separate processes.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from synapse.handlers.sso import MappingException
from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

from synapse_phenom import cognito_claims, cognito_store
from synapse_phenom.cognito_config import MAPPING_PROVIDER, CognitoMappingConfig
from synapse_phenom.config import InvalidConfig, parse_model
from synapse_phenom.modules._compat import require_module_api

if TYPE_CHECKING:
    from synapse_phenom.modules.rooms import PhenomRooms

logger = logging.getLogger(__name__)

SSO_LOGIN = "m.login.sso"
TOKEN_LOGIN = "m.login.token"
# The provider stores groups moments before the login callback, in the same request.
PENDING_MAX_AGE_MS = 10 * 60 * 1000
# Login tokens live 2 minutes by default; the token half follows within that.
MARK_MAX_AGE_MS = 5 * 60 * 1000

SSO_LOGIN_SYNCS = Counter(
    "phenom_sso_login_syncs_total",
    "Group syncs at SSO login: 'reconciled' (m.login.sso half), 'deduplicated' (m.login.token "
    "half skipped), 'no_groups' (SSO login without groups from the mapping provider)",
    ["outcome"],
)

_schema_ready = False


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _ensure_schema(api: ModuleApi) -> None:
    global _schema_ready
    if not _schema_ready:
        await api.run_db_interaction("phenom_cognito_schema", cognito_store.create_schema)
        _schema_ready = True


class CognitoMappingProvider:
    """Maps Cognito ID-token claims to a Matrix account; see ``cognito_claims``."""

    def __init__(self, parsed_config: CognitoMappingConfig, module_api: ModuleApi) -> None:
        require_module_api("cognito", module_api)
        self._config = parsed_config
        self._api = module_api

    @staticmethod
    def parse_config(config: dict[str, Any]) -> CognitoMappingConfig:
        try:
            return parse_model(
                CognitoMappingConfig,
                config,
                f"oidc_providers[].user_mapping_provider[{MAPPING_PROVIDER}].config",
            )
        except InvalidConfig as err:
            raise ConfigError(str(err)) from None

    def get_remote_user_id(self, userinfo: Any) -> str:
        return cognito_claims.remote_user_id(userinfo)

    async def map_user_attributes(self, userinfo: Any, token: Any, failures: int) -> dict[str, Any]:
        """Attributes for a new account; ``failures`` counts localparts found taken."""
        identity = cognito_claims.identity_from_claims(userinfo)
        localpart = cognito_claims.candidate_localpart(
            identity.localpart,
            identity.sub,
            failures,
            self._config.reserved_localparts,
            self._config.reserved_prefixes,
        )
        return {
            "localpart": localpart,
            "display_name": identity.display_name,
            "emails": [identity.email] if identity.email else [],
            "picture": None,
            "confirm_localpart": self._config.confirm_localpart,
        }

    async def get_extra_attributes(self, userinfo: Any, token: Any) -> dict[str, Any]:
        """Runs at every login: park the token's groups for the login callback.

        Fails the login (Synapse shows its mapping-error page) when the groups cannot
        be stored: signing in with stale groups could keep someone in a room they lost.
        """
        identity = cognito_claims.identity_from_claims(userinfo)
        now = _now_ms()
        try:
            await _ensure_schema(self._api)
            await self._api.run_db_interaction(
                "phenom_cognito_put_groups",
                _put_and_purge,
                identity.sub,
                list(identity.groups),
                str(userinfo.get("iss", "")),
                now,
            )
        except Exception as err:
            logger.exception("Could not store Cognito groups of %s", identity.sub)
            raise MappingException("Could not record your groups; please try again.") from err
        return {}  # nothing extra for the client's login response


def _put_and_purge(
    txn: cognito_store.Txn, sub: str, groups: list[str], issuer: str, now: int
) -> None:
    cognito_store.purge_stale_pending(txn, now - PENDING_MAX_AGE_MS)
    cognito_store.put_pending_groups(txn, sub, groups, issuer, now)


async def on_login(
    rooms: PhenomRooms,
    api: ModuleApi,
    user_id: str,
    auth_provider_type: str | None,
    auth_provider_id: str | None,
) -> bool:
    """Group sync for an SSO login; False when this login is not one (caller reconciles).

    Called by the rooms module's ``on_user_login`` (already guarded).
    """
    if not auth_provider_id or auth_provider_type not in (SSO_LOGIN, TOKEN_LOGIN):
        return False
    await _ensure_schema(api)
    now = _now_ms()
    if auth_provider_type == TOKEN_LOGIN:
        if await api.run_db_interaction(
            "phenom_cognito_take_mark", cognito_store.take_sso_mark, user_id, now - MARK_MAX_AGE_MS
        ):
            SSO_LOGIN_SYNCS.labels(outcome="deduplicated").inc()
            return True
        return False  # the SSO half did not reconcile (failed?): the caller does it now
    groups = await api.run_db_interaction(
        "phenom_cognito_take_groups",
        cognito_store.take_pending_groups,
        auth_provider_id,
        user_id,
        now - PENDING_MAX_AGE_MS,
    )
    if groups is None:
        SSO_LOGIN_SYNCS.labels(outcome="no_groups").inc()
        await rooms.reconcile(user_id)
    else:
        await rooms.set_groups_and_reconcile(user_id, groups, f"sso:{auth_provider_id}")
        SSO_LOGIN_SYNCS.labels(outcome="reconciled").inc()
    await api.run_db_interaction(
        "phenom_cognito_mark", cognito_store.mark_sso_reconciled, user_id, now
    )
    return True
