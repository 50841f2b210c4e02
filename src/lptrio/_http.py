"""HTTP/1.1 client on h11 over trio streams, with one keep-alive connection per origin.

A long-poll consumer sends one request at a time to each host (the API host and the long-poll
server), so the pool keeps at most one idle connection per (scheme, host, port). Servers close
idle keep-alive connections without notice, and the client only finds out when it reuses one.
A request that fails on a reused connection before any response byte arrives is therefore
resent once on a new connection.

URLs carry secrets in the query string (`access_token`, `key`), so every error message, log
line and `TransportError.url` uses the URL without its query.

A connection can go through an HTTP CONNECT or SOCKS5 proxy (see _proxy.py) or through a
caller's `stream_opener`. Either way, the pool, TLS and HTTP/1.1 work as on a direct connection.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from urllib.parse import urlsplit

import h11
import trio

from ._proxy import (
    ProxyFailure,
    StreamOpener,
    format_authority,
    open_proxy_stream,
    parse_proxy_url,
)

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_USER_AGENT",
    "HttpClient",
    "HttpResponse",
    "StreamOpener",
    "TransportError",
    "TransportErrorKind",
]

_log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = f"vk-longpoll-kit/{importlib.metadata.version('vk-longpoll-kit')}"
DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443}
# The client sets these itself: Host from the URL, the framing headers from the body.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
# Servers may reply 411 Length Required to these methods without Content-Length, even when
# the body is empty.
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_RECEIVE_SIZE = 64 * 1024


class TransportErrorKind(StrEnum):
    """Reason a request failed below HTTP, as stored in `TransportError.kind`."""

    CONNECT = "connect"  # DNS lookup or TCP connect failed, or the stream_opener failed
    PROXY = "proxy"  # the proxy was unreachable, rejected the tunnel or the credentials
    TLS = "tls"  # TLS handshake or certificate verification failed
    TIMEOUT = "timeout"  # the whole request did not finish within its timeout
    RESET = "reset"  # the server closed or reset the connection before the response ended
    PROTOCOL = "protocol"  # the server sent bytes that are not a valid HTTP/1.1 response
    TOO_LARGE = "too_large"  # the response body is larger than max_body_size


class TransportError(Exception):
    """Failure to get a complete, valid HTTP response from the server.

    `url` is scheme://host[:port]/path, never the query. `detail` is a sentence about the
    failure that names that URL, or for kind PROXY the proxy and the target host:port. Neither
    contains a proxy password. HTTP error statuses are responses, not transport errors.
    """

    kind: TransportErrorKind
    url: str
    detail: str

    def __init__(self, *, kind: TransportErrorKind, url: str, detail: str) -> None:
        super().__init__(f"{detail} ({kind})")
        self.kind = kind
        self.url = url
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    """Complete HTTP response with the body exactly as received."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # names in lowercase, in the order received
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class _Origin:
    """Pool key: requests to one origin share a connection."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Target:
    """Request URL split into what the connection, the request line and messages need."""

    origin: _Origin
    host_header: str  # host[:port] as written in the URL
    target: str  # path and query for the request line
    safe_url: str  # scheme://host[:port]/path without the query, safe to show


@dataclass(slots=True, kw_only=True)
class _Connection:
    stream: trio.abc.Stream
    protocol: h11.Connection


class _StaleConnection(Exception):
    """The connection closed before any response byte arrived."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """Return the verifying context that every client without its own shares.

    Each context loads the system's CA store, which costs far more memory
    than an idle connection, and a context is safe to share between
    connections, so hundreds of clients in one process share this one.
    """
    return ssl.create_default_context()


class HttpClient:
    """HTTP/1.1 client that keeps one connection per origin and sends requests one at a time.

    Concurrent requests to one origin wait for each other, so they never interleave on a
    connection. Certificates are verified unless the given `ssl_context` turns verification off.

    `proxy` is a URL: `http://[user:password@]host:port` opens an HTTP CONNECT tunnel for
    every origin, http ones included. `socks5://` resolves target host names on this machine
    and `socks5h://` lets the proxy resolve them. `stream_opener` replaces the TCP connect for
    any other transport. TLS for https URLs runs over the tunnel or the opened stream, end to
    end with the origin.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        proxy: str | None = None,
        stream_opener: StreamOpener | None = None,
    ) -> None:
        if max_body_size < 0:
            raise ValueError(f"max_body_size must be 0 or more bytes, got {max_body_size}")
        if proxy is not None and stream_opener is not None:
            raise ValueError(
                "pass proxy or stream_opener, not both: a stream_opener that needs a proxy "
                "must connect through it itself"
            )
        # Parsed now, so a bad proxy URL raises here and not on the first request.
        self._proxy = None if proxy is None else parse_proxy_url(proxy)
        self._stream_opener = stream_opener
        self._ssl_context = ssl_context
        self._user_agent = user_agent
        self._max_body_size = max_body_size
        self._pool: dict[_Origin, _Connection] = {}
        self._locks: dict[_Origin, trio.Lock] = {}
        self._closed = False

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        timeout: float,
    ) -> HttpResponse:
        """Send one request and read the whole response.

        `timeout` (seconds, on trio's clock) covers waiting for the origin's connection,
        connecting (through the proxy, if any), the TLS handshake, sending and reading the full
        body. Raises TransportError when no complete response arrives, ValueError for an
        unusable URL, header or timeout, and trio.ClosedResourceError after aclose().
        """
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        target = _parse_url(url)
        request = self._build_request(method, target, headers, body)

        with trio.move_on_after(timeout):
            async with self._locks.setdefault(target.origin, trio.Lock()):
                return await self._send_with_resend(target, request, body)
        raise TransportError(
            kind=TransportErrorKind.TIMEOUT,
            url=target.safe_url,
            detail=f"timed out after {float(timeout)} s waiting for {target.safe_url}",
        )

    async def aclose(self) -> None:
        """Close all idle pooled connections. Later requests raise trio.ClosedResourceError."""
        self._closed = True
        pool, self._pool = self._pool, {}
        for connection in pool.values():
            await trio.aclose_forcefully(connection.stream)

    def _build_request(
        self, method: str, target: _Target, headers: Sequence[tuple[str, str]], body: bytes
    ) -> h11.Request:
        names = [name.lower() for name, _ in headers]
        reserved = sorted(_RESERVED_HEADERS.intersection(names))
        if reserved:
            raise ValueError(
                f"headers {reserved} are set by HttpClient from the URL and body, remove them"
            )

        all_headers = [("Host", target.host_header)]
        if "user-agent" not in names:
            all_headers.append(("User-Agent", self._user_agent))
        if body or method.upper() in _METHODS_WITH_BODY:
            all_headers.append(("Content-Length", str(len(body))))
        all_headers.extend(headers)

        try:
            return h11.Request(method=method, target=target.target, headers=all_headers)
        except h11.LocalProtocolError:
            # h11's message quotes the rejected value, which may be a secret, so drop it.
            raise ValueError(
                f"invalid request to {target.safe_url}: the method {method!r}, the URL path or "
                f"a value of the headers {names} contains characters that HTTP/1.1 forbids"
            ) from None

    async def _send_with_resend(
        self, target: _Target, request: h11.Request, body: bytes
    ) -> HttpResponse:
        if self._closed:
            raise trio.ClosedResourceError("this HttpClient was closed by aclose()")

        pooled = self._pool.pop(target.origin, None)
        if pooled is not None:
            try:
                return await self._exchange(pooled, target, request, body)
            except _StaleConnection as exc:
                _log.debug("resending on a new connection: %s", exc.detail)

        connection = await self._connect(target)
        try:
            return await self._exchange(connection, target, request, body)
        except _StaleConnection as exc:
            raise TransportError(
                kind=TransportErrorKind.RESET, url=target.safe_url, detail=exc.detail
            ) from exc.__cause__

    async def _exchange(
        self, connection: _Connection, target: _Target, request: h11.Request, body: bytes
    ) -> HttpResponse:
        """Send the request, read the response, then pool the connection or close it."""
        pooled = False
        try:
            await _send_request(connection, target, request, body)
            response = await _ResponseReader(connection, target, self._max_body_size).read()
            pooled = self._release(connection, target.origin)
            return response
        finally:
            # After a failure or cancellation the connection is mid-message, and after a
            # `Connection: close` response it has ended, so neither can carry a request.
            if not pooled:
                await trio.aclose_forcefully(connection.stream)

    def _release(self, connection: _Connection, origin: _Origin) -> bool:
        if self._closed or not _is_reusable(connection.protocol):
            return False
        connection.protocol.start_next_cycle()
        self._pool[origin] = connection
        return True

    async def _connect(self, target: _Target) -> _Connection:
        stream = await self._open_stream(target)
        if target.origin.scheme == "https":
            stream = await self._start_tls(stream, target)
        return _Connection(stream=stream, protocol=h11.Connection(our_role=h11.CLIENT))

    async def _open_stream(self, target: _Target) -> trio.abc.Stream:
        origin = target.origin
        if self._proxy is not None:
            try:
                return await open_proxy_stream(
                    self._proxy, origin.host, origin.port, user_agent=self._user_agent
                )
            except ProxyFailure as exc:
                raise TransportError(
                    kind=TransportErrorKind.PROXY, url=target.safe_url, detail=exc.detail
                ) from exc.__cause__

        if self._stream_opener is not None:
            return await self._open_with_hook(self._stream_opener, target)

        try:
            return await trio.open_tcp_stream(origin.host, origin.port)
        except OSError as exc:
            raise TransportError(
                kind=TransportErrorKind.CONNECT,
                url=target.safe_url,
                detail=f"could not connect to {target.safe_url}: {exc}",
            ) from exc

    async def _open_with_hook(
        self, stream_opener: StreamOpener, target: _Target
    ) -> trio.abc.Stream:
        # OSError and trio.BrokenResourceError become TransportError(CONNECT). A TransportError
        # from the hook passes through unchanged, and any other exception propagates as is.
        origin = target.origin
        try:
            return await stream_opener(origin.host, origin.port)
        except (OSError, trio.BrokenResourceError) as exc:
            authority = format_authority(origin.host, origin.port)
            raise TransportError(
                kind=TransportErrorKind.CONNECT,
                url=target.safe_url,
                detail=f"stream_opener could not open a stream to {authority} for "
                f"{target.safe_url}: {exc!r}",
            ) from exc

    async def _start_tls(
        self, stream: trio.abc.Stream, target: _Target
    ) -> trio.SSLStream[trio.abc.Stream]:
        if self._ssl_context is None:
            self._ssl_context = default_ssl_context()
        # https_compatible: HTTP servers often close without TLS close_notify, and
        # Content-Length or chunked framing already detects a truncated body.
        tls_stream = trio.SSLStream(
            stream,
            self._ssl_context,
            server_hostname=target.origin.host,
            https_compatible=True,
        )
        try:
            await tls_stream.do_handshake()
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(stream)
            raise TransportError(
                kind=TransportErrorKind.TLS,
                url=target.safe_url,
                detail=_describe_tls_failure(exc.__cause__, target.safe_url),
            ) from exc
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return tls_stream


