"""All keyword lists of a policy matched in one Aho-Corasick pass over folded text."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

import ahocorasick
import attrs

from synapse_phenom.moderation.normalize import fold, is_word_char


class Mode(IntEnum):
    WORD = 0  # word
    PREFIX = 1  # word*  (start of a word)
    SUFFIX = 2  # *word  (end of a word)
    ANYWHERE = 3  # *word*


def parse(keyword: str) -> tuple[str, Mode]:
    """Discord syntax -> (folded term, mode)."""
    k = keyword.strip()
    starts, ends = k.startswith("*"), k.endswith("*")
    term = fold(k.strip("*").strip())
    if starts and ends:
        return term, Mode.ANYWHERE
    if ends:
        return term, Mode.PREFIX
    if starts:
        return term, Mode.SUFFIX
    return term, Mode.WORD


# A phrase is also written with its words joined, or joined by a hyphen, underscore or
# dot ("freecrypto", "free-crypto"): a reader reads the same phrase. This is also what an
# invisible separator leaves once removed ("free\u200bcrypto").
_PHRASE_JOINERS = ("", "-", "_", ".")


def _spellings(term: str) -> list[str]:
    if not term:
        return []
    if " " not in term:
        return [term]
    return [term, *(term.replace(" ", joiner) for joiner in _PHRASE_JOINERS)]


@attrs.frozen
class KeywordHit:
    rule: int  # index of the keyword rule
    keyword: str  # as configured (for moderators only; never shown to the sender)


# One automaton value entry: (allow, rule index, mode, term length, keyword as configured).
# Plain tuples of atoms, not objects: the garbage collector untracks them, so 10,000
# keywords add nothing to every full collection of the Synapse process.
_Entry = tuple[bool, int, int, int, str]


def _bounded(text: str, start: int, end: int, mode: int) -> bool:
    """Whether the match text[start:end+1] satisfies the mode's word boundaries."""
    if mode == Mode.ANYWHERE:
        return True
    left = start == 0 or not is_word_char(text[start - 1])
    right = end + 1 >= len(text) or not is_word_char(text[end + 1])
    if mode == Mode.WORD:
        return left and right
    if mode == Mode.PREFIX:
        return left
    return right


class KeywordMatcher:
    """Built once per policy; ``find`` scans a folded text once for every rule's terms."""

    def __init__(self, rules: Sequence[tuple[Sequence[str], Sequence[str]]]) -> None:
        """``rules``: (keywords, allow) per rule, in rule order."""
        entries: dict[str, list[_Entry]] = {}
        for index, (keywords, allow) in enumerate(rules):
            for is_allow, terms in ((False, keywords), (True, allow)):
                for raw in terms:
                    term, mode = parse(raw)
                    for spelling in _spellings(term):
                        entry = (is_allow, index, int(mode), len(spelling), raw)
                        entries.setdefault(spelling, []).append(entry)
        self._has_allow = any(e[0] for es in entries.values() for e in es)
        self._automaton: ahocorasick.Automaton | None = None
        if entries:
            automaton = ahocorasick.Automaton()
            for term, es in entries.items():
                automaton.add_word(term, tuple(es))
            automaton.make_automaton()
            self._automaton = automaton

    def find(self, folded: str) -> KeywordHit | None:
        """First blocked term in ``folded`` (output of ``normalize.fold``) not covered by
        an allowed term of the same rule."""
        if self._automaton is None or not folded:
            return None
        hits: list[tuple[int, int, int, str]] = []
        allowed: list[tuple[int, int, int]] = []
        for end, es in self._automaton.iter(folded):
            for is_allow, rule, mode, length, keyword in es:
                start = end - length + 1
                if not _bounded(folded, start, end, mode):
                    continue
                if is_allow:
                    allowed.append((start, end, rule))
                elif not self._has_allow:
                    return KeywordHit(rule, keyword)
                else:
                    hits.append((start, end, rule, keyword))
        for start, end, rule, keyword in hits:
            if not any(r == rule and s <= start and end <= t for s, t, r in allowed):
                return KeywordHit(rule, keyword)
        return None
