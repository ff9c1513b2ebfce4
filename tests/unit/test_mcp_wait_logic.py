"""Pure logic of the synapse backend's wait_for_messages: the cut and the cursor."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_phenom.mcp.backend import InvalidRequest
from synapse_phenom.mcp.synapse_wait import Cursor, cut, parse_cursor


def events(*timestamps: int) -> list[dict[str, Any]]:
    return [{"origin_server_ts": ts} for ts in timestamps]


def test_nothing_is_cut_under_the_limit() -> None:
    assert cut({"!a": events(1, 3), "!b": events(2)}, 3) == ({"!a": 2, "!b": 1}, False)
    assert cut({"!a": [], "!b": []}, 3) == ({"!a": 0, "!b": 0}, False)


def test_the_oldest_across_rooms_are_kept_as_a_prefix_of_each_room() -> None:
    kept, more = cut({"!a": events(1, 2, 5, 6), "!b": events(3, 4, 7)}, 4)
    assert kept == {"!a": 2, "!b": 2} and more is True
    # A room whose first event is newer than the limit keeps nothing: its position stays.
    kept, more = cut({"!a": events(1, 2, 3), "!b": events(9)}, 3)
    assert kept == {"!a": 3, "!b": 0} and more is True


def test_a_room_out_of_timestamp_order_stays_a_prefix() -> None:
    # Clock skew: a room's own order wins, nothing after a kept event is skipped.
    kept, more = cut({"!a": events(5, 1, 2), "!b": events(3)}, 2)
    assert more is True
    assert kept["!a"] in (0, 1, 2) and kept["!a"] + kept["!b"] == 2


def test_exactly_the_limit_is_not_more() -> None:
    assert cut({"!a": events(1, 2), "!b": events(3)}, 3) == ({"!a": 2, "!b": 1}, False)


def test_cursor_round_trip_and_fallbacks() -> None:
    cursor = Cursor(sync="s72_1_0", rooms={"!a:hs": "t5-70_1_0", "!b:hs": "s72_1_0"})
    text = cursor.encode()
    assert text.startswith("w1.") and not any(c.isspace() for c in text)
    again = parse_cursor(text)
    assert again.sync == "s72_1_0" and dict(again.rooms) == dict(cursor.rooms)
    assert again.position("!a:hs") == "t5-70_1_0"
    assert again.position("!c:hs") == "s72_1_0"  # a room the cursor did not cover: from sync
    bare = parse_cursor("s99_0_0")  # what earlier versions returned
    assert bare.sync == "s99_0_0" and bare.position("!a:hs") == "s99_0_0"


@pytest.mark.parametrize(
    "junk", ["w1.", "w1.!!!", "w1.bm90IGpzb24", "w1.eyJzIjogMX0", "w1.eyJzIjoiYSIsInIiOnsiYSI6MX19"]
)
def test_junk_cursors_are_refused(junk: str) -> None:
    with pytest.raises(InvalidRequest, match="since is not a cursor"):
        parse_cursor(junk)
