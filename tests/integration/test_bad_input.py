"""No 500 on bad input at any module endpoint, on the real Synapse.

Every path of the HTTP contract (``synapse_phenom.endpoints.ALL_PATHS``: a new endpoint is
swept as soon as it is listed there) gets hostile query strings and bodies: bytes that are
not UTF-8, NUL characters, lone surrogates, integers beyond 64 bits, every wrong JSON type,
invalid JSON and an oversized body, as a plain user, as an admin and (where it applies) as
the MCP application service. Each answer must be a 4xx Matrix error naming what to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from harness import SynapseStack

from synapse_phenom.endpoints import ALL_PATHS, contract
from synapse_phenom.mcp.appservice import read_as_token

pytestmark = pytest.mark.synapse

GENERIC_QUERY = ("user_id", "room_id", "url", "since", "limit")
GENERIC_BODY = ("user_id", "room_id", "groups", "rooms", "source", "url")
BAD_QUERY_VALUES = (
    "%FF%FE%FD",  # not UTF-8
    "%ED%A0%80",  # an encoded lone surrogate: not UTF-8 either
    "a%00b",  # NUL
    "99999999999999999999999999",  # beyond 64 bits
    "-99999999999999999999999999",
    "1e400",
    "%20",
    "x" * 5000,
)
BAD_FIELD_VALUES: tuple[Any, ...] = (
    2**70,
    -(2**70),
    1.5,
    True,
    None,
    [],
    {},
    [2**70],
    [None],
    ["a\x00b"],
    "a\x00b",
    "\ud800",
    "x" * 100_000,
)
BAD_BODIES = (
    b"",
    b"{",
    b"\xff\xfe{}",
    b"[]",
    b'"text"',
    b"123",
    b"null",
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"user_id": "\\ud800"}',
    b'{"user_id": 1' + b"0" * 5000 + b"}",
    b'{"groups": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
    b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}',  # 2 MiB
)
MATRIX_4XX = {
    "M_BAD_JSON",
    "M_NOT_JSON",
    "M_INVALID_PARAM",
    "M_MISSING_PARAM",
    "M_TOO_LARGE",
    "M_FORBIDDEN",
    "M_NOT_FOUND",
    "M_UNRECOGNIZED",
    "M_UNKNOWN_TOKEN",
    "M_MISSING_TOKEN",
}


def surrogate_json(obj: Any) -> bytes:
    # json.dumps escapes a lone surrogate as \ud800, which is what a hostile client sends.
    return json.dumps(obj).encode()


@pytest.fixture
def callers(synapse: SynapseStack, mcp_registration: Path) -> dict[str, tuple[str, str]]:
    """name -> (access token, a valid user_id for bodies)."""
    user = synapse.register()
    admin = synapse.register(admin=True)
    return {
        "user": (user.access_token, user.user_id),
        "admin": (admin.access_token, user.user_id),
        "appservice": (read_as_token(mcp_registration), user.user_id),
    }


def requests_for(path: str, valid_user: str) -> list[tuple[str, str, bytes | None]]:
    """(method, query string, body) of every hostile request to ``path``."""
    endpoint = contract(path)
    names = endpoint.query or GENERIC_QUERY
    fields = endpoint.body or GENERIC_BODY
    base: dict[str, Any] = {"user_id": valid_user, "groups": [], "source": "sweep"}
    out: list[tuple[str, str, bytes | None]] = []
    for method in endpoint.methods:
        for name in names:
            for value in BAD_QUERY_VALUES:
                out.append((method, f"{name}={value}", None if method == "GET" else b"{}"))
        out.append((method, "user_id=%FF&url=%00&since=1&limit=1", None))
        if method == "GET":
            continue
        out.extend((method, "", body) for body in BAD_BODIES)
        for field in fields:
            for value in BAD_FIELD_VALUES:
                body = {k: v for k, v in base.items() if k in fields}
                body[field] = value
                out.append((method, "", surrogate_json(body)))
    return out


def test_every_endpoint_answers_bad_input_with_a_4xx_matrix_error(
    synapse: SynapseStack, callers: dict[str, tuple[str, str]]
) -> None:
    failures: list[str] = []
    counted = 0
    with httpx2.Client(base_url=synapse.base_url, timeout=60) as http:
        for path in ALL_PATHS:
            endpoint = contract(path)
            # The endpoint is really served (a sweep of an unregistered path proves nothing).
            probe = http.request(
                endpoint.methods[0], path, headers={"Authorization": f"Bearer {callers['user'][0]}"}
            )
            assert probe.status_code != 404, f"{path} is not served"
            for who, (token, valid_user) in callers.items():
                if who == "appservice" and endpoint.who != "appservice":
                    continue
                for method, query, body in requests_for(path, valid_user):
                    url = httpx2.URL(f"{synapse.base_url}{path}" + (f"?{query}" if query else ""))
                    resp = http.request(
                        method,
                        url,
                        content=body,
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Content-Type": "application/json",
                        },
                    )
                    counted += 1
                    where = f"{who} {method} {path}?{query[:60]} body={(body or b'')[:60]!r}"
                    if resp.status_code >= 500:
                        failures.append(f"{resp.status_code} for {where}: {resp.text[:200]}")
                        continue
                    if resp.status_code < 400:
                        continue  # a hostile-looking but valid request (e.g. source=" ")
                    try:
                        error = resp.json()
                    except ValueError:
                        failures.append(f"non-JSON {resp.status_code} for {where}")
                        continue
                    if error.get("errcode") not in MATRIX_4XX or not error.get("error"):
                        failures.append(f"unclear error for {where}: {error}")
    assert not failures, "\n".join(failures[:40]) + f"\n({len(failures)} of {counted})"
    assert counted > 400


def test_the_errors_say_what_to_fix(
    synapse: SynapseStack, callers: dict[str, tuple[str, str]]
) -> None:
    from synapse_phenom.endpoints import AUDIT_PATH, GROUPS_PATH

    token = callers["admin"][0]
    auth = {"Authorization": f"Bearer {token}"}
    with httpx2.Client(base_url=synapse.base_url, timeout=30, headers=auth) as http:
        big = http.get(AUDIT_PATH, params={"since": "99999999999999999999999"}).json()
        nul = http.get(AUDIT_PATH, params={"room_id": "!a\x00b:x"}).json()
        latin = http.get(httpx2.URL(f"{synapse.base_url}{GROUPS_PATH}?user_id=%FF")).json()
        wrong = http.post(GROUPS_PATH, json={"user_id": "@a:localhost", "groups": "team"})
        huge = http.post(GROUPS_PATH, content=b"{" + b" " * 100_000 + b"}")
    assert big["errcode"] == "M_INVALID_PARAM" and "'since' must be between" in big["error"]
    assert nul["errcode"] == "M_INVALID_PARAM" and "NUL" in nul["error"]
    assert latin["errcode"] == "M_INVALID_PARAM" and "UTF-8" in latin["error"]
    assert wrong.status_code == 400 and wrong.json()["errcode"] == "M_BAD_JSON"
    assert "'groups' must be a list of strings" in wrong.json()["error"]
    assert huge.status_code == 413 and huge.json()["errcode"] == "M_TOO_LARGE"
