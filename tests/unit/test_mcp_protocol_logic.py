"""Pure parts of the MCP protocol edges: the search-query sanitiser and error mapping."""

from __future__ import annotations

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
