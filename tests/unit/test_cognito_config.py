"""Cognito OIDC block from env, its validation, and the mapping provider's config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from harness import PRODUCTION_ENV as PROD_ENV
from synapse.config._base import ConfigError as SynapseConfigError
from synapse.config.oidc import _parse_oidc_provider_configs
from synapse.module_api.errors import ConfigError

from synapse_phenom.cognito.config import CognitoOidcSettings, oidc_provider
from synapse_phenom.modules.cognito import CognitoMappingProvider
from synapse_phenom.ops import env_vars, hsconfig


def _cognito_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    secret = tmp_path / "client_secret"
    secret.write_text("s3cret-value\n")
    return {
        **PROD_ENV,
        "PHENOM_COGNITO_USER_POOL_ID": "eu-west-1_AbC123",
        "PHENOM_COGNITO_CLIENT_ID": "client123",
        "PHENOM_COGNITO_CLIENT_SECRET_FILE": str(secret),
        **extra,
    }


def test_without_cognito_no_provider_is_rendered() -> None:
    config = yaml.safe_load(hsconfig.render(hsconfig.values_from_env(PROD_ENV))[0])
    assert "oidc_providers" not in config
    assert "sso" not in config


def test_cognito_block_from_env_is_valid_for_synapse(tmp_path: Path) -> None:
    env = _cognito_env(
        tmp_path,
        PHENOM_COGNITO_REQUIRED_GROUP="app-users",
        PHENOM_SSO_CLIENT_WHITELIST="phenom://, exp://",
    )
    hs_text = hsconfig.render(hsconfig.values_from_env(env))[0]
    assert "s3cret-value" not in hs_text  # Synapse reads the secret file itself
    config = yaml.safe_load(hs_text)
    assert config["sso"]["client_whitelist"] == ["phenom://", "exp://"]
    (provider,) = config["oidc_providers"]
    assert provider["issuer"] == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
    assert provider["pkce_method"] == "always"
    assert provider["scopes"] == ["openid", "email", "profile"]
    assert provider["attribute_requirements"] == [
        {"attribute": "cognito:groups", "value": "app-users"}
    ]
    # Synapse's own parser accepts it and loads our mapping provider.
    (parsed,) = _parse_oidc_provider_configs(config)
    assert parsed.idp_id == "oidc-cognito"
    assert parsed.client_secret == "s3cret-value"
    assert parsed.user_mapping_provider_class is CognitoMappingProvider
    assert [(r.attribute, r.value) for r in parsed.attribute_requirements] == [
        ("cognito:groups", "app-users")
    ]


def test_partial_cognito_env_names_what_is_missing() -> None:
    with pytest.raises(env_vars.MissingVariables) as err:
        hsconfig.values_from_env({**PROD_ENV, "PHENOM_COGNITO_USER_POOL_ID": "eu-west-1_AbC123"})
    assert "PHENOM_COGNITO_CLIENT_ID" in str(err.value)
    assert "PHENOM_COGNITO_CLIENT_SECRET_FILE" in str(err.value)
    with pytest.raises(env_vars.MissingVariables) as err:
        hsconfig.values_from_env({**PROD_ENV, "PHENOM_COGNITO_REQUIRED_GROUP": "team"})
    assert "PHENOM_COGNITO_USER_POOL_ID" in str(err.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"PHENOM_COGNITO_USER_POOL_ID": "not-a-pool"}, "PHENOM_COGNITO_USER_POOL_ID"),
        ({"PHENOM_COGNITO_REGION": "us-east-1"}, "does not match"),
        ({"PHENOM_COGNITO_IDP_ID": "bad id/"}, "PHENOM_COGNITO_IDP_ID"),
    ],
)
def test_invalid_cognito_env_is_rejected(
    tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        hsconfig.values_from_env(_cognito_env(tmp_path, **extra))


def test_overrides_point_endpoints_elsewhere() -> None:
    settings = CognitoOidcSettings(
        user_pool_id="us-east-1_X1", client_id="c", client_secret_path="/s"
    )
    provider = oidc_provider(
        settings, discover=False, token_endpoint="http://127.0.0.1:1/t", idp_brand=None
    )
    assert provider["discover"] is False and provider["token_endpoint"] == "http://127.0.0.1:1/t"
    assert "idp_brand" not in provider
    assert settings.auth_provider_id == "oidc-cognito"


def test_mapping_provider_config_errors_name_the_key() -> None:
    assert CognitoMappingProvider.parse_config({}).confirm_localpart is False
    with pytest.raises(ConfigError, match=r"user_mapping_provider.*reserved_localpart"):
        CognitoMappingProvider.parse_config({"reserved_localpart": ["x"]})
    with pytest.raises(ConfigError, match="confirm_localpart"):
        CognitoMappingProvider.parse_config({"confirm_localpart": "maybe"})


def test_synapse_rejects_unknown_mapping_config_at_startup(tmp_path: Path) -> None:
    settings = CognitoOidcSettings(
        user_pool_id="us-east-1_X1", client_id="c", client_secret_path=str(tmp_path / "s")
    )
    (tmp_path / "s").write_text("x")
    provider = oidc_provider(
        settings,
        user_mapping_provider={
            "module": "synapse_phenom.modules.cognito.CognitoMappingProvider",
            "config": {"typo": 1},
        },
    )
    with pytest.raises(SynapseConfigError, match="CognitoMappingProvider") as err:
        list(_parse_oidc_provider_configs({"oidc_providers": [provider]}))
    # Synapse prints the cause under its message at startup: it names the bad key.
    assert "config.typo: Extra inputs are not permitted" in str(err.value.__cause__)
