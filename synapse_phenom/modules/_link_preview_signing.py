"""The preview-card signing key inside Synapse (shared by link_preview and moderation).

Derived from the homeserver's ``macaroon_secret_key``: every worker of a deployment has the
same one (access tokens depend on it), no module config is needed, and the key itself never
leaves the server. No module API exposes it, hence the documented private access.
"""

from __future__ import annotations

from synapse.module_api import ModuleApi

from synapse_phenom.previews.signing import derive_key


def card_signing_key(api: ModuleApi) -> bytes:
    secret = api._hs.config.key.macaroon_secret_key
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return derive_key(bytes(secret))
