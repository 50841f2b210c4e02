"""Tests for the HTTP/1.1 client against real servers on 127.0.0.1 (h11 or raw bytes)."""

from __future__ import annotations

import logging
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import h11
import pytest
import trio
import trustme

from lptrio._http import (
    DEFAULT_USER_AGENT,
    HttpClient,
    TransportError,
    TransportErrorKind,
    default_ssl_context,
)

SECRET_QUERY = "?access_token=SECRET_TOKEN&key=SECRET_KEY&ts=10"

Handler = Callable[[trio.SocketStream], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    method: bytes
    target: bytes
    headers: dict[bytes, bytes]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    chunk_size: int | None = None  # send the body chunked, in pieces of this size
    delay: float = 0.0  # seconds to wait before replying


def encode(protocol: h11.Connection, event: h11.Event) -> bytes:
    data = protocol.send(event)
    assert data is not None
    return data


async def next_server_event(stream: trio.abc.Stream, protocol: h11.Connection) -> object:
    while True:
        event = protocol.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        protocol.receive_data(bytes(data))


async def read_request(stream: trio.abc.Stream, protocol: h11.Connection) -> Received | None:
    """Read one whole request, or return None when the client closed the connection."""
    event = await next_server_event(stream, protocol)
    if isinstance(event, h11.ConnectionClosed):
        return None
    assert isinstance(event, h11.Request)

    body = b""
    while isinstance(data := await next_server_event(stream, protocol), h11.Data):
        body += data.data
    assert isinstance(data, h11.EndOfMessage)
    return Received(
        method=event.method, target=event.target, headers=dict(event.headers), body=body
    )


async def send_reply(stream: trio.abc.Stream, protocol: h11.Connection, reply: Reply) -> None:
    await trio.sleep(reply.delay)
    headers = list(reply.headers)
    if reply.chunk_size is None:
        headers.append(("Content-Length", str(len(reply.body))))
        chunks = [reply.body]
    else:
        headers.append(("Transfer-Encoding", "chunked"))
        size = reply.chunk_size
        chunks = [reply.body[i : i + size] for i in range(0, len(reply.body), size)]

    data = encode(protocol, h11.Response(status_code=reply.status, headers=headers))
    for chunk in chunks:
        data += encode(protocol, h11.Data(data=chunk))
    data += encode(protocol, h11.EndOfMessage())
    await stream.send_all(data)


async def send_reset(stream: trio.SocketStream) -> None:
    """Close with a TCP RST: SO_LINGER with a zero timeout discards the connection."""
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


class KeepAliveServer:
    """h11 server that replies to every request on a connection until the client closes it."""

    def __init__(self, reply: Callable[[Received], Reply] = lambda request: Reply()) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[Received] = []
        self.closed_by_client = trio.Event()

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        protocol = h11.Connection(our_role=h11.SERVER)
        try:
            while (request := await read_request(stream, protocol)) is not None:
                self.requests.append(request)
                await send_reply(stream, protocol, self.reply(request))
                if protocol.our_state is h11.MUST_CLOSE:
                    return
                protocol.start_next_cycle()
        except trio.BrokenResourceError:
            pass  # the client dropped the connection while we were sending
        self.closed_by_client.set()


async def start_server(
    nursery: trio.Nursery,
    handler: Callable[[trio.SocketStream], Awaitable[None]],
) -> str:
    """Start a plain HTTP server and return its base URL."""
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def start_tls_server(
    nursery: trio.Nursery,
    handler: Callable[[trio.SSLStream[trio.SocketStream]], Awaitable[None]],
    ssl_context: ssl.SSLContext,
) -> str:
    """Start an HTTPS server and return its base URL."""
    serve = partial(
        trio.serve_ssl_over_tcp,
        handler,
        0,
        ssl_context,
        host="127.0.0.1",
        https_compatible=True,
    )
    listeners = await nursery.start(serve)
    port = listeners[0].transport_listener.socket.getsockname()[1]
    return f"https://127.0.0.1:{port}"


async def closed_port_url() -> str:
    """Return a URL on 127.0.0.1 where nothing listens."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    for listener in listeners:
        await listener.aclose()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    """HttpClient that is closed after the test."""
    async with HttpClient() as http_client:
        yield http_client


@pytest.fixture
def ca() -> trustme.CA:
    """Test certificate authority."""
    return trustme.CA()


@pytest.fixture
def server_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """Server context with a certificate for 127.0.0.1 signed by `ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """Client context that trusts `ca`."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# Keep-alive and the connection pool


async def test_keep_alive_reuses_one_connection(nursery: trio.Nursery, client: HttpClient) -> None:
    server = KeepAliveServer(lambda request: Reply(body=request.target))
    base = await start_server(nursery, server.handle)

    for number in range(3):
        response = await client.request("GET", f"{base}/poll/{number}", timeout=5)
        assert response.status == 200
        assert response.body == f"/poll/{number}".encode()

    assert server.connections == 1
    assert len(server.requests) == 3


async def test_concurrent_requests_take_turns(nursery: trio.Nursery, client: HttpClient) -> None:
    server = KeepAliveServer(lambda request: Reply(body=request.target, delay=0.05))
    base = await start_server(nursery, server.handle)
    bodies: list[bytes] = []

    async def fetch(path: str) -> None:
        response = await client.request("GET", f"{base}{path}", timeout=5)
        bodies.append(response.body)

    async with trio.open_nursery() as requests:
        requests.start_soon(fetch, "/one")
        requests.start_soon(fetch, "/two")

    assert sorted(bodies) == [b"/one", b"/two"]
    # The second request waits for the first and then reuses its connection.
    assert server.connections == 1


async def test_connection_close_response_not_pooled(
    nursery: trio.Nursery, client: HttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lptrio")
    server = KeepAliveServer(lambda request: Reply(headers=(("Connection", "close"),)))
    base = await start_server(nursery, server.handle)

    for _ in range(2):
        response = await client.request("GET", f"{base}/", timeout=5)
        assert response.status == 200

    assert server.connections == 2
    # A pooled connection would have failed and been resent, which logs.
    assert caplog.records == []


async def test_aclose_closes_pooled_connection(nursery: trio.Nursery) -> None:
    server = KeepAliveServer()
    base = await start_server(nursery, server.handle)
    http_client = HttpClient()
    await http_client.request("GET", f"{base}/", timeout=5)

    await http_client.aclose()

    with trio.fail_after(5):
        await server.closed_by_client.wait()
    with pytest.raises(trio.ClosedResourceError):
        await http_client.request("GET", f"{base}/", timeout=5)


# Stale pooled connections


@pytest.mark.parametrize("close", ["eof", "reset"])
async def test_idle_close_resends_on_new_connection(
    nursery: trio.Nursery,
    client: HttpClient,
    caplog: pytest.LogCaptureFixture,
    close: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="lptrio")
    connections = 0
    first_closed = trio.Event()

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        number = connections
        protocol = h11.Connection(our_role=h11.SERVER)
        while await read_request(stream, protocol) is not None:
            await send_reply(stream, protocol, Reply(body=f"connection {number}".encode()))
            if number == 1:
                # Close while idle, without Connection: close, so the client pooled it.
                await (send_reset(stream) if close == "reset" else stream.aclose())
                first_closed.set()
                return
            protocol.start_next_cycle()

    base = await start_server(nursery, handle)
    first = await client.request("GET", f"{base}/a{SECRET_QUERY}", timeout=5)
    with trio.fail_after(5):
        await first_closed.wait()
    second = await client.request("GET", f"{base}/a{SECRET_QUERY}", timeout=5)

    assert first.body == b"connection 1"
    assert second.body == b"connection 2"
    assert connections == 2
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "resending on a new connection" in messages[0]
    assert "SECRET" not in messages[0]


async def test_resend_happens_only_once(nursery: trio.Nursery, client: HttpClient) -> None:
    connections = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        protocol = h11.Connection(our_role=h11.SERVER)
        await read_request(stream, protocol)
        # The first connection replies once and then closes while idle. The new
        # connection that replaces it closes without replying.
        if connections == 1:
            await send_reply(stream, protocol, Reply())
        await stream.aclose()

    base = await start_server(nursery, handle)
    await client.request("GET", f"{base}/", timeout=5)

    with pytest.raises(TransportError) as caught:
        await client.request("GET", f"{base}/", timeout=5)

    assert caught.value.kind is TransportErrorKind.RESET
    assert connections == 2


# Failures on a fresh connection


@pytest.mark.parametrize("close", ["eof", "reset"])
async def test_close_before_headers_is_reset(
    nursery: trio.Nursery, client: HttpClient, close: str
) -> None:
    connections = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        await read_request(stream, h11.Connection(our_role=h11.SERVER))
        await (send_reset(stream) if close == "reset" else stream.aclose())

    base = await start_server(nursery, handle)

    with pytest.raises(TransportError) as caught:
        await client.request("GET", f"{base}/nim1", timeout=5)

    assert caught.value.kind is TransportErrorKind.RESET
    assert caught.value.url == f"{base}/nim1"
    assert "before sending a response" in caught.value.detail
    # A fresh connection is not retried.
    assert connections == 1


async def test_eof_mid_body_is_reset(nursery: trio.Nursery, client: HttpClient) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        await read_request(stream, h11.Connection(our_role=h11.SERVER))
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await stream.aclose()

    base = await start_server(nursery, handle)

    with pytest.raises(TransportError) as caught:
        await client.request("GET", f"{base}/nim1", timeout=5)

    assert caught.value.kind is TransportErrorKind.RESET
    assert "was complete" in caught.value.detail


async def test_tcp_reset_mid_body_is_reset(nursery: trio.Nursery, client: HttpClient) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        await read_request(stream, h11.Connection(our_role=h11.SERVER))
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await send_reset(stream)

    base = await start_server(nursery, handle)

    with pytest.raises(TransportError) as caught:
        await client.request("GET", f"{base}/nim1", timeout=5)

    assert caught.value.kind is TransportErrorKind.RESET


async def test_malformed_status_line_is_protocol(
    nursery: trio.Nursery, client: HttpClient
) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        await read_request(stream, h11.Connection(our_role=h11.SERVER))
        await stream.send_all(b"HTTP/1.1 abc\r\n\r\n")
        await stream.receive_some()

    base = await start_server(nursery, handle)

    with pytest.raises(TransportError) as caught:
        await client.request("GET", f"{base}/", timeout=5)

    assert caught.value.kind is TransportErrorKind.PROTOCOL
    assert "invalid HTTP/1.1 response" in str(caught.value)


async def test_closed_port_is_connect(client: HttpClient) -> None:
    base = await closed_port_url()

    with pytest.raises(TransportError) as caught:
        await client.request("GET", f"{base}/", timeout=5)

    assert caught.value.kind is TransportErrorKind.CONNECT
    assert str(caught.value).startswith(f"could not connect to {base}/")


# Timeout in virtual time


@pytest.mark.parametrize("stall", ["before_headers", "mid_body"])
async def test_stall_times_out(
    nursery: trio.Nursery, client: HttpClient, autojump_clock: trio.testing.MockClock, stall: str
) -> None:
    connections = 0
    stalled_closed_by_client = trio.Event()

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        protocol = h11.Connection(our_role=h11.SERVER)
        await read_request(stream, protocol)
        if connections > 1:
            await send_reply(stream, protocol, Reply(body=b"fresh"))
            await stream.receive_some()
            return

        if stall == "mid_body":
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n01234")
        # The client sends nothing more, so this returns only when it closes.
        assert await stream.receive_some() == b""
        stalled_closed_by_client.set()

    base = await start_server(nursery, handle)
    started = trio.current_time()

    with pytest.raises(TransportError) as caught:
        await client.request("GET", f"{base}/nim1{SECRET_QUERY}", timeout=35)

    elapsed = trio.current_time() - started
    assert caught.value.kind is TransportErrorKind.TIMEOUT
    assert str(caught.value) == f"timed out after 35.0 s waiting for {base}/nim1 (timeout)"
    assert 35 <= elapsed < 36
    with trio.fail_after(1):
        await stalled_closed_by_client.wait()

    response = await client.request("GET", f"{base}/nim1", timeout=35)
    assert response.body == b"fresh"
    assert connections == 2


async def test_caller_cancel_is_not_timeout(
    nursery: trio.Nursery, client: HttpClient, autojump_clock: trio.testing.MockClock
) -> None:
    base = await start_server(nursery, reply_never)

    with trio.move_on_after(5) as caller_scope:
        await client.request("GET", f"{base}/nim1", timeout=35)

    # The caller's deadline came first, so its Cancelled reached it instead of a TransportError.
    assert caller_scope.cancelled_caught


# Body size cap


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(body=b"x" * 1001), "Content-Length is 1001 bytes"),
        (Reply(body=b"x" * 1001, chunk_size=100), "more than 1000 bytes arrived"),
    ],
    ids=["content_length", "chunked"],
)
async def test_body_over_cap_is_too_large(
    nursery: trio.Nursery, reply: Reply, reason: str
) -> None:
    server = KeepAliveServer(lambda request: reply if request.target == b"/big" else Reply())
    base = await start_server(nursery, server.handle)

    async with HttpClient(max_body_size=1000) as http_client:
        with pytest.raises(TransportError) as caught:
            await http_client.request("GET", f"{base}/big", timeout=5)
        response = await http_client.request("GET", f"{base}/small", timeout=5)

    assert caught.value.kind is TransportErrorKind.TOO_LARGE
    assert "max_body_size=1000 bytes" in str(caught.value)
    assert reason in str(caught.value)
    assert response.body == b"ok"
    # The connection that carried the large body was dropped.
    assert server.connections == 2


async def test_body_at_cap_is_accepted(nursery: trio.Nursery) -> None:
    server = KeepAliveServer(lambda request: Reply(body=b"x" * 1000, chunk_size=300))
    base = await start_server(nursery, server.handle)

    async with HttpClient(max_body_size=1000) as http_client:
        response = await http_client.request("GET", f"{base}/", timeout=5)

    assert response.body == b"x" * 1000


# Responses and requests on the wire


async def test_server_error_html_returned_as_response(
    nursery: trio.Nursery, client: HttpClient
) -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    server = KeepAliveServer(
        lambda request: Reply(
            status=500, headers=(("Content-Type", "text/html"),), body=html, chunk_size=10
        )
    )
    base = await start_server(nursery, server.handle)

    response = await client.request("GET", f"{base}/method/users.get", timeout=5)

    assert response.status == 500
    assert response.body == html
    assert (b"content-type", b"text/html") in response.headers


async def test_binary_body_returned_unchanged(nursery: trio.Nursery, client: HttpClient) -> None:
    body = bytes(range(256)) * 4
    server = KeepAliveServer(lambda request: Reply(body=body))
    base = await start_server(nursery, server.handle)

    response = await client.request("GET", f"{base}/", timeout=5)

    assert response.body == body


async def test_request_headers_and_body_sent(nursery: trio.Nursery, client: HttpClient) -> None:
    server = KeepAliveServer()
    base = await start_server(nursery, server.handle)
    form = b"access_token=SECRET_TOKEN&v=5.199"

    await client.request(
        "POST",
        f"{base}/method/messages.getLongPollServer?lp_version=3",
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
        body=form,
        timeout=5,
    )
    await client.request("GET", f"{base}/nim1{SECRET_QUERY}", timeout=5)

    post, get = server.requests
    assert post.method == b"POST"
    assert post.target == b"/method/messages.getLongPollServer?lp_version=3"
    assert post.headers[b"host"] == base.removeprefix("http://").encode()
    assert post.headers[b"user-agent"] == DEFAULT_USER_AGENT.encode()
    assert post.headers[b"content-length"] == str(len(form)).encode()
    assert post.headers[b"content-type"] == b"application/x-www-form-urlencoded"
    assert post.body == form
    assert get.target == f"/nim1{SECRET_QUERY}".encode()
    assert b"content-length" not in get.headers


async def test_caller_user_agent_replaces_default(
    nursery: trio.Nursery, client: HttpClient
) -> None:
    server = KeepAliveServer()
    base = await start_server(nursery, server.handle)

    await client.request("GET", f"{base}/", headers=[("User-Agent", "consumer/2")], timeout=5)

    assert server.requests[0].headers[b"user-agent"] == b"consumer/2"


@pytest.mark.parametrize(
    ("url", "headers", "timeout", "message"),
    [
        ("ftp://127.0.0.1/", [], 5.0, "unsupported URL scheme"),
        ("http:///path", [], 5.0, "URL has no host"),
        ("http://127.0.0.1/", [("Host", "example.test")], 5.0, "set by HttpClient"),
        ("http://127.0.0.1/", [], 0.0, "timeout must be a positive number"),
        ("http://127.0.0.1/", [], float("nan"), "timeout must be a positive number"),
        (f"http://127.0.0.1/{SECRET_QUERY}", [("X-Key", "SECRET\r\nX: 1")], 5.0, "forbids"),
    ],
    ids=["scheme", "no_host", "reserved_header", "zero_timeout", "nan_timeout", "header_value"],
)
async def test_invalid_request_raises_value_error(
    client: HttpClient, url: str, headers: list[tuple[str, str]], timeout: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        await client.request("GET", url, headers=headers, timeout=timeout)

    assert "SECRET" not in str(caught.value)


# TLS


async def test_tls_with_trusted_ca(
    nursery: trio.Nursery,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    server = KeepAliveServer(lambda request: Reply(body=request.target))
    base = await start_tls_server(nursery, server.handle, server_ssl_context)

    async with HttpClient(ssl_context=client_ssl_context) as http_client:
        first = await http_client.request("GET", f"{base}/one", timeout=5)
        second = await http_client.request("GET", f"{base}/two", timeout=5)

    assert first.body == b"/one"
    assert second.body == b"/two"
    assert server.connections == 1


async def test_tls_idle_close_resends(
    nursery: trio.Nursery,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    connections = 0
    first_closed = trio.Event()

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        nonlocal connections
        connections += 1
        number = connections
        protocol = h11.Connection(our_role=h11.SERVER)
        await read_request(stream, protocol)
        await send_reply(stream, protocol, Reply(body=f"connection {number}".encode()))
        if number == 1:
            await stream.aclose()
            first_closed.set()
        else:
            await stream.receive_some()

    base = await start_tls_server(nursery, handle, server_ssl_context)

    async with HttpClient(ssl_context=client_ssl_context) as http_client:
        await http_client.request("GET", f"{base}/", timeout=5)
        with trio.fail_after(5):
            await first_closed.wait()
        second = await http_client.request("GET", f"{base}/", timeout=5)

    assert second.body == b"connection 2"
    assert connections == 2


async def handle_failed_handshake(stream: trio.SSLStream[trio.SocketStream]) -> None:
    """Server side of a handshake that the client rejects."""
    with pytest.raises(trio.BrokenResourceError):
        await stream.do_handshake()


async def test_tls_untrusted_certificate(
    nursery: trio.Nursery, server_ssl_context: ssl.SSLContext, client: HttpClient
) -> None:
    base = await start_tls_server(nursery, handle_failed_handshake, server_ssl_context)

    with pytest.raises(TransportError) as caught:
        await client.request("GET", f"{base}/nim1{SECRET_QUERY}", timeout=5)

    message = str(caught.value)
    assert caught.value.kind is TransportErrorKind.TLS
    assert message.startswith(f"certificate verify failed for {base}/nim1: ")
    assert "pass an ssl_context that trusts this server's ca" in message.lower()
    assert "SECRET" not in message


async def test_clients_without_context_share_one(
    nursery: trio.Nursery, server_ssl_context: ssl.SSLContext
) -> None:
    # A default context costs hundreds of KiB (the system CA store), so
    # hundreds of accounts in one process must not each load their own.
    base = await start_tls_server(nursery, handle_failed_handshake, server_ssl_context)
    contexts = []
    for _ in range(2):
        async with HttpClient() as http_client:
            with pytest.raises(TransportError):
                await http_client.request("GET", f"{base}/", timeout=5)
            contexts.append(http_client._ssl_context)

    assert contexts[0] is contexts[1]
    assert contexts[0] is default_ssl_context()
    assert contexts[0].verify_mode is ssl.CERT_REQUIRED


async def test_tls_hostname_mismatch(
    nursery: trio.Nursery, ca: trustme.CA, client_ssl_context: ssl.SSLContext
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(server_context)
    base = await start_tls_server(nursery, handle_failed_handshake, server_context)

    async with HttpClient(ssl_context=client_ssl_context) as http_client:
        with pytest.raises(TransportError) as caught:
            await http_client.request("GET", f"{base}/", timeout=5)

    assert caught.value.kind is TransportErrorKind.TLS
    assert "127.0.0.1" in caught.value.detail
    assert "certificate verify failed" in caught.value.detail


# Secrets in the query string


async def reply_too_large(stream: trio.SocketStream) -> None:
    await read_request(stream, h11.Connection(our_role=h11.SERVER))
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n")
    await stream.receive_some()


async def reply_garbage(stream: trio.SocketStream) -> None:
    await read_request(stream, h11.Connection(our_role=h11.SERVER))
    await stream.send_all(b"NOT HTTP\r\n\r\n")
    await stream.receive_some()


async def reply_truncated(stream: trio.SocketStream) -> None:
    await read_request(stream, h11.Connection(our_role=h11.SERVER))
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12")
    await stream.aclose()


async def reply_never(stream: trio.SocketStream) -> None:
    await read_request(stream, h11.Connection(our_role=h11.SERVER))
    await stream.receive_some()


@pytest.mark.parametrize(
    ("handler", "kind"),
    [
        (None, TransportErrorKind.CONNECT),
        (reply_too_large, TransportErrorKind.TOO_LARGE),
        (reply_garbage, TransportErrorKind.PROTOCOL),
        (reply_truncated, TransportErrorKind.RESET),
        (reply_never, TransportErrorKind.TIMEOUT),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
async def test_query_never_in_error(
    nursery: trio.Nursery,
    client: HttpClient,
    handler: Handler | None,
    kind: TransportErrorKind,
) -> None:
    base = await closed_port_url() if handler is None else await start_server(nursery, handler)

    with pytest.raises(TransportError) as caught:
        await client.request("GET", f"{base}/nim1{SECRET_QUERY}", timeout=0.5)

    error = caught.value
    assert error.kind is kind
    assert error.url == f"{base}/nim1"
    for text in (str(error), repr(error), error.detail):
        assert f"{base}/nim1" in text
        assert "SECRET" not in text
        assert "access_token" not in text
