"""HTTP/1.1 server on h11 and trio, used to host fake long-poll servers in tests.

Each accepted connection gets its own task, which reads requests and passes each one to
the handler. A request in the plain form, which curl, http.client and h11 clients send,
is parsed here (`_read_plain_request`). h11 reads every other request, and it frames every
reply that is not a whole body with the usual headers.

The handler returns its reply, or an awaitable of it. A client that hangs up while that
awaitable runs cancels it, because a held long poll must end with its client. On Linux,
for plain TCP, one epoll instance per server notices the hang-ups (`_HangupWatcher`).
Otherwise, and always over TLS, a second task per request reads the connection until the
handler returns.

A `MemoryConnector` passed to `serve_http` opens connections to the server inside the
same trio run, with no socket: each one is a pair of `MemoryStream` ends whose server end
is served by the same connection code as a TCP connection. The client end's close tells
the server end at once, so those connections need neither epoll nor a watcher task.

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
import operator
import re
import select
import socket
import ssl
import struct
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
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
    "MemoryConnector",
    "MemoryStream",
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


_WHOLE_REPLY = Transport()


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpReply:
    """Reply returned by the handler, to which the server adds Content-Type and Content-Length."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    transport: Transport = _WHOLE_REPLY
    error: Exception | None = None
    """An error to raise out of `serve_http` after this reply is sent. The server closes
    the connection and stops, as it does when the handler raises."""


