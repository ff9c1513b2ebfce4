"""Blocking client for Synapse's admin API and the Phenom groups endpoint.

Used outside Synapse only: the ``phenom-chat`` CLI, the user-provisioner Lambda and
the tests. Never import this into a module (it blocks).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote

import attrs
import httpx2

from synapse_phenom.endpoints import GROUPS_INDEX_PATH, GROUPS_PATH
from synapse_phenom.rooms.membership import normalise_groups


class MatrixError(Exception):
    """A Matrix error response: HTTP status, errcode and message."""

    def __init__(self, status: int, errcode: str, error: str) -> None:
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error


def raise_for_matrix(resp: httpx2.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code >= 400:
        raise MatrixError(
            resp.status_code, body.get("errcode", "M_UNKNOWN"), body.get("error", resp.text[:200])
        )
    return body if isinstance(body, dict) else {}


def shared_secret_mac(secret: str, nonce: str, username: str, password: str, admin: bool) -> str:
    """HMAC-SHA1 as Synapse's /_synapse/admin/v1/register expects."""
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, username, password):
        mac.update(part.encode())
        mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    return mac.hexdigest()


@attrs.frozen
class ProvisionResult:
    user_id: str
    created: bool
    groups: list[str]
    joined: list[str]
    removed: list[str]


class SynapseAdmin:
    def __init__(
        self, base_url: str, token: str | None = None, timeout: float | httpx2.Timeout = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx2.Client(base_url=self.base_url, timeout=timeout)
        self.token = token

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SynapseAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _auth(self) -> dict[str, str]:
        if not self.token:
            raise RuntimeError("an admin access token is required")
        return {"Authorization": f"Bearer {self.token}"}

    def register_with_shared_secret(
        self,
        shared_secret: str,
        username: str,
        password: str,
        admin: bool = False,
        displayname: str | None = None,
    ) -> dict[str, Any]:
        """Create a user; returns the /register response (user_id, access_token...)."""
        nonce = raise_for_matrix(self._http.get("/_synapse/admin/v1/register"))["nonce"]
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": admin,
            "mac": shared_secret_mac(shared_secret, nonce, username, password, admin),
        }
        if displayname:
            body["displayname"] = displayname
        return raise_for_matrix(self._http.post("/_synapse/admin/v1/register", json=body))

    def whoami(self) -> str:
        resp = self._http.get("/_matrix/client/v3/account/whoami", headers=self._auth())
        return str(raise_for_matrix(resp)["user_id"])

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        resp = self._http.get(f"/_synapse/admin/v2/users/{quote(user_id)}", headers=self._auth())
        if resp.status_code == 404:
            return None
        return raise_for_matrix(resp)

    def user_by_external_id(self, auth_provider: str, external_id: str) -> str | None:
        """The user linked to ``external_id`` on ``auth_provider`` (e.g. oidc-cognito), if any."""
        resp = self._http.get(
            f"/_synapse/admin/v1/auth_providers/{quote(auth_provider, safe='')}"
            f"/users/{quote(external_id, safe='')}",
            headers=self._auth(),
        )
        if resp.status_code == 404:
            return None
        return str(raise_for_matrix(resp)["user_id"])

    def upsert_user(
        self,
        user_id: str,
        displayname: str | None = None,
        emails: list[str] | None = None,
        external_ids: list[dict[str, str]] | None = None,
        password: str | None = None,
    ) -> bool:
        """Create or update a user through PUT /_synapse/admin/v2/users; True if created."""
        body: dict[str, Any] = {}
        if displayname is not None:
            body["displayname"] = displayname
        if emails is not None:
            body["threepids"] = [{"medium": "email", "address": e} for e in emails]
        if external_ids is not None:
            body["external_ids"] = external_ids
        if password is not None:
            body["password"] = password
            body["logout_devices"] = False
        resp = self._http.put(
            f"/_synapse/admin/v2/users/{quote(user_id)}", json=body, headers=self._auth()
        )
        raise_for_matrix(resp)
        return resp.status_code == 201

    def set_groups(self, user_id: str, groups: list[str], source: str) -> dict[str, Any]:
        resp = self._http.post(
            GROUPS_PATH,
            json={"user_id": user_id, "groups": groups, "source": source},
            headers=self._auth(),
        )
        return raise_for_matrix(resp)

    def get_groups(self, user_id: str) -> list[str]:
        resp = self._http.get(GROUPS_PATH, params={"user_id": user_id}, headers=self._auth())
        return list(raise_for_matrix(resp)["groups"])

    def users_with_groups(self, page_size: int = 500) -> dict[str, list[str]]:
        """Every user with a non-empty stored group list: user id -> groups."""
        out: dict[str, list[str]] = {}
        after = ""
        while True:
            resp = self._http.get(
                GROUPS_INDEX_PATH,
                params={"from": after, "limit": page_size},
                headers=self._auth(),
            )
            body = raise_for_matrix(resp)
            for row in body["users"]:
                out[str(row["user_id"])] = [str(g) for g in row["groups"]]
            if not body.get("next"):
                return out
            after = str(body["next"])

    def external_id_of(self, user_id: str, auth_provider: str) -> str | None:
        """The id ``user_id`` is linked to on ``auth_provider`` (None: not linked / no user)."""
        user = self.get_user(user_id)
        for link in (user or {}).get("external_ids") or []:
            if link.get("auth_provider") == auth_provider:
                return str(link["external_id"])
        return None

    def provision(
        self,
        user_id: str,
        groups: list[str],
        displayname: str | None = None,
        emails: list[str] | None = None,
        external_ids: list[dict[str, str]] | None = None,
        source: str = "cli",
        password: str | None = None,
    ) -> ProvisionResult:
        """Create/update the user, store groups, reconcile rooms. Safe to repeat.

        Groups are validated before anything is written, so a bad group name never leaves
        a half-provisioned user behind.
        """
        groups = normalise_groups(groups)
        created = self.upsert_user(user_id, displayname, emails, external_ids, password)
        result = self.set_groups(user_id, groups, source)
        return ProvisionResult(
            user_id=user_id,
            created=created,
            groups=list(result["groups"]),
            joined=list(result["joined"]),
            removed=list(result["removed"]),
        )
