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
2. the rooms module's ``on_user_login`` hands the login to
   ``synapse_phenom.cognito.login.sync_sso_login``, which gives those groups to the
   rooms module (it reconciles) once per login.

Everything crosses through the database: the provider and the ``modules:``
instances are separate objects, possibly in separate processes.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.handlers.sso import MappingException
from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

from synapse_phenom.cognito import claims as cognito_claims
from synapse_phenom.cognito.config import MAPPING_PROVIDER, CognitoMappingConfig
from synapse_phenom.cognito.login import ensure_schema, put_and_purge
from synapse_phenom.config import InvalidConfig, parse_model
from synapse_phenom.db import now_ms
from synapse_phenom.modules._compat import require_module_api

logger = logging.getLogger(__name__)


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
        now = now_ms()
        try:
            await ensure_schema(self._api)
            await self._api.run_db_interaction(
                "phenom_cognito_put_groups",
                put_and_purge,
                identity.sub,
                list(identity.groups),
                str(userinfo.get("iss", "")),
                now,
            )
        except Exception as err:
            logger.exception("Could not store Cognito groups of %s", identity.sub)
            raise MappingException("Could not record your groups; please try again.") from err
        return {}  # nothing extra for the client's login response