Handler = Callable[[HttpRequest], HttpReply | Awaitable[HttpReply]]
"""A function from a request to its reply, or to an awaitable of it when the reply must wait."""


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
    memory: MemoryConnector | None = None,
    task_status: trio.TaskStatus[BoundAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP/1.1 (HTTPS with `ssl_context`) on `host`:`port` until cancelled.

    Reports the bound address through `task_status`, so `await nursery.start(serve_http, ...)`
    returns it. An exception from `handler`, or any other failure in a connection task, stops
    the server, and this call raises it in an ExceptionGroup, even when it was cancelled.
    While the server runs, `memory.connect()` opens in-memory connections to it as well.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    # NOTE: with a host name that resolves to several addresses and port 0, each listener
    # gets its own port, and only the first listener's address is reported.
    sockname = listeners[0].socket.getsockname()
    task_status.started(BoundAddress(host=sockname[0], port=sockname[1]))

    server = _Server(handler, ssl_context)
    try:
        with server.cancel_scope:
            async with trio.open_nursery() as nursery:
                if server.hangups is not None:
                    nursery.start_soon(server.hangups.run)
                if memory is not None:
                    memory._attach(server, nursery)
                await trio.serve_listeners(server.serve_connection, listeners)
    finally:
        if memory is not None:
            memory._detach()
        if server.hangups is not None:
            server.hangups.close()
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
        # Over TLS a client may end the session with a close_notify alert and keep the TCP
        # connection open, which only reading the stream notices, so TLS connections keep
        # a watcher task.
        self.hangups = _HangupWatcher() if ssl_context is None and _HAS_EPOLL else None

    def record_error(self, error: Exception) -> None:
        """Store `error` for `serve_http` to raise, once per error object."""
        if all(error is not known for known in self.errors):
            self.errors.append(error)

    def stop(self, error: Exception) -> None:
        """Stop the server, which makes `serve_http` raise `error`."""
        self.record_error(error)
        self.cancel_scope.cancel()

    async def serve_connection(self, tcp_stream: trio.SocketStream | MemoryStream) -> None:
        stream: trio.abc.Stream = tcp_stream
        if self.ssl_context is not None:
            # HTTP frames its own messages, so a client that closes without a TLS
            # close_notify has lost no data, and the server need not wait for one on close.
            stream = trio.SSLStream(
                tcp_stream, self.ssl_context, server_side=True, https_compatible=True
            )

        if isinstance(tcp_stream, MemoryStream):
            peer = _MEMORY_PEER
            client_host = _MEMORY_CLIENT_HOST
        else:
            peer = _format_peer(tcp_stream)
            client_host = peer.rpartition(":")[0] if ":" in peer else ""
        async with stream:
            try:
                if isinstance(stream, trio.SSLStream):
                    await _do_handshake(stream)
                # With `_HangupWatcher`, a client that hangs up while the handler runs
                # cancels this scope, which ends the connection. One scope per connection,
                # rather than one per request, keeps its cost off each request.
                with trio.CancelScope() as scope:
                    connection = _Connection(stream, tcp_stream, self, peer, client_host, scope)
                    await connection.serve()
            except _ClientGoneError as exc:
                # A client that goes away is routine and ends only its own connection.
                logger.debug("connection from %s ended: %s", peer, exc)
            except Exception as exc:
                # A failure in any connection stops the whole server.
                self.stop(exc)


# An in-memory client gets the loopback address, because the fake servers bind long poll
# keys to the client's IP address, and TCP clients of a local server have this one.
_MEMORY_CLIENT_HOST = "127.0.0.1"
_MEMORY_PEER = "an in-memory client"

_HAS_EPOLL = hasattr(select, "epoll") and hasattr(select, "EPOLLRDHUP")


class _HangupWatcher:
    """Cancels a running handler when its client closes or resets the TCP connection (Linux).

    A connection registers its socket while its handler runs. The epoll instance reports
    EPOLLRDHUP when the client's FIN arrives, and EPOLLHUP or EPOLLERR after a reset. It is
    not asked for EPOLLIN, so a pipelined request stays unread in the socket until the
    handler returns. EPOLLONESHOT reports each registration once, so a closed connection
    whose handler is still unwinding does not keep the watcher's `run` busy.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._connections: dict[int, _Connection] = {}

    def watch(self, fd: int, connection: _Connection) -> None:
        """Report a hang-up on socket `fd` to `connection` until `unwatch(fd)`."""
        # A FIN or a reset that arrived before this call is reported too, because
        # epoll checks the socket's state when the socket is registered.
        self._epoll.register(fd, select.EPOLLRDHUP | select.EPOLLONESHOT)
        self._connections[fd] = connection

    def unwatch(self, fd: int) -> None:
        del self._connections[fd]
        self._epoll.unregister(fd)

    async def run(self) -> None:
        """Pass hang-ups to their connections until cancelled."""
        while True:
            await trio.lowlevel.wait_readable(self._epoll)
            for fd, _events in self._epoll.poll(0):
                connection = self._connections.get(fd)
                if connection is not None:
                    connection.hang_up()

    def close(self) -> None:
        self._epoll.close()


class MemoryConnector:
    """Opener of in-memory connections to the `serve_http` call that it is passed to.

    Works only inside that call's trio run and while the server runs.
    """

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def serving(self) -> bool:
        """Whether a `serve_http` call with this connector is running."""
        return self._server is not None

    def connect(self) -> MemoryStream:
        """Open a connection to the server and return the client's end of it.

        The server end is served in the server's nursery, like a TCP connection. Raises
        ConnectionRefusedError when no server runs, as a TCP connect to a closed port does.
        """
        if self._server is None or self._nursery is None:
            raise ConnectionRefusedError("the HTTP server is not running")
        client_end, server_end = MemoryStream.pair()
        self._nursery.start_soon(self._server.serve_connection, server_end)
        return client_end

    def _attach(self, server: _Server, nursery: trio.Nursery) -> None:
        if self._server is not None:
            raise RuntimeError("this MemoryConnector already serves another serve_http call")
        self._server = server
        self._nursery = nursery

    def _detach(self) -> None:
        self._server = None
        self._nursery = None


class _MemoryPipe:
    """One direction of an in-memory connection: the bytes sent and not yet received."""

    __slots__ = ("data", "on_writer_close", "reader_closed", "receiver", "reset", "writer_closed")

    def __init__(self) -> None:
        self.data = bytearray()
        self.receiver: trio.lowlevel.Task | None = None
        self.writer_closed = False
        self.reader_closed = False
        self.reset = False
        self.on_writer_close: Callable[[], object] | None = None

    def wake_receiver(self) -> None:
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            trio.lowlevel.reschedule(receiver)

    def abort_receive(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self.receiver = None
        return trio.lowlevel.Abort.SUCCEEDED


class MemoryStream(trio.abc.Stream):
    """One end of an in-memory, reliable, ordered byte stream between two tasks of one trio run.

    Compared with `trio.testing.memory_stream_pair`, sending never waits (the buffer is
    unbounded) and there is no pump: `send_all` appends to the peer's buffer and wakes the
    peer's waiting `receive_some`. Closing an end behaves as a TCP close does: the peer's
    `receive_some` returns b"" once the buffer is drained, and the peer's `send_all` raises
    BrokenResourceError. After `reset_on_close`, the peer's `receive_some` raises
    BrokenResourceError instead of returning b"", like a read after a TCP reset.
    """

    __slots__ = ("_closed", "_incoming", "_outgoing", "_reset_on_close", "_sending")

    def __init__(self, incoming: _MemoryPipe, outgoing: _MemoryPipe) -> None:
        self._incoming = incoming
        self._outgoing = outgoing
        self._closed = False
        self._reset_on_close = False
        # Set while a send_all or wait_send_all_might_not_block waits at its checkpoint,
        # because trio's Stream contract makes a second concurrent call raise.
        self._sending = False

    @classmethod
    def pair(cls) -> tuple[MemoryStream, MemoryStream]:
        """Return the two connected ends of a new stream."""
        forward = _MemoryPipe()
        backward = _MemoryPipe()
        return cls(backward, forward), cls(forward, backward)

    def watch_peer_close(self, callback: Callable[[], object] | None) -> None:
        """Call `callback` once when the peer closes its end, or at once if it already has.

        None stops watching. Only one callback is kept.
        """
        if callback is not None and self._incoming.writer_closed:
            callback()
            return
        self._incoming.on_writer_close = callback

    def reset_on_close(self) -> None:
        """Make the close of this end look like a TCP reset to the peer."""
        self._reset_on_close = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_send()
        outgoing = self._outgoing
        broken = outgoing.reader_closed
        if data and not broken:
            outgoing.data += data
            outgoing.wake_receiver()
        await self._send_checkpoint()
        if broken:
            raise trio.BrokenResourceError("the peer closed the memory stream")

    async def wait_send_all_might_not_block(self) -> None:
        self._check_send()
        await self._send_checkpoint()

    def _check_send(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("this memory stream was closed")

    async def _send_checkpoint(self) -> None:
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None and operator.index(max_bytes) < 1:
            raise ValueError(f"max_bytes={max_bytes} must be at least 1")
        if self._closed:
            raise trio.ClosedResourceError("this memory stream was closed")
        incoming = self._incoming
        if incoming.receiver is not None:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        if incoming.data or incoming.writer_closed:
            await trio.lowlevel.checkpoint()
        else:
            # Woken by data, by the peer's close or by the close of this end.
            incoming.receiver = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(incoming.abort_receive)
        if self._closed:
            raise trio.ClosedResourceError("this memory stream was closed while receiving")

        data = incoming.data
        if data:
            size = len(data) if max_bytes is None else min(max_bytes, len(data))
            chunk = bytes(data[:size])
            del data[:size]
            return chunk
        if incoming.reset:
            raise trio.BrokenResourceError("the peer reset the memory stream")
        return b""

    async def aclose(self) -> None:
        self._close()
        await trio.lowlevel.checkpoint()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A receive of this end that is waiting now raises ClosedResourceError.
        self._incoming.wake_receiver()
        self._incoming.reader_closed = True
        self._incoming.data.clear()

        outgoing = self._outgoing
        outgoing.writer_closed = True
        outgoing.reset = self._reset_on_close
        outgoing.wake_receiver()
        callback = outgoing.on_writer_close
        if callback is not None:
            outgoing.on_writer_close = None
            callback()


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

    __slots__ = (
        "_client_gone",
        "_client_host",
        "_h11",
        "_handler_running",
        "_keep_alive",
        "_memory",
        "_peer",
        "_pending",
        "_request_bytes",
        "_scope",
        "_server",
        "_stream",
        "_tcp_stream",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        tcp_stream: trio.SocketStream | MemoryStream,
        server: _Server,
        peer: str,
        client_host: str,
        scope: trio.CancelScope,
    ) -> None:
        self._stream = stream
        self._tcp_stream = tcp_stream
        # An in-memory connection without TLS reports the client's close itself. Over TLS
        # the watcher task reads the stream instead, for the reason given in `_Server`.
        self._memory = (
            tcp_stream if isinstance(tcp_stream, MemoryStream) and stream is tcp_stream else None
        )
        self._server = server
        self._peer = peer
        self._client_host = client_host
        # The h11 connection of the current request, when h11 read it or frames its reply.
        self._h11: h11.Connection | None = None
        # Bytes received and not yet parsed, while no h11 connection buffers them.
        self._pending = b""
        # The current request as received, when `_read_plain_request` parsed it.
        self._request_bytes = b""
        # Keep-alive after the reply: True or False, or None when h11 must decide because
        # the client proposed a protocol switch.
        self._keep_alive: bool | None = True
        self._client_gone = False
        self._handler_running = False
        self._scope = scope

    def hang_up(self) -> None:
        """Note that the client has closed or reset the connection, and end the connection.

        `_HangupWatcher` and `MemoryStream` call this only while the handler runs, which
        the cancellation then interrupts.
        """
        self._client_gone = True
        self._scope.cancel()

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
            is_head = request.method == "HEAD"
            if reply.error is not None:
                await self._send_then_stop(reply, reply.error, is_head=is_head)
                return
            head = self._plain_reply_head(reply)
            if head is not None:
                # A reply that h11 would frame with no more than these headers is written
                # here, as h11 would write it.
                await self._send_bytes(head if is_head else head + reply.body)
                if not self._keep_alive:
                    return
                self._start_next_request()
                continue
            await self._send_reply(reply, is_head=is_head)

            if reply.transport.cut is not None:
                await self._end_cut_connection(reset=reply.transport.reset)
                return
            connection = self._h11_connection()
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return
            self._start_next_request()

    def _start_next_request(self) -> None:
        """Forget the finished request, keeping the bytes received after it."""
        connection = self._h11
        if connection is not None:
            # h11 received these bytes before anything a watcher task added to `_pending`.
            self._pending = bytes(connection.trailing_data[0]) + self._pending
            self._h11 = None
        self._request_bytes = b""
        self._keep_alive = True

    async def _read_request(self) -> HttpRequest | None:
        """Read one whole request, or return None when the client closes between requests."""
        data = self._pending
        parse = bool(data)
        while True:
            if parse and data[:1] in _LINE_ENDS:
                # RFC 2616 section 4.1: a server should ignore empty lines where a request
                # line is expected, as some clients send one after a body. h11 rejects them.
                empty = _EMPTY_LINES.match(data)
                if empty is not None:
                    data = data[empty.end() :]
                # A lone CR may be the first half of an empty line.
                parse = data not in (b"", b"\r")
            if parse:
                plain = _read_plain_request(data)
                if isinstance(plain, _PlainRequest):
                    self._pending = data[plain.size :]
                    self._request_bytes = data[: plain.size]
                    self._keep_alive = plain.keep_alive
                    return _build_request(
                        plain.method, plain.target, plain.headers, plain.body, self._client_host
                    )
                if plain is _Unparsed.FOR_H11:
                    break
            received = await self._receive()
            if not received:
                if not data:
                    return None
                break
            seen = len(data)
            data += received
            # A head found incomplete can only end in the bytes just received, where a blank
            # line of up to 3 bytes may start 2 bytes earlier. Parsing again only then keeps
            # a head sent a byte at a time from costing time that grows with its square.
            parse = (
                seen == 0
                or len(data) > _MAX_INCOMPLETE_HEAD
                or _HEAD_END.search(data, max(0, seen - 2)) is not None
            )

        self._pending = b""
        connection = h11.Connection(h11.SERVER)
        connection.receive_data(data)
        if self._client_gone:
            connection.receive_data(b"")
        self._h11 = connection
        return await self._read_request_with_h11(connection)

    async def _read_request_with_h11(self, connection: h11.Connection) -> HttpRequest | None:
        """Read a request with h11, from the bytes already on `connection` and the stream."""
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = await self._next_event(connection)
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                head = event
                if head.http_version not in _HTTP_VERSIONS:
                    # h11 reads a request line of any HTTP/x.y, but this server speaks only 1.0
                    # and 1.1.
                    version = head.http_version.decode("ascii")
                    raise _BadRequestError(
                        505, f"HTTP/{version} is not supported; send HTTP/1.1 or HTTP/1.0"
                    )
                _check_content_length(head)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_SIZE:
                    raise _BadRequestError(413, f"request body exceeds {MAX_BODY_SIZE} bytes")
            elif isinstance(event, h11.EndOfMessage):
                # h11 always sends Request before EndOfMessage.
                assert head is not None
                their_state = connection.their_state
                self._keep_alive = (
                    True
                    if their_state is h11.DONE
                    else False
                    if their_state is h11.MUST_CLOSE
                    else None
                )
                return _build_request(
                    head.method, head.target, tuple(head.headers), bytes(body), self._client_host
                )

    async def _next_event(self, connection: h11.Connection) -> h11.Event:
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                raise _BadRequestError(exc.error_status_hint, str(exc)) from exc
            if event is h11.NEED_DATA:
                if connection.they_are_waiting_for_100_continue:
                    # The client sent "Expect: 100-continue" and holds back the body until
                    # this interim reply comes or its own timeout ends (curl waited 1 s).
                    await self._send(
                        h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                    )
                connection.receive_data(await self._receive())
                continue
            # PAUSED never appears here: the connection is new for each request.
            assert not isinstance(event, type), event
            return event

    def _h11_connection(self) -> h11.Connection:
        """Return the h11 connection of the current request, in the state that reading it left.

        A request that `_read_plain_request` parsed is first given to a new h11 connection,
        so that a reply which needs h11 (a cut or dribbled body, headers of the handler's
        own, an error) finds h11 ready to send it.
        """
        connection = self._h11
        if connection is None:
            connection = h11.Connection(h11.SERVER)
            connection.receive_data(self._request_bytes)
            event = connection.next_event()
            while event is not h11.NEED_DATA and not isinstance(event, h11.EndOfMessage):
                event = connection.next_event()
            # The parser tests check that h11 reads every plain request in full.
            assert isinstance(event, h11.EndOfMessage), "h11 did not read a whole request"
            self._h11 = connection
        return connection

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
        connection = self._h11_connection()
        chunks = []
        for event in events:
            data = connection.send(event)
            # h11 returns None only for ConnectionClosed, which this server never sends.
            assert data is not None
            chunks.append(data)
        await self._send_bytes(b"".join(chunks))

    async def _send_bytes(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except trio.BrokenResourceError as exc:
            raise _ClientGoneError(f"send failed: {exc}") from exc

    def _plain_reply_head(self, reply: HttpReply) -> bytes | None:
        """Return the head that h11 would send for `reply`, or None if h11 must send it.

        Covers a whole reply with a Content-Length body and no headers of the handler's
        own, after a request that asked for no protocol switch. Its head is the status
        line, Content-Type and Content-Length, and "Connection: close" when the client
        disabled keep-alive, in h11's order and spelling.
        """
        transport = reply.transport
        keep_alive = self._keep_alive
        if (
            transport.cut is not None
            or transport.chunk_size is not None
            or reply.headers
            or reply.status in _STATUSES_WITHOUT_BODY
            or not 200 <= reply.status <= 999
            or keep_alive is None
        ):
            return None
        # A client that sent "Connection: close" or spoke HTTP/1.0 gets this header from
        # h11, which then ends the connection after the reply.
        closing = b"" if keep_alive else b"Connection: close\r\n"
        content_type = _checked_content_type(reply.content_type)
        if content_type is None:
            return None
        # h11 sends no reason phrase: the space after the status code ends the status line.
        return b"HTTP/1.1 %d \r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            reply.status,
            content_type,
            len(reply.body),
            closing,
        )

    async def _call_handler(self, request: HttpRequest) -> HttpReply | None:
        """Run the handler, cancelling it if the client closes the connection meanwhile.

        Returns None when the client has gone, unless the reply carries an error that must
        still stop the server. Re-raises the handler's exception after replying 500.
        """
        reply: HttpReply | None = None
        error: Exception | None = None
        try:
            pending = self._server.handler(request)
        except Exception as exc:
            self._server.record_error(exc)
            await self._reply_500(exc)
        hangups = self._server.hangups
        memory = self._memory
        if isinstance(pending, HttpReply):
            # A reply returned at once had no wait that a hang-up could cut short.
            reply = pending
        elif hangups is None and memory is None:
            reply, error = await self._await_with_watcher_task(pending)
        else:
            # The handler runs in this task, and `hangups` watches the socket meanwhile, or
            # the memory stream reports its client's close. A hang-up cancels the
            # connection's scope, so the Cancelled exception ends `serve` too. This path is
            # written out here rather than in a method of its own, because each coroutine
            # frame stays in memory while a poll is held.
            fd = -1
            if memory is not None:
                memory.watch_peer_close(self.hang_up)
            else:
                assert hangups is not None
                assert isinstance(self._tcp_stream, trio.SocketStream)
                fd = self._tcp_stream.socket.fileno()
                hangups.watch(fd, self)
            try:
                reply = await pending
            except Exception as exc:
                # Stored at once: the awaits after this call may be cancelled before the
                # error reaches `serve_connection`.
                self._server.record_error(exc)
                error = exc
            finally:
                if memory is not None:
                    memory.watch_peer_close(None)
                else:
                    assert hangups is not None
                    hangups.unwatch(fd)

        if error is not None:
            await self._reply_500(error)
        if self._client_gone and (reply is None or reply.error is None):
            return None
        return reply

    async def _await_with_watcher_task(
        self, pending: Awaitable[HttpReply]
    ) -> tuple[HttpReply | None, Exception | None]:
        """Await the handler's reply while a second task reads the stream to notice a hang-up."""
        reply: HttpReply | None = None
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            self._handler_running = True
            nursery.start_soon(self._watch_for_close, nursery.cancel_scope)
            try:
                reply = await pending
            except Exception as exc:
                # Stored at once: the awaits after this call may be cancelled before the
                # error reaches `serve_connection`.
                self._server.record_error(exc)
                error = exc
            self._handler_running = False
            nursery.cancel_scope.cancel()
        return reply, error

    async def _watch_for_close(self, handler_scope: trio.CancelScope) -> None:
        """Cancel `handler_scope` once the client closes or resets the connection."""
        # The task first runs when the handler blocks, or else once the handler has
        # returned. In the second case there is nothing to watch, and returning before the
        # first read spares the Cancelled exception that the cancelled read would raise.
        if not self._handler_running:
            return
        # A pipelined next request may arrive meanwhile. It waits in `_pending`, and
        # reading stops once that reaches the body limit.
        while len(self._pending) <= MAX_BODY_SIZE:
            try:
                data = await self._receive()
            except _ClientGoneError:
                self._client_gone = True
            if self._client_gone:
                handler_scope.cancel()
                return
            self._pending += data

    async def _send_then_stop(self, reply: HttpReply, error: Exception, *, is_head: bool) -> None:
        """Send `reply` if the client is still there, then stop the server with `error`."""
        # Stored before sending, because a failed send must not lose the error.
        self._server.record_error(error)
        if not self._client_gone and self._h11_connection().our_state is h11.SEND_RESPONSE:
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
        transport_stream = self._tcp_stream
        if reset and isinstance(transport_stream, MemoryStream):
            transport_stream.reset_on_close()
        elif reset and isinstance(transport_stream, trio.SocketStream):
            # SO_LINGER on with a zero timeout makes close() discard unsent data and send RST.
            linger = struct.pack("ii", 1, 0)
            with contextlib.suppress(OSError):
                transport_stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        # An SSLStream made with https_compatible=True closes its socket without sending
        # a TLS close_notify, so the client sees only the TCP close or reset.
        await self._stream.aclose()

    async def _reply_500(self, error: Exception) -> NoReturn:
        """Tell the client that the handler failed, then re-raise the handler's exception."""
        if not self._client_gone and self._h11_connection().our_state is h11.SEND_RESPONSE:
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
        if self._client_gone or self._h11_connection().our_state not in (
            h11.IDLE,
            h11.SEND_RESPONSE,
        ):
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


# The plain form of a request head, which `_read_plain_request` parses. It is a request
# line of HTTP/1.0 or HTTP/1.1, then header fields in the grammar of RFC 7230 section 3.2,
# which h11 follows too. Every line ends with CRLF, no line is folded, and no value has
# control characters. curl, http.client and h11 clients send this form. h11 reads every
# head in another form, and it accepts a superset of this one (bare LF line ends, folded
# lines, control characters), so a head in this form means the same to both parsers.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_VALUE = rb"[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*"
_PLAIN_HEAD = re.compile(
    rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.([01])\r\n"
    rb"((?:" + _TOKEN + rb":[ \t]*(?:" + _FIELD_VALUE + rb")?[ \t]*\r\n)*)\r\n"
)
_PLAIN_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _FIELD_VALUE + rb")?[ \t]*\r\n")
_LINE_ENDS = (b"\r", b"\n")
_EMPTY_LINES = re.compile(rb"(?:\r?\n)+")
# h11 finds the end of a head at the first blank line, which may end with a bare LF.
_HEAD_END = re.compile(rb"\n\r?\n")
# h11's default limit on a head still incomplete, beyond which h11 reports error 431.
_MAX_INCOMPLETE_HEAD = 16 * 1024
# h11 rejects a Content-Length with more digits than this.
_MAX_LENGTH_DIGITS = 20


