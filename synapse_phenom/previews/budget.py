"""A hard bound on the work of parsing one page, decided before the HTML parser runs.

An HTML parser cannot be interrupted from outside (it runs in a thread, and threads cannot
be stopped), so the input is cut instead. Every conforming HTML5 parser (Lexbor, html5lib,
Gumbo) does work proportional to the depth of the open-element stack for many start tags
("close a p element", scope checks), so a page of 150,000 nested ``<div>`` costs minutes.
``bounded_markup`` walks the tags once, estimates the open-element stack like the tree
builder does (never lower than the parser's, so it can only cut too early, never too late),
and cuts the markup before the first tag that would exceed the element count, the depth or
the total work (the sum of stack depths over all start tags). Metadata lives in ``<head>``,
near the start and shallow, so real pages are unaffected.
"""

from __future__ import annotations

import functools
import re

import attrs

MAX_CHARS = 128 * 1024  # characters of markup handed to the parser
MAX_ELEMENTS = 20_000  # start and end tags
MAX_DEPTH = 256  # open elements (browsers cap the DOM depth around 512)
MAX_WORK = 400_000  # sum over start tags of the open-element depth, plus lookups

_TAG = re.compile(r"<(?:(!--)|(/?)([A-Za-z][^\t\n\f\r />]*)|[!?/])")
_VOID = frozenset(
    [
        "area",
        "base",
        "basefont",
        "bgsound",
        "br",
        "col",
        "embed",
        "frame",
        "hr",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)
# Their content is text to the tokenizer, not tags.
_RAW = frozenset(
    ["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext"]
)
# "Special" elements of the HTML standard (tree construction) and scope boundaries.
_SPECIAL = frozenset(
    [
        "address",
        "applet",
        "area",
        "article",
        "aside",
        "base",
        "basefont",
        "bgsound",
        "blockquote",
        "body",
        "br",
        "button",
        "caption",
        "center",
        "col",
        "colgroup",
        "dd",
        "details",
        "dir",
        "div",
        "dl",
        "dt",
        "embed",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "frame",
        "frameset",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "head",
        "header",
        "hgroup",
        "hr",
        "html",
        "iframe",
        "img",
        "input",
        "keygen",
        "li",
        "link",
        "listing",
        "main",
        "marquee",
        "menu",
        "meta",
        "nav",
        "noembed",
        "noframes",
        "noscript",
        "object",
        "ol",
        "p",
        "param",
        "plaintext",
        "pre",
        "script",
        "search",
        "section",
        "select",
        "source",
        "style",
        "summary",
        "table",
        "tbody",
        "td",
        "template",
        "textarea",
        "tfoot",
        "th",
        "thead",
        "title",
        "tr",
        "track",
        "ul",
        "wbr",
        "xmp",
        "mi",
        "mo",
        "mn",
        "ms",
        "mtext",
        "annotation-xml",
        "foreignobject",
        "desc",
    ]
)
_SCOPE = frozenset(
    [
        "applet",
        "caption",
        "html",
        "table",
        "td",
        "th",
        "marquee",
        "object",
        "template",
        "mi",
        "mo",
        "mn",
        "ms",
        "mtext",
        "annotation-xml",
        "foreignobject",
        "desc",
        "title",
    ]
)
_BUTTON_SCOPE = _SCOPE | {"button"}
_FORMATTING = frozenset(
    [
        "a",
        "b",
        "big",
        "code",
        "em",
        "font",
        "i",
        "nobr",
        "s",
        "small",
        "strike",
        "strong",
        "tt",
        "u",
    ]
)
# Start tags before which the tree builder closes an open <p> (in button scope).
_CLOSES_P = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "center",
        "details",
        "dialog",
        "dir",
        "div",
        "dl",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "header",
        "hgroup",
        "main",
        "menu",
        "nav",
        "ol",
        "p",
        "search",
        "section",
        "summary",
        "ul",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "listing",
        "form",
        "li",
        "dd",
        "dt",
        "plaintext",
        "table",
        "hr",
        "xmp",
    ]
)


