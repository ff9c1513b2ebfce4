"""The Cognito emulator fixture other areas build on (the MCP sidecar's agent tokens)."""

from __future__ import annotations

import httpx2
import jwt
from fixtures_cognito import CognitoEmulator


def test_machine_client_tokens_are_cognito_shaped(cognito: CognitoEmulator) -> None:
    client_id, secret = cognito.create_machine_client("phenom-chat", ("read", "write"))
    token = cognito.client_credentials_token(client_id, secret, "phenom-chat/read")
    key = jwt.PyJWKClient(cognito.jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], issuer=cognito.issuer)
    assert claims["sub"] == client_id == claims["client_id"]
    assert claims["token_use"] == "access"
    assert claims["scope"] == "phenom-chat/read"
    assert "aud" not in claims
    # A second machine client on the same resource server works too.
    other_id, other_secret = cognito.create_machine_client("phenom-chat", ("read", "write"))
    assert other_id != client_id
    assert cognito.client_credentials_token(other_id, other_secret)
    discovery = httpx2.get(cognito.openid_configuration_url, timeout=10).json()
    assert discovery["issuer"] == cognito.issuer
    assert discovery["jwks_uri"] == cognito.jwks_url
