"""Tests for the h11 + trio HTTP server that hosts fake long-poll servers."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from urllib.parse import parse_qsl

import h11
import pytest
import trio
import trustme

import lprecord._httpserver
from lprecord._httpserver import (
    MAX_BODY_SIZE,
    BoundAddress,
    Handler,
    HttpReply,
    HttpRequest,
    _parse_params,
    serve_http,
)

# Virtual seconds that a test waits for the server before it fails; with `autojump_clock`
# a hung server costs no real time.
TEST_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientResponse:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class Client:
    """HTTP/1.1 client on h11, written here so that the server is tested on its own."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    async def send_request(
        self,
        method: str,
        target: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        all_headers = [("Host", "127.0.0.1"), *headers]
        if body:
            all_headers.append(("Content-Length", str(len(body))))
        await self._send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())

    async def read_response(self) -> ClientResponse:
        response: h11.Response | None = None
        body = bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(bytes(await self.stream.receive_some()))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return ClientResponse(
                    status=response.status_code,
                    headers=dict(response.headers),
                    body=bytes(body),
                )
            else:
                raise AssertionError(f"unexpected h11 event {event!r}")

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> ClientResponse:
        """Send one request, read its response and get ready for the next one."""
        await self.send_request(method, target, headers=headers, body=body)
        response = await self.read_response()
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return response

    async def _send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        assert data is not None
        await self.stream.send_all(data)


@asynccontextmanager
async def open_client(
    address: BoundAddress, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Client]:
    stream: trio.abc.Stream = await trio.open_tcp_stream(address.host, address.port)
    if ssl_context is not None:
        stream = trio.SSLStream(stream, ssl_context, server_hostname=address.host)
    async with stream:
        if isinstance(stream, trio.SSLStream):
            await stream.do_handshake()
        yield Client(stream)