@attrs.frozen
class Limits:
    max_chars: int = MAX_CHARS
    max_elements: int = MAX_ELEMENTS
    max_depth: int = MAX_DEPTH
    max_work: int = MAX_WORK


DEFAULT_LIMITS = Limits()


@functools.lru_cache(maxsize=16)
def _raw_end(name: str) -> re.Pattern[str]:
    return re.compile(rf"</{re.escape(name)}[\t\n\f\r />]", re.IGNORECASE)


class _Stack:
    """The estimated stack of open elements, with per-name counts so that most lookups are O(1).
    ``steps`` counts the elements inspected, so the estimate's own work is bounded too."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.counts: dict[str, int] = {}
        self.steps = 0

    def _find(self, name: str, stop: frozenset[str]) -> int:
        """Index of the innermost ``name``, unless an element of ``stop`` (other than ``name``)
        comes first from the top; -1 when the parser would not find it."""
        if not self.counts.get(name):
            return -1
        names = self.names
        for i in range(len(names) - 1, -1, -1):
            self.steps += 1
            if names[i] == name:
                return i
            if names[i] in stop:
                return -1
        return -1

    def _pop_to(self, at: int) -> None:
        for gone in self.names[at:]:
            self.counts[gone] -= 1
        del self.names[at:]

    def end_tag(self, name: str) -> None:
        if name in _FORMATTING:
            # The adoption agency pops cleanly only when no special element is above it.
            at = self._find(name, _SPECIAL)
        elif name in _SPECIAL:
            at = self._find(name, _SCOPE)
        else:
            at = self._find(name, _SPECIAL)  # "any other end tag"
        if at >= 0:
            self._pop_to(at)

    def start_tag(self, name: str) -> None:
        # The implied end tags real pages rely on (unclosed <p> and <li>), exactly when the
        # tree builder closes them; everything else is assumed to nest.
        if name == "li" and self.counts.get("li"):
            names = self.names
            for i in range(len(names) - 1, -1, -1):
                self.steps += 1
                if names[i] == "li":
                    self._pop_to(i)
                    break
                if names[i] in _SPECIAL and names[i] not in ("address", "div", "p"):
                    break
        if name in _CLOSES_P:
            at = self._find("p", _BUTTON_SCOPE)
            if at >= 0:
                self._pop_to(at)
        self.names.append(name)
        self.counts[name] = self.counts.get(name, 0) + 1


def bounded_markup(text: str, limits: Limits = DEFAULT_LIMITS) -> tuple[str, bool]:
    """(the longest prefix of ``text`` within ``limits``, whether anything was cut)."""
    cut = len(text) > limits.max_chars
    text = text[: limits.max_chars]
    stack = _Stack()
    elements = work = 0
    pos = 0
    search = _TAG.search
    while (m := search(text, pos)) is not None:
        comment, slash, name = m.groups()
        if comment:
            end = text.find("-->", m.end())
            pos = len(text) if end < 0 else end + 3
            continue
        close = text.find(">", m.end())
        if close < 0:
            break
        pos = close + 1
        if not name:
            continue  # <!doctype>, <?xml ...?>, bogus comments
        name = name.lower()
        if slash:
            # An end tag costs a scope check over the stack, and some (</p>, </br> without an
            # open element, anything in a table) make the tree builder insert an element.
            elements += 1
            work += len(stack.names) + 1
            stack.end_tag(name)
            if elements > limits.max_elements or work + stack.steps > limits.max_work:
                return text[: m.start()], True
            continue
        if name in _VOID:
            continue
        stack.start_tag(name)
        elements += 1
        work += len(stack.names)
        if (
            elements > limits.max_elements
            or len(stack.names) > limits.max_depth
            or work + stack.steps > limits.max_work
        ):
            return text[: m.start()], True
        if name in _RAW:
            end_m = _raw_end(name).search(text, pos)
            pos = len(text) if end_m is None else end_m.start()
    return text, cut
