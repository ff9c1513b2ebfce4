"""Text normalisation for keyword matching: defeat Unicode and spelling tricks.

Both keywords and message text go through ``fold`` so that they meet in the same
alphabet: NFKC (full-width, ligatures, maths letters), accents stripped, case folded,
invisible/format characters removed, common homoglyphs and leetspeak mapped to Latin
letters, and whitespace runs collapsed to one space.
"""

from __future__ import annotations

import re
import sys
import unicodedata

# Characters clients render as nothing: every format (Cf) character (zero-width
# space/joiners, bidi controls, soft hyphen, BOM...) plus blank-looking letters.
_INVISIBLE = [
    c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"
] + [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0]

# Cyrillic/Greek/other letters that look like Latin ones (after case folding).
_HOMOGLYPHS = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
    "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "i", "ɡ": "g", "ı": "i",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ɑ": "a",
}
# Leetspeak: digits and symbols standing in for letters.
_LEET = {
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "|": "i", "€": "e", "£": "l",
}

_TABLE: dict[int, str | None] = {c: None for c in _INVISIBLE}
_TABLE.update({ord(k): v for k, v in _HOMOGLYPHS.items()})
_TABLE.update({ord(k): v for k, v in _LEET.items()})
# ASCII-only input needs only the leet part (fast path in str.translate).
_ASCII_TABLE = str.maketrans(_LEET)
_SPACES = re.compile(r"\s+")


_TABLE_INVISIBLE: dict[int, None] = {c: None for c in _INVISIBLE}


def strip_invisible(text: str) -> str:
    """NFKC with format characters removed: what admin regexes and link finders see."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text).translate(_TABLE_INVISIBLE)


def fold(text: str) -> str:
    """The matching form of ``text`` (see module doc). Idempotent."""
    if text.isascii():
        folded = text.lower().translate(_ASCII_TABLE)
    else:
        # NFKD = compatibility forms (NFKC's job) + accents split off, then dropped.
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
        folded = text.casefold().translate(_TABLE)
    return _SPACES.sub(" ", folded)


def is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"