class _ResponseReader:
    """Reads one response from a connection and classifies every way it can fail."""

    def __init__(self, connection: _Connection, target: _Target, max_body_size: int) -> None:
        self._connection = connection
        self._url = target.safe_url
        self._max_body_size = max_body_size
        self._received_any = False
        self._received_eof = False

    async def read(self) -> HttpResponse:
        head = await self._read_head()
        body = await self._read_body()
        return HttpResponse(
            status=head.status_code,
            headers=tuple((name, value) for name, value in head.headers),
            body=body,
        )

    async def _read_head(self) -> h11.Response:
        while True:
            event = await self._next_event()
            # 1xx responses such as 100 Continue come before the final response.
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                self._check_declared_length(event)
                return event
            raise self._unexpected(event, "before the response headers")

    async def _read_body(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event()
            if isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            if not isinstance(event, h11.Data):
                raise self._unexpected(event, f"after {size} bytes of the response body")

            size += len(event.data)
            if size > self._max_body_size:
                raise self._too_large(f"more than {self._max_body_size} bytes arrived")
            chunks.append(bytes(event.data))

    def _check_declared_length(self, head: h11.Response) -> None:
        # h11 has already checked that Content-Length is one decimal number.
        for name, value in head.headers:
            if name == b"content-length" and int(value) > self._max_body_size:
                raise self._too_large(f"Content-Length is {int(value)} bytes")

    async def _next_event(self) -> object:
        """Return the next h11 event, or h11.PAUSED, receiving data until there is one."""
        protocol = self._connection.protocol
        while True:
            try:
                event = protocol.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._invalid_response(exc) from exc
            if event is not h11.NEED_DATA:
                return event
            await self._receive_some()

    async def _receive_some(self) -> None:
        try:
            data = await self._connection.stream.receive_some(_RECEIVE_SIZE)
        except trio.BrokenResourceError as exc:
            if not self._received_any:
                raise _StaleConnection(
                    f"server reset the connection before sending a response to {self._url}"
                ) from exc
            raise self._reset("reset the connection") from exc

        if not data:
            if not self._received_any:
                raise _StaleConnection(
                    f"server closed the connection before sending a response to {self._url}"
                )
            self._received_eof = True
        self._received_any = True
        self._connection.protocol.receive_data(bytes(data))

    def _invalid_response(self, exc: h11.RemoteProtocolError) -> TransportError:
        # After end of stream, h11 reports a truncated message as a protocol error.
        if self._received_eof:
            return self._reset("closed the connection")
        return TransportError(
            kind=TransportErrorKind.PROTOCOL,
            url=self._url,
            detail=f"invalid HTTP/1.1 response from {self._url}: {exc}",
        )

    def _reset(self, what_happened: str) -> TransportError:
        return TransportError(
            kind=TransportErrorKind.RESET,
            url=self._url,
            detail=f"server {what_happened} before the response from {self._url} was complete",
        )

    def _unexpected(self, event: object, where: str) -> TransportError:
        if isinstance(event, h11.ConnectionClosed):
            return self._reset("closed the connection")
        # PAUSED after a 101 Switching Protocols: this client does not support upgrades.
        return TransportError(
            kind=TransportErrorKind.PROTOCOL,
            url=self._url,
            detail=f"unexpected {event!r} {where} from {self._url}",
        )

    def _too_large(self, reason: str) -> TransportError:
        return TransportError(
            kind=TransportErrorKind.TOO_LARGE,
            url=self._url,
            detail=(
                f"response body from {self._url} exceeds max_body_size={self._max_body_size}"
                f" bytes: {reason}. Raise HttpClient(max_body_size=...) if it is expected"
            ),
        )


async def _send_request(
    connection: _Connection, target: _Target, request: h11.Request, body: bytes
) -> None:
    protocol = connection.protocol
    events: list[h11.Event] = [request]
    if body:
        events.append(h11.Data(data=body))
    events.append(h11.EndOfMessage())
    data = b"".join(protocol.send(event) or b"" for event in events)

    try:
        await connection.stream.send_all(data)
    except trio.BrokenResourceError as exc:
        raise _StaleConnection(
            f"server closed the connection to {target.safe_url} before the request was sent"
        ) from exc


def _is_reusable(protocol: h11.Connection) -> bool:
    # Both sides must be DONE: MUST_CLOSE means a `Connection: close` or an HTTP/1.0 peer.
    if protocol.our_state is not h11.DONE or protocol.their_state is not h11.DONE:
        return False
    # Bytes after the response would be read as the start of the next response.
    buffered, closed = protocol.trailing_data
    return not buffered and not closed


def _parse_url(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}, use http or https")
    if parts.username is not None or parts.password is not None:
        raise ValueError("URLs with user:password@ credentials are not supported")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {scheme}://{parts.netloc}{parts.path}")

    port = parts.port  # raises ValueError for a port that is not a number in 0-65535
    path = parts.path or "/"
    return _Target(
        origin=_Origin(
            scheme=scheme,
            host=parts.hostname,
            port=_DEFAULT_PORTS[scheme] if port is None else port,
        ),
        host_header=parts.netloc,
        target=f"{path}?{parts.query}" if parts.query else path,
        safe_url=f"{scheme}://{parts.netloc}{path}",
    )


def _describe_tls_failure(cause: BaseException | None, url: str) -> str:
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"certificate verify failed for {url}: {cause.verify_message}. Pass an ssl_context "
            "that trusts this server's CA, for example ssl.create_default_context(cafile=...)"
        )
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake with {url} failed: {cause.reason or cause}"
    return f"TLS handshake with {url} failed: the server closed the connection"
