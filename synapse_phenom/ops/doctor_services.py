"""Doctor checks of the services around Synapse: MCP, Cognito OIDC, preview origins, workers."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx2

from synapse_phenom import hsconfig
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


def check_oidc(t: Target) -> list[Check]:
    issuers = [p.get("issuer") for p in t.config.get("oidc_providers") or [] if p.get("issuer")]
    auth = (t.mcp_config or {}).get("auth") or {}
    out: list[Check] = []
    if auth.get("jwks_file"):
        try:
            keys = json.loads(Path(auth["jwks_file"]).read_text()).get("keys", [])
            out.append(
                Check(
                    "MCP JWKS",
                    PASS if keys else FAIL,
                    f"dev JWKS file, {len(keys)} keys",
                    "re-run phenom-chat dev",
                )
            )
        except (OSError, ValueError) as err:
            out.append(Check("MCP JWKS", FAIL, str(err), "re-run phenom-chat dev"))
    elif auth.get("issuer"):
        issuers.append(auth["issuer"])
    if not issuers:
        return out or [Check("Cognito OIDC", SKIP, "no OIDC provider configured", "")]
    for issuer in dict.fromkeys(issuers):
        try:
            disco = t.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
            disco.raise_for_status()
            jwks = t.get(disco.json()["jwks_uri"])
            jwks.raise_for_status()
            n = len(jwks.json().get("keys", []))
            out.append(
                Check(
                    "Cognito OIDC",
                    PASS if n else FAIL,
                    f"{issuer}: discovery + JWKS ({n} keys)",
                    "check the user pool id and region",
                )
            )
        except (httpx2.HTTPError, ValueError, KeyError) as err:
            out.append(
                Check(
                    "Cognito OIDC",
                    FAIL,
                    f"{issuer}: {err}",
                    "check the pool id/region and outbound HTTPS (NAT) from the task",
                )
            )
    return out


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
