"""Pure parsing: HTML (OpenGraph, Twitter card, JSON-LD, plain tags) and oEmbed JSON into a Card.

Precedence for each field is oEmbed/OpenGraph first (what the site curated for sharing),
then Twitter card, then JSON-LD, then plain HTML, then fallbacks derived from the URL.
"""

from __future__ import annotations

import html as html_lib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

import attrs
from selectolax.lexbor import LexborHTMLParser, LexborNode

from synapse_phenom.previews import budget, urls
from synapse_phenom.previews.card import DESCRIPTION_MAX, MAX_FACTS, Card, Fact
from synapse_phenom.previews.decode import decode_html, meta_declared, sniff_confidence

OEMBED_TYPES = ("application/json+oembed", "text/json+oembed")
OEMBED_KINDS = ("photo", "video", "link", "rich")
JSONLD_MAX_CHARS = 64 * 1024  # per script
JSONLD_MAX_DEPTH = 32  # nesting kept from a JSON-LD document
_WS = re.compile(r"\s+")
BODY_TEXT_MAX = 1000
# Elements whose text is not visible prose (scripts, styles, inline graphics).
_INVISIBLE = "script, style, noscript, template, svg, math, head"
_HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_LD_KINDS = {
    "article": "article",
    "newsarticle": "article",
    "blogposting": "article",
    "report": "article",
    "videoobject": "video",
    "movie": "video",
    "imageobject": "photo",
    "person": "profile",
    "profilepage": "profile",
    "organization": "profile",
    "event": "event",
    "product": "product",
    "podcastepisode": "audio",
    "audioobject": "audio",
}
_OEMBED_KINDS = {"photo": "photo", "video": "video", "rich": "website", "link": "website"}


@attrs.frozen
class PageMeta:
    """Everything the card is built from, as found in one HTML page."""

    meta: Mapping[
        str, str
    ]  # og:*, twitter:*, article:*, description, theme-color, ... (first wins)
    jsonld: tuple[Mapping[str, Any], ...]
    title: str | None
    first_heading: str | None
    first_paragraph: str | None
    canonical: str | None
    oembed_url: str | None
    body_text: str | None = None  # visible text of <body>, when there is no paragraph


def clean(text: Any) -> str | None:
    """Collapse whitespace; None for empty or non-string values."""
    if not isinstance(text, str):
        return None
    text = _WS.sub(" ", text).strip()
    return text or None


def truncate(text: str | None, limit: int = DESCRIPTION_MAX) -> str | None:
    """Cut at a word boundary, with an ellipsis, so the result is at most ``limit`` chars."""
    if text is None or len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + "…"


def theme_colour(value: str | None) -> str | None:
    """A CSS hex colour as ``#rrggbb``; anything else (names, rgb()) is dropped."""
    if not value:
        return None
    m = _HEX.match(value.strip())
    if not m:
        return None
    hexes = m.group(1).lower()
    if len(hexes) == 3:
        hexes = "".join(c * 2 for c in hexes)
    return f"#{hexes}"


def _http_url(value: Any, base: str) -> str | None:
    value = clean(value)
    if not value:
        return None
    return urls.join(base, value)


def _prune(value: Any, depth: int) -> Any:
    """``value`` with containers nested deeper than ``depth`` dropped (bounded recursion)."""
    if isinstance(value, dict):
        return {k: _prune(v, depth - 1) for k, v in value.items()} if depth > 0 else None
    if isinstance(value, list):
        return [_prune(v, depth - 1) for v in value] if depth > 0 else None
    return value


def _jsonld_objects(raw: str) -> list[Mapping[str, Any]]:
    if len(raw) > JSONLD_MAX_CHARS:
        return []
    try:
        data = _prune(json.loads(raw), JSONLD_MAX_DEPTH)
    except (ValueError, RecursionError):
        return []  # broken (or absurdly nested) JSON-LD is common; ignore it
    out: list[Mapping[str, Any]] = []
    stack = [data]
    while stack:
        item = stack.pop(0)
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if "@graph" in item:
                stack.extend(
                    item["@graph"] if isinstance(item["@graph"], list) else [item["@graph"]]
                )
            if "@type" in item:
                out.append(item)
    return out


