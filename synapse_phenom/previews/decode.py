"""Bytes -> text for HTML pages, as the HTML standard's encoding sniffing does it.

Order (https://html.spec.whatwg.org/#encoding-sniffing-algorithm): a byte order mark, then the
HTTP ``charset``, then the prescan of the first 1024 bytes for ``<meta charset>`` /
``<meta http-equiv=content-type content="...charset=...">``. With none of them: a strict
UTF-8 decode, then windows-1252. No statistical guessing. Labels are looked up in the WHATWG
Encoding Standard's table (``webencodings``), so ``latin1``/``ascii`` mean windows-1252 and
``utf8``/``unicode-1-1-utf-8`` mean UTF-8, as in browsers. An XML declaration is not read
(the prescan skips ``<?...>``), as in browsers for text/html.
"""

from __future__ import annotations

import codecs

import webencodings

PRESCAN_BYTES = 1024
_WS = b"\t\n\x0c\r "
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16be"),
    (codecs.BOM_UTF16_LE, "utf-16le"),
)


def lookup(label: str | bytes | None) -> str | None:
    """The Encoding Standard name of an encoding label (``"latin1"`` -> ``"windows-1252"``)."""
    if label is None:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "replace")
    found = webencodings.lookup(label)
    return found.name if found is not None else None


def http_charset(content_type: str | None) -> str | None:
    """The encoding named by a Content-Type header's ``charset`` parameter (None if absent or
    unknown)."""
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return lookup(value.strip().strip("\"'").strip())
    return None


def charset_from_content(value: bytes) -> bytes | None:
    """The HTML standard's "extracting a character encoding from a meta element" (on bytes)."""
    pos = 0
    lower = value.lower()
    while True:
        found = lower.find(b"charset", pos)
        if found < 0:
            return None
        pos = found + 7
        while pos < len(value) and value[pos] in _WS:
            pos += 1
        if pos >= len(value) or value[pos] != 0x3D:  # "="
            continue  # "charset" not followed by "=": look for the next one
        pos += 1
        while pos < len(value) and value[pos] in _WS:
            pos += 1
        if pos >= len(value):
            return None
        if value[pos] in b"\"'":
            end = value.find(value[pos : pos + 1], pos + 1)
            return value[pos + 1 : end] if end >= 0 else None
        end = pos
        while end < len(value) and value[end] not in _WS and value[end] != 0x3B:  # ";"
            end += 1
        return value[pos:end]