@asynccontextmanager
async def running_server(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[BoundAddress]:
    async with trio.open_nursery() as nursery:
        address: BoundAddress = await nursery.start(
            partial(serve_http, handler, ssl_context=ssl_context)
        )
        yield address
        nursery.cancel_scope.cancel()


async def read_until_eof(stream: trio.abc.Stream) -> bytes:
    received = bytearray()
    while data := await stream.receive_some():
        received += data
    return bytes(received)


def set_reset_on_close(stream: trio.SocketStream) -> None:
    """Make closing `stream` send a TCP reset (RST) in place of a normal close (FIN)."""
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class RecordingHandler:
    """Handler that stores every request and returns the same reply to each."""

    def __init__(self, reply: HttpReply | None = None) -> None:
        self.requests: list[HttpRequest] = []
        self.reply = reply or HttpReply(body=b'{"ok":1}')

    async def __call__(self, request: HttpRequest) -> HttpReply:
        self.requests.append(request)
        return self.reply


async def test_bound_address_reports_real_port(autojump_clock: trio.abc.Clock) -> None:
    async with running_server(RecordingHandler()) as address, open_client(address) as client:
        assert address.host == "127.0.0.1"
        assert address.port != 0
        with trio.fail_after(TEST_TIMEOUT):
            response = await client.request("GET", "/")

    assert response.status == 200


async def test_get_with_query(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler(
        HttpReply(status=201, body=b'{"ts":5}', headers=(("X-Extra", "yes"),))
    )
    async with running_server(handler) as address, open_client(address) as client:
        with trio.fail_after(TEST_TIMEOUT):
            response = await client.request(
                "GET", "/nim%201/sub?act=a_check&key=k&wait=25&blank=&word=%D0%BF"
            )

    assert response.status == 201
    assert response.body == b'{"ts":5}'
    assert response.headers[b"content-type"] == b"application/json; charset=utf-8"
    assert response.headers[b"content-length"] == b"8"
    assert response.headers[b"x-extra"] == b"yes"

    [request] = handler.requests
    assert request.method == "GET"
    assert request.path == "/nim 1/sub"
    assert request.params == {"act": "a_check", "key": "k", "wait": "25", "blank": "", "word": "п"}
    assert (b"host", b"127.0.0.1") in request.headers
    assert request.body == b""


async def test_post_form_body_overrides_query(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler()
    body = b"key=from_body&mode=234"
    async with running_server(handler) as address, open_client(address) as client:
        with trio.fail_after(TEST_TIMEOUT):
            response = await client.request(
                "POST",
                "/nim1?act=a_check&key=from_query",
                headers=[("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
                body=body,
            )

    assert response.status == 200
    [request] = handler.requests
    assert request.method == "POST"
    assert request.path == "/nim1"
    assert request.params == {"act": "a_check", "key": "from_body", "mode": "234"}
    assert request.body == body


async def test_post_other_body_not_parsed(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler()
    async with running_server(handler) as address, open_client(address) as client:
        with trio.fail_after(TEST_TIMEOUT):
            await client.request(
                "POST",
                "/nim1?act=a_check",
                headers=[("Content-Type", "application/json")],
                body=b"key=not_a_form",
            )

    [request] = handler.requests
    assert request.params == {"act": "a_check"}
    assert request.body == b"key=not_a_form"


async def test_keep_alive_two_requests(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler()
    async with running_server(handler) as address, open_client(address) as client:
        with trio.fail_after(TEST_TIMEOUT):
            first = await client.request("GET", "/first")
            second = await client.request("GET", "/second")

    assert first.status == 200
    assert second.status == 200
    assert b"connection" not in first.headers
    assert [request.path for request in handler.requests] == ["/first", "/second"]


async def test_pipelined_requests_answered_in_order(autojump_clock: trio.abc.Clock) -> None:
    async def echo_path(request: HttpRequest) -> HttpReply:
        # Hold the first request so that the second one arrives while the handler runs.
        await trio.sleep(1)
        return HttpReply(body=request.path.encode())

    async with running_server(echo_path) as address, open_client(address) as client:
        # h11 sends one request per cycle, so both requests go out as raw bytes, and the
        # client's h11 state then replays each request before reading its response.
        pipelined = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
        with trio.fail_after(TEST_TIMEOUT):
            await client.stream.send_all(pipelined)
            responses = []
            for target in ("/1", "/2"):
                client.h11.send(h11.Request(method="GET", target=target, headers=[("Host", "x")]))
                client.h11.send(h11.EndOfMessage())
                responses.append(await client.read_response())
                client.h11.start_next_cycle()

    assert [response.body for response in responses] == [b"/1", b"/2"]


async def test_connection_close_request_closes(autojump_clock: trio.abc.Clock) -> None:
    async with running_server(RecordingHandler()) as address, open_client(address) as client:
        with trio.fail_after(TEST_TIMEOUT):
            response = await client.request("GET", "/", headers=[("Connection", "close")])
            remaining = await read_until_eof(client.stream)

    assert response.status == 200
    assert response.headers[b"connection"] == b"close"
    assert remaining == b""


async def test_head_reply_has_no_body(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler(HttpReply(body=b"12345"))
    async with running_server(handler) as address, open_client(address) as client:
        with trio.fail_after(TEST_TIMEOUT):
            head = await client.request("HEAD", "/")
            # A body wrongly sent after the HEAD reply would be read as the GET reply.
            get = await client.request("GET", "/")

    assert head.headers[b"content-length"] == b"5"
    assert head.body == b""
    assert get.body == b"12345"


class HourHold:
    """A handler that holds each request for an hour and notes its start and cancellation."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.cancelled = trio.Event()

    async def __call__(self, request: HttpRequest) -> HttpReply:
        self.started.set()
        try:
            await trio.sleep(3600)
        except trio.Cancelled:
            self.cancelled.set()
            raise
        return HttpReply()


@pytest.mark.parametrize("epoll", [True, False], ids=["epoll-watcher", "reading-task"])
@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
async def test_held_handler_cancelled_on_disconnect(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch, reset: bool, epoll: bool
) -> None:
    if not epoll:
        # The path of platforms without epoll: a task per request reads the connection.
        monkeypatch.setattr(lprecord._httpserver, "_HAS_EPOLL", False)
    hold = HourHold()

    async with running_server(hold) as address:
        async with await trio.open_tcp_stream(address.host, address.port) as stream:
            await stream.send_all(b"GET /nim1?act=a_check&wait=25 HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(TEST_TIMEOUT):
                await hold.started.wait()
            if reset:
                set_reset_on_close(stream)

        with trio.fail_after(TEST_TIMEOUT):
            await hold.cancelled.wait()

    assert hold.cancelled.is_set()
    assert trio.current_time() < 3600


async def test_held_handler_cancelled_on_tls_disconnect(
    autojump_clock: trio.abc.Clock,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    hold = HourHold()

    async with running_server(hold, server_ssl_context) as address:
        async with open_client(address, client_ssl_context) as client:
            await client.send_request("GET", "/nim1?act=a_check&wait=25")
            with trio.fail_after(TEST_TIMEOUT):
                await hold.started.wait()

        with trio.fail_after(TEST_TIMEOUT):
            await hold.cancelled.wait()

    assert hold.cancelled.is_set()
    assert trio.current_time() < 3600


async def test_disconnect_cancels_only_its_handler(autojump_clock: trio.abc.Clock) -> None:
    # A connection opened after a hang-up may get the closed socket's file descriptor,
    # and its held handler must not be cancelled by the earlier hang-up.
    started: list[str] = []
    cancelled: list[str] = []

    async def hold(request: HttpRequest) -> HttpReply:
        started.append(request.path)
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            cancelled.append(request.path)
            raise
        return HttpReply(body=request.path.encode())

    async with running_server(hold) as address:
        async with await trio.open_tcp_stream(address.host, address.port) as stream:
            await stream.send_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
            await trio.sleep(1)
        async with (
            open_client(address) as client,
            await trio.open_tcp_stream(address.host, address.port) as other,
        ):
            await other.send_all(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(TEST_TIMEOUT):
                response = await client.request("GET", "/second")

    assert sorted(started) == ["/first", "/other", "/second"]
    assert cancelled[0] == "/first"
    assert "/second" not in cancelled
    assert response.body == b"/second"


async def test_reset_between_requests_is_quiet(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler()
    async with running_server(handler) as address:
        async with await trio.open_tcp_stream(address.host, address.port) as stream:
            client = Client(stream)
            with trio.fail_after(TEST_TIMEOUT):
                await client.request("GET", "/before")
            set_reset_on_close(stream)
        # Let the server read the reset before the server is cancelled.
        await trio.sleep(1)

        async with open_client(address) as client:
            with trio.fail_after(TEST_TIMEOUT):
                response = await client.request("GET", "/after")

    assert response.status == 200
    assert [request.path for request in handler.requests] == ["/before", "/after"]


async def test_malformed_request_gets_400(autojump_clock: trio.abc.Clock) -> None:
    release = trio.Event()

    async def wait_for_release(request: HttpRequest) -> HttpReply:
        await release.wait()
        return HttpReply(body=b"released")

    async with running_server(wait_for_release) as address, open_client(address) as good:
        # This request is held while the other connection sends bytes that are not HTTP.
        await good.send_request("GET", "/held")

        async with await trio.open_tcp_stream(address.host, address.port) as bad:
            with trio.fail_after(TEST_TIMEOUT):
                await bad.send_all(b"NOT AN HTTP REQUEST\r\n\r\n")
                bad_reply = await read_until_eof(bad)

        release.set()
        with trio.fail_after(TEST_TIMEOUT):
            good_response = await good.read_response()

    assert bad_reply.startswith(b"HTTP/1.1 400 ")
    assert good_response.status == 200
    assert good_response.body == b"released"


@pytest.mark.parametrize("target", [b"http://[::1/nim1", b"http://[bad]x/"], ids=["open", "junk"])
async def test_malformed_absolute_target_gets_400(
    autojump_clock: trio.abc.Clock, target: bytes
) -> None:
    handler = RecordingHandler()
    async with running_server(handler) as address:
        async with open_raw_stream(address) as stream:
            with trio.fail_after(TEST_TIMEOUT):
                await stream.send_all(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                reply = await read_until_eof(stream)

        # The server goes on serving other clients.
        async with open_client(address) as client:
            with trio.fail_after(TEST_TIMEOUT):
                after = await client.request("GET", "/after")

    assert reply.startswith(b"HTTP/1.1 400 ")
    assert after.status == 200
    assert [request.path for request in handler.requests] == ["/after"]


async def test_expect_100_continue_gets_interim_reply(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler()
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    async with running_server(handler) as address, open_raw_stream(address) as stream:
        with trio.fail_after(TEST_TIMEOUT):
            await stream.send_all(head)
            interim = await stream.receive_some()
            await stream.send_all(b"abc")
            [reply] = await receive_replies(stream, ["POST"])

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert reply.status == 200
    [request] = handler.requests
    assert request.body == b"abc"


@pytest.mark.parametrize(
    "request_line", [b"PRI * HTTP/2.0", b"GET / HTTP/1.9", b"GET / HTTP/0.9"], ids=str
)
async def test_other_http_version_gets_505(
    autojump_clock: trio.abc.Clock, request_line: bytes
) -> None:
    handler = RecordingHandler()
    async with running_server(handler) as address, open_raw_stream(address) as stream:
        with trio.fail_after(TEST_TIMEOUT):
            await stream.send_all(request_line + b"\r\nHost: x\r\n\r\n")
            reply = await read_until_eof(stream)

    assert reply.startswith(b"HTTP/1.1 505 ")
    assert b"send HTTP/1.1 or HTTP/1.0" in reply
    assert handler.requests == []


async def test_eof_mid_request_is_quiet(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler()
    head = b"POST /nim1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    async with running_server(handler) as address:
        async with await trio.open_tcp_stream(address.host, address.port) as partial_client:
            await partial_client.send_all(head + b"ab")

        async with open_client(address) as client:
            with trio.fail_after(TEST_TIMEOUT):
                response = await client.request("GET", "/after")

    assert response.status == 200
    assert [request.path for request in handler.requests] == ["/after"]


async def test_body_over_limit_gets_413(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler()
    head = b"POST /nim1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_SIZE + 1)
    async with (
        running_server(handler) as address,
        await trio.open_tcp_stream(address.host, address.port) as stream,
    ):
        with trio.fail_after(TEST_TIMEOUT):
            await stream.send_all(head)
            reply = await read_until_eof(stream)

    assert reply.startswith(b"HTTP/1.1 413 ")
    assert handler.requests == []


async def test_chunked_body_over_limit_gets_413(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler()
    head = b"POST /nim1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    # The chunk stops right after its data, so the server has read every byte sent when it
    # closes, and the close cannot turn into a reset that loses the reply.
    chunk = b"%x\r\n" % (MAX_BODY_SIZE + 1) + b"x" * (MAX_BODY_SIZE + 1)
    async with (
        running_server(handler) as address,
        await trio.open_tcp_stream(address.host, address.port) as stream,
    ):
        with trio.fail_after(TEST_TIMEOUT):
            await stream.send_all(head + chunk)
            reply = await read_until_eof(stream)

    assert reply.startswith(b"HTTP/1.1 413 ")
    assert handler.requests == []


async def test_body_at_limit_accepted(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler()
    body = b"x" * MAX_BODY_SIZE
    async with running_server(handler) as address, open_client(address) as client:
        with trio.fail_after(TEST_TIMEOUT):
            response = await client.request("POST", "/upload", body=body)

    assert response.status == 200
    [request] = handler.requests
    assert request.body == body


async def test_invalid_utf8_query_gets_400(autojump_clock: trio.abc.Clock) -> None:
    handler = RecordingHandler()
    async with running_server(handler) as address, open_client(address) as client:
        with trio.fail_after(TEST_TIMEOUT):
            response = await client.request("GET", "/nim1?key=%FF")

    assert response.status == 400
    assert response.headers[b"connection"] == b"close"
    assert handler.requests == []


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """Certificate authority that signs the test server's certificate."""
    return trustme.CA()


@pytest.fixture
def server_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """Server TLS context with a certificate for 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """Client TLS context that trusts the test CA."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_tls_get(
    autojump_clock: trio.abc.Clock,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    handler = RecordingHandler()
    async with running_server(handler, server_ssl_context) as address:
        with trio.fail_after(TEST_TIMEOUT):
            async with open_client(address, client_ssl_context) as client:
                first = await client.request("GET", "/nim1?act=a_check")
                second = await client.request("GET", "/nim1?act=a_check")

    assert first.status == 200
    assert second.status == 200
    assert [request.params for request in handler.requests] == [{"act": "a_check"}] * 2


async def test_tls_failed_handshake_is_quiet(
    autojump_clock: trio.abc.Clock,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    # Trusts some other CA, so it rejects the server's certificate.
    untrusting_context = ssl.create_default_context()
    trustme.CA().configure_trust(untrusting_context)

    async with running_server(RecordingHandler(), server_ssl_context) as address:
        with trio.fail_after(TEST_TIMEOUT):
            async with await trio.open_tcp_stream(address.host, address.port) as plain:
                await plain.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                plain_reply = await read_until_eof(plain)

            with pytest.raises(trio.BrokenResourceError):
                async with open_client(address, untrusting_context):
                    pass

            async with open_client(address, client_ssl_context) as client:
                response = await client.request("GET", "/")

    assert not plain_reply.startswith(b"HTTP/")
    assert response.status == 200


def fail_at_once(request: HttpRequest) -> HttpReply:
    raise ValueError("fake server bug")


async def fail_when_awaited(request: HttpRequest) -> HttpReply:
    raise ValueError("fake server bug")


@pytest.mark.parametrize("fail", [fail_when_awaited, fail_at_once])
async def test_handler_exception_propagates(autojump_clock: trio.abc.Clock, fail: Handler) -> None:
    responses: list[ClientResponse] = []
    expected = pytest.RaisesExc(ValueError, match="fake server bug")
    with pytest.RaisesGroup(expected, flatten_subgroups=True):
        async with running_server(fail) as address, open_client(address) as client:
            await client.send_request("GET", "/nim1")
            # The server's failure cancels this task, so the shield lets it read the 500.
            with trio.CancelScope(shield=True), trio.fail_after(TEST_TIMEOUT):
                responses.append(await client.read_response())
            # The server's error must cancel this wait long before the deadline.
            await trio.sleep(TEST_TIMEOUT)

    [response] = responses
    assert response.status == 500
    assert response.headers[b"connection"] == b"close"


async def test_handler_error_during_shutdown_propagates(autojump_clock: trio.abc.Clock) -> None:
    started = trio.Event()

    async def fail_on_cancel(request: HttpRequest) -> HttpReply:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            raise ValueError("fake server bug during shutdown")

    expected = pytest.RaisesExc(ValueError, match="during shutdown")
    with pytest.RaisesGroup(expected, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(serve_http, fail_on_cancel)
            async with open_client(address) as client:
                await client.send_request("GET", "/nim1")
                with trio.fail_after(TEST_TIMEOUT):
                    await started.wait()

                # Cancel the server while the client stays connected, so the server's
                # attempt to send a 500 reply is itself cancelled.
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await trio.sleep(1)


async def test_invalid_reply_propagates(autojump_clock: trio.abc.Clock) -> None:
    # h11 rejects a body on a 204 reply, which has no body by definition.
    handler = RecordingHandler(HttpReply(status=204, body=b"not allowed"))

    expected = pytest.RaisesExc(h11.LocalProtocolError)
    with pytest.RaisesGroup(expected, flatten_subgroups=True):
        async with running_server(handler) as address, open_client(address) as client:
            await client.send_request("GET", "/")
            # The server's error must cancel this wait long before the deadline.
            await trio.sleep(TEST_TIMEOUT)


@asynccontextmanager
async def open_raw_stream(address: BoundAddress) -> AsyncIterator[trio.SocketStream]:
    async with await trio.open_tcp_stream(address.host, address.port) as stream:
        yield stream


def h11_reply_bytes(request: bytes, reply_body: bytes) -> bytes:
    """Return the bytes that h11 sends for a 200 JSON reply to `request`."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(request)
    head = connection.next_event()
    assert isinstance(head, h11.Request)
    assert isinstance(connection.next_event(), h11.EndOfMessage)
    headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Length", str(len(reply_body))),
    ]
    parts = [connection.send(h11.Response(status_code=200, headers=headers))]
    if head.method != b"HEAD":
        parts.append(connection.send(h11.Data(data=reply_body)))
    parts.append(connection.send(h11.EndOfMessage()))
    return b"".join(part for part in parts if part is not None)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /nim1?act=a_check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"HEAD /nim1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /nim1 HTTP/1.0\r\n\r\n",
        b"GET /nim1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n",
    ],
    ids=["close", "head", "http-1.0", "close-token"],
)
async def test_whole_reply_bytes_match_h11(
    autojump_clock: trio.abc.Clock, request_bytes: bytes
) -> None:
    body = b'{"ts":1,"updates":[]}'
    handler = RecordingHandler(HttpReply(body=body))
    async with running_server(handler) as address, open_raw_stream(address) as stream:
        await stream.send_all(request_bytes)
        with trio.fail_after(TEST_TIMEOUT):
            received = await read_until_eof(stream)

    assert received == h11_reply_bytes(request_bytes, body)


async def test_keep_alive_reply_bytes_match_h11(autojump_clock: trio.abc.Clock) -> None:
    body = b'{"ts":1,"updates":[]}'
    request_bytes = b"GET /nim1?act=a_check HTTP/1.1\r\nHost: x\r\n\r\n"
    expected = h11_reply_bytes(request_bytes, body)
    handler = RecordingHandler(HttpReply(body=body))
    async with running_server(handler) as address, open_raw_stream(address) as stream:
        # Two requests in one write: the second one waits in h11's buffer while the
        # server replies to the first, and must get its reply on the same connection.
        await stream.send_all(request_bytes * 2)
        received = b""
        with trio.fail_after(TEST_TIMEOUT):
            while len(received) < 2 * len(expected):
                received += await stream.receive_some()

    assert received == expected * 2


@pytest.mark.parametrize(
    "query",
    [
        "",
        "act=a_check&key=k&ts=5",
        "a=1&a=2",
        "blank=&flag&&=value&x=1=2",
        "name=%D0%BF&plus=a+b",
        "&&",
    ],
)
def test_parse_params_matches_parse_qsl(query: str) -> None:
    expected = dict(parse_qsl(query, keep_blank_values=True))

    assert _parse_params(query) == expected


def answer_at_once(request: HttpRequest) -> HttpReply:
    """Handler that returns its reply itself rather than an awaitable of it."""
    return HttpReply(body=request.path.encode())


async def test_handler_may_return_reply_at_once(autojump_clock: trio.abc.Clock) -> None:
    async with running_server(answer_at_once) as address, open_client(address) as client:
        with trio.fail_after(TEST_TIMEOUT):
            first = await client.request("GET", "/first")
            second = await client.request("GET", "/second")

    assert (first.status, first.body) == (200, b"/first")
    assert (second.status, second.body) == (200, b"/second")


async def receive_replies(stream: trio.abc.Stream, methods: Sequence[str]) -> list[ClientResponse]:
    """Read the replies to pipelined requests with `methods`, with a client h11 connection."""
    client = Client(stream)
    replies = []
    for method in methods:
        # The client's h11 state must have sent a request before it reads a reply.
        client.h11.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        client.h11.send(h11.EndOfMessage())
        replies.append(await client.read_response())
        client.h11.start_next_cycle()
    return replies


async def echo_request(request: HttpRequest) -> HttpReply:
    return HttpReply(body=f"{request.method} {request.path} {request.body!r}".encode())


@pytest.mark.parametrize(
    "pipelined",
    [
        pytest.param(
            b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
            b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /bare-lf HTTP/1.1\nHost: x\n\n",
            id="h11-then-plain",
        ),
        pytest.param(
            b"POST /plain HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
            b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n",
            id="plain-then-h11",
        ),
        pytest.param(
            b"\r\nPOST /plain HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\n"
            b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n\n\r\n"
            b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n",
            id="empty-lines-between",
        ),
    ],
)
async def test_pipelined_requests_mix_parsers(
    autojump_clock: trio.abc.Clock, pipelined: bytes
) -> None:
    # The server parses requests in the plain form itself and leaves the others to h11.
    # Bytes after a request must reach the next one, whichever parser read the first.
    async with running_server(echo_request) as address, open_raw_stream(address) as stream:
        await stream.send_all(pipelined)
        with trio.fail_after(TEST_TIMEOUT):
            replies = await receive_replies(stream, ["POST", "GET", "GET"])

    bodies = [reply.body for reply in replies]
    if pipelined.startswith(b"POST /chunked"):
        assert bodies == [b"POST /chunked b'abc'", b"GET /plain b''", b"GET /bare-lf b''"]
    else:
        assert bodies == [b"POST /plain b'abc'", b"POST /chunked b'abc'", b"GET /plain b''"]


@pytest.mark.parametrize(
    "pieces",
    [
        (b"GET /split?a=1 HT", b"TP/1.1\r\nHo", b"st: x\r\n\r", b"\n"),
        (b"GET /split?a=1 HTTP/1.1\r\nHost: x\r", b"\n\r", b"\n"),
        (b"GET /split?a=1 HTTP/1.1\r\nHost: x\r\n", b"\r\n"),
        (b"GET /split?a=1 HTTP/1.1\nHost: x\n", b"\n"),
        (b"\r", b"\nGET /split?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ],
    ids=["in-line", "blank-line-in-three", "blank-line-alone", "bare-lf", "empty-line-first"],
)
async def test_head_split_over_writes_is_read_whole(
    autojump_clock: trio.abc.Clock, pieces: tuple[bytes, ...]
) -> None:
    handler = RecordingHandler()
    async with running_server(handler) as address, open_raw_stream(address) as stream:
        with trio.fail_after(TEST_TIMEOUT):
            for piece in pieces:
                await stream.send_all(piece)
                await trio.sleep(1)
            [reply] = await receive_replies(stream, ["GET"])

    assert reply.status == 200
    [request] = handler.requests
    assert (request.path, request.params) == ("/split", {"a": "1"})


async def test_reply_with_own_headers_keeps_connection(autojump_clock: trio.abc.Clock) -> None:
    # h11 frames this reply, after a request that the server parsed without h11.
    handler = RecordingHandler(HttpReply(body=b"{}", headers=(("X-Served-By", "test"),)))
    async with running_server(handler) as address, open_client(address) as client:
        with trio.fail_after(TEST_TIMEOUT):
            first = await client.request("GET", "/first")
            second = await client.request("GET", "/second")

    assert first.headers[b"x-served-by"] == b"test"
    assert (second.status, second.body) == (200, b"{}")
    assert [request.path for request in handler.requests] == ["/first", "/second"]


async def test_bytewise_head_parsed_once_whole(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parsing the whole buffer again for every byte would take time that grows with the
    # square of the head's size, so the server parses only when a line may have ended it.
    calls: list[int] = []

    def counting_parser(data: bytes) -> object:
        calls.append(len(data))
        return read_plain_request(data)

    read_plain_request = lprecord._httpserver._read_plain_request
    monkeypatch.setattr(lprecord._httpserver, "_read_plain_request", counting_parser)
    head = b"GET /drip HTTP/1.1\r\nHost: x\r\n" + b"X-Padding: abcdefgh\r\n" * 50 + b"\r\n"
    handler = RecordingHandler()
    async with running_server(handler) as address, open_raw_stream(address) as stream:
        with trio.fail_after(TEST_TIMEOUT):
            for index in range(len(head)):
                await stream.send_all(head[index : index + 1])
                await trio.sleep(0.01)
            [reply] = await receive_replies(stream, ["GET"])

    assert reply.status == 200
    assert [request.path for request in handler.requests] == ["/drip"]
    # At most one parse for the first bytes and one once the blank line has come.
    assert len(calls) <= 2
