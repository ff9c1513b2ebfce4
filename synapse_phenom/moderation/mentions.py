"""The room members a message highlights through Synapse's legacy push rules.

Without ``m.mentions`` Synapse still notifies every member whose display name
(``.m.rule.contains_display_name``) or localpart (``.m.rule.contains_user_name``) appears
as a whole word in the event's ``body``, case-insensitively. The mention cap counts them
too: one Aho-Corasick pass over the body finds them all, however large the room.
"""

from __future__ import annotations

from collections.abc import Iterable

import ahocorasick


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class MemberIndex:
    """Built once per room member list (the module caches it)."""

    def __init__(self, members: Iterable[tuple[str, str | None]]) -> None:
        """``members``: (user ID, display name or None) of each joined member."""
        names: dict[str, set[str]] = {}
        for user_id, display_name in members:
            localpart = user_id[1:].split(":", 1)[0] if user_id.startswith("@") else ""
            for name in (localpart, display_name):
                if isinstance(name, str) and name.strip():
                    names.setdefault(name.strip().lower(), set()).add(user_id)
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
        text = body.lower()
        found: set[str] = set()
        for end, (length, users) in self._automaton.iter(text):
            start = end - length + 1
            if start > 0 and _is_word(text[start - 1]) and _is_word(text[start]):
                continue
            if end + 1 < len(text) and _is_word(text[end + 1]) and _is_word(text[end]):
                continue
            found.update(users)
        return found
