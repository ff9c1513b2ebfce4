"""Pure parts of the MCP protocol edges: the search-query sanitiser and error mapping."""

from __future__ import annotations

import json

import pytest

from synapse_phenom.mcp.backend import InvalidRequest, Unavailable
from synapse_phenom.mcp.matrix_events import search_query
from synapse_phenom.mcp.matrix_session import _error


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("alpha beta", "alpha beta"),
        ("a' OR 1=1 --", "1 1"),  # 'a' is one of Synapse's stop words
        ('"', ""),
        ("*", ""),
        ("NEAR(", "near"),
        ("-", ""),
        ('"unbalanced quote', "unbalanced quote"),
        ('x "b c" y', 'x "b c" y'),
        ("x or", "x"),
        ("or x", "x"),
        ("x OR y", "x or y"),
        ("-x y", "y"),  # SQLite's NOT needs a term before it
        ("x -y", "x -y"),
        ("x or -y", "x -y"),
        ("AND", ""),
        ('"the a"', ""),
        ("tromsø-night", "tromsø night"),
        ("x\x00y", "x y"),
    ],
)
def test_search_query_keeps_meaning_and_drops_syntax(query: str, expected: str) -> None:
    assert search_query(query) == expected


def test_too_large_is_not_try_again() -> None:
    err = _error(413, {"errcode": "M_TOO_LARGE", "error": "event too large"})
    assert isinstance(err, InvalidRequest)
    assert "shorten" in str(err) and "shortly" not in str(err)
    assert isinstance(_error(502, {}), Unavailable)


def test_the_fast_path_takes_only_plain_tools_calls() -> None:
    from synapse_phenom.mcp.fastpath import _fast_request

    def call(**over: object) -> bytes:
        message: dict[str, object] = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": "list_rooms", "arguments": {}},
        }
        message.update(over)
        return json.dumps(message).encode()

    assert _fast_request(call()) is not None
    assert _fast_request(call(id="x")) is not None
    progress = {"name": "list_rooms", "_meta": {"progressToken": 1}}
    for body in (
        call(params=progress),  # progress may be reported: SSE through the SDK
        call(method="tools/list"),
        call(id=True),
        call(id=None),  # a notification
        call(params={"name": 3}),
        call(params={"name": "x", "arguments": []}),
        b"[" + call() + b"]",  # a batch
        b"{not json",
    ):
        assert _fast_request(body) is None, body
