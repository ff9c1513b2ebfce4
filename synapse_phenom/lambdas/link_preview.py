"""Link Preview Lambda: the card of one Phenom link, on the same resolver core as Synapse.

``handler(event, context)`` accepts

- a direct invocation ``{"url": "https://thephenom.app/p/42"}``, answered with the
  result object below;
- an API Gateway / Lambda function URL event (``queryStringParameters.url`` or a JSON
  body ``{"url": ...}``), answered with ``{"statusCode", "headers", "body"}`` whose body
  is the result object (200 card, 400 bad request, 404 no card for the page).

Result object::

    {"url": "...", "card": {...} | null, "preview": {MSC4095 entry} | null,
     "error": null | "reason: detail", "reason": null | "origin" | "address" | ...,
     "ttl_seconds": 3600}

Images are not re-hosted here (no homeserver): ``card.image`` is null and
``card.image_url`` names the page's image. Environment:

- ``PHENOM_PREVIEW_ORIGINS``  comma-separated origins (default the Phenom sites)
- ``PHENOM_PREVIEW_CONFIG``   optional JSON of the full resolver config (ResolverConfig);
  ``origins`` from it wins over PHENOM_PREVIEW_ORIGINS
- ``CHAT_DATABASE_URL`` (or ``CHAT_DATABASE_SECRET_ID``)  optional: Implementation B's
  database. Fresh results are then
  answered from, and new ones written into, its cards cache (``chat.link_previews``); an
  unreachable database only costs the cache.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psycopg

from synapse_phenom.config import InvalidConfig, parse_model
from synapse_phenom.lambdas import chat_db
from synapse_phenom.lite import previews_cache
from synapse_phenom.previews.config import ResolverConfig

logger = logging.getLogger("synapse_phenom.link_preview_lambda")
logger.setLevel(logging.INFO)


def config_from_env(env: Mapping[str, str]) -> ResolverConfig:
    """Resolver config from the environment; InvalidConfig names the bad variable/key."""
    raw: dict[str, Any] = {}
    if env.get("PHENOM_PREVIEW_CONFIG"):
        try:
            raw = json.loads(env["PHENOM_PREVIEW_CONFIG"])
        except ValueError as err:
            raise InvalidConfig(f"PHENOM_PREVIEW_CONFIG: not JSON ({err})") from None
    if env.get("PHENOM_PREVIEW_ORIGINS") and "origins" not in raw:
        raw["origins"] = [o.strip() for o in env["PHENOM_PREVIEW_ORIGINS"].split(",") if o.strip()]
    return parse_model(ResolverConfig, raw, "PHENOM_PREVIEW_CONFIG")


# One resolution path for the Lambda, the send Action and the MCP hasura backend (it lives
# with B's cache so that those need nothing of the Lambda's AWS dependencies).
_result = previews_cache.result_object
preview = previews_cache.resolve


def _url_of(event: Mapping[str, Any]) -> tuple[str | None, bool]:
    """(url, is an HTTP event) from a direct or API Gateway / function URL event."""
    if "url" in event:
        return (event["url"] if isinstance(event["url"], str) else None), False
    is_http = "requestContext" in event or "queryStringParameters" in event or "body" in event
    query = event.get("queryStringParameters") or {}
    if isinstance(query, Mapping) and isinstance(query.get("url"), str):
        return query["url"], is_http
    body = event.get("body")
    if isinstance(body, str) and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            return None, is_http
        if isinstance(parsed, Mapping) and isinstance(parsed.get("url"), str):
            return parsed["url"], is_http
    return None, is_http


def _http(status: int, result: Mapping[str, Any]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if result.get("ttl_seconds"):
        headers["Cache-Control"] = f"public, max-age={int(result['ttl_seconds'])}"
    return {"statusCode": status, "headers": headers, "body": json.dumps(result)}


def handler(event: Any, context: Any) -> dict[str, Any]:
    if not isinstance(event, Mapping):
        return _result(
            "",
            error='event must be a JSON object such as {"url": "https://thephenom.app/..."}',
            reason="bad_request",
        )
    url, is_http = _url_of(event)
    if not url:
        result = _result(
            "",
            error='missing \'url\' (e.g. {"url": "https://thephenom.app/..."} or ?url=)',
            reason="bad_request",
        )
        return _http(400, result) if is_http else result
    try:
        config = config_from_env(os.environ)
    except InvalidConfig as err:
        logger.error("link preview: invalid configuration: %s", err)
        result = _result(url, error=f"server misconfigured: {err}", reason="config")
        return _http(500, result) if is_http else result
    cached = _cache(lambda conn: previews_cache.lookup(conn, url))
    if cached is not None:
        status, result = cached
    else:
        status, result = asyncio.run(preview(url, config))
        _cache(lambda conn: previews_cache.store(conn, status, result))
    logger.info("link preview %s -> %s %s", url[:200], status, result["reason"] or "card")
    return _http(status, result) if is_http else result


T = TypeVar("T")
CACHE_TIMEOUT_SECONDS = 2.0


def _cache(fn: Callable[[psycopg.Connection[Any]], T]) -> T | None:
    """``fn`` on B's cards cache when CHAT_DATABASE_URL is set; None without it or on failure."""
    if not chat_db.configured(os.environ):
        return None
    try:
        return chat_db.run(os.environ, CACHE_TIMEOUT_SECONDS, fn)
    except Exception as err:  # the cache is optional: any failure only costs the cache
        logger.warning("link preview: chat database cache unavailable: %s", str(err).strip())
        return None
