"""Dev signer: a local RSA key whose JWKS the dev MCP server trusts instead of Cognito.

Tokens look like Cognito client-credentials access tokens (same claims), so the
server's validation path is the production one. Never used in production.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from synapse_phenom.ops.files import write_private

DEV_ISSUER = "http://localhost/phenom-dev-issuer"
DEV_CLIENT_ID = "phenom-dev-agent"
KEY_FILE = "mcp-dev-signing-key.pem"
JWKS_FILE = "mcp-dev-jwks.json"


@attrs.frozen
class DevSigner:
    private_key: rsa.RSAPrivateKey
    kid: str
    issuer: str = DEV_ISSUER

    @classmethod
    def load_or_create(cls, data_dir: Path, issuer: str = DEV_ISSUER) -> DevSigner:
        key_path = data_dir / KEY_FILE
        if key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            write_private(
                key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        signer = cls(key, kid=_thumbprint(key), issuer=issuer)
        (data_dir / JWKS_FILE).write_text(json.dumps(signer.jwks(), indent=2))
        return signer

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return {"keys": [jwk]}

    def claims(
        self,
        client_id: str,
        scopes: Iterable[str],
        resource_server: str = "chat-mcp",
        lifetime: int = 3600,
    ) -> dict[str, Any]:
        """Claims as Cognito puts them in a client-credentials access token."""
        now = int(time.time())
        return {
            "sub": client_id,
            "client_id": client_id,
            "token_use": "access",
            "scope": " ".join(f"{resource_server}/{s}" for s in scopes),
            "auth_time": now,
            "iss": self.issuer,
            "exp": now + lifetime,
            "iat": now,
            "version": 2,
            "jti": str(uuid.uuid4()),
        }

    def sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm="RS256", headers={"kid": kid or self.kid}
        )

    def token(
        self,
        client_id: str,
        scopes: Iterable[str],
        resource_server: str = "chat-mcp",
        lifetime: int = 3600,
    ) -> str:
        return self.sign(self.claims(client_id, scopes, resource_server, lifetime))


def _thumbprint(key: rsa.RSAPrivateKey) -> str:
    numbers = key.public_key().public_numbers()
    return "dev-" + format(numbers.n, "x")[-16:]
