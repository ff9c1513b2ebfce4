"""Cognito sign-in config: the mapping provider's settings and Synapse's OIDC provider block.

Pure: ``phenom-chat render-config`` (production, from env) and the test fixtures
(emulator endpoints) build the ``oidc_providers`` entry with the same function.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from synapse_phenom.config import FrozenModel

MAPPING_PROVIDER = "synapse_phenom.modules.cognito.CognitoMappingProvider"
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_POOL_ID = re.compile(r"^([a-z]{2}(?:-[a-z]+)+-\d+)_[A-Za-z0-9]+$")
_IDP_ID = re.compile(r"^[A-Za-z0-9._~-]+$")


class CognitoMappingConfig(FrozenModel):
    """``user_mapping_provider.config`` of ``CognitoMappingProvider``; see docs/cognito.md."""

    # Never handed to a Cognito user, whatever their username (system/admin accounts).
    reserved_localparts: list[str] = Field(
        default_factory=lambda: ["phenom", "phenom-admin", "admin"]
    )
    # Localpart namespaces never handed to a Cognito user (their name falls back to
    # cognito-<sub>): "agent-" is the MCP agents' application-service namespace.
    reserved_prefixes: list[str] = Field(default_factory=lambda: ["agent-"])
    # Let new users edit the proposed Matrix ID on Synapse's pick-a-username page.
    confirm_localpart: bool = False


def region_of_pool(user_pool_id: str) -> str | None:
    match = _POOL_ID.match(user_pool_id)
    return match.group(1) if match else None


def issuer_url(region: str, user_pool_id: str) -> str:
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


class CognitoOidcSettings(FrozenModel):
    """What an operator sets to sign users in with one Cognito app client."""

    user_pool_id: str
    client_id: str
    client_secret_path: str
    region: str = ""  # derived from the pool id when empty
    idp_id: str = "cognito"
    idp_name: str = "Phenom"
    # Only members of this Cognito group may sign in (Synapse's attribute_requirements).
    required_group: str = ""
    mapping: CognitoMappingConfig = Field(default_factory=CognitoMappingConfig)

    @field_validator("user_pool_id")
    @classmethod
    def _pool(cls, v: str) -> str:
        if not _POOL_ID.match(v):
            raise ValueError("must be a Cognito user pool id such as 'eu-west-1_AbCdEf123'")
        return v

    @field_validator("idp_id")
    @classmethod
    def _idp(cls, v: str) -> str:
        if not _IDP_ID.match(v) or len(v) > 100:
            raise ValueError(
                "must be letters, digits and ._~- only (Synapse adds the 'oidc-' prefix)"
            )
        return v

    @field_validator("client_id", "client_secret_path")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()

    @model_validator(mode="after")
    def _region_matches(self) -> CognitoOidcSettings:
        pool_region = region_of_pool(self.user_pool_id)
        if self.region and not _REGION.match(self.region):
            raise ValueError(f"region {self.region!r} is not an AWS region such as 'eu-west-1'")
        if self.region and self.region != pool_region:
            raise ValueError(
                f"region {self.region!r} does not match the user pool id's region {pool_region!r}"
            )
        return self

    @property
    def effective_region(self) -> str:
        return self.region or region_of_pool(self.user_pool_id) or ""

    @property
    def issuer(self) -> str:
        return issuer_url(self.effective_region, self.user_pool_id)

    @property
    def auth_provider_id(self) -> str:
        return f"oidc-{self.idp_id}"


def oidc_provider(settings: CognitoOidcSettings, **overrides: Any) -> dict[str, Any]:
    """One ``oidc_providers`` entry for Synapse.

    ``overrides`` replace keys (the tests point the endpoints at the emulator with
    ``discover=False``); ``None`` removes a key.
    """
    provider: dict[str, Any] = {
        "idp_id": settings.idp_id,
        "idp_name": settings.idp_name,
        "idp_brand": "aws-cognito",
        "issuer": settings.issuer,
        "client_id": settings.client_id,
        "client_secret_path": settings.client_secret_path,
        "client_auth_method": "client_secret_basic",
        # Cognito's discovery document advertises no PKCE methods: force it.
        "pkce_method": "always",
        "scopes": ["openid", "email", "profile"],
        # With the openid scope the claims (cognito:groups included) come from the ID token.
        "user_profile_method": "auto",
        "allow_existing_users": False,
        "user_mapping_provider": {
            "module": MAPPING_PROVIDER,
            "config": settings.mapping.model_dump(),
        },
    }
    if settings.required_group:
        provider["attribute_requirements"] = [
            {"attribute": "cognito:groups", "value": settings.required_group}
        ]
    for key, value in overrides.items():
        if value is None:
            provider.pop(key, None)
        else:
            provider[key] = value
    return provider
