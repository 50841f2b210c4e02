"""Proxies for HttpClient: HTTP CONNECT tunnels, SOCKS5 through python-socks, and a hook type.

Every proxy here opens a byte stream to the target host and port, and HttpClient layers TLS and
HTTP/1.1 on that stream exactly as on a direct TCP connection. Proxy URLs can carry a user
name and password, so `ProxyUrl` leaves the password out of its repr and every message here
names the proxy by scheme, host and port only.
"""

from __future__ import annotations

import base64
import math
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import SplitResult, unquote, urlsplit

import h11
import python_socks
import trio
from python_socks.async_.trio.v2 import Proxy as TrioProxy

__all__ = ["ProxyFailure", "ProxyScheme", "ProxyUrl", "StreamOpener", "open_proxy_stream"]

StreamOpener = Callable[[str, int], Awaitable[trio.abc.Stream]]
"""Hook that opens a stream to (host, port) in place of HttpClient's TCP connect.

The host is the URL's host name (an IPv6 address without brackets) and the port is the URL's
port or the scheme's default. For https URLs, HttpClient starts TLS on the returned stream.
"""

_RECEIVE_SIZE = 64 * 1024
# RFC 1929 (SOCKS5 username/password authentication) stores each length in one octet.
_MAX_SOCKS5_CREDENTIAL_LENGTH = 255


class ProxyScheme(StrEnum):
    """Proxy protocol, named by the scheme of the proxy URL."""

    HTTP = "http"  # HTTP/1.1 CONNECT tunnel
    SOCKS5 = "socks5"  # SOCKS5, with target host names resolved on this machine
    SOCKS5H = "socks5h"  # SOCKS5, with target host names sent to the proxy to resolve


