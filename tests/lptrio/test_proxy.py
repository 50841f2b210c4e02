"""Tests for HttpClient through HTTP CONNECT and SOCKS5 proxies and a stream_opener hook.

The proxies are minimal servers written here. They connect every tunnel to 127.0.0.1, whatever
host the client names, and record what the client asked for.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import h11
import pytest
import trio
import trustme
from e2e_helpers import FIXTURES, recorded_updates

from lpcore import ApiError
from lprecord import open_fake_server
from lptrio import HttpClient, LongPoll, TransportError, TransportErrorKind
from lptrio._proxy import parse_proxy_url

USER = "vk-user"
PASSWORD = "pa55-SECRET"
# What a Proxy-Authorization header with these credentials carries.
BASIC_CREDENTIALS = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRET_QUERY = "?access_token=SECRET_TOKEN&key=SECRET_KEY&ts=10"
# A host name for tests that check who resolves it. It resolves from /etc/hosts, so even a
# client that resolved it by mistake would send no DNS query.
ORIGIN_NAME = "localhost"


class ByteReader:
    """Buffered reads from a stream. Raises EOFError when the peer closes too early."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def until(self, delimiter: bytes) -> bytes:
        while delimiter not in self.buffer:
            await self._fill()
        end = self.buffer.index(delimiter) + len(delimiter)
        return await self.exactly(end)

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("the client closed the connection")
        self.buffer += data


