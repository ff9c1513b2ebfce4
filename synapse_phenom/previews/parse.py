"""Pure parsing: HTML (OpenGraph, Twitter card, JSON-LD, plain tags) and oEmbed JSON into a Card.

Precedence for each field is oEmbed/OpenGraph first (what the site curated for sharing),
then Twitter card, then JSON-LD, then plain HTML, then fallbacks derived from the URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import attrs
from bs4 import BeautifulSoup, Tag

from synapse_phenom.previews.card import DESCRIPTION_MAX, MAX_FACTS, Card, Fact

OEMBED_TYPES = ("application/json+oembed", "text/json+oembed")
_WS = re.compile(r"\s+")
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
    url = urljoin(base, value)
    return url if urlsplit(url).scheme in ("http", "https") else None


def _jsonld_objects(raw: str) -> list[Mapping[str, Any]]:
    try:
        data = json.loads(raw)
    except ValueError:
        return []  # broken JSON-LD is common; ignore it
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


def parse_html(html: str | bytes, encoding: str | None = None) -> PageMeta:
    """Extract metadata from a (possibly broken) HTML document.

    ``encoding`` is the charset of the Content-Type header, if any; without it the
    document's own ``<meta charset>`` or detection decides.
    """
    if isinstance(html, bytes) and encoding:
        soup = BeautifulSoup(html, "html.parser", from_encoding=encoding)
    else:
        soup = BeautifulSoup(html, "html.parser")
    meta: dict[str, str] = {}
    for tag in soup.find_all("meta"):
        if not isinstance(tag, Tag):
            continue
        key = tag.get("property") or tag.get("name") or tag.get("itemprop")
        value = tag.get("content")
        if isinstance(key, str) and isinstance(value, str):
            key = key.strip().lower()
            if key and key not in meta and clean(value):
                meta[key] = value.strip()
    jsonld: list[Mapping[str, Any]] = []
    for script in soup.find_all("script", attrs={"type": "application/ld+json"}):
        jsonld.extend(_jsonld_objects(script.get_text()))
    canonical = oembed = None
    for link in soup.find_all("link"):
        if not isinstance(link, Tag):
            continue
        rel = [r.lower() for r in (link.get("rel") or [])]
        href = link.get("href")
        if not isinstance(href, str):
            continue
        if "canonical" in rel and canonical is None:
            canonical = href
        ltype = str(link.get("type") or "").lower()
        if "alternate" in rel and ltype in OEMBED_TYPES and oembed is None:
            oembed = href
    title_tag = soup.find("title")
    heading = soup.find("h1")
    paragraph = next(
        (t for t in (clean(p.get_text(" ")) for p in soup.find_all("p")) if t and len(t) >= 20),
        None,
    )
    return PageMeta(
        meta=meta,
        jsonld=tuple(jsonld),
        title=clean(title_tag.get_text()) if title_tag else None,
        first_heading=clean(heading.get_text(" ")) if heading else None,
        first_paragraph=paragraph,
        canonical=canonical,
        oembed_url=oembed,
    )


def parse_oembed(raw: str | bytes) -> Mapping[str, Any] | None:
    """An oEmbed response object, or None when the body is not one."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or not ({"type", "version", "title"} & data.keys()):
        return None
    return data


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


def fallback_title(url: str) -> str:
    """From the URL when the page names nothing: last path segment, prettified, or the host."""
    parts = urlsplit(url)
    segment = next((s for s in reversed(parts.path.split("/")) if s), "")
    segment = re.sub(r"\.[a-z0-9]{1,5}$", "", segment)
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
        page.first_paragraph if page else None,
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
    )
    site = _first(
        m.get("og:site_name"),
        o.get("provider_name"),
        _ld_name(ld.get("publisher")),
        m.get("application-name"),
    ) or (urlsplit(final_url).hostname or None)
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
