"""HTTP/1.1 server on h11 and trio, used to host fake long-poll servers in tests.

Each accepted connection gets its own task, which reads requests with h11 and passes
each one to the handler. While the handler runs, a second task reads the socket so that
a client that hangs up cancels the handler: a held long poll must end with its client.

Errors from the handler are not swallowed. The client gets a 500 reply when the
connection still allows one, the server stops, and `serve_http` raises the error in an
ExceptionGroup, so a failure inside a fake server always reaches the test that runs it.
A handler that wants to choose that reply itself returns it with `HttpReply.error` set.

A reply's `Transport` can make the server misbehave on purpose, the way a failing server
or network does. The server then sends nothing or stops partway through the body, ends the
connection with a TCP reset, or sends the body in small pieces with pauses between them.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import trio

__all__ = [
    "MAX_BODY_SIZE",
    "BoundAddress",
    "Cut",
    "Handler",
    "HttpReply",
    "HttpRequest",
    "Transport",
    "serve_http",
]

logger = logging.getLogger(__name__)

MAX_BODY_SIZE = 1024 * 1024
"""Maximum request body in bytes. A larger body gets a 413 reply, and the connection closes."""

_RECEIVE_SIZE = 64 * 1024
_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True, kw_only=True)
class BoundAddress:
    """Address that `serve_http` listens on, with the real port when port 0 was requested."""

    host: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """Request passed to the handler, with the body already read in full."""

    method: str
    path: str
    """URL path without the query, percent-decoded."""
    params: dict[str, str]
    """Query-string parameters, overridden by the body's for a form-encoded POST."""
    headers: tuple[tuple[bytes, bytes], ...]
    """Header names are lowercase, in the order the client sent them."""
    body: bytes
    client_host: str = ""
    """The client's IP address, or "" when the connection was gone before it was read."""


class Cut(enum.Enum):
    """Point at which the server stops sending a reply and ends the connection."""

    #: Nothing of the reply is sent.
    BEFORE_HEADERS = "before_headers"
    #: The headers, which declare the whole body's length, and the first `Transport.cut_after`
    #: bytes of the body are sent.
    IN_BODY = "in_body"


