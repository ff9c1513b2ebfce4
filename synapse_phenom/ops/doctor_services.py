"""Doctor checks of the services around Synapse: MCP, Cognito OIDC, preview origins, workers."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx2

from synapse_phenom.ops import hsconfig
from synapse_phenom.ops.doctor_core import FAIL, ORIGIN_FIX, PASS, SKIP, WARN, Check, Target


def check_mcp(t: Target) -> Check:
    if not t.mcp_url:
        return Check("MCP /health", SKIP, "no MCP URL", "pass --mcp-url or --mcp-config")
    try:
        resp = t.get(f"{t.mcp_url.rstrip('/')}/health")
    except httpx2.TransportError as err:
        return Check(
            "MCP /health",
            FAIL,
            f"{t.mcp_url} unreachable: {err}",
            "start the MCP sidecar (phenom-chat mcp) / check its task",
        )
    if resp.status_code != 200:
        return Check(
            "MCP /health",
            FAIL,
            f"HTTP {resp.status_code}: {resp.text[:200]}",
            "see the MCP log; usually Synapse unreachable or the appservice not loaded",
        )
    return Check("MCP /health", PASS, f"{t.mcp_url}/health: {resp.json().get('status')}")


def _oidc_sources(t: Target) -> dict[str, tuple[str | None, str | None]]:
    """name -> (discovery URL or None, explicit JWKS URL or None) of every OIDC trust."""
    sources: dict[str, tuple[str | None, str | None]] = {}
    for p in t.config.get("oidc_providers") or []:
        issuer = str(p.get("issuer", "")).rstrip("/")
        discovery = (
            f"{issuer}/.well-known/openid-configuration" if p.get("discover", True) else None
        )
        sources[f"Synapse OIDC {p.get('idp_id', '?')}"] = (discovery, p.get("jwks_uri"))
    auth = (t.mcp_config or {}).get("auth") or {}
    if auth.get("issuer") and not auth.get("jwks_file"):
        jwks = auth.get("jwks_url") or f"{str(auth['issuer']).rstrip('/')}/.well-known/jwks.json"
        sources["MCP JWKS"] = (None, jwks)
    return sources


def _jwks_keys(t: Target, discovery: str | None, jwks: str | None) -> int:
    if discovery is not None:
        disco = t.get(discovery)
        disco.raise_for_status()
        jwks = jwks or disco.json()["jwks_uri"]
    if not jwks:
        raise ValueError("no jwks_uri configured and discovery is off")
    resp = t.get(jwks)
    resp.raise_for_status()
    return len(resp.json().get("keys", []))


def check_oidc(t: Target) -> list[Check]:
    auth = (t.mcp_config or {}).get("auth") or {}
    out: list[Check] = []
    if auth.get("jwks_file"):
        try:
            keys = json.loads(Path(auth["jwks_file"]).read_text()).get("keys", [])
            status, detail = (PASS if keys else FAIL), f"dev JWKS file, {len(keys)} keys"
        except (OSError, ValueError) as err:
            status, detail = FAIL, str(err)
        out.append(Check("MCP JWKS", status, detail, "re-run phenom-chat dev"))
    for name, (discovery, jwks) in _oidc_sources(t).items():
        what = " + ".join(x for x, url in (("discovery", discovery), ("JWKS", True)) if url)
        try:
            n = _jwks_keys(t, discovery, jwks)
            fix = "the JWKS has no keys: check the user pool id and region"
            out.append(Check(name, PASS if n else FAIL, f"{what} fetched ({n} keys)", fix))
        except (httpx2.HTTPError, ValueError, KeyError) as err:
            fix = "check the pool id/region and outbound HTTPS (NAT) from the task"
            out.append(Check(name, FAIL, f"{discovery or jwks}: {err}", fix))
    return out or [Check("Cognito OIDC", SKIP, "no OIDC provider configured", "")]


def check_origin(t: Target) -> list[Check]:
    from synapse_phenom.previews.config import LinkPreviewConfig

    cfg = LinkPreviewConfig.model_validate(t.module_config(hsconfig.LINK_PREVIEW_MODULE) or {})
    out = []
    for origin in cfg.origins:
        url = origin.fetch_from or origin.url
        try:
            resp = t.get(url, follow_redirects=False)
            ok = resp.status_code < 500
            detail = f"{url}: HTTP {resp.status_code}"
        except httpx2.TransportError as err:
            ok, detail = False, f"{url}: {err}"
        status = PASS if ok else (FAIL if t.production else WARN)
        out.append(
            Check(
                f"preview origin {origin.url}",
                status,
                detail,
                "" if ok else ORIGIN_FIX,
            )
        )
    return out


def check_workers(t: Target) -> list[Check]:
    redis = t.config.get("redis") or {}
    if not redis.get("enabled"):
        return [Check("workers", SKIP, "single process (no redis:)", "")]
    out = []
    host, port = redis.get("host", "localhost"), int(redis.get("port", 6379))
    try:
        with socket.create_connection((host, port), timeout=t.timeout) as s:
            s.sendall(b"PING\r\n")
            pong = s.recv(64).startswith(b"+PONG")
        out.append(
            Check(
                "redis",
                PASS if pong else FAIL,
                f"{host}:{port} {'PONG' if pong else 'no PONG'}",
                "check Redis auth/TLS",
            )
        )
    except OSError as err:
        out.append(
            Check(
                "redis",
                FAIL,
                f"{host}:{port}: {err}",
                "start Redis / open the security group (PHENOM_REDIS_HOST)",
            )
        )
    for name, where in (t.config.get("instance_map") or {}).items():
        try:
            socket.create_connection((where["host"], int(where["port"])), timeout=t.timeout).close()
            out.append(
                Check(
                    f"instance {name}", PASS, f"{where['host']}:{where['port']} accepts connections"
                )
            )
        except OSError as err:
            out.append(
                Check(
                    f"instance {name}",
                    FAIL,
                    f"{where['host']}:{where['port']}: {err}",
                    "the replication listener must be reachable from every worker",
                )
            )
    return out