_PROTOCOL_NAMES = {
    ProxyScheme.HTTP: "HTTP",
    ProxyScheme.SOCKS5: "SOCKS5",
    ProxyScheme.SOCKS5H: "SOCKS5",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyUrl:
    """Parsed proxy URL. The user name and password are percent-decoded."""

    scheme: ProxyScheme
    host: str  # an IPv6 address without brackets
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """Protocol and address for messages, such as "SOCKS5 proxy 127.0.0.1:1080"."""
        return f"{_PROTOCOL_NAMES[self.scheme]} proxy {format_authority(self.host, self.port)}"


class ProxyFailure(Exception):
    """The proxy could not be reached or did not open the tunnel. `detail` names no secret."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def format_authority(host: str, port: int) -> str:
    """Return host:port, with an IPv6 address in brackets as RFC 3986 writes it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_proxy_url(url: str) -> ProxyUrl:
    """Parse `scheme://[user[:password]@]host:port`.

    Raises ValueError for an unusable URL, with a message that never shows the password.
    """
    parts = urlsplit(url)
    # Everything after the last "@" of the authority, so no credentials.
    safe_url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    try:
        scheme = ProxyScheme(parts.scheme.lower())
    except ValueError:
        raise ValueError(
            f"unsupported proxy URL scheme {parts.scheme!r} in {safe_url}, "
            "use http, socks5 or socks5h, as in socks5://host:port"
        ) from None
    if not parts.hostname:
        raise ValueError(f"proxy URL {safe_url} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"proxy URL {safe_url} must have no path, query or fragment")

    proxy = ProxyUrl(
        scheme=scheme,
        host=parts.hostname,
        port=_parse_port(parts, safe_url),
        username=None if parts.username is None else unquote(parts.username),
        password=None if parts.password is None else unquote(parts.password),
    )
    _check_credentials(proxy, safe_url)
    return proxy


def _parse_port(parts: SplitResult, safe_url: str) -> int:
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or port == 0:
        raise ValueError(f"proxy URL {safe_url} needs a port from 1 to 65535, as in host:port")
    return port


def _check_credentials(proxy: ProxyUrl, safe_url: str) -> None:
    if proxy.scheme is ProxyScheme.HTTP:
        # RFC 7617: a user-id containing a colon cannot be sent in Basic credentials.
        if proxy.username is not None and ":" in proxy.username:
            raise ValueError(f"the user name in proxy URL {safe_url} must not contain ':'")
        return

    if proxy.username is None and proxy.password is None:
        return
    # RFC 1929 needs both, each 1 to 255 octets, and python-socks encodes them as ASCII.
    for name, value in (("user name", proxy.username), ("password", proxy.password)):
        if not value or len(value) > _MAX_SOCKS5_CREDENTIAL_LENGTH or not value.isascii():
            raise ValueError(
                f"the {name} in SOCKS5 proxy URL {safe_url} is missing or invalid. SOCKS5 "
                "username/password authentication needs both a user name and a password, "
                "each 1 to 255 ASCII characters"
            )


async def open_proxy_stream(
    proxy: ProxyUrl, host: str, port: int, *, user_agent: str
) -> trio.abc.Stream:
    """Open a stream to host:port through the proxy. Raises ProxyFailure.

    `user_agent` goes into the CONNECT request of an HTTP proxy.
    """
    if proxy.scheme is ProxyScheme.HTTP:
        return await _open_http_tunnel(proxy, host, port, user_agent)
    return await _open_socks5_stream(proxy, host, port)


# HTTP CONNECT (RFC 9110, section 9.3.6)


async def _open_http_tunnel(
    proxy: ProxyUrl, host: str, port: int, user_agent: str
) -> trio.abc.Stream:
    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream(proxy.host, proxy.port)
    except OSError as exc:
        raise ProxyFailure(_describe_unreachable(proxy, exc)) from exc

    try:
        await _request_tunnel(stream, proxy, host, port, user_agent)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _request_tunnel(
    stream: trio.abc.Stream, proxy: ProxyUrl, host: str, port: int, user_agent: str
) -> None:
    authority = format_authority(host, port)
    headers = [("Host", authority), ("User-Agent", user_agent)]
    if proxy.username is not None:
        headers.append(("Proxy-Authorization", _basic_credentials(proxy)))

    protocol = h11.Connection(our_role=h11.CLIENT)
    request = h11.Request(method="CONNECT", target=authority, headers=headers)
    data = (protocol.send(request) or b"") + (protocol.send(h11.EndOfMessage()) or b"")
    failed = f"CONNECT to {authority} through {proxy.label} failed"
    try:
        await stream.send_all(data)
    except trio.BrokenResourceError as exc:
        raise ProxyFailure(f"{failed} because the proxy closed the connection") from exc

    reply = await _read_connect_reply(stream, protocol, failed)
    if not 200 <= reply.status_code < 300:
        status = f"{reply.status_code} {reply.reason.decode('ascii', 'replace')}".strip()
        raise ProxyFailure(
            f"{proxy.label} rejected CONNECT to {authority}: {status}. "
            f"{_rejection_hint(proxy, reply.status_code, port)}"
        )

    # Both HTTP and TLS clients speak first, so nothing may arrive from the target yet.
    buffered, _ = protocol.trailing_data
    if buffered:
        raise ProxyFailure(
            f"{failed} because the proxy sent {len(buffered)} unexpected bytes after its reply"
        )


async def _read_connect_reply(
    stream: trio.abc.Stream, protocol: h11.Connection, failed: str
) -> h11.Response:
    received_eof = False
    while True:
        try:
            event = protocol.next_event()
        except h11.RemoteProtocolError as exc:
            # After end of stream, h11 reports a reply cut short as a protocol error.
            if received_eof:
                raise ProxyFailure(
                    f"{failed} because the proxy closed the connection before its reply was "
                    "complete"
                ) from exc
            raise ProxyFailure(
                f"{failed} because the proxy sent an invalid HTTP/1.1 reply ({exc}). "
                "Check that the proxy URL's scheme matches what the proxy speaks"
            ) from exc

        if isinstance(event, h11.Response):
            return event
        # 1xx responses such as 100 Continue come before the final response.
        if isinstance(event, h11.InformationalResponse):
            continue
        if event is not h11.NEED_DATA:
            raise ProxyFailure(f"{failed} because of an unexpected {event!r} before the reply")

        try:
            data = await stream.receive_some(_RECEIVE_SIZE)
        except trio.BrokenResourceError as exc:
            raise ProxyFailure(f"{failed} because the proxy reset the connection") from exc
        received_eof = not data
        protocol.receive_data(bytes(data))


def _basic_credentials(proxy: ProxyUrl) -> str:
    # RFC 7617 defines no default encoding and allows only charset="UTF-8" to be declared,
    # so UTF-8 is used.
    credentials = f"{proxy.username}:{proxy.password or ''}".encode()
    return f"Basic {base64.b64encode(credentials).decode('ascii')}"


def _rejection_hint(proxy: ProxyUrl, status: int, port: int) -> str:
    if status == 407 and proxy.username is None:
        return (
            "The proxy requires a user name and password, so put them in the proxy URL, "
            "as in http://user:password@host:port"
        )
    if status == 407:
        return "Check the user name and password in the proxy URL"
    if status >= 500:
        return "The proxy could not reach the target, so check its network and logs"
    hint = "Check that the proxy allows CONNECT to this host and port"
    if port != 443:
        hint += " (Squid's suggested squid.conf, for one, allows CONNECT only to port 443)"
    return hint


# SOCKS5 (RFC 1928) through python-socks


async def _open_socks5_stream(proxy: ProxyUrl, host: str, port: int) -> trio.abc.Stream:
    client = TrioProxy(
        python_socks.ProxyType.SOCKS5,
        proxy.host,
        proxy.port,
        username=proxy.username,
        password=proxy.password,
        # rdns=True sends host names to the proxy (socks5h). With False, python-socks
        # resolves them here and sends the address.
        rdns=proxy.scheme is ProxyScheme.SOCKS5H,
    )
    target = format_authority(host, port)
    try:
        # HttpClient's request timeout already covers the handshake, so python-socks'
        # own timeout (60 s when None, in python-socks 3.2) is turned off.
        connected = await client.connect(host, port, timeout=math.inf)
    except python_socks.ProxyConnectionError as exc:
        raise ProxyFailure(_describe_unreachable(proxy, exc)) from exc
    except python_socks.ProxyError as exc:
        raise ProxyFailure(_describe_socks5_error(proxy, target, exc)) from exc
    except socket.gaierror as exc:
        raise ProxyFailure(
            f"could not resolve {host} to send it to {proxy.label}: {exc}. "
            "Use a socks5h:// proxy URL to let the proxy resolve host names"
        ) from exc
    except trio.BrokenResourceError as exc:
        raise ProxyFailure(
            f"{proxy.label} reset the connection during the SOCKS5 handshake for {target}"
        ) from exc
    return connected.trio_stream


def _describe_socks5_error(proxy: ProxyUrl, target: str, exc: python_socks.ProxyError) -> str:
    # python-socks 3.2 sets error_code to the reply code of a CONNECT the proxy rejected and
    # leaves it None for authentication and framing failures. Its messages contain no credentials.
    if exc.error_code is not None:
        return (
            f"{proxy.label} rejected the connection to {target}: {exc} "
            f"(SOCKS5 reply code {exc.error_code:#04x})"
        )
    if proxy.username is None:
        hint = "Check that the proxy speaks SOCKS5 and accepts clients without a password"
    else:
        hint = "Check the user name and password in the proxy URL"
    return f"handshake with {proxy.label} for {target} failed: {exc}. {hint}"


def _describe_unreachable(proxy: ProxyUrl, exc: OSError) -> str:
    return (
        f"could not connect to {proxy.label}: {_connect_failure_reason(exc)}. "
        "Check that the proxy is running and that the proxy URL has its host and port"
    )


def _connect_failure_reason(exc: OSError) -> str:
    """Return the OS reasons behind a failed connect, such as "Connection refused".

    trio.open_tcp_stream raises an OSError whose cause is an ExceptionGroup with one error per
    address tried, and python-socks wraps that OSError once more.
    """
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, BaseExceptionGroup):
        cause = cause.__cause__
    if cause is None:
        return str(exc)

    reasons: list[str] = []
    for error in _leaf_exceptions(cause):
        # trio puts the address into strerror, and the message already names the proxy.
        if isinstance(error, OSError) and error.errno is not None:
            reason = os.strerror(error.errno)
        else:
            reason = str(error)
        if reason not in reasons:
            reasons.append(reason)
    return ", ".join(reasons) or str(exc)


def _leaf_exceptions(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            leaves.extend(_leaf_exceptions(error))
        else:
            leaves.append(error)
    return leaves