def _text(node: LexborNode | None, separator: str = "") -> str | None:
    return clean(node.text(deep=True, separator=separator)) if node is not None else None


def _declared(tree: LexborHTMLParser) -> str | None:
    """The encoding the first declaring ``<meta>`` of the parsed document names."""
    for meta in tree.css("meta[charset], meta[http-equiv]"):
        a = meta.attributes
        found = meta_declared(a.get("charset"), a.get("http-equiv"), a.get("content"))
        if found is not None:
            return found
    return None


def _parse_bytes(body: bytes, content_type: str | None, limits: budget.Limits) -> LexborHTMLParser:
    name, skip, certain = sniff_confidence(body, content_type)
    limit = limits.max_chars * 4
    tree = LexborHTMLParser(
        budget.bounded_markup(decode_html(body, limit=limit, encoding=(name, skip)), limits)[0]
    )
    if not certain:
        # "Change the encoding": a declaration the prescan did not see (beyond 1024 bytes)
        # wins over a tentative guess; the page is decoded and parsed once more, at most.
        declared = _declared(tree)
        if declared is not None and declared != name:
            text = decode_html(body, limit=limit, encoding=(declared, 0))
            tree = LexborHTMLParser(budget.bounded_markup(text, limits)[0])
    return tree


def parse_html(
    html: str | bytes,
    content_type: str | None = None,
    limits: budget.Limits = budget.DEFAULT_LIMITS,
) -> PageMeta:
    """Extract metadata from a (possibly broken) HTML document, with bounded work.

    Bytes are decoded as the HTML standard says (BOM, ``content_type``'s charset, ``<meta>``
    prescan, UTF-8, windows-1252); only the first ``limits.max_chars`` of markup, cut further
    where nesting would make the parse expensive, reach the (Lexbor) HTML5 parser.
    """
    if isinstance(html, bytes):
        tree = _parse_bytes(html, content_type, limits)
    else:
        tree = LexborHTMLParser(budget.bounded_markup(html, limits)[0])
    meta: dict[str, str] = {}
    for tag in tree.css("meta"):
        attrs_ = tag.attributes
        key = attrs_.get("property") or attrs_.get("name") or attrs_.get("itemprop")
        value = attrs_.get("content")
        if isinstance(key, str) and isinstance(value, str):
            key = key.strip().lower()
            if key and key not in meta and clean(value):
                meta[key] = value.strip()
    jsonld: list[Mapping[str, Any]] = []
    for script in tree.css("script"):
        if (script.attributes.get("type") or "").strip().lower() == "application/ld+json":
            jsonld.extend(_jsonld_objects(script.text(deep=True)))
    canonical = oembed = None
    for link in tree.css("link"):
        rel = (link.attributes.get("rel") or "").lower().split()
        href = link.attributes.get("href")
        if not href:
            continue
        if "canonical" in rel and canonical is None:
            canonical = href
        ltype = (link.attributes.get("type") or "").strip().lower()
        if "alternate" in rel and ltype in OEMBED_TYPES and oembed is None:
            oembed = href
    paragraph = next(
        (t for t in (_text(p, " ") for p in tree.css("p")) if t and len(t) >= 20), None
    )
    title = _text(tree.css_first("title"))
    heading = _text(tree.css_first("h1"), " ")
    body_text = None
    if paragraph is None and tree.body is not None:
        for node in reversed(tree.css(_INVISIBLE)):  # inner nodes first: no freed parents
            node.decompose()
        body_text = truncate(_text(tree.body, " "), BODY_TEXT_MAX)
    return PageMeta(
        meta=meta,
        jsonld=tuple(jsonld),
        title=title,
        first_heading=heading,
        first_paragraph=paragraph,
        body_text=body_text,
        canonical=canonical,
        oembed_url=oembed,
    )


def _oembed_version_ok(version: Any) -> bool:
    # The spec says the string "1.0"; the number 1.0 is the same version written loosely.
    if isinstance(version, str):
        return version == "1.0"
    return isinstance(version, (int, float)) and not isinstance(version, bool) and version == 1