@dataclass(frozen=True, slots=True, kw_only=True)
class Transport:
    """Sending instructions for a reply. The default sends it whole, at once."""

    #: Where to stop sending and end the connection, or None to send the whole reply.
    cut: Cut | None = None
    #: Body bytes sent before a `Cut.IN_BODY` cut.
    cut_after: int = 0
    #: End a cut connection with a TCP reset (RST) instead of a normal close (FIN).
    reset: bool = False
    #: Send the body in pieces of this many bytes, or None to send it in one piece.
    chunk_size: int | None = None
    #: Seconds to wait between two pieces of the body.
    chunk_delay: float = 0.0

    def __post_init__(self) -> None:
        if self.cut_after < 0:
            raise ValueError(f"cut_after={self.cut_after} must not be negative")
        if self.reset and self.cut is None:
            raise ValueError("reset=True needs a cut: a whole reply leaves the connection open")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size={self.chunk_size} must be at least 1 byte")
        if self.chunk_delay < 0:
            raise ValueError(f"chunk_delay={self.chunk_delay} must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpReply:
    """Reply returned by the handler, to which the server adds Content-Type and Content-Length."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    transport: Transport = field(default_factory=Transport)
    error: Exception | None = None
    """An error to raise out of `serve_http` after this reply is sent. The server closes
    the connection and stops, as it does when the handler raises."""


Handler = Callable[[HttpRequest], Awaitable[HttpReply]]


class _ClientGoneError(Exception):
    """Failure of the connection itself, such as a reset or a failed TLS handshake."""


class _BadRequestError(Exception):
    """Invalid request, rejected with the HTTP `status` before the connection closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


async def serve_http(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[BoundAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP/1.1 (HTTPS with `ssl_context`) on `host`:`port` until cancelled.

    Reports the bound address through `task_status`, so `await nursery.start(serve_http, ...)`
    returns it. An exception from `handler`, or any other failure in a connection task, stops
    the server, and this call raises it in an ExceptionGroup, even when it was cancelled.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    # NOTE: with a host name that resolves to several addresses and port 0, each listener
    # gets its own port, and only the first listener's address is reported.
    sockname = listeners[0].socket.getsockname()
    task_status.started(BoundAddress(host=sockname[0], port=sockname[1]))

    server = _Server(handler, ssl_context)
    try:
        with server.cancel_scope:
            await trio.serve_listeners(server.serve_connection, listeners)
    finally:
        # Raised here rather than from the connection task, because trio.serve_listeners
        # closes each connection with an await in a `finally`. If the caller cancels the
        # server at that moment, as a test does when it ends, that await replaces the error
        # with Cancelled.
        if server.errors:
            raise ExceptionGroup("HTTP server stopped because a connection failed", server.errors)


class _Server:
    """State shared by the connections of one `serve_http` call."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.errors: list[Exception] = []
        self.cancel_scope = trio.CancelScope()

    def record_error(self, error: Exception) -> None:
        """Store `error` for `serve_http` to raise, once per error object."""
        if all(error is not known for known in self.errors):
            self.errors.append(error)

    def stop(self, error: Exception) -> None:
        """Stop the server, which makes `serve_http` raise `error`."""
        self.record_error(error)
        self.cancel_scope.cancel()

    async def serve_connection(self, tcp_stream: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp_stream
        if self.ssl_context is not None:
            # HTTP frames its own messages, so a client that closes without a TLS
            # close_notify has lost no data, and the server need not wait for one on close.
            stream = trio.SSLStream(
                tcp_stream, self.ssl_context, server_side=True, https_compatible=True
            )

        peer = _format_peer(tcp_stream)
        async with stream:
            try:
                if isinstance(stream, trio.SSLStream):
                    await _do_handshake(stream)
                await _Connection(stream, tcp_stream, self, peer).serve()
            except _ClientGoneError as exc:
                # A client that goes away is routine and ends only its own connection.
                logger.debug("connection from %s ended: %s", peer, exc)
            except Exception as exc:
                # A failure in any connection stops the whole server.
                self.stop(exc)


def _format_peer(tcp_stream: trio.SocketStream) -> str:
    try:
        address = tcp_stream.socket.getpeername()
    except OSError:
        # The client may reset the connection before this task starts.
        return "an unknown address"
    return f"{address[0]}:{address[1]}"


async def _do_handshake(stream: trio.SSLStream[trio.SocketStream]) -> None:
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        # The cause is the ssl module's error, for example an unknown CA or plain HTTP.
        raise _ClientGoneError(f"TLS handshake failed: {exc.__cause__!r}") from exc


class _Connection:
    """One client connection: reads requests, runs the handler and sends replies."""

    def __init__(
        self, stream: trio.abc.Stream, tcp_stream: trio.SocketStream, server: _Server, peer: str
    ) -> None:
        self._stream = stream
        self._tcp_stream = tcp_stream
        self._server = server
        self._peer = peer
        self._client_host = peer.rpartition(":")[0] if ":" in peer else ""
        self._h11 = h11.Connection(h11.SERVER)
        self._client_gone = False
        self._handler_running = False

    async def serve(self) -> None:
        """Serve requests until the client or the protocol ends the connection."""
        while True:
            try:
                request = await self._read_request()
            except _BadRequestError as exc:
                await self._reject(exc)
                return
            if request is None:
                return

            reply = await self._call_handler(request)
            if reply is None:
                return
            if reply.error is not None:
                await self._send_then_stop(reply, reply.error, is_head=request.method == "HEAD")
                return
            await self._send_reply(reply, is_head=request.method == "HEAD")

            if reply.transport.cut is not None:
                await self._end_cut_connection(reset=reply.transport.reset)
                return
            if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
                return
            self._h11.start_next_cycle()

    async def _read_request(self) -> HttpRequest | None:
        """Read one whole request, or return None when the client closes between requests."""
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = await self._next_event()
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                head = event
                _check_content_length(head)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_SIZE:
                    raise _BadRequestError(413, f"request body exceeds {MAX_BODY_SIZE} bytes")
            elif isinstance(event, h11.EndOfMessage):
                # h11 always sends Request before EndOfMessage.
                assert head is not None
                return _build_request(head, bytes(body), self._client_host)

    async def _next_event(self) -> h11.Event:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise _BadRequestError(exc.error_status_hint, str(exc)) from exc
            if event is h11.NEED_DATA:
                self._h11.receive_data(await self._receive())
                continue
            # PAUSED never appears here: `serve` calls start_next_cycle before reading again.
            assert not isinstance(event, type), event
            return event

    async def _receive(self) -> bytes:
        try:
            data = await self._stream.receive_some(_RECEIVE_SIZE)
        except trio.BrokenResourceError as exc:
            raise _ClientGoneError(f"receive failed: {exc}") from exc
        if not data:
            self._client_gone = True
        return bytes(data)

    async def _send(self, *events: h11.Event) -> None:
        """Send `events` in one write."""
        chunks = []
        for event in events:
            data = self._h11.send(event)
            # h11 returns None only for ConnectionClosed, which this server never sends.
            assert data is not None
            chunks.append(data)
        try:
            await self._stream.send_all(b"".join(chunks))
        except trio.BrokenResourceError as exc:
            raise _ClientGoneError(f"send failed: {exc}") from exc

    async def _call_handler(self, request: HttpRequest) -> HttpReply | None:
        """Run the handler, cancelling it if the client closes the connection meanwhile.

        Returns None when the client has gone, unless the reply carries an error that must
        still stop the server. Re-raises the handler's exception after replying 500.
        """
        reply: HttpReply | None = None
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            self._handler_running = True
            nursery.start_soon(self._watch_for_close, nursery.cancel_scope)
            try:
                reply = await self._server.handler(request)
            except Exception as exc:
                # Stored at once: the awaits below may be cancelled before the error
                # reaches `serve_connection`.
                self._server.record_error(exc)
                error = exc
            self._handler_running = False
            nursery.cancel_scope.cancel()

        if error is not None:
            await self._reply_500(error)
        if self._client_gone and (reply is None or reply.error is None):
            return None
        return reply

    async def _watch_for_close(self, handler_scope: trio.CancelScope) -> None:
        """Cancel `handler_scope` once the client closes or resets the connection."""
        # The task first runs when the handler blocks, or else once the handler has
        # returned. In the second case there is nothing to watch, and returning before the
        # first read spares the Cancelled exception that the cancelled read would raise.
        if not self._handler_running:
            return
        # A pipelined next request may arrive meanwhile. h11 buffers it until
        # start_next_cycle, and reading stops once the buffer reaches the body limit.
        while len(self._h11.trailing_data[0]) <= MAX_BODY_SIZE:
            try:
                data = await self._receive()
            except _ClientGoneError:
                self._client_gone = True
            if self._client_gone:
                handler_scope.cancel()
                return
            self._h11.receive_data(data)

    async def _send_then_stop(self, reply: HttpReply, error: Exception, *, is_head: bool) -> None:
        """Send `reply` if the client is still there, then stop the server with `error`."""
        # Stored before sending, because a failed send must not lose the error.
        self._server.record_error(error)
        if not self._client_gone and self._h11.our_state is h11.SEND_RESPONSE:
            closing = HttpReply(
                status=reply.status,
                body=reply.body,
                content_type=reply.content_type,
                headers=(*reply.headers, ("Connection", "close")),
            )
            with contextlib.suppress(_ClientGoneError):
                await self._send_reply(closing, is_head=is_head)
        self._server.stop(error)

    async def _end_cut_connection(self, *, reset: bool) -> None:
        """Close the connection after a cut reply, with a TCP reset if `reset` is set."""
        if reset:
            # SO_LINGER on with a zero timeout makes close() discard unsent data and send RST.
            linger = struct.pack("ii", 1, 0)
            with contextlib.suppress(OSError):
                self._tcp_stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        # An SSLStream made with https_compatible=True closes its socket without sending
        # a TLS close_notify, so the client sees only the TCP close or reset.
        await self._stream.aclose()

    async def _reply_500(self, error: Exception) -> NoReturn:
        """Tell the client that the handler failed, then re-raise the handler's exception."""
        if not self._client_gone and self._h11.our_state is h11.SEND_RESPONSE:
            reply = HttpReply(
                status=500,
                body=f"handler raised {type(error).__name__}\n".encode(),
                content_type="text/plain; charset=utf-8",
                headers=(("Connection", "close"),),
            )
            with contextlib.suppress(_ClientGoneError):
                await self._send_reply(reply, is_head=False)
        raise error

    async def _reject(self, error: _BadRequestError) -> None:
        """Reply with the error's status if the client is still there and h11 allows it."""
        if self._client_gone or self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        logger.debug("rejected a request from %s with %d: %s", self._peer, error.status, error)
        reply = HttpReply(
            status=error.status,
            body=f"{error}\n".encode(),
            content_type="text/plain; charset=utf-8",
            headers=(("Connection", "close"),),
        )
        await self._send_reply(reply, is_head=False)

    async def _send_reply(self, reply: HttpReply, *, is_head: bool) -> None:
        """Send `reply` as its `transport` describes. A cut reply leaves the message unfinished."""
        transport = reply.transport
        if transport.cut is Cut.BEFORE_HEADERS:
            return
        headers = [("Content-Type", reply.content_type)]
        # RFC 9110 section 8.6: a server must not send Content-Length in a 204 reply.
        if reply.status != 204:
            headers.append(("Content-Length", str(len(reply.body))))
        headers.extend(reply.headers)
        response = h11.Response(status_code=reply.status, headers=headers)
        # A reply to HEAD carries the headers of the GET reply but no body.
        body = b"" if is_head else reply.body
        if transport.cut is None and transport.chunk_size is None:
            # A whole reply goes out in one write: one system call, and one TCP segment for
            # a small reply, where the head and the body sent apart take two of each.
            body_events = [h11.Data(data=body)] if body else []
            await self._send(response, *body_events, h11.EndOfMessage())
            return

        await self._send(response)
        if transport.cut is Cut.IN_BODY:
            body = body[: transport.cut_after]
        await self._send_body(body, transport)
        if transport.cut is None:
            await self._send(h11.EndOfMessage())

    async def _send_body(self, body: bytes, transport: Transport) -> None:
        if not body:
            return
        size = transport.chunk_size or len(body)
        for start in range(0, len(body), size):
            if start and transport.chunk_delay:
                await trio.sleep(transport.chunk_delay)
            await self._send(h11.Data(data=body[start : start + size]))


def _check_content_length(head: h11.Request) -> None:
    """Reject a declared body over the limit before the client sends it."""
    for name, value in head.headers:
        # h11 has already checked that Content-Length is a decimal number.
        if name == b"content-length" and int(value) > MAX_BODY_SIZE:
            raise _BadRequestError(413, f"request body exceeds {MAX_BODY_SIZE} bytes")


def _build_request(head: h11.Request, body: bytes, client_host: str) -> HttpRequest:
    method = head.method.decode("ascii")
    # h11 accepts only visible ASCII characters in the request target.
    target = head.target.decode("ascii")
    if target.startswith("/"):
        raw_path, _, query = target.partition("?")
    else:
        # Absolute form, "http://host/path?query", which a client may send to a proxy.
        parts = urlsplit(target)
        raw_path, query = parts.path or "/", parts.query

    params = _parse_params(query)
    if method == "POST" and _is_form(head.headers):
        params.update(_parse_params(_decode_form_body(body)))

    return HttpRequest(
        method=method,
        path=_decode_path(raw_path),
        params=params,
        headers=tuple(head.headers),
        body=body,
        client_host=client_host,
    )


def _decode_path(raw_path: str) -> str:
    try:
        return unquote(raw_path, errors="strict")
    except UnicodeDecodeError as exc:
        raise _BadRequestError(
            400, f"path is not valid UTF-8 after percent-decoding: {exc}"
        ) from exc


def _parse_params(query: str) -> dict[str, str]:
    """Parse form-encoded parameters. A repeated name keeps its last value."""
    try:
        return dict(parse_qsl(query, keep_blank_values=True, errors="strict"))
    except UnicodeDecodeError as exc:
        raise _BadRequestError(400, f"parameters are not valid UTF-8: {exc}") from exc


def _decode_form_body(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadRequestError(400, f"form body is not valid UTF-8: {exc}") from exc


def _is_form(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            return media_type == _FORM_CONTENT_TYPE.encode()
    return False