class _Unparsed(enum.Enum):
    """Reason that `_read_plain_request` returned no request."""

    #: The head is not complete yet: read more bytes.
    NEED_DATA = "need data"
    #: The request is not in the plain form, or its body is not all here: h11 reads it.
    FOR_H11 = "for h11"


@dataclass(frozen=True, slots=True)
class _PlainRequest:
    """A whole request as `_read_plain_request` parsed it, in the form h11 reports it."""

    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    """Names lowercased, values without the whitespace around them."""
    body: bytes
    keep_alive: bool
    size: int
    """Bytes of `data` that the request took."""


def _read_plain_request(data: bytes) -> _PlainRequest | _Unparsed:
    """Parse the request at the start of `data` when it is whole and in the plain form.

    Some requests are left to h11: those that h11 rejects, and those that it frames in a
    way of its own (chunked, an upgrade, CONNECT, an odd Content-Length). h11 then reads
    the same bytes and reports the error or the request.
    """
    match = _PLAIN_HEAD.match(data)
    if match is None:
        # h11 rejects a head whose first byte is a control character or a space at once,
        # and one that has grown too long without ending.
        if data[0] < 0x21 or _HEAD_END.search(data) or len(data) > _MAX_INCOMPLETE_HEAD:
            return _Unparsed.FOR_H11
        return _Unparsed.NEED_DATA
    method, target, minor, fields = match.groups()
    if method == b"CONNECT":
        return _Unparsed.FOR_H11
    headers = tuple([(name.lower(), value) for name, value in _PLAIN_FIELD.findall(fields)])
    keep_alive = minor == b"1"
    hosts = 0
    length = b"0"
    seen_length = False
    for name, value in headers:
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            if seen_length or not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
                return _Unparsed.FOR_H11
            length = value
            seen_length = True
        elif name == b"connection":
            if keep_alive and b"close" in [token.strip() for token in value.lower().split(b",")]:
                keep_alive = False
        elif name == b"transfer-encoding" or name == b"upgrade":
            return _Unparsed.FOR_H11
    # h11 rejects an HTTP/1.1 request without Host and any request with two, as RFC 7230
    # section 5.4 requires.
    if hosts > 1 or (hosts == 0 and minor == b"1"):
        return _Unparsed.FOR_H11
    body_length = int(length)
    head_end = match.end()
    size = head_end + body_length
    if body_length > MAX_BODY_SIZE or len(data) < size:
        return _Unparsed.FOR_H11
    return _PlainRequest(
        method=method,
        target=target,
        headers=headers,
        body=data[head_end:size],
        keep_alive=keep_alive,
        size=size,
    )


