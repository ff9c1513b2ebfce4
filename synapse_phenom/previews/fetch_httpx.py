"""Fetcher for asyncio code (Lambda, MCP sidecar): httpx2 with a pinned, checked address.

The host is resolved here, every address is checked, and the request goes to the checked
IP literal with the real name in ``Host`` and in TLS SNI/certificate verification, so a
second DNS answer can never redirect the connection (no rebinding window).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

import httpx2

from synapse_phenom.previews.config import ResolverConfig
from synapse_phenom.previews.policy import (
    FetchFailed,
    Refused,
    check_addresses,
    check_content_type,
    check_length,
)
from synapse_phenom.previews.resolver import FetchResponse

Resolve = Callable[[str, int], Awaitable[list[str]]]


async def getaddrinfo_resolve(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise FetchFailed("dns", f"{host}: {err}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HttpxFetcher:
    def __init__(
        self,
        config: ResolverConfig,
        resolve: Resolve = getaddrinfo_resolve,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        """``verify`` may be an SSLContext with a private CA (staging); never False in
        production."""
        self._config = config
        self._resolve = resolve
        self._client = httpx2.AsyncClient(
            verify=verify,
            follow_redirects=False,
            # Never a proxy from the environment: it would bypass the address check.
            trust_env=False,
            timeout=httpx2.Timeout(config.total_timeout_s, connect=config.connect_timeout_s),
            headers={"User-Agent": config.user_agent},
        )

    async def __aenter__(self) -> HttpxFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(
        self, url: str, *, trusted: bool, accept: Sequence[str], max_bytes: int
    ) -> FetchResponse:
        try:
            async with asyncio.timeout(self._config.total_timeout_s):
                return await self._fetch(url, trusted, accept, max_bytes)
        except TimeoutError:
            raise FetchFailed(
                "timeout", f"{url} took longer than {self._config.total_timeout_s}s"
            ) from None
        except httpx2.TimeoutException:
            raise FetchFailed("timeout", f"{url} timed out") from None
        except httpx2.HTTPError as err:
            raise FetchFailed("connect", f"{url}: {type(err).__name__}: {err}") from None

    async def _fetch(
        self, url: str, trusted: bool, accept: Sequence[str], max_bytes: int
    ) -> FetchResponse:
        target = httpx2.URL(url)
        host = target.host
        port = target.port or (443 if target.scheme == "https" else 80)
        address = check_addresses(host, await self._resolve(host, port), trusted)
        pinned = target.copy_with(host=address)
        headers = {"Host": target.netloc.decode("ascii"), "Accept": ", ".join(accept)}
        extensions = {"sni_hostname": host} if target.scheme == "https" else {}
        async with self._client.stream(
            "GET", pinned, headers=headers, extensions=extensions
        ) as resp:
            resp_headers = {k.lower(): v for k, v in resp.headers.items()}
            if not 200 <= resp.status_code < 300:
                return FetchResponse(status=resp.status_code, headers=resp_headers)
            check_content_type(resp_headers.get("content-type"), accept)
            check_length(resp_headers.get("content-length"), max_bytes)
            body = bytearray()
            async for chunk in resp.aiter_bytes():  # decoded size counts (no gzip bombs)
                body += chunk
                if len(body) > max_bytes:
                    raise Refused("too_large", f"body of {url} exceeds the {max_bytes}-byte limit")
            return FetchResponse(status=resp.status_code, headers=resp_headers, body=bytes(body))
