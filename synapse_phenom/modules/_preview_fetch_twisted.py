"""Fetcher for inside Synapse: a Twisted Agent whose every connection goes to a checked address.

Synapse's ``api.http_client`` has no IP blocklist and follows redirects on its own, so it
cannot be used for this. Here the Agent gets an endpoint factory that resolves the host
through the reactor's (thread-pooled, non-blocking) resolver, checks every address, and
connects to the checked IP only; TLS still verifies the certificate for the host name.
No redirect is followed here: the resolver re-checks each hop against the origins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet import reactor as global_reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IResolutionReceiver, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory
from zope.interface import implementer

from synapse_phenom.previews.config import ResolverConfig
from synapse_phenom.previews.policy import (
    FetchFailed,
    PreviewError,
    Refused,
    check_addresses,
    check_content_type,
    check_length,
)
from synapse_phenom.previews.resolver import FetchResponse

# Synapse wraps Deferreds it awaits to keep log contexts right; the module passes
# ``ModuleApi``'s make_deferred_yieldable here. Plain Twisted code uses the identity.
Yieldable = Callable[[defer.Deferred[Any]], defer.Deferred[Any]]


@implementer(IResolutionReceiver)
class _Collector:
    def __init__(self, done: defer.Deferred[list[str]]) -> None:
        self._done = done
        self._addresses: list[str] = []

    def resolutionBegan(self, resolution: object) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        self._addresses.append(str(address.host))

    def resolutionComplete(self) -> None:
        if not self._done.called:  # not already given up on (timeout)
            self._done.callback(list(dict.fromkeys(self._addresses)))


@implementer(IAgentEndpointFactory)
class _PinnedEndpoint:
    """Every request of the Agent it serves goes to this one (already checked) endpoint."""

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        return self._endpoint


class _BoundedBody(Protocol):
    """Collects a response body, aborting the connection once it exceeds ``limit``."""

    def __init__(self, limit: int, url: str) -> None:
        # Cancelling (the total timeout) drops the connection instead of reading on.
        self.done: defer.Deferred[bytes] = defer.Deferred(lambda _d: self._abort())
        self._done = self.done
        self._limit = limit
        self._url = url
        self._buf = bytearray()

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._buf += data
        if len(self._buf) > self._limit:
            self._done.errback(
                Refused("too_large", f"body of {self._url} exceeds the {self._limit}-byte limit")
            )
            self._abort()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(bytes(self._buf))
        else:
            self._done.errback(
                FetchFailed("connect", f"{self._url}: body interrupted ({reason.value})")
            )


class _Discard(Protocol):
    def connectionMade(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]


class TwistedFetcher:
    """``trust_root`` (a Twisted ``IOpenSSLTrustRoot``) replaces the platform CAs, e.g. for a
    staging site with a private CA; certificates are always verified for the host name."""

    def __init__(
        self,
        config: ResolverConfig,
        reactor: Any = None,
        yieldable: Yieldable = lambda d: d,
        trust_root: Any = None,
    ) -> None:
        self._config = config
        self._trust_root = trust_root
        self._reactor: Any = reactor or global_reactor
        self._yieldable = yieldable
        # One connection per fetch: nothing pooled across hosts or re-resolutions.
        self._pool = HTTPConnectionPool(self._reactor, persistent=False)

    def _resolve(self, host: str, port: int) -> defer.Deferred[list[str]]:
        done: defer.Deferred[list[str]] = defer.Deferred()
        self._reactor.nameResolver.resolveHostName(_Collector(done), host, port)
        return done

    async def _wait(self, d: defer.Deferred[Any], seconds: float, what: str) -> Any:
        def timed_out(value: Any, timeout: float) -> Failure:
            # Whatever the cancelled operation reported (the Agent wraps the cancellation
            # in ResponseNeverReceived), the cause is the deadline.
            return Failure(
                FetchFailed("timeout", f"{what} took longer than {self._config.total_timeout_s}s")
            )

        d.addTimeout(max(seconds, 0.001), self._reactor, onTimeoutCancel=timed_out)
        return await self._yieldable(d)

    async def fetch(
        self, url: str, *, trusted: bool, accept: Sequence[str], max_bytes: int
    ) -> FetchResponse:
        try:
            return await self._fetch(url, trusted, accept, max_bytes)
        except PreviewError:
            raise
        except Exception as err:  # connection refused, TLS failure, DNS error, ...
            raise FetchFailed("connect", f"{url}: {type(err).__name__}: {err}") from None

    async def _fetch(
        self, url: str, trusted: bool, accept: Sequence[str], max_bytes: int
    ) -> FetchResponse:
        deadline = self._reactor.seconds() + self._config.total_timeout_s
        uri = URI.fromBytes(url.encode("ascii"))
        host = uri.host.decode("ascii").strip("[]")
        addresses = await self._wait(
            self._resolve(host, uri.port), self._config.total_timeout_s, url
        )
        address = check_addresses(host, addresses, trusted)
        endpoint_cls = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
        endpoint: Any = endpoint_cls(
            self._reactor, address, uri.port, timeout=self._config.connect_timeout_s
        )
        if uri.scheme == b"https":
            options = (
                optionsForClientTLS(host)
                if self._trust_root is None
                else optionsForClientTLS(host, trustRoot=self._trust_root)
            )
            endpoint = wrapClientTLS(options, endpoint)
        agent = Agent.usingEndpointFactory(
            self._reactor, _PinnedEndpoint(endpoint), pool=self._pool
        )
        headers = Headers(
            {
                b"User-Agent": [self._config.user_agent.encode()],
                b"Accept": [", ".join(accept).encode()],
            }
        )
        response: Any = await self._wait(
            agent.request(b"GET", url.encode("ascii"), headers),
            deadline - self._reactor.seconds(),
            url,
        )
        resp_headers = {
            k.decode("latin-1").lower(): b", ".join(v).decode("latin-1")
            for k, v in response.headers.getAllRawHeaders()
        }
        if not 200 <= response.code < 300:
            response.deliverBody(_Discard())
            return FetchResponse(status=response.code, headers=resp_headers)
        try:
            check_content_type(resp_headers.get("content-type"), accept)
            if response.length is not UNKNOWN_LENGTH:
                check_length(str(response.length), max_bytes)
        except Refused:
            response.deliverBody(_Discard())
            raise
        reader = _BoundedBody(max_bytes, url)
        response.deliverBody(reader)
        body = await self._wait(reader.done, deadline - self._reactor.seconds(), url)
        return FetchResponse(status=response.code, headers=resp_headers, body=body)
