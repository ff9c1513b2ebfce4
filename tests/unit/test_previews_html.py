"""Decoding, parsing budget, URLs and oEmbed of the preview core (pure; no Synapse).

Includes the applicable cases of Synapse's own URL-preview tests (``tests/media/
test_html_preview.py``, ``tests/media/test_oembed.py``, ``tests/rest/media/
test_url_preview.py`` in element-hq/synapse), restated as inputs and expected cards of
this design; the differences that remain on purpose are listed in docs/link-previews.md.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from synapse_phenom.previews import budget, parse, urls
from synapse_phenom.previews.card import Card
from synapse_phenom.previews.decode import decode_html, http_charset, prescan, sniff
from synapse_phenom.previews.policy import find_links, normalise_url, redirect_target

URL = "http://example.com/test.html"


def card(body: bytes | str, content_type: str | None = "text/html", url: str = URL) -> Card:
    if isinstance(body, str):
        body = body.encode()
    return parse.build_card(url, url, parse.parse_html(body, content_type), None)


def oembed_card(data: dict[str, Any], url: str = URL) -> Card | None:
    found = parse.parse_oembed(json.dumps(data))
    return None if found is None else parse.build_card(url, url, None, found)


# -- encoding sniffing (HTML standard order) ------------------------------------------


@pytest.mark.parametrize(
    ("body", "header", "expected"),
    [
        # Undeclared UTF-8 is UTF-8 (no statistical guessing: short texts fool detectors).
        ("<title>€5</title>".encode(), "text/html", "€5"),
        ("<title>Ünïcödé</title>".encode(), None, "Ünïcödé"),
        # Not valid UTF-8 and undeclared: windows-1252 (Synapse: test_windows_1252,
        # test_invalid_encoding2).
        (b"<title>\xf3</title>", "text/html", "ó"),
        (b"<title>\xff\xff Foo</title>", None, "ÿÿ Foo"),
        (b"<title>\x80 \x81</title>", None, "€ \x81"),  # 0x81 is U+0081 in the standard
        # BOM first, over everything.
        (b"\xef\xbb\xbf<meta charset=windows-1251><title>\xc3\xa9</title>", None, "é"),
        ("<title>é</title>".encode("utf-16-le"), None, None),  # no BOM: not UTF-16
        (b"\xff\xfe" + "<title>é</title>".encode("utf-16-le"), None, "é"),
        # HTTP charset before <meta>.
        (
            "<meta charset=utf-8><title>дка</title>".encode("cp1251"),
            "text/html; charset=windows-1251",
            "дка",
        ),
        # <meta charset> and http-equiv (Synapse: test_non_ascii_preview_httpequiv,
        # test_meta_charset_underscores).
        (
            b'<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
            b"<title>\xe4\xea\xe0</title>",
            "text/html",
            "дка",
        ),
        ("<meta charset='Shift_JIS'><title>日本</title>".encode("shift_jis"), "text/html", "日本"),
        ("<META CHARSET=KOI8-R><title>Мир</title>".encode("koi8-r"), None, "Мир"),
        # An XML declaration is not an encoding declaration in text/html.
        (b'<?xml version="1.0" encoding="windows-1251"?><title>\xc3\xa9</title>', None, "é"),
        (
            b'<?xml version="1.0" encoding="utf-8"?><meta charset=windows-1251><title>\xe4</title>',
            None,
            "д",
        ),
        # <meta charset=utf-16> in a byte stream means UTF-8 (the standard's rule).
        ("<meta charset=UTF-16><title>é</title>".encode(), None, "é"),
        # Unknown labels are ignored (Synapse: test_invalid_encoding, test_unknown_invalid).
        ("<meta charset=invalid><title>é</title>".encode(), 'text/html; charset="invalid"', "é"),
        (b"<title>Foo</title>", "text/html; charset=invalid-encoding", "Foo"),
        # A declaration beyond the prescan's 1024 bytes changes a tentative encoding, as the
        # parser's "change the encoding" does; it never overrides HTTP or a BOM.
        (
            b"<!--" + b"x" * 1100 + b"--><meta charset=windows-1251><title>\xe4\xea\xe0</title>",
            None,
            "дка",
        ),
        (
            b"<!--" + b"x" * 1100 + b"--><meta charset=windows-1251><title>\xc3\xa9</title>",
            "text/html; charset=utf-8",
            "é",
        ),
        # Inside a comment it is not a declaration either.
        (b"<!-- <meta charset=windows-1251> --><title>\xc3\xa9</title>", None, "é"),
    ],
)
def test_decoding_follows_the_html_standard(
    body: bytes, header: str | None, expected: str | None
) -> None:
    page = parse.parse_html(body, header)
    if expected is None:
        assert page.title != "é"
    else:
        assert page.title == expected


@pytest.mark.parametrize(
    "header",
    [
        'text/html; charset="ascii";',
        "text/html;charset=ascii;",
        'text/html;  charset="ascii"',
        "text/html; charset=ascii",
        'text/html; charset="ascii;',
        'text/html; charset=ascii";',
    ],
)
def test_http_charset_variants(header: str) -> None:
    # Synapse: test_content_type. "ascii" is a label of windows-1252 in the Encoding Standard.
    assert http_charset(header) == "windows-1252"


def test_prescan_details() -> None:
    assert prescan(b"<meta charset=ascii>") == "windows-1252"
    assert (
        prescan(b'<meta http-equiv="content-type" content="text/html;charset=\'utf-8\'">')
        == "utf-8"
    )
    # content= without http-equiv content-type does not count.
    assert prescan(b'<meta content="text/html; charset=koi8-r">') is None
    # "< meta" is not a tag (Synapse's regex accepts it; browsers do not).
    assert prescan(b"< meta charset = ascii>") is None
    assert prescan(b'<meta charset="x-user-defined">') == "windows-1252"
    assert prescan(b"<title x='<meta charset=koi8-r>'>") is None  # inside an attribute value
    assert sniff(b"", "text/html") == ("utf-8", 0)


def test_decode_limit_never_splits_a_character() -> None:
    text = "é" * 10
    assert decode_html(text.encode(), None, limit=5) == "éé"


# -- HTML (Synapse: test_html_preview.py OpenGraphFromHtmlTestCase) ---------------------


def test_title_and_body_text() -> None:
    c = card("<html><head><title>Foo</title></head><body>Some text.</body></html>")
    assert (c.title, c.description) == ("Foo", "Some text.")
    # Comments and scripts are not text.
    c = card("<html><head><title>Foo</title></head><body><!-- HTML comment -->Some text.</body>")
    assert c.description == "Some text."
    c = card("<title>Foo</title><body><script> (function() {})() </script>Some text.</body>")
    assert c.description == "Some text."


def test_body_text_in_document_order_without_inline_graphics() -> None:
    c = card(
        '<a href="somewhere">Welcome <b>the bold <u>and underlined text <svg>'
        "with a cheeky SVG</svg></u> and <strong>some</strong> tail text</b></a>"
    )
    assert c.description == "Welcome the bold and underlined text and some tail text"


def test_h1_and_empty_titles() -> None:
    c = card("<html><head><title></title></head><body><h1>Title</h1></body></html>")
    assert (c.title, c.description) == ("Title", "Title")
    c = card('<html><meta property="og:description" content="Some text."/><body><h1>Title</h1>')
    assert (c.title, c.description) == ("Title", "Some text.")
    # No title anywhere: from the URL (Synapse leaves og:title empty).
    c = card('<html><body><h1><a href="foo"/></h1>Some text.</body></html>')
    assert (c.title, c.description) == ("Test", "Some text.")


def test_empty_descriptions_are_skipped() -> None:
    c = card(
        '<meta property="og:description" content=""/><meta property="og:description"/>'
        '<meta name="description" content=""/><meta name="description"/>'
        '<meta name="description" content="Finally!"/><body><h1>Title</h1>'
    )
    assert (c.title, c.description) == ("Title", "Finally!")


def test_xhtml_with_xml_declaration() -> None:
    c = card(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 '
        b'Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        b'<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">'
        b"<head><title>Foo</title></head><body>Some text.</body></html>",
        "application/xhtml+xml",
    )
    assert (c.title, c.description) == ("Foo", "Some text.")


def test_twitter_tags_fill_in_but_do_not_override() -> None:
    c = card(
        '<meta name="twitter:card" content="summary">'
        '<meta name="twitter:description" content="Description">'
        '<meta name="twitter:site" content="@matrixdotorg">'
    )
    assert (c.description, c.site_name) == ("Description", "@matrixdotorg")
    c = card(
        '<meta name="twitter:description" content="Description">'
        '<meta property="og:description" content="Real Description">'
        '<meta name="twitter:site" content="@matrixdotorg">'
        '<meta property="og:site_name" content="matrix.org">'
    )
    assert (c.description, c.site_name) == ("Real Description", "matrix.org")


def test_article_time_becomes_a_fact() -> None:
    c = card(
        '<meta property="og:description" content="My description" />'
        '<meta property="profile:username" content="myname">'
        '<meta property="article:published_time" content="2026-04-07T10:07:37Z">'
    )
    assert c.description == "My description"
    assert [(f.label, f.value) for f in c.facts] == [("Published", "2026-04-07")]


def test_long_title_and_description_are_cut_on_a_word() -> None:
    c = card(f"<title>{'x' * 2000}</title><p>{'word ' * 100}</p>")
    assert len(c.title) <= 300
    assert c.description is not None and len(c.description) <= 200
    assert c.description.endswith("word…")


def test_data_urls_are_never_images() -> None:
    # Synapse: test_data_url / test_inline_data_url.
    c = card('<meta property="og:image" content="data:image/png;base64,iVBORw0KGgo=">')
    assert c.image_url is None


def test_malformed_markup_never_raises() -> None:
    # BeautifulSoup's html.parser raises ParserRejectedMarkup on some of these.
    for junk in ("<![ x", "<![CDATA[", "<!", "</", "<a <b", "\x00", "", "<title>a<![ x</title>"):
        parse.parse_html(junk.encode())
    assert card("<![ x ><title>T</title>").title == "T"


# -- bounded work ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "attack",
    [
        "<div>" * 150_000,
        ("<div>" * 255 + "</div>" * 255) * 2000,
        "<li><section>" * 100_000,
        "<b><div></b>" * 100_000,
        "<p><table>" + "<span>" * 200 + "</p>" * 100_000,
        "<table>" + "<span>" * 250 + "</br>" * 100_000,
        "<p><button>" * 100_000,
        "<a>" * 100_000,
    ],
)
def test_worst_case_markup_is_cut_before_it_gets_expensive(attack: str) -> None:
    html = f"<html><head><title>Deep</title></head><body>{attack}</body></html>"
    start = time.perf_counter()
    page = parse.parse_html(html.encode())
    elapsed = time.perf_counter() - start
    assert page.title == "Deep"
    # Unbounded, the first case takes minutes; bounded, well under a second even on a
    # loaded machine (it runs in a thread in Synapse anyway).
    assert elapsed < 1.5, elapsed


def test_ordinary_pages_are_not_cut() -> None:
    page = (
        "<html><head>"
        + "<meta name=x content=y>" * 50
        + "</head><body>"
        + "<div><ul>"
        + "<li><a href=/x>item</a>" * 500
        + "</ul><p>para<p>graph</div>" * 20
        + "</body></html>"
    )
    kept, cut = budget.bounded_markup(page)
    assert not cut and kept == page


def test_deeply_nested_json_ld_is_ignored_not_a_crash() -> None:
    deep = "[" * 20_000 + "]" * 20_000  # beyond the recursion limit of json.loads
    page = parse.parse_html(
        f'<script type="application/ld+json">{deep}</script>'
        '<script type="application/ld+json">{"@type": "Article", "headline": "Ok",'
        f' "author": {"[" * 400}{{"name": "Ada"}}{"]" * 400}}}</script>'.encode()
    )
    assert [o.get("headline") for o in page.jsonld] == ["Ok"]
    c = parse.build_card(URL, URL, page, None)
    assert c.title == "Ok"


# -- oEmbed (Synapse: test_oembed.py) ---------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", 1.0, 1])
def test_oembed_version_1_0_accepted(version: object) -> None:
    assert parse.parse_oembed(json.dumps({"version": version, "type": "link"})) is not None


@pytest.mark.parametrize("version", ["2.0", "1", 1.1, 0, None, {}, [], True])
def test_oembed_other_versions_rejected(version: object) -> None:
    assert parse.parse_oembed(json.dumps({"version": version, "type": "link"})) is None


@pytest.mark.parametrize(
    "data",
    [
        {"type": "link"},  # no version (Synapse accepts it; the oEmbed spec requires it)
        {"version": "1.0"},
        {"version": "1.0", "type": "audio"},
        {"version": "1.0", "type": 1},
        [],
        "x",
    ],
)
def test_oembed_needs_version_and_a_valid_type(data: object) -> None:
    assert parse.parse_oembed(json.dumps(data)) is None


def test_oembed_cache_age() -> None:
    good: tuple[object, ...] = ("1", 1.0, 1)
    for age in good:
        assert (
            parse.oembed_cache_age(
                parse.parse_oembed(json.dumps({"version": "1.0", "type": "link", "cache_age": age}))
            )
            == 1
        )
    bad: tuple[object, ...] = ("invalid", {})
    for age in bad:
        assert (
            parse.oembed_cache_age(
                parse.parse_oembed(json.dumps({"version": "1.0", "type": "link", "cache_age": age}))
            )
            is None
        )
    assert parse.oembed_cache_age(parse.parse_oembed('{"version": "1.0", "type": "link"}')) is None


def test_oembed_string_properties() -> None:
    base = {"version": "1.0", "type": "link"}
    c = oembed_card({**base, "title": "test", "provider_name": "test", "thumbnail_url": "test"})
    assert c is not None
    assert (c.title, c.site_name, c.image_url) == ("test", "test", "http://example.com/test")
    c = oembed_card({**base, "title": 1, "provider_name": 1, "thumbnail_url": 1})
    assert c is not None
    assert c.title == "Test" and c.site_name == "example.com" and c.image_url is None
    c = oembed_card({**base, "author_name": "test"})
    assert c is not None and [(f.label, f.value) for f in c.facts] == [("Author", "test")]
    c = oembed_card({**base, "author_name": 1})
    assert c is not None and c.facts == ()


def test_oembed_types() -> None:
    rich = oembed_card({"version": "1.0", "type": "rich", "html": "test<img src='foo'>"})
    assert rich is not None
    assert (rich.description, rich.image_url) == ("test", "http://example.com/foo")
    for html in (None, 1):
        c = oembed_card({"version": "1.0", "type": "rich", "html": html})
        assert c is not None and c.description is None
    photo = oembed_card({"version": "1.0", "type": "photo", "url": "test"})
    assert photo is not None and photo.image_url == "http://example.com/test"
    for url in (None, 1):
        c = oembed_card({"version": "1.0", "type": "photo", "url": url})
        assert c is not None and c.image_url is None
    video = oembed_card({"version": "1.0", "type": "video", "html": "test"})
    assert video is not None and (video.kind, video.description) == ("video", "test")
    link = oembed_card({"version": "1.0", "type": "link"})
    assert link is not None and link.kind == "website"


def test_oembed_title_entities_unescaped() -> None:
    c = oembed_card(
        {
            "version": "1.0",
            "type": "link",
            "title": "Why JSON isn&#8217;t a Good Configuration Language",
        }
    )
    assert c is not None and c.title == "Why JSON isn\u2019t a Good Configuration Language"
    c = oembed_card({"version": "1.0", "type": "link", "title": "A &amp; B &lt;3"})
    assert c is not None and c.title == "A & B <3"


# -- URLs as browsers read them ---------------------------------------------------------


def test_iri_links_become_uris() -> None:
    link = "https://thephenom.app/p/tromsø-night"
    assert find_links(f"see {link}!") == [link]  # matched_url: exactly as written
    assert normalise_url(link) == "https://thephenom.app/p/troms%C3%B8-night"
    assert normalise_url("HTTPS://ThePhenom.APP:443/a b?q=ä#frag") == (
        "https://thephenom.app/a%20b?q=%C3%A4"
    )
    assert normalise_url("https://thephenom.app\\p\\x") == "https://thephenom.app/p/x"
    assert urls.origin_of("https://bücher.example/x") == "https://xn--bcher-kva.example"
    assert urls.origin_of("https://u:p@thephenom.app/") is None
    assert urls.origin_of("javascript:alert(1)") is None
    assert redirect_target("https://thephenom.app/p/a", "../ø") == "https://thephenom.app/%C3%B8"
    assert parse.fallback_title("https://thephenom.app/p/troms%C3%B8-night") == "Tromsø night"