def _html_text(fragment: Any) -> tuple[str | None, str | None]:
    """(text, first <img src>) of an oEmbed ``html`` fragment, with bounded work."""
    if not isinstance(fragment, str) or not fragment.strip():
        return None, None
    markup, _ = budget.bounded_markup(fragment, budget.Limits(max_chars=64 * 1024))
    tree = LexborHTMLParser(markup)
    for node in reversed(tree.css(_INVISIBLE)):
        node.decompose()
    img = tree.css_first("img")
    src = img.attributes.get("src") if img is not None else None
    body = tree.body
    return (_text(body, " ") if body is not None else None), (src or None)


def parse_oembed(raw: str | bytes) -> Mapping[str, Any] | None:
    """A valid oEmbed 1.0 response, or None when the body is not one.

    Valid means a JSON object with ``version`` "1.0" and ``type`` photo/video/link/rich.
    Text fields are strings with HTML entities unescaped (``isn&#8217;t`` -> a right single
    quotation mark);
    for rich/video the text of ``html`` becomes ``html_text`` (and its first image
    ``html_image``), a photo's image is its ``url``.
    """
    if isinstance(raw, (bytes, str)) and len(raw) > 1_000_000:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not _oembed_version_ok(data.get("version")):
        return None
    kind = data.get("type")
    if not isinstance(kind, str) or kind.lower() not in OEMBED_KINDS:
        return None
    out: dict[str, Any] = {"version": "1.0", "type": kind.lower()}
    for key in ("title", "author_name", "provider_name", "description"):
        value = data.get(key)
        if isinstance(value, str):
            out[key] = html_lib.unescape(value)
    for key in ("thumbnail_url", "url", "author_url", "provider_url"):
        if isinstance(data.get(key), str):
            out[key] = data[key]
    if "cache_age" in data:
        out["cache_age"] = data["cache_age"]
    if out["type"] in ("rich", "video"):
        text, image = _html_text(data.get("html"))
        if text:
            out["html_text"] = text
        if image and out["type"] == "rich":
            out["html_image"] = image
    return out


