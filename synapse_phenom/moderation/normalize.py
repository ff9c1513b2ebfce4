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
_INVISIBLE = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"] + [
    0x034F,
    0x115F,
    0x1160,
    0x17B4,
    0x17B5,
    0x2800,
    0x3164,
    0xFFA0,
]

# Cyrillic/Greek/other letters that look like Latin ones (after case folding).
_HOMOGLYPHS = dict(
    zip(
        "авеёкмнорстухѕіїјԁԛԝһӏɡıαβεηικνορτυχωϲɑ",
        "abeekmhopctyxsiijdqwhigiabenikvoptuxwca",
        strict=True,
    )
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

_ASCII_WHITESPACE = {"\t": " ", "\n": " ", "\r": " ", "\x0b": " ", "\x0c": " "}
_ASCII_LEET = {k: v for k, v in _LEET.items() if k.isascii()}
# ASCII text: one str.translate (CPython's fast path for ASCII): leet + whitespace.
_ASCII_TABLE = str.maketrans({**_ASCII_LEET, **_ASCII_WHITESPACE})
# The same as a bytes table, for the ASCII bytes of mixed text.
_BYTES_TABLE = bytes.maketrans(
    "".join([*_ASCII_LEET, *_ASCII_WHITESPACE]).encode(),
    "".join([*_ASCII_LEET.values(), *_ASCII_WHITESPACE.values()]).encode(),
)
# Runs of non-ASCII characters: invisible and combining characters dropped, homoglyphs
# and non-ASCII leet mapped, Unicode spaces made plain spaces.
_RUN_TABLE: dict[int, str | None] = {c: None for c in _INVISIBLE}
_RUN_TABLE.update(
    {c: None for c in range(0x80, sys.maxunicode + 1) if unicodedata.combining(chr(c))}
)
_RUN_TABLE.update({c: " " for c in range(0x80, sys.maxunicode + 1) if chr(c).isspace()})
_RUN_TABLE.update({ord(k): v for k, v in _HOMOGLYPHS.items()})
_RUN_TABLE.update({ord(k): v for k, v in _LEET.items()})
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_INVISIBLE_TABLE: dict[int, None] = {c: None for c in _INVISIBLE}
_DOUBLE_SPACES = re.compile(r"  +")


def strip_invisible(text: str) -> str:
    """NFKC with format characters removed: what admin regexes and link finders see."""
    if text.isascii():
        return text
    return _NON_ASCII.sub(
        lambda m: m.group().translate(_INVISIBLE_TABLE), unicodedata.normalize("NFKC", text)
    )


def _fold_run(match: re.Match[str]) -> str:
    # NFKD = compatibility forms (full-width, maths letters) + accents split off (dropped).
    return unicodedata.normalize("NFKD", match.group()).casefold().translate(_RUN_TABLE)


def fold(text: str) -> str:
    """The matching form of ``text`` (see module doc). Idempotent.

    Only the non-ASCII runs take the slow Unicode path; the ASCII rest is lowered and
    leet-mapped by one C-level translate, so an emoji does not make a message slow.
    """
    if text.isascii():
        folded = text.lower().translate(_ASCII_TABLE)
    else:
        mixed = _NON_ASCII.sub(_fold_run, text)
        data = mixed.encode("utf-8", "surrogatepass").lower().translate(_BYTES_TABLE)
        folded = data.decode("utf-8", "surrogatepass")
    # Collapse runs only when there are any: most chat has none.
    return _DOUBLE_SPACES.sub(" ", folded) if "  " in folded else folded


def is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"
