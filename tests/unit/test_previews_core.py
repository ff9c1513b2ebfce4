"""Pure logic of link previews: parsing, origin/address policy, TTLs, MSC4095 shaping, config."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from synapse_phenom.config import InvalidConfig, parse_model
from synapse_phenom.previews import msc4095, parse
from synapse_phenom.previews.caching import cache_control_seconds, card_ttl
from synapse_phenom.previews.card import Card, CardImage, Fact
from synapse_phenom.previews.config import LinkPreviewConfig, OriginConfig, ResolverConfig
from synapse_phenom.previews.policy import (
    FetchFailed,
    OriginPolicy,
    Refused,
    check_addresses,
    check_content_type,
    check_length,
    find_links,
    is_forbidden_address,
    normalise_url,
    redirect_target,
)
from synapse_phenom.previews.resolver import FetchResponse, PreviewResolver

PAGE = "https://thephenom.app/p/aurora"


def card_from(html: str, oembed: Mapping[str, Any] | None = None, url: str = PAGE) -> Card:
    return parse.build_card(url, url, parse.parse_html(html), oembed)


# -- parsing -------------------------------------------------------------------------


def test_opengraph_wins_and_relative_image_is_absolute() -> None:
    card = card_from(
        """<head><title>tag</title>
        <meta property="og:title" content="  OG   title ">
        <meta name="twitter:title" content="tw">
        <meta property="og:image" content="/i/a.png">
        <meta property="og:type" content="video.movie">
        <meta name="theme-color" content="#ABC"></head>"""
    )
    assert card.title == "OG title"
    assert card.image_url == "https://thephenom.app/i/a.png"
    assert card.kind == "video"
    assert card.theme_color == "#aabbcc"


def test_twitter_card_used_without_opengraph() -> None:
    card = card_from(
        """<meta name="twitter:title" content="Tw title">
        <meta name="twitter:description" content="Tw d">
        <meta name="twitter:image" content="https://thephenom.app/t.png">"""
    )
    assert (card.title, card.description, card.image_url) == (
        "Tw title",
        "Tw d",
        "https://thephenom.app/t.png",
    )


def test_jsonld_graph_article_with_facts() -> None:
    card = card_from(
        """<script type="application/ld+json">{"@graph": [
          {"@type": "BreadcrumbList", "name": "crumbs"},
          {"@type": ["BlogPosting"], "headline": "Post", "author": [{"name": "A"}, {"name": "B"}],
           "datePublished": "2026-01-02T03:04:05Z", "image": ["https://thephenom.app/x.jpg"]}]}</script>"""
    )
    assert card.title == "Post" and card.kind == "article"
    assert card.facts == (
        Fact(label="Author", value="A, B"),
        Fact(label="Published", value="2026-01-02"),
    )
    assert card.image_url == "https://thephenom.app/x.jpg"


def test_invalid_jsonld_is_ignored() -> None:
    card = card_from('<script type="application/ld+json">{not json</script><title>T</title>')
    assert card.title == "T"


def test_oembed_fields_and_cache_age() -> None:
    oembed = parse.parse_oembed(
        b'{"version": "1.0", "type": "photo", "title": "Pic", "url": "https://thephenom.app/p.png",'
        b' "author_name": "Ann", "provider_name": "Phenom", "cache_age": "90"}'
    )
    assert oembed is not None
    card = card_from("", oembed)
    assert card.title == "Pic" and card.kind == "photo" and card.site_name == "Phenom"
    assert card.image_url == "https://thephenom.app/p.png"
    assert card.facts == (Fact(label="Author", value="Ann"),)
    assert parse.oembed_cache_age(oembed) == 90
    assert parse.parse_oembed(b"[1, 2]") is None and parse.parse_oembed(b"<html>") is None


def test_twitter_label_facts_come_first_and_at_most_two() -> None:
    card = card_from(
        """<meta name="twitter:label1" content="Price"><meta name="twitter:data1" content="Free">
        <meta name="author" content="Zed">
        <meta property="article:published_time" content="2026-03-04">"""
    )
    assert card.facts == (Fact(label="Price", value="Free"), Fact(label="Author", value="Zed"))


def test_fallbacks_without_metadata() -> None:
    card = card_from(
        "<body><p>short</p><p>A paragraph long enough to describe the page.</p></body>",
        url="https://thephenom.app/events/star-party_2026.html",
    )
    assert card.title == "Star party 2026"
    assert card.description == "A paragraph long enough to describe the page."
    assert (
        card.site_name == "thephenom.app"
        and card.kind == "website"
        and card.canonical_url.endswith(".html")
    )
    assert parse.fallback_title("https://thephenom.app/") == "thephenom.app"


def test_description_truncated_to_200_on_a_word() -> None:
    text = "word " * 100
    card = card_from(f'<meta property="og:description" content="{text}">')
    assert card.description is not None and len(card.description) <= 200
    assert card.description.endswith("word…")


def test_unsafe_urls_and_colours_are_dropped() -> None:
    card = card_from(
        """<meta property="og:image" content="javascript:alert(1)">
        <meta property="og:url" content="data:x">
        <meta name="theme-color" content="red"><title>x</title>"""
    )
    assert card.image_url is None and card.canonical_url == PAGE and card.theme_color is None


def test_broken_html_still_parses() -> None:
    meta = parse.parse_html(
        b'<html><meta property="og:title" content="Still"><div><p>unclosed<b></html'
    )
    assert meta.meta["og:title"] == "Still"


def test_oembed_link_discovered() -> None:
    meta = parse.parse_html('<link rel="alternate" type="application/json+oembed" href="/o?u=1">')
    assert meta.oembed_url == "/o?u=1"


# -- link extraction and origins ------------------------------------------------------

POLICY = OriginPolicy(
    origins=(
        OriginConfig(url="https://thephenom.app"),
        OriginConfig(url="https://www.thephenom.app"),
        OriginConfig(
            url="https://staging.thephenom.app", fetch_from="http://127.0.0.1:3000", trusted=True
        ),
    )
)


def test_links_are_returned_exactly_as_written() -> None:
    body = "see (https://thephenom.app/p/1?a=b), and HTTPS://WWW.thephenom.app/x. also https://evil.com/y!"
    assert find_links(body) == [
        "https://thephenom.app/p/1?a=b",
        "HTTPS://WWW.thephenom.app/x",
        "https://evil.com/y",
    ]
    assert POLICY.phenom_links(body, 5) == [
        "https://thephenom.app/p/1?a=b",
        "HTTPS://WWW.thephenom.app/x",
    ]
    assert find_links("https://thephenom.app/wiki/A_(b)") == ["https://thephenom.app/wiki/A_(b)"]


def test_phenom_links_dedup_and_limit() -> None:
    body = (
        " ".join(f"https://thephenom.app/p/{i}" for i in range(5))
        + " https://thephenom.app/p/0#frag"
    )
    assert POLICY.phenom_links(body, 3) == [f"https://thephenom.app/p/{i}" for i in range(3)]


@pytest.mark.parametrize(
    "url",
    [
        "http://thephenom.app/p",  # wrong scheme for the origin
        "https://thephenom.app:8443/p",
        "https://thephenom.app.evil.com/p",
        "https://evil.com/?https://thephenom.app/",
        "https://user:pw@thephenom.app/p",
        "ftp://thephenom.app/p",
        # urlsplit raises on these: they must be refused, not crash the caller.
        "https://[::1",
        "https://thephenom.app\uff03@evil.com/",
        "https://thephenom.app\u2100x/",
    ],
)
def test_non_phenom_links_are_refused(url: str) -> None:
    assert not POLICY.is_phenom_link(url)
    with pytest.raises(Refused):
        POLICY.fetch_target(url)


def test_fetch_from_maps_to_local_copy_and_back() -> None:
    target = POLICY.fetch_target("https://staging.thephenom.app/p/1?x=2#f")
    assert target.url == "http://127.0.0.1:3000/p/1?x=2" and target.trusted
    # A redirect served by the local copy stays allowed, and maps back for the card.
    assert POLICY.fetch_target("http://127.0.0.1:3000/other").trusted
    assert POLICY.public_url("http://127.0.0.1:3000/other") == "https://staging.thephenom.app/other"
    assert not POLICY.fetch_target("https://thephenom.app/p").trusted


def test_unparseable_redirect_is_a_fetch_failure() -> None:
    # A plain ValueError escaped the resolver: no failure was cached, every send refetched.
    with pytest.raises(FetchFailed, match="unparseable Location"):
        redirect_target("https://thephenom.app/p", "http://[")


def test_normalise_url() -> None:
    assert normalise_url("HTTPS://ThePhenom.app:443/A?b=C#frag") == "https://thephenom.app/A?b=C"
    assert normalise_url("https://thephenom.app") == "https://thephenom.app/"


# -- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "2002:7f00:1::",
        "224.0.0.1",
        "fc00::1",
        "fec0::1",  # deprecated site-local: still routed inside some networks
    ],
)
def test_forbidden_addresses(address: str) -> None:
    assert is_forbidden_address(address)


def test_public_addresses_allowed() -> None:
    assert not is_forbidden_address("93.184.216.34")
    assert not is_forbidden_address("2606:4700::6810:84e5")


def test_one_private_answer_refuses_the_host_unless_trusted() -> None:
    # DNS rebinding/mixed answers: the whole host is refused, not just the bad address.
    with pytest.raises(Refused, match="non-public address"):
        check_addresses("thephenom.app", ["93.184.216.34", "127.0.0.1"], trusted=False)
    assert check_addresses("dev.local", ["::1", "127.0.0.1"], trusted=True) == "127.0.0.1"
    assert check_addresses("thephenom.app", ["93.184.216.34"], trusted=False) == "93.184.216.34"
    with pytest.raises(Refused, match="did not resolve"):
        check_addresses("nowhere", [], trusted=True)


def test_content_type_and_length_checks() -> None:
    assert check_content_type("text/HTML; charset=utf-8", ("text/html",)) == "text/html"
    with pytest.raises(Refused, match="content type"):
        check_content_type("image/svg+xml", ("text/html",))
    with pytest.raises(Refused, match="content type"):
        check_content_type(None, ("text/html",))
    check_length("100", 100)
    with pytest.raises(Refused, match="too_large"):
        check_length("20000000", 1_000_000)


# -- TTL ------------------------------------------------------------------------------------


def test_ttl_from_cache_control_and_oembed() -> None:
    config = ResolverConfig()
    assert cache_control_seconds("public, max-age=600") == 600
    assert cache_control_seconds('max-age=600, s-maxage="60"') == 60
    assert cache_control_seconds("no-store") == 0
    assert cache_control_seconds(None) is None
    assert card_ttl(config, "max-age=600", None) == 600
    assert card_ttl(config, "max-age=600", 7200) == 7200  # oEmbed's explicit word wins
    assert card_ttl(config, "no-cache", None) == config.min_ttl_s
    assert card_ttl(config, "max-age=99999999", None) == config.max_ttl_s
    assert card_ttl(config, None, None) == config.default_ttl_s


# -- MSC4095 ---------------------------------------------------------------------------------

CARD = Card(
    url=PAGE,
    canonical_url=PAGE,
    title="T",
    description="D",
    site_name="Phenom",
    kind="article",
    facts=(Fact(label="Author", value="A"),),
    theme_color="#112233",
    image_url="https://thephenom.app/i.png",
    image=CardImage(mxc="mxc://hs/abc", mimetype="image/png", size=10, width=4, height=2),
)


def test_preview_entry_shape() -> None:
    entry = msc4095.preview_entry("HTTPS://thephenom.app/p/aurora", CARD)
    assert entry["matched_url"] == entry["matrix:matched_url"] == "HTTPS://thephenom.app/p/aurora"
    assert entry["og:image"] == "mxc://hs/abc" and entry["og:image:width"] == 4
    assert entry["matrix:image:size"] == 10
    assert entry["app.phenom.card"] == {
        "kind": "article",
        "facts": [{"label": "Author", "value": "A"}],
        "theme_color": "#112233",
    }
    bare = msc4095.preview_entry(PAGE, CARD.model_copy(update={"image": None}))
    assert "og:image" not in bare  # never an http image: clients only load mxc


def test_with_previews_plain_and_edit() -> None:
    entries = msc4095.previews_for([(PAGE, CARD)], dict)
    out = msc4095.with_previews({"body": PAGE, "msgtype": "m.text"}, entries)
    assert out["com.beeper.linkpreviews"] == out["m.url_previews"] == entries
    edit = {
        "body": f"* {PAGE}",
        "m.new_content": {"body": PAGE, "msgtype": "m.text"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"},
    }
    assert msc4095.message_body(edit) == (PAGE, True)
    out = msc4095.with_previews(edit, entries)
    assert out["m.new_content"]["com.beeper.linkpreviews"] == entries
    assert "com.beeper.linkpreviews" not in edit["m.new_content"]  # input not mutated


def test_sender_choices() -> None:
    assert not msc4095.wants_previews({"body": PAGE, "com.beeper.linkpreviews": []})
    assert not msc4095.wants_previews({"body": PAGE, "m.url_previews": [{"matched_url": PAGE}]})
    assert msc4095.opted_out({"body": PAGE, "m.url_previews": []})
    assert msc4095.opted_out({"m.new_content": {"com.beeper.linkpreviews": []}})
    assert not msc4095.opted_out({"body": PAGE, "com.beeper.linkpreviews": [{"matched_url": PAGE}]})
    assert msc4095.previewed_urls({"com.beeper.linkpreviews": [{"matched_url": PAGE}]}) == {PAGE}
    assert msc4095.follow_up_content("$e", [])["m.relates_to"] == {
        "rel_type": "m.reference",
        "event_id": "$e",
    }


# -- config ------------------------------------------------------------------------------------


def test_default_config_previews_the_phenom_sites() -> None:
    config = LinkPreviewConfig()
    assert [o.url for o in config.origins] == ["https://thephenom.app", "https://www.thephenom.app"]
    assert config.budget_ms == 250 and config.max_body_bytes == 1_000_000
    assert not any(o.trusted for o in config.origins)


def test_config_accepts_strings_and_normalises() -> None:
    config = parse_model(ResolverConfig, {"origins": ["HTTPS://Example.org:443/"]}, "x")
    assert config.origins[0].url == "https://example.org"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"origins": ["https://thephenom.app/path"]}, "x.origins.0.url"),
        ({"origins": ["ftp://thephenom.app"]}, "x.origins.0.url"),
        ({"origins": []}, "x.origins"),
        ({"budget_ms": -1}, "x.budget_ms"),
        ({"orgins": []}, "x.orgins"),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        parse_model(LinkPreviewConfig, raw, "x")
    assert key in str(err.value)


def test_memo_expires_and_evicts_least_recent() -> None:
    from synapse_phenom.memo import TtlMemo

    now = [0.0]
    memo: TtlMemo[str] = TtlMemo(size=2, ttl_s=10, clock=lambda: now[0])
    memo.put("a", "A")
    memo.put("b", "B", ttl_s=2)  # a shorter life than the memo's own
    assert memo.get("a") == "A"  # a is now the most recent
    memo.put("c", "C")
    assert memo.get("b") is None and memo.get("c") == "C"
    now[0] = 10.5
    assert memo.get("a") is None and memo.get("c") is None
    memo.put("d", "D", ttl_s=60)  # capped at the memo's ttl
    now[0] = 21
    assert memo.get("d") is None


def test_charset_from_header_decodes_the_page() -> None:
    from synapse_phenom.previews.decode import http_charset

    # WHATWG labels: ISO-8859-1 means windows-1252 in browsers.
    assert http_charset('text/html; charset="ISO-8859-1"') == "windows-1252"
    assert http_charset("text/html; charset=nope") is None and http_charset(None) is None
    body = '<meta property="og:title" content="Café">'.encode("latin-1")
    assert parse.parse_html(body, "text/html; charset=iso-8859-1").meta["og:title"] == "Café"


class _PageFetcher:
    """Serves one HTML page for every URL (the resolver's fetcher interface)."""

    def __init__(self, html: str) -> None:
        self.html = html.encode()

    async def fetch(
        self, url: str, *, trusted: bool, accept: Sequence[str], max_bytes: int
    ) -> FetchResponse:
        return FetchResponse(200, {"content-type": "text/html; charset=utf-8"}, self.html)


@pytest.mark.parametrize(
    "canonical",
    [
        '<meta property="og:url" content="https://evil.example/login">',
        '<meta property="og:url" content="//evil.example/p/aurora">',
        '<link rel="canonical" href="https://thephenom.app.evil.example/p">',
        '<meta property="og:url" content="https://thephenom.app@evil.example/">',
        '<meta property="og:url" content="http://127.0.0.1:8080/admin">',
    ],
)
def test_signed_cards_never_name_a_canonical_url_off_the_phenom_origins(canonical: str) -> None:
    # og:url is what apps open from a card; the card is signed as the server's word, so it
    # may only name a link the server checked: off-origin values fall back to the page.
    html = f"<html><head><title>Aurora</title>{canonical}</head></html>"
    resolver = PreviewResolver(ResolverConfig(), _PageFetcher(html))
    result = asyncio.run(resolver.resolve(PAGE))
    assert result.card is not None and result.card.canonical_url == PAGE
    (entry,) = msc4095.previews_for([(PAGE, result.card)], lambda e: e)
    assert entry["og:url"] == PAGE


def test_canonical_url_on_a_phenom_origin_is_kept() -> None:
    html = '<html><head><meta property="og:url" content="https://thephenom.app/p/aurora-2"></head></html>'
    result = asyncio.run(PreviewResolver(ResolverConfig(), _PageFetcher(html)).resolve(PAGE))
    assert (
        result.card is not None and result.card.canonical_url == "https://thephenom.app/p/aurora-2"
    )


@pytest.mark.parametrize(
    "link",
    [
        "https://thephenom.app\\@evil.example/",  # browser: thephenom.app; RFC 3986: evil.example
        "https://thephenom.app:443\\@127.0.0.1/",
        "https://thephenom.app\\evil.example/",
        "https://thephenom%2Eapp/p/aurora",
        "https://thephenom.app%2F@evil.example/",
        "https://thephenom.app@evil.example/",
    ],
)
def test_links_read_differently_by_url_parsers_get_no_card(link: str) -> None:
    # A card vouches "this is Phenom's page": an app or OS that reads the link the RFC 3986
    # way would open another host under it.
    policy = OriginPolicy.from_config(ResolverConfig())
    assert not policy.is_phenom_link(link)
    assert policy.phenom_links(f"see {link} now", 5) == []


@pytest.mark.parametrize(
    "link",
    [
        "https://thephenom.app/p/aurora",
        "HTTPS://THEPHENOM.APP:443/p/aurora",
        "https://thephenom.app/p/tromsø-night",
        "https://thephenom.app/p/x?u=a@b.c#@frag",
    ],
)
def test_plain_phenom_links_still_get_cards(link: str) -> None:
    assert OriginPolicy.from_config(ResolverConfig()).is_phenom_link(link)
