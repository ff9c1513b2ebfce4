"""The resolver core outside Synapse (MCP/Lambda path): httpx2 fetcher against the local site."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from harness import unique
from previews_site import SLOW_SECONDS, PhenomSite

from synapse_phenom.lambdas import link_preview as lambda_handler
from synapse_phenom.previews import Refused, ResolverConfig, resolve_link
from synapse_phenom.previews.fetch_httpx import HttpxFetcher
from synapse_phenom.previews.resolver import PreviewResolver


def _config(site: PhenomSite, **extra: object) -> ResolverConfig:
    return ResolverConfig.model_validate(
        {
            "origins": [
                {"url": site.origin, "trusted": True},
                {"url": site.untrusted_origin, "trusted": False},
            ],
            **extra,
        }
    )


def test_full_page_card(phenom_site: PhenomSite) -> None:
    result = asyncio.run(
        resolve_link(f"{phenom_site.origin}/p/full?t={unique()}", _config(phenom_site))
    )
    assert result.card is not None and result.error is None
    assert result.card.title == "Northern Lights over Tromsø"
    assert result.card.image_url == f"{phenom_site.origin}/img/aurora.png"
    assert result.ttl_s == 600  # Cache-Control: max-age=600


def test_total_timeout(phenom_site: PhenomSite) -> None:
    config = _config(phenom_site, total_timeout_s=SLOW_SECONDS / 4)
    start = time.monotonic()
    result = asyncio.run(resolve_link(f"{phenom_site.origin}/p/slow?t={unique()}", config))
    assert time.monotonic() - start < SLOW_SECONDS
    assert result.card is None and result.reason == "timeout"
    assert result.ttl_s == config.failure_ttl_s


def test_connects_only_to_the_checked_address(phenom_site: PhenomSite) -> None:
    """The name is resolved once, by us; the connection goes to that address with the real Host."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    origin = f"http://phenom.test:{phenom_site.port}"
    config = ResolverConfig.model_validate({"origins": [{"url": origin, "trusted": True}]})
    path = f"/p/full?t={unique()}"

    async def run() -> str | None:
        async with HttpxFetcher(config, resolve=resolve) as fetcher:
            result = await PreviewResolver(config, fetcher).resolve(origin + path)
        return result.card.title if result.card else result.error

    assert asyncio.run(run()) == "Northern Lights over Tromsø"
    assert calls == ["phenom.test"]
    assert (f"phenom.test:{phenom_site.port}", "/p/full") in phenom_site.hits


def test_mixed_dns_answer_is_refused_before_connecting(phenom_site: PhenomSite) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]  # a rebinding-style answer

    origin = f"http://rebind.test:{phenom_site.port}"
    config = ResolverConfig.model_validate({"origins": [origin]})

    async def run() -> str | None:
        async with HttpxFetcher(config, resolve=resolve) as fetcher:
            return (
                await PreviewResolver(config, fetcher).resolve(f"{origin}/internal/secret")
            ).reason

    before = len(phenom_site.hits)
    assert asyncio.run(run()) == "address"
    assert len(phenom_site.hits) == before


def test_untrusted_loopback_and_non_phenom_links(phenom_site: PhenomSite) -> None:
    config = _config(phenom_site)
    result = asyncio.run(resolve_link(f"{phenom_site.untrusted_origin}/internal/secret", config))
    assert result.reason == "address"
    assert "/internal/secret" not in phenom_site.hit_paths()
    with pytest.raises(Refused, match="not a link to a configured Phenom origin"):
        asyncio.run(resolve_link("http://169.254.169.254/latest/meta-data/", config))


def test_lambda_direct_and_http_events(
    phenom_site: PhenomSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PHENOM_PREVIEW_CONFIG",
        json.dumps({"origins": [{"url": phenom_site.origin, "trusted": True}]}),
    )
    url = f"{phenom_site.origin}/p/jsonld?t={unique()}"
    direct = lambda_handler.handler({"url": url}, None)
    assert direct["card"]["title"] == "Comet visible tonight"
    assert direct["preview"]["matched_url"] == url and direct["error"] is None

    http = lambda_handler.handler(
        {"requestContext": {}, "queryStringParameters": {"url": url}}, None
    )
    assert http["statusCode"] == 200 and "max-age=" in http["headers"]["Cache-Control"]
    assert json.loads(http["body"])["card"]["kind"] == "article"

    posted = lambda_handler.handler({"requestContext": {}, "body": json.dumps({"url": url})}, None)
    assert posted["statusCode"] == 200

    missing = lambda_handler.handler({"requestContext": {}, "queryStringParameters": None}, None)
    assert missing["statusCode"] == 400 and "missing 'url'" in json.loads(missing["body"])["error"]
    other = lambda_handler.handler({"url": "https://example.com/"}, None)
    assert other["reason"] == "origin"
    broken = lambda_handler.handler({"url": f"{phenom_site.origin}/p/binary"}, None)
    assert broken["card"] is None and broken["reason"] == "content_type"


def test_lambda_rejects_bad_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHENOM_PREVIEW_ORIGINS", "https://thephenom.app/with/path")
    monkeypatch.delenv("PHENOM_PREVIEW_CONFIG", raising=False)
    result = lambda_handler.handler({"url": "https://thephenom.app/x"}, None)
    assert result["reason"] == "config" and "origins.0.url" in result["error"]