def oembed_cache_age(oembed: Mapping[str, Any] | None) -> int | None:
    if not oembed:
        return None
    try:
        age = int(oembed.get("cache_age"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return age if age >= 0 else None


def _ld_name(value: Any) -> str | None:
    """``"Ada"``, ``{"name": "Ada"}`` or a list of those -> a display string."""
    if isinstance(value, list):
        names = [n for n in (_ld_name(v) for v in value) if n]
        return ", ".join(names[:3]) or None
    if isinstance(value, dict):
        return clean(value.get("name"))
    return clean(value)


def _ld_image(value: Any) -> str | None:
    if isinstance(value, list):
        return next((u for u in (_ld_image(v) for v in value) if u), None)
    if isinstance(value, dict):
        return clean(value.get("url") or value.get("contentUrl"))
    return clean(value)


def _ld_kind(obj: Mapping[str, Any]) -> str | None:
    types = obj.get("@type")
    for t in types if isinstance(types, list) else [types]:
        if isinstance(t, str) and t.lower() in _LD_KINDS:
            return _LD_KINDS[t.lower()]
    return None


def _date(value: Any) -> str | None:
    """ISO dates shown as their date part (``2026-05-01T10:00:00Z`` -> ``2026-05-01``)."""
    text = clean(value)
    if text and re.match(r"^\d{4}-\d{2}-\d{2}", text):
        return text[:10]
    return text


def _first(*values: Any) -> str | None:
    return next((c for c in (clean(v) for v in values) if c), None)


def _facts(
    meta: Mapping[str, str], ld: Mapping[str, Any], oembed: Mapping[str, Any]
) -> tuple[Fact, ...]:
    facts: list[Fact] = []
    # Twitter's label/data pairs are the site's own choice of facts: they come first.
    for i in (1, 2):
        label, data = clean(meta.get(f"twitter:label{i}")), clean(meta.get(f"twitter:data{i}"))
        if label and data:
            facts.append(Fact(label=label, value=data))
    author = _first(
        meta.get("article:author")
        if not str(meta.get("article:author", "")).startswith("http")
        else None,
        _ld_name(ld.get("author")),
        oembed.get("author_name"),
        meta.get("author"),
    )
    if author:
        facts.append(Fact(label="Author", value=author))
    published = _date(
        _first(meta.get("article:published_time"), ld.get("datePublished"), ld.get("uploadDate"))
    )
    if published:
        facts.append(Fact(label="Published", value=published))
    starts = _date(ld.get("startDate"))
    if starts:
        facts.append(Fact(label="Starts", value=starts))
    unique: dict[str, Fact] = {}
    for fact in facts:
        unique.setdefault(fact.label.lower(), fact)
    return tuple(list(unique.values())[:MAX_FACTS])


def _primary_ld(objects: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The JSON-LD object describing the page (skip breadcrumbs, websites, ...)."""
    objects = list(objects)
    return next((o for o in objects if _ld_kind(o)), objects[0] if objects else {})


def _hostname(url: str) -> str | None:
    parts = urls.parse(url)
    return parts.hostname if parts else None


def fallback_title(url: str) -> str:
    """From the URL when the page names nothing: last path segment, prettified, or the host."""
    parts = urls.parse(url)
    if parts is None:
        return url
    segment = next((s for s in reversed(parts.path.split("/")) if s), "")
    segment = re.sub(r"\.[a-z0-9]{1,5}$", "", unquote(segment, errors="replace"))
    words = clean(re.sub(r"[-_+]+", " ", segment))
    return words.capitalize() if words else (parts.hostname or url)


def build_card(
    url: str,
    final_url: str,
    page: PageMeta | None,
    oembed: Mapping[str, Any] | None,
) -> Card:
    """Combine page metadata and oEmbed into a card; always yields a usable card."""
    m: Mapping[str, str] = page.meta if page else {}
    o: Mapping[str, Any] = oembed or {}
    ld = _primary_ld(page.jsonld if page else ())
    base = final_url
    title = _first(
        o.get("title"),
        m.get("og:title"),
        m.get("twitter:title"),
        ld.get("headline"),
        ld.get("name"),
        page.title if page else None,
        page.first_heading if page else None,
    ) or fallback_title(final_url)
    description = _first(
        m.get("og:description"),
        m.get("twitter:description"),
        ld.get("description"),
        m.get("description"),
        o.get("description"),
        o.get("html_text"),
        page.first_paragraph if page else None,
        page.body_text if page else None,
    )
    image = (
        _http_url(m.get("og:image:secure_url"), base)
        or _http_url(m.get("og:image"), base)
        or _http_url(m.get("og:image:url"), base)
        or _http_url(m.get("twitter:image"), base)
        or _http_url(m.get("twitter:image:src"), base)
        or _http_url(_ld_image(ld.get("image") or ld.get("thumbnailUrl")), base)
        or _http_url(o.get("thumbnail_url"), base)
        or (_http_url(o.get("url"), base) if o.get("type") == "photo" else None)
        or _http_url(o.get("html_image"), base)
    )
    site = _first(
        m.get("og:site_name"),
        o.get("provider_name"),
        _ld_name(ld.get("publisher")),
        m.get("application-name"),
        m.get("twitter:site"),
    ) or _hostname(final_url)
    canonical = (
        _http_url(m.get("og:url"), base)
        or _http_url(page.canonical if page else None, base)
        or _http_url(ld.get("url") if isinstance(ld.get("url"), str) else None, base)
        or final_url
    )
    kind = (
        clean(m.get("og:type"))
        or _ld_kind(ld)
        or _OEMBED_KINDS.get(str(o.get("type", "")).lower())
        or "website"
    )
    kind = kind.split(".")[0].lower()  # og "video.movie" -> "video"
    return Card(
        url=url,
        canonical_url=canonical,
        title=truncate(title, 300) or fallback_title(final_url),
        description=truncate(description),
        site_name=site,
        kind=kind,
        facts=_facts(m, ld, o),
        theme_color=theme_colour(m.get("theme-color") or m.get("msapplication-tilecolor")),
        image_url=image,
    )