def _check_content_length(head: h11.Request) -> None:
    """Reject a declared body over the limit before the client sends it."""
    for name, value in head.headers:
        # h11 has already checked that Content-Length is a decimal number.
        if name == b"content-length" and int(value) > MAX_BODY_SIZE:
            raise _BadRequestError(413, f"request body exceeds {MAX_BODY_SIZE} bytes")


def _build_request(
    raw_method: bytes,
    raw_target: bytes,
    headers: tuple[tuple[bytes, bytes], ...],
    body: bytes,
    client_host: str,
) -> HttpRequest:
    method = raw_method.decode("ascii")
    # Both parsers accept only visible ASCII characters in the request target.
    target = raw_target.decode("ascii")
    if target.startswith("/"):
        raw_path, _, query = target.partition("?")
    else:
        # Absolute form, "http://host/path?query", which a client may send to a proxy.
        try:
            parts = urlsplit(target)
        except ValueError as exc:
            # urlsplit rejects a malformed bracketed host, as in "http://[::1/".
            raise _BadRequestError(400, f"invalid request target {target!r}: {exc}") from exc
        raw_path, query = parts.path or "/", parts.query

    params = _parse_params(query)
    if method == "POST" and _is_form(headers):
        params.update(_parse_params(_decode_form_body(body)))

    return HttpRequest(
        method=method,
        path=_decode_path(raw_path),
        params=params,
        headers=headers,
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
    if "%" not in query and "+" not in query:
        # Nothing to decode, so splitting gives what parse_qsl would: empty fields are
        # skipped, and a field without "=" gets an empty value.
        params: dict[str, str] = {}
        for pair in query.split("&"):
            if pair:
                name, _, value = pair.partition("=")
                # Names repeat from request to request, so a held request keeps a shared
                # copy of each name rather than one of its own.
                params[sys.intern(name)] = value
        return params
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


_HTTP_VERSIONS = frozenset({b"1.0", b"1.1"})
# RFC 9110 sections 15.3.5 and 15.4.5: 204 and 304 replies carry no body and need h11's
# framing rules. A 1xx status is no final reply, and h11 rejects it in a Response.
_STATUSES_WITHOUT_BODY = frozenset({204, 304})
_checked_content_types: dict[str, bytes | None] = {}


def _checked_content_type(content_type: str) -> bytes | None:
    """Return `content_type` as header bytes if h11 accepts it as a field value, else None."""
    try:
        return _checked_content_types[content_type]
    except KeyError:
        pass
    checked: bytes | None
    try:
        # h11 validates a header value when it builds an event. The value is checked
        # here once and kept, because a server sends few distinct content types.
        h11.Response(status_code=200, headers=[("Content-Type", content_type)])
        checked = content_type.encode("ascii")
    except (h11.LocalProtocolError, UnicodeEncodeError):
        checked = None
    if len(_checked_content_types) < _MAX_CHECKED_CONTENT_TYPES:
        _checked_content_types[content_type] = checked
    return checked


_MAX_CHECKED_CONTENT_TYPES = 64
