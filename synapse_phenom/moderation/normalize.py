"""Text normalisation for keyword matching: defeat Unicode and spelling tricks.

Both keywords and message text go through ``fold`` so that they meet in the same
alphabet. Every table is derived from Unicode data at import, never hand-listed:

* NFKD (full-width, ligatures, maths letters, super/subscripts) with accents dropped,
  then case folding;
* default-ignorable code points removed (Unicode's ``Default_Ignorable_Code_Point``
  property, read through the ``regex`` package: zero-width characters, bidi controls,
  variation selectors, the tag block, soft hyphen...), except the blank-looking ones;
* blank-looking characters (``White_Space``, the Hangul fillers, the Braille blank
  U+2800) become word separators: clients render them as a gap;
* look-alike letters mapped to the Latin letter they imitate: UTS #39 confusables
  (the ``confusable-homoglyphs`` package's copy of Unicode's confusables.txt), and
  Latin small capitals and other letter variants by their Unicode character name
  (``LATIN LETTER SMALL CAPITAL R`` -> ``r``);
* leetspeak digits/symbols mapped to letters; whitespace runs collapsed.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from importlib import resources

import regex
from bidi import get_display

# -- derived tables --------------------------------------------------------------------

_DI = regex.compile(r"\p{Default_Ignorable_Code_Point}")
_WS = regex.compile(r"\p{White_Space}")
_ALL = [chr(c) for c in range(0x80, sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]

# Blank-looking: whitespace, and the letters/symbols that render as an empty cell.
BLANK = frozenset(
    ch
    for ch in _ALL
    if _WS.match(ch)
    or (_DI.match(ch) and unicodedata.category(ch) == "Lo")  # Hangul fillers U+115F/1160/3164/FFA0
    or unicodedata.name(ch, "") in ("BRAILLE PATTERN BLANK", "KHMER VOWEL INHERENT AQ")
)
# Rendered as nothing: default ignorables (blank-looking ones are separators instead).
IGNORABLE = frozenset(ch for ch in _ALL if _DI.match(ch) and ch not in BLANK)

_LATIN_NAME = re.compile(
    r"^LATIN (?:SMALL |CAPITAL )?(?:LETTER )?(?:SMALL CAPITAL |SMALL |CAPITAL )?"
    r"(?:(?:TURNED|REVERSED|DOTLESS|SCRIPT|CLOSED|OPEN|BARRED|STROKED|INSULAR|LONG) )?"
    r"([A-Z])(?: WITH [A-Z ]+)?$"
)

# Leetspeak: digits and symbols standing in for letters. "!" and "|" are left alone:
# they end sentences far more often than they spell an "i".
_LEET = {
    "0": "o",
    "1": "i",
    "3": "e",
    "4": "a",
    "5": "s",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
    "€": "e",
    "£": "l",
}
_ASCII_LEET = {k: v for k, v in _LEET.items() if k.isascii()}
_LEET_TABLE = {ord(k): v for k, v in _ASCII_LEET.items()}


def _confusable_targets() -> dict[str, str]:
    raw = (
        resources.files("confusable_homoglyphs")
        .joinpath("confusables.json")
        .read_text(encoding="utf-8")
    )
    data = json.loads(raw)
    out: dict[str, str] = {}
    for ch, entries in data.items():
        if len(ch) == 1 and not ch.isascii() and entries:
            out[ch] = entries[0]["c"]
    return out


def _as_latin(ch: str, confusables: dict[str, str]) -> str | None:
    """The ASCII letters/digits ``ch`` imitates, if any (after case folding)."""
    seen = ch
    for _ in range(4):
        if seen.isascii():
            break
        m = _LATIN_NAME.match(unicodedata.name(seen, "")) if len(seen) == 1 else None
        if m:
            seen = m.group(1)
            break
        nxt = confusables.get(seen)
        if nxt is None:
            return None
        seen = unicodedata.normalize("NFKD", nxt.replace("\u200e", "")).casefold()
    folded = seen.casefold().translate(_LEET_TABLE)
    if folded.isascii() and folded.isalnum() and 1 <= len(folded) <= 2:
        return folded
    return None


def _renders_as_nothing(ch: str) -> bool:
    """Drawn as nothing of its own: ignorable, control and format characters (``Cc``,
    ``Cf``: also those not default-ignorable, e.g. U+FFF9 annotation anchors), and every
    mark (``M``: accents, but also enclosing marks such as the keycap U+20E3 and the
    circle U+20DD, and spacing marks, whose combining class is 0), which only decorates
    the letter before it."""
    return (
        ch in IGNORABLE
        or unicodedata.category(ch)[0] == "M"
        or unicodedata.category(ch)
        in (
            "Cc",
            "Cf",
        )
    )


# Letters drawn in a box, a circle, parentheses, or as a regional-indicator symbol
# (``🅑``, ``🄱``, ``⒝``, ``🇧``): NFKD keeps none of these as the bare letter (negative
# circled and regional indicators have no decomposition, parenthesized ones become
# ``(b)``, which would split the word). Mapped by their Unicode name (``_fold_run``).
_ENCLOSED_NAME = re.compile(
    r"^(?:(?:NEGATIVE |DOUBLE )?(?:CIRCLED|SQUARED|PARENTHESIZED) (?:LATIN )?(?:CAPITAL |SMALL )?"
    r"LETTER|REGIONAL INDICATOR SYMBOL LETTER) ([A-Z])$"
)
_PRE_TABLE = {
    ord(ch): m.group(1).lower()
    for ch in _ALL
    if unicodedata.category(ch) == "So" and (m := _ENCLOSED_NAME.match(unicodedata.name(ch, "")))
}


def _build_run_table() -> dict[int, str | None]:
    confusables = _confusable_targets()
    table: dict[int, str | None] = {}
    for ch in _ALL:
        if _renders_as_nothing(ch):
            table[ord(ch)] = None
        elif ch in BLANK:
            table[ord(ch)] = " "
        elif ord(ch) in _PRE_TABLE:
            table[ord(ch)] = _PRE_TABLE[ord(ch)]
        elif ch in _LEET:
            table[ord(ch)] = _LEET[ch]
        elif unicodedata.category(ch)[0] in "LN":
            # The letter as written first: a capital often imitates another Latin letter
            # than its lower case does (Greek capital beta is a B, small beta is not).
            # Then its case-folded form (Cherokee small letters fold to the capitals
            # that imitate Latin ones).
            latin = _as_latin(ch, confusables)
            folded = ch.casefold()
            if latin is None and len(folded) == 1 and folded != ch:
                latin = _as_latin(folded, confusables)
            if latin is not None:
                table[ord(ch)] = latin
    return table


# Runs of non-ASCII characters: ignorable and combining characters dropped, look-alikes
# and non-ASCII leet mapped, blank-looking characters made plain spaces.
_RUN_TABLE = _build_run_table()
_ASCII_WHITESPACE = {"\t": " ", "\n": " ", "\r": " ", "\x0b": " ", "\x0c": " "}
# Control characters render as nothing (HTML parsers drop NUL): removed.
_ASCII_CONTROLS = "".join(chr(c) for c in [*range(0x09), *range(0x0E, 0x20), 0x7F])
# ASCII text: one str.translate (CPython's fast path for ASCII): leet + whitespace.
_ASCII_TABLE = str.maketrans({**_ASCII_LEET, **_ASCII_WHITESPACE, **dict.fromkeys(_ASCII_CONTROLS)})
# The same as a bytes table, for the ASCII bytes of mixed text.
_BYTES_TABLE = bytes.maketrans(
    "".join([*_ASCII_LEET, *_ASCII_WHITESPACE]).encode(),
    "".join([*_ASCII_LEET.values(), *_ASCII_WHITESPACE.values()]).encode(),
)
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
# What link finders and admin regexes see: ignorables removed, blanks made spaces.
_INVISIBLE_TABLE: dict[int, str | None] = {ord(c): None for c in IGNORABLE}
_INVISIBLE_TABLE.update({ord(c): " " for c in BLANK if not c.isspace()})
_DOUBLE_SPACES = re.compile(r"  +")


def strip_invisible(text: str) -> str:
    """NFKC with ignorable characters removed and blank fillers made spaces: what admin
    regexes and link finders see."""
    if text.isascii():
        return text
    return _NON_ASCII.sub(
        lambda m: m.group().translate(_INVISIBLE_TABLE), unicodedata.normalize("NFKC", text)
    )


def _fold_run(match: re.Match[str]) -> str:
    # NFKD = compatibility forms (full-width, maths letters) + accents split off (dropped).
    run = match.group()
    nfkd = unicodedata.normalize("NFKD", run)
    if "(" in nfkd:
        # The run has no ASCII: a "(" comes from a parenthesized form ("⒝" -> "(b)"),
        # which is one letter to a reader, not a word between brackets.
        nfkd = unicodedata.normalize("NFKD", run.translate(_PRE_TABLE))
    # Look-alikes are mapped before case folding (see _build_run_table), the rest after.
    return nfkd.translate(_RUN_TABLE).casefold()


def fold(text: str) -> str:
    """The matching form of ``text`` (see module doc). Idempotent.

    Only the non-ASCII runs take the slow Unicode path; the ASCII rest is lowered and
    leet-mapped by one C-level translate, so an emoji does not make a message slow.
    """
    if text.isascii():
        folded = text.lower().translate(_ASCII_TABLE)
    else:
        mixed = _NON_ASCII.sub(_fold_run, text)
        data = (
            mixed.encode("utf-8", "surrogatepass")
            .lower()
            .translate(_BYTES_TABLE, _ASCII_CONTROLS.encode())
        )
        folded = data.decode("utf-8", "surrogatepass")
    # Collapse runs only when there are any: most chat has none.
    return _DOUBLE_SPACES.sub(" ", folded) if "  " in folded else folded


def is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


# The bidi controls that make Latin text show in another order: right-to-left override
# (reverses letters), embedding and isolate (reverse the order of words).
_REORDERING = ("\u202e", "\u202b", "\u2067")


def visual_variant(text: str) -> str | None:
    """The text in the order a reader sees it when it contains reordering bidi controls
    (a right-to-left override shows ``\u202edrowdab`` as ``badword``): the Unicode
    Bidirectional Algorithm (``python-bidi``), line by line. None without them."""
    if text.isascii() or not any(c in text for c in _REORDERING):
        return None
    try:
        return "\n".join(get_display(line) for line in text.split("\n"))
    except Exception:
        return text[::-1]  # a reader might see it reversed: check that too