async def relay(client: trio.abc.Stream, origin: trio.abc.Stream) -> None:
    """Copy bytes both ways until either side closes, then close both."""

    async def copy(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(copy, client, origin)
            nursery.start_soon(copy, origin, client)
    finally:
        await trio.aclose_forcefully(origin)
        await trio.aclose_forcefully(client)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectRequest:
    method: str
    authority: str
    headers: dict[str, str]  # names in lowercase


class ConnectProxy:
    """HTTP CONNECT proxy. By default it opens every tunnel it is asked for."""

    def __init__(
        self,
        *,
        credentials: tuple[str, str] | None = None,
        rejection: str | None = None,  # status and reason, such as "403 Forbidden"
        raw_reply: bytes | None = None,  # sent in place of a reply, then the proxy closes
        split_reply: bool = False,  # send the status line and the headers a second apart
        stall: bool = False,  # never reply
    ) -> None:
        self.credentials = credentials
        self.rejection = rejection
        self.raw_reply = raw_reply
        self.split_reply = split_reply
        self.stall = stall
        self.connections = 0
        self.requests: list[ConnectRequest] = []

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        try:
            request = await self._read_request(ByteReader(stream))
        except EOFError:
            return
        self.requests.append(request)

        if self.stall:
            await stream.receive_some()
        elif self.raw_reply is not None:
            await stream.send_all(self.raw_reply)
        elif self.rejection is not None:
            await send_rejection(stream, self.rejection)
        elif not self._authorized(request):
            await send_rejection(stream, "407 Proxy Authentication Required")
        else:
            await self._open_tunnel(stream, request)
        await stream.aclose()

    async def _read_request(self, reader: ByteReader) -> ConnectRequest:
        head = (await reader.until(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        method, authority, _ = request_line.split(" ")
        headers = {}
        for line in filter(None, header_lines):
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        return ConnectRequest(method=method, authority=authority, headers=headers)

    def _authorized(self, request: ConnectRequest) -> bool:
        if self.credentials is None:
            return True
        user, password = self.credentials
        expected = base64.b64encode(f"{user}:{password}".encode()).decode()
        return request.headers.get("proxy-authorization") == f"Basic {expected}"

    async def _open_tunnel(self, stream: trio.SocketStream, request: ConnectRequest) -> None:
        port = int(request.authority.rpartition(":")[2])
        origin = await trio.open_tcp_stream("127.0.0.1", port)
        if self.split_reply:
            await stream.send_all(b"HTTP/1.1 200 Connection established\r\n")
            await trio.sleep(1)
            await stream.send_all(b"Proxy-Agent: test\r\n\r\n")
        else:
            await stream.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await relay(stream, origin)


async def send_rejection(stream: trio.abc.Stream, status: str) -> None:
    body = f"<html><body>{status}</body></html>".encode()
    await stream.send_all(
        f"HTTP/1.1 {status}\r\nProxy-Authenticate: Basic realm=test\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SocksRequest:
    address_type: int  # 1 IPv4, 3 domain name, 4 IPv6 (RFC 1928)
    host: str
    port: int


class Socks5Proxy:
    """SOCKS5 proxy (RFC 1928) with optional username/password authentication (RFC 1929)."""

    def __init__(
        self, *, credentials: tuple[str, str] | None = None, reply_code: int = 0x00
    ) -> None:
        self.credentials = credentials
        self.reply_code = reply_code
        self.connections = 0
        self.requests: list[SocksRequest] = []

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        reader = ByteReader(stream)
        try:
            if not await self._authenticate(stream, reader):
                await stream.aclose()
                return
            request = await self._read_request(reader)
        except EOFError:
            return
        self.requests.append(request)

        if self.reply_code != 0x00:
            await stream.send_all(bytes([5, self.reply_code, 0, 1, 0, 0, 0, 0, 0, 0]))
            await stream.aclose()
            return
        origin = await trio.open_tcp_stream("127.0.0.1", request.port)
        bound_port = origin.socket.getsockname()[1].to_bytes(2, "big")
        await stream.send_all(bytes([5, 0, 0, 1, 127, 0, 0, 1]) + bound_port)
        await relay(stream, origin)

    async def _authenticate(self, stream: trio.abc.Stream, reader: ByteReader) -> bool:
        version, count = await reader.exactly(2)
        assert version == 5
        methods = await reader.exactly(count)
        expected_method = 0x00 if self.credentials is None else 0x02
        method = expected_method if expected_method in methods else 0xFF
        await stream.send_all(bytes([5, method]))
        if method != 0x02:
            return method == 0x00

        _, user_length = await reader.exactly(2)
        user = (await reader.exactly(user_length)).decode()
        (password_length,) = await reader.exactly(1)
        password = (await reader.exactly(password_length)).decode()
        accepted = (user, password) == self.credentials
        await stream.send_all(bytes([1, 0x00 if accepted else 0x01]))
        return accepted

    async def _read_request(self, reader: ByteReader) -> SocksRequest:
        version, command, _, address_type = await reader.exactly(4)
        assert (version, command) == (5, 1)
        if address_type == 1:
            host = socket.inet_ntop(socket.AF_INET, await reader.exactly(4))
        elif address_type == 4:
            host = socket.inet_ntop(socket.AF_INET6, await reader.exactly(16))
        else:
            (length,) = await reader.exactly(1)
            host = (await reader.exactly(length)).decode()
        port = int.from_bytes(await reader.exactly(2), "big")
        return SocksRequest(address_type=address_type, host=host, port=port)


class OriginServer:
    """h11 keep-alive server that replies to each request with its target."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[h11.Request] = []

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        protocol = h11.Connection(our_role=h11.SERVER)
        try:
            while (request := await self._read_request(stream, protocol)) is not None:
                self.requests.append(request)
                await self._reply(stream, protocol, request.target)
                protocol.start_next_cycle()
        except trio.BrokenResourceError:
            pass

    async def _read_request(
        self, stream: trio.abc.Stream, protocol: h11.Connection
    ) -> h11.Request | None:
        request = None
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                protocol.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _reply(self, stream: trio.abc.Stream, protocol: h11.Connection, body: bytes) -> None:
        headers = [("Content-Length", str(len(body)))]
        data = protocol.send(h11.Response(status_code=200, headers=headers)) or b""
        data += protocol.send(h11.Data(data=body)) or b""
        data += protocol.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)


async def serve(
    nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[None]]
) -> int:
    """Serve TCP on 127.0.0.1 and return the port."""
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def serve_tls(
    nursery: trio.Nursery, server: OriginServer, ssl_context: ssl.SSLContext
) -> int:
    """Serve HTTPS on 127.0.0.1 and return the port."""
    serve_ssl = partial(
        trio.serve_ssl_over_tcp,
        server.handle,
        0,
        ssl_context,
        host="127.0.0.1",
        https_compatible=True,
    )
    listeners = await nursery.start(serve_ssl)
    port: int = listeners[0].transport_listener.socket.getsockname()[1]
    return port


async def closed_port() -> int:
    """Return a port on 127.0.0.1 where nothing listens."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    for listener in listeners:
        await listener.aclose()
    return port


async def request_error(client: HttpClient, url: str, timeout: float = 5) -> TransportError:
    """Send a request that must fail and return its TransportError."""
    with pytest.raises(TransportError) as caught:
        await client.request("GET", url, timeout=timeout)
    return caught.value


@pytest.fixture
def ca() -> trustme.CA:
    """Test certificate authority."""
    return trustme.CA()


@pytest.fixture
def server_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """Server context with a certificate for 127.0.0.1 and ORIGIN_NAME, signed by `ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", ORIGIN_NAME).configure_cert(context)
    return context


@pytest.fixture
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """Client context that trusts `ca`."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# HTTP CONNECT


async def test_connect_tunnel_plain_http(nursery: trio.Nursery) -> None:
    origin = OriginServer()
    origin_port = await serve(nursery, origin.handle)
    proxy = ConnectProxy()
    proxy_port = await serve(nursery, proxy.handle)

    async with HttpClient(proxy=f"http://127.0.0.1:{proxy_port}", user_agent="agent/1") as client:
        response = await client.request(
            "GET", f"http://127.0.0.1:{origin_port}/method/users.get", timeout=5
        )

    assert response.body == b"/method/users.get"
    (request,) = proxy.requests
    assert request.method == "CONNECT"
    assert request.authority == f"127.0.0.1:{origin_port}"
    assert request.headers["host"] == f"127.0.0.1:{origin_port}"
    assert request.headers["user-agent"] == "agent/1"
    assert "proxy-authorization" not in request.headers
    # Through a tunnel, the request line keeps the origin form, as on a direct connection.
    assert origin.requests[0].target == b"/method/users.get"


async def test_connect_tunnel_https(
    nursery: trio.Nursery,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    origin = OriginServer()
    origin_port = await serve_tls(nursery, origin, server_ssl_context)
    proxy = ConnectProxy()
    proxy_port = await serve(nursery, proxy.handle)
    proxy_url = f"http://127.0.0.1:{proxy_port}"

    async with HttpClient(ssl_context=client_ssl_context, proxy=proxy_url) as client:
        response = await client.request("GET", f"https://127.0.0.1:{origin_port}/x", timeout=5)

    assert response.body == b"/x"
    assert [request.authority for request in proxy.requests] == [f"127.0.0.1:{origin_port}"]


async def test_connect_reply_split_across_reads(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    origin = OriginServer()
    origin_port = await serve(nursery, origin.handle)
    proxy = ConnectProxy(split_reply=True)
    proxy_port = await serve(nursery, proxy.handle)

    async with HttpClient(proxy=f"http://127.0.0.1:{proxy_port}") as client:
        response = await client.request("GET", f"http://127.0.0.1:{origin_port}/", timeout=5)

    # The headers that arrived after the status line were not read as the origin's response.
    assert response.status == 200
    assert response.body == b"/"


@pytest.mark.parametrize(
    ("credentials", "proxy_user", "accepted"),
    [
        ((USER, PASSWORD), f"{USER}:{PASSWORD}@", True),
        ((USER, PASSWORD), f"{USER}:wrong-{PASSWORD}@", False),
        ((USER, ""), f"{USER}@", True),
    ],
    ids=["right", "wrong", "user_only"],
)
async def test_connect_credentials(
    nursery: trio.Nursery,
    credentials: tuple[str, str],
    proxy_user: str,
    accepted: bool,
) -> None:
    origin = OriginServer()
    origin_port = await serve(nursery, origin.handle)
    proxy = ConnectProxy(credentials=credentials)
    proxy_port = await serve(nursery, proxy.handle)
    url = f"http://127.0.0.1:{origin_port}/"

    async with HttpClient(proxy=f"http://{proxy_user}127.0.0.1:{proxy_port}") as client:
        if accepted:
            response = await client.request("GET", url, timeout=5)
            assert response.body == b"/"
        else:
            error = await request_error(client, url)
            assert error.kind is TransportErrorKind.PROXY
            assert "407 Proxy Authentication Required" in error.detail
            assert "Check the user name and password in the proxy URL" in error.detail
            assert PASSWORD not in str(error)

    assert proxy.connections == 1
    user, password = credentials
    expected = base64.b64encode(f"{user}:{password}".encode()).decode()
    sent = proxy.requests[0].headers["proxy-authorization"]
    assert (sent == f"Basic {expected}") is accepted


@pytest.mark.parametrize(
    ("rejection", "proxy_user", "hint"),
    [
        ("403 Forbidden", "", "Check that the proxy allows CONNECT to this host and port"),
        ("407 Proxy Authentication Required", "", "put them in the proxy URL"),
        ("502 Bad Gateway", f"{USER}:{PASSWORD}@", "The proxy could not reach the target"),
    ],
    ids=["403", "407_without_credentials", "502"],
)
async def test_connect_rejection_is_proxy_error(
    nursery: trio.Nursery, rejection: str, proxy_user: str, hint: str
) -> None:
    proxy = ConnectProxy(rejection=rejection)
    proxy_port = await serve(nursery, proxy.handle)
    url = f"https://127.0.0.1:9/nim1{SECRET_QUERY}"

    async with HttpClient(proxy=f"http://{proxy_user}127.0.0.1:{proxy_port}") as client:
        error = await request_error(client, url)

    assert error.kind is TransportErrorKind.PROXY
    assert error.url == "https://127.0.0.1:9/nim1"
    assert error.detail.startswith(
        f"HTTP proxy 127.0.0.1:{proxy_port} rejected CONNECT to 127.0.0.1:9: {rejection}. "
    )
    assert hint in error.detail
    assert "SECRET" not in str(error)
    assert proxy.connections == 1


@pytest.mark.parametrize(
    ("raw_reply", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "invalid HTTP/1.1 reply"),
        (b"HTTP/1.1 200 OK\r\nServ", "closed the connection before its reply was complete"),
        (b"", "closed the connection before its reply was complete"),
        (b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n", "sent 17 unexpected bytes"),
    ],
    ids=["not_http", "truncated", "no_reply", "data_after_reply"],
)
async def test_connect_bad_reply_is_proxy_error(
    nursery: trio.Nursery, raw_reply: bytes, message: str
) -> None:
    proxy = ConnectProxy(raw_reply=raw_reply)
    proxy_port = await serve(nursery, proxy.handle)

    async with HttpClient(proxy=f"http://127.0.0.1:{proxy_port}") as client:
        error = await request_error(client, "http://127.0.0.1:9/")

    assert error.kind is TransportErrorKind.PROXY
    assert error.detail.startswith(
        f"CONNECT to 127.0.0.1:9 through HTTP proxy 127.0.0.1:{proxy_port} failed because "
    )
    assert message in error.detail


async def test_stalled_proxy_times_out(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    proxy = ConnectProxy(stall=True)
    proxy_port = await serve(nursery, proxy.handle)
    started = trio.current_time()

    async with HttpClient(proxy=f"http://{USER}:{PASSWORD}@127.0.0.1:{proxy_port}") as client:
        error = await request_error(client, f"http://127.0.0.1:9/nim1{SECRET_QUERY}", timeout=35)

    assert error.kind is TransportErrorKind.TIMEOUT
    assert 35 <= trio.current_time() - started < 36
    assert str(error) == "timed out after 35.0 s waiting for http://127.0.0.1:9/nim1 (timeout)"


# SOCKS5


async def test_socks5_tunnel_https(
    nursery: trio.Nursery,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    origin = OriginServer()
    origin_port = await serve_tls(nursery, origin, server_ssl_context)
    proxy = Socks5Proxy()
    proxy_port = await serve(nursery, proxy.handle)
    proxy_url = f"socks5://127.0.0.1:{proxy_port}"

    async with HttpClient(ssl_context=client_ssl_context, proxy=proxy_url) as client:
        response = await client.request("GET", f"https://127.0.0.1:{origin_port}/x", timeout=5)

    assert response.body == b"/x"
    assert proxy.requests == [SocksRequest(address_type=1, host="127.0.0.1", port=origin_port)]


async def test_socks5h_sends_host_name(
    nursery: trio.Nursery,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    origin = OriginServer()
    origin_port = await serve_tls(nursery, origin, server_ssl_context)
    proxy = Socks5Proxy()
    proxy_port = await serve(nursery, proxy.handle)
    proxy_url = f"socks5h://127.0.0.1:{proxy_port}"

    async with HttpClient(ssl_context=client_ssl_context, proxy=proxy_url) as client:
        response = await client.request("GET", f"https://{ORIGIN_NAME}:{origin_port}/", timeout=5)

    assert response.body == b"/"
    assert proxy.requests == [SocksRequest(address_type=3, host=ORIGIN_NAME, port=origin_port)]
    # The Host header names the URL's host, as on a direct connection.
    assert dict(origin.requests[0].headers)[b"host"] == f"{ORIGIN_NAME}:{origin_port}".encode()


async def test_socks5_resolves_host_name_locally(nursery: trio.Nursery) -> None:
    origin = OriginServer()
    origin_port = await serve(nursery, origin.handle)
    proxy = Socks5Proxy()
    proxy_port = await serve(nursery, proxy.handle)

    async with HttpClient(proxy=f"socks5://127.0.0.1:{proxy_port}") as client:
        await client.request("GET", f"http://{ORIGIN_NAME}:{origin_port}/", timeout=5)

    (request,) = proxy.requests
    assert request.address_type in (1, 4)
    assert request.host in ("127.0.0.1", "::1")


@pytest.mark.parametrize(
    ("proxy_user", "accepted", "message"),
    [
        (f"{USER}:{PASSWORD}@", True, ""),
        (f"{USER}:wrong-{PASSWORD}@", False, "Username and password authentication failure"),
        ("", False, "No acceptable authentication methods were offered"),
    ],
    ids=["right", "wrong", "missing"],
)
async def test_socks5_credentials(
    nursery: trio.Nursery, proxy_user: str, accepted: bool, message: str
) -> None:
    origin = OriginServer()
    origin_port = await serve(nursery, origin.handle)
    proxy = Socks5Proxy(credentials=(USER, PASSWORD))
    proxy_port = await serve(nursery, proxy.handle)
    url = f"http://127.0.0.1:{origin_port}/"

    async with HttpClient(proxy=f"socks5://{proxy_user}127.0.0.1:{proxy_port}") as client:
        if accepted:
            response = await client.request("GET", url, timeout=5)
            assert response.body == b"/"
        else:
            error = await request_error(client, url)
            assert error.kind is TransportErrorKind.PROXY
            assert error.detail.startswith(
                f"handshake with SOCKS5 proxy 127.0.0.1:{proxy_port} for "
                f"127.0.0.1:{origin_port} failed: {message}. "
            )
            assert PASSWORD not in str(error)

    assert proxy.connections == 1
    assert len(proxy.requests) == (1 if accepted else 0)


async def test_socks5_not_allowed_is_proxy_error(nursery: trio.Nursery) -> None:
    proxy = Socks5Proxy(reply_code=0x02)
    proxy_port = await serve(nursery, proxy.handle)

    async with HttpClient(proxy=f"socks5://127.0.0.1:{proxy_port}") as client:
        error = await request_error(client, f"https://127.0.0.1:9/nim1{SECRET_QUERY}")

    assert error.kind is TransportErrorKind.PROXY
    assert error.url == "https://127.0.0.1:9/nim1"
    assert error.detail == (
        f"SOCKS5 proxy 127.0.0.1:{proxy_port} rejected the connection to 127.0.0.1:9: "
        "Connection not allowed by ruleset (SOCKS5 reply code 0x02)"
    )


# Either proxy


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_keep_alive_one_tunnel(nursery: trio.Nursery, scheme: str) -> None:
    origin = OriginServer()
    origin_port = await serve(nursery, origin.handle)
    proxy = ConnectProxy() if scheme == "http" else Socks5Proxy()
    proxy_port = await serve(nursery, proxy.handle)

    async with HttpClient(proxy=f"{scheme}://127.0.0.1:{proxy_port}") as client:
        first = await client.request("GET", f"http://127.0.0.1:{origin_port}/one", timeout=5)
        second = await client.request("GET", f"http://127.0.0.1:{origin_port}/two", timeout=5)

    assert (first.body, second.body) == (b"/one", b"/two")
    assert proxy.connections == 1
    assert origin.connections == 1


@pytest.mark.parametrize(("scheme", "name"), [("http", "HTTP"), ("socks5", "SOCKS5")])
async def test_proxy_port_closed(scheme: str, name: str) -> None:
    proxy_port = await closed_port()
    proxy_url = f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{proxy_port}"

    async with HttpClient(proxy=proxy_url) as client:
        error = await request_error(client, f"http://127.0.0.1:9/nim1{SECRET_QUERY}")

    assert error.kind is TransportErrorKind.PROXY
    assert error.detail == (
        f"could not connect to {name} proxy 127.0.0.1:{proxy_port}: Connection refused. "
        "Check that the proxy is running and that the proxy URL has its host and port"
    )


async def test_password_never_in_errors_or_logs(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connect_proxy = ConnectProxy(credentials=(USER, "other"))
    socks_proxy = Socks5Proxy(credentials=(USER, "other"))
    proxy_urls = [
        f"http://{USER}:{PASSWORD}@127.0.0.1:{await serve(nursery, connect_proxy.handle)}",
        f"socks5://{USER}:{PASSWORD}@127.0.0.1:{await serve(nursery, socks_proxy.handle)}",
        f"socks5h://{USER}:{PASSWORD}@127.0.0.1:{await closed_port()}",
    ]

    texts: list[str] = []
    for proxy_url in proxy_urls:
        async with HttpClient(proxy=proxy_url) as client:
            error = await request_error(client, f"https://127.0.0.1:9/{SECRET_QUERY}")
        assert error.kind is TransportErrorKind.PROXY
        texts += [str(error), repr(error), error.detail, error.url, repr(client.__dict__)]
    texts += [record.getMessage() for record in caplog.records]

    for text in texts:
        assert PASSWORD not in text
        assert BASIC_CREDENTIALS not in text
        assert "SECRET" not in text


def test_proxy_url_repr_hides_password() -> None:
    proxy = parse_proxy_url(f"socks5h://{USER}:{PASSWORD}@127.0.0.1:1080")

    assert proxy.username == USER
    assert proxy.password == PASSWORD
    assert PASSWORD not in repr(proxy)
    assert repr(proxy).startswith("ProxyUrl(scheme=<ProxyScheme.SOCKS5H: 'socks5h'>")


@pytest.mark.parametrize(
    ("proxy_url", "message"),
    [
        (f"https://{USER}:{PASSWORD}@127.0.0.1:3128", "unsupported proxy URL scheme 'https'"),
        (f"socks4://{USER}:{PASSWORD}@127.0.0.1:1080", "use http, socks5 or socks5h"),
        (f"http://{USER}:{PASSWORD}@127.0.0.1", "needs a port from 1 to 65535"),
        (f"http://{USER}:{PASSWORD}@127.0.0.1:0", "needs a port from 1 to 65535"),
        (f"http://{USER}:{PASSWORD}@127.0.0.1:port", "needs a port from 1 to 65535"),
        (f"http://{USER}:{PASSWORD}@:3128", "has no host"),
        (f"http://{USER}:{PASSWORD}@127.0.0.1:3128/path", "must have no path"),
        (f"http://a%3Ab:{PASSWORD}@127.0.0.1:3128", "must not contain ':'"),
        (f"socks5://{USER}@127.0.0.1:1080", "the password in SOCKS5 proxy URL"),
        (f"socks5://{USER}:@127.0.0.1:1080", "the password in SOCKS5 proxy URL"),
        (f"socks5://{USER}:{PASSWORD}%C3%A9@127.0.0.1:1080", "1 to 255 ASCII characters"),
        (f"socks5://{USER}:{'p' * 256}@127.0.0.1:1080", "1 to 255 ASCII characters"),
    ],
    ids=[
        "https",
        "socks4",
        "no_port",
        "port_zero",
        "port_not_number",
        "no_host",
        "path",
        "colon_in_user",
        "socks5_no_password",
        "socks5_empty_password",
        "socks5_non_ascii",
        "socks5_too_long",
    ],
)
def test_invalid_proxy_url_raises(proxy_url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        HttpClient(proxy=proxy_url)

    assert PASSWORD not in str(caught.value)
    assert "p" * 256 not in str(caught.value)


# stream_opener


async def test_stream_opener_replaces_connect(
    nursery: trio.Nursery,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    origin = OriginServer()
    origin_port = await serve_tls(nursery, origin, server_ssl_context)
    calls: list[tuple[str, int]] = []

    async def open_stream(host: str, port: int) -> trio.abc.Stream:
        calls.append((host, port))
        return await trio.open_tcp_stream("127.0.0.1", port)

    async with HttpClient(ssl_context=client_ssl_context, stream_opener=open_stream) as client:
        for path in ("/one", "/two"):
            url = f"https://{ORIGIN_NAME}:{origin_port}{path}"
            response = await client.request("GET", url, timeout=5)
            assert response.body == path.encode()

    # One call for both requests, with the URL's host name: TLS ran over the opened stream.
    assert calls == [(ORIGIN_NAME, origin_port)]
    assert origin.connections == 1


async def test_stream_opener_oserror_is_connect_error() -> None:
    async def open_stream(host: str, port: int) -> trio.abc.Stream:
        raise ConnectionRefusedError(111, "Connection refused")

    async with HttpClient(stream_opener=open_stream) as client:
        error = await request_error(client, f"https://{ORIGIN_NAME}/nim1{SECRET_QUERY}")

    assert error.kind is TransportErrorKind.CONNECT
    assert error.detail == (
        f"stream_opener could not open a stream to {ORIGIN_NAME}:443 for "
        f"https://{ORIGIN_NAME}/nim1: ConnectionRefusedError(111, 'Connection refused')"
    )


async def test_stream_opener_transport_error_passes_through() -> None:
    raised = TransportError(kind=TransportErrorKind.PROXY, url="x", detail="from the hook")

    async def open_stream(host: str, port: int) -> trio.abc.Stream:
        raise raised

    async with HttpClient(stream_opener=open_stream) as client:
        error = await request_error(client, "http://127.0.0.1:9/")

    assert error is raised


async def test_proxy_with_stream_opener_raises() -> None:
    async def open_stream(host: str, port: int) -> trio.abc.Stream:
        return await trio.open_tcp_stream("127.0.0.1", port)

    with pytest.raises(ValueError, match="pass proxy or stream_opener, not both"):
        HttpClient(proxy="http://127.0.0.1:3128", stream_opener=open_stream)
    with pytest.raises(ValueError, match="pass proxy or stream_opener, not both"):
        LongPoll("token", proxy="http://127.0.0.1:3128", stream_opener=open_stream)


# LongPoll


async def test_longpoll_polls_through_proxy(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    chat = FIXTURES / "chat_session.jsonl"
    proxy = ConnectProxy()
    proxy_port = await serve(nursery, proxy.handle)
    received: list[Any] = []

    async with open_fake_server(chat) as server:
        longpoll = LongPoll(
            "fake-token", api_url=server.api_url, proxy=f"http://127.0.0.1:{proxy_port}"
        )
        async for update in longpoll:
            received.append(update.raw)
            if len(received) == 3:
                break
        await longpoll.aclose()

    assert received == recorded_updates(chat)[:3]
    authorities = {request.authority for request in proxy.requests}
    assert authorities == {urlsplit(server.api_url).netloc}


async def test_longpoll_calls_stream_opener(nursery: trio.Nursery) -> None:
    origin_port = await serve(nursery, reply_auth_failed)
    calls: list[tuple[str, int]] = []

    async def open_stream(host: str, port: int) -> trio.abc.Stream:
        calls.append((host, port))
        return await trio.open_tcp_stream("127.0.0.1", port)

    longpoll = LongPoll(
        "fake-token",
        api_url=f"http://{ORIGIN_NAME}:{origin_port}/method",
        stream_opener=open_stream,
    )
    with pytest.raises(ApiError):
        await longpoll.__anext__()
    await longpoll.aclose()

    assert calls == [(ORIGIN_NAME, origin_port)]


async def reply_auth_failed(stream: trio.SocketStream) -> None:
    """Reply to every request with VK API error 5, which LongPoll does not retry."""
    protocol = h11.Connection(our_role=h11.SERVER)
    while not isinstance(event := protocol.next_event(), h11.EndOfMessage):
        if event is h11.NEED_DATA:
            protocol.receive_data(bytes(await stream.receive_some(65536)))

    body = b'{"error": {"error_code": 5, "error_msg": "User authorization failed"}}'
    headers = [("Content-Length", str(len(body))), ("Connection", "close")]
    data = protocol.send(h11.Response(status_code=200, headers=headers)) or b""
    data += protocol.send(h11.Data(data=body)) or b""
    data += protocol.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
    await stream.aclose()
