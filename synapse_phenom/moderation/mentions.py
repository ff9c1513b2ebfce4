"""The room members a message highlights through Synapse's legacy push rules.

Without ``m.mentions`` Synapse still notifies every member whose display name
(``.m.rule.contains_display_name``) or localpart (``.m.rule.contains_user_name``) appears
as a whole word in the event's ``body``, case-insensitively. The mention cap counts them
too: one Aho-Corasick pass over the body finds them all, however large the room.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import ahocorasick

from synapse_phenom.moderation.normalize import fold, strip_invisible


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


# The characters NFKC turns into "@" (full-width, small form): after strip_invisible
# every one of them is a plain "@".
_AT_SIGNS = ("@", "\uff20", "\ufe6b")
_AT_MARK = "\ue000"  # private use: no Unicode table folds or drops it


def says_room(text: str) -> bool:
    """Whether ``text`` contains ``@room`` as Synapse's legacy ``.m.rule.roomnotif`` (a
    case-insensitive match) or a reader sees it: any case, invisible characters inside,
    full-width at sign, look-alike letters (``@ROOM``, ``@r\u200boom``,
    ``\uff20r\u043e\u043em``). One fold of the whole text (linear, whatever the number of
    at signs), with each at sign kept as a private-use mark that folding leaves alone."""
    if not any(a in text for a in _AT_SIGNS):
        return False
    return _AT_MARK + "room" in fold(strip_invisible(text).replace("@", _AT_MARK))


class Highlights(Protocol):
    """Who a message body highlights (what the mention cap needs of a room's members)."""

    def named_in(self, body: str) -> set[str]: ...


class MemberIndex:
    """Built once per room member list (the module caches it)."""

    def __init__(self, members: Iterable[tuple[str, str | None]]) -> None:
        """``members``: (user ID, display name or None) of each joined member."""
        names: dict[str, set[str]] = {}
        for user_id, display_name in members:
            localpart = user_id[1:].split(":", 1)[0] if user_id.startswith("@") else ""
            for name in (localpart, display_name):
                if isinstance(name, str) and name.strip():
                    names.setdefault(name.strip().casefold(), set()).add(user_id)
        self.size = len(names)
        self._automaton: ahocorasick.Automaton | None = None
        if names:
            automaton = ahocorasick.Automaton()
            for name, users in names.items():
                automaton.add_word(name, (len(name), tuple(users)))
            automaton.make_automaton()
            self._automaton = automaton

    def named_in(self, body: str) -> set[str]:
        """User IDs whose localpart or display name is a whole word of ``body``."""
        if self._automaton is None or not body:
            return set()
        # Case-folded (not lower-cased): Synapse's case-insensitive match folds final and
        # medial sigma, titlecase digraphs...
        text = body.casefold()
        found: set[str] = set()
        for end, (length, users) in self._automaton.iter(text):
            start = end - length + 1
            if start > 0 and _is_word(text[start - 1]) and _is_word(text[start]):
                continue
            if end + 1 < len(text) and _is_word(text[end + 1]) and _is_word(text[end]):
                continue
            found.update(users)
        return found


Members = Mapping[str, "str | None"]  # joined user ID -> display name in the room (or None)


class MemberNames:
    """A room's :class:`MemberIndex`, kept exact as members come and go without rebuilding
    it for every join: the full index of one snapshot of the member list plus a small
    index of the members who joined or renamed since; members who left are dropped from
    the answers. Rebuilding (``fresh``) is for when ``drift`` grows large."""

    def __init__(
        self, members: Members, *, _base: tuple[Members, MemberIndex] | None = None
    ) -> None:
        self.current = members
        base_members, self._index = _base or (members, MemberIndex(members.items()))
        self._base = base_members
        changed = {
            user_id: name
            for user_id, name in members.items()
            if user_id not in base_members or base_members[user_id] != name
        }
        self._changed = frozenset(changed)
        self._delta = MemberIndex(changed.items())
        self.drift = len(changed) + sum(1 for u in base_members if u not in members)

    def moved_to(self, members: Members) -> MemberNames:
        """The same index for the member list ``members`` (cost: one pass over it)."""
        return MemberNames(members, _base=(self._base, self._index))

    def named_in(self, body: str) -> set[str]:
        """User IDs of current members whose localpart or display name is a whole word of
        ``body``."""
        stale = {u for u in self._index.named_in(body) if u in self.current}
        return (stale - self._changed) | self._delta.named_in(body)