class _Prescan:
    """ "Prescan a byte stream to determine its encoding" over at most 1024 bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data[:PRESCAN_BYTES]
        self.pos = 0

    def byte(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def attribute(self) -> tuple[bytes, bytes] | None:
        """ "Get an attribute": (lower-cased name, value), or None at ``>`` / end of input."""
        while (b := self.byte()) is not None and (b in _WS or b == 0x2F):
            self.pos += 1
        if b is None or b == 0x3E:
            return None
        name = bytearray()
        while True:
            b = self.byte()
            if b is None:
                return None
            if b == 0x3D and name:
                self.pos += 1
                break
            if b in _WS:
                while (b := self.byte()) is not None and b in _WS:
                    self.pos += 1
                if b != 0x3D:
                    return bytes(name), b""
                self.pos += 1
                break
            if b in (0x2F, 0x3E):
                return bytes(name), b""
            name.append(b + 0x20 if 0x41 <= b <= 0x5A else b)
            self.pos += 1
        while (b := self.byte()) is not None and b in _WS:
            self.pos += 1
        value = bytearray()
        b = self.byte()
        if b is None:
            return None
        if b in (0x22, 0x27):
            quote = b
            while True:
                self.pos += 1
                b = self.byte()
                if b is None:
                    return None
                if b == quote:
                    self.pos += 1
                    return bytes(name), bytes(value)
                value.append(b + 0x20 if 0x41 <= b <= 0x5A else b)
        if b == 0x3E:
            return bytes(name), b""
        while (b := self.byte()) is not None and b not in _WS and b != 0x3E:
            value.append(b + 0x20 if 0x41 <= b <= 0x5A else b)
            self.pos += 1
        return (bytes(name), bytes(value)) if b is not None else None

    def _meta(self) -> str | None:
        seen: set[bytes] = set()
        got_pragma = False
        need_pragma: bool | None = None
        charset: str | None = None
        while (attr := self.attribute()) is not None:
            name, value = attr
            if name in seen:
                continue
            seen.add(name)
            if name == b"http-equiv":
                got_pragma = got_pragma or value == b"content-type"
            elif name == b"content" and charset is None:
                extracted = charset_from_content(value)
                if extracted is not None:
                    charset = lookup(extracted) or ""
                    need_pragma = True
            elif name == b"charset":
                charset = lookup(value) or ""
                need_pragma = False
        if need_pragma is None or (need_pragma and not got_pragma) or not charset:
            return None
        if charset in ("utf-16be", "utf-16le"):
            return "utf-8"
        if charset == "x-user-defined":
            return "windows-1252"
        return charset

    def run(self) -> str | None:
        data = self.data
        while self.pos < len(data):
            if data.startswith(b"<!--", self.pos):
                end = data.find(b"-->", self.pos + 2)
                if end < 0:
                    return None
                self.pos = end + 3
                continue
            if data[self.pos : self.pos + 5].lower() == b"<meta" and (
                self.pos + 5 < len(data)
                and (data[self.pos + 5] in _WS or data[self.pos + 5] == 0x2F)
            ):
                self.pos += 6
                found = self._meta()
                if found is not None:
                    return found
                continue
            nxt = data[self.pos + 1 : self.pos + 2]
            if data[self.pos] == 0x3C and (
                nxt.isalpha() or (nxt == b"/" and data[self.pos + 2 : self.pos + 3].isalpha())
            ):
                while (b := self.byte()) is not None and b not in _WS and b != 0x3E:
                    self.pos += 1
                while self.attribute() is not None:
                    pass
                self.pos += 1
                continue
            if data[self.pos] == 0x3C and nxt in (b"!", b"/", b"?"):
                end = data.find(b">", self.pos + 1)
                if end < 0:
                    return None
                self.pos = end + 1
                continue
            self.pos += 1
        return None


def prescan(data: bytes) -> str | None:
    """The encoding a ``<meta>`` in the first 1024 bytes declares (None if none is usable)."""
    return _Prescan(data).run()


def sniff_confidence(body: bytes, content_type: str | None = None) -> tuple[str, int, bool]:
    """(encoding name, bytes of BOM to skip, certain) following the HTML standard's order.

    A BOM or the HTTP charset is *certain*; the prescan and the fallbacks are *tentative*:
    a different ``<meta>`` declaration the parser meets later changes the encoding."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name, len(bom), True
    declared = http_charset(content_type)
    if declared is not None:
        return declared, 0, True
    declared = prescan(body)
    if declared is not None:
        return declared, 0, False
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(body, final=False)
    except UnicodeDecodeError:
        return "windows-1252", 0, False
    return "utf-8", 0, False


def sniff(body: bytes, content_type: str | None = None) -> tuple[str, int]:
    """(encoding name, bytes of BOM to skip) following the HTML standard's order."""
    name, skip, _ = sniff_confidence(body, content_type)
    return name, skip


def meta_declared(charset: str | None, http_equiv: str | None, content: str | None) -> str | None:
    """The encoding a parsed ``<meta>`` declares, with the standard's UTF-16 and
    x-user-defined rules."""
    label: str | bytes | None = None
    if charset:
        label = charset
    elif http_equiv and http_equiv.strip().lower() == "content-type" and content:
        label = charset_from_content(content.encode("utf-8", "replace"))
    name = lookup(label.strip() if label is not None else None)
    if name in ("utf-16be", "utf-16le"):
        return "utf-8"
    if name == "x-user-defined":
        return "windows-1252"
    return name


def _c1_passthrough(err: UnicodeError) -> tuple[str, int]:
    # windows-1252 as the Encoding Standard defines it maps 0x81, 0x8D, 0x8F, 0x90 and 0x9D
    # to the C1 controls of the same value; Python's cp1252 leaves them undefined.
    assert isinstance(err, UnicodeDecodeError)
    return "".join(chr(b) for b in err.object[err.start : err.end]), err.end


codecs.register_error("phenom-whatwg-1252", _c1_passthrough)


def decode_html(
    body: bytes,
    content_type: str | None = None,
    limit: int | None = None,
    encoding: tuple[str, int] | None = None,
) -> str:
    """The page's text, decoded as a browser would; only the first ``limit`` bytes when given
    (a character cut at the limit is dropped, not turned into mojibake). ``encoding`` (name,
    BOM length) overrides the sniffing."""
    name, skip = encoding or sniff(body, content_type)
    chunk = body[skip : skip + limit] if limit is not None else body[skip:]
    found = webencodings.lookup(name)
    codec = found.codec_info if found is not None else codecs.lookup("utf-8")
    errors = "phenom-whatwg-1252" if name == "windows-1252" else "replace"
    return codec.incrementaldecoder(errors).decode(
        chunk, final=limit is None or len(body) - skip <= limit
    )
