"""The fake server's own request parser against h11, which reads every other request.

`_read_plain_request` may leave any request to h11. A request that it parses must come
out as h11 reads the same bytes, and where it needs more data, h11 must need more too.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lprecord._httpserver import (
    MAX_BODY_SIZE,
    _PlainRequest,
    _read_plain_request,
    _Unparsed,
)


@dataclass(frozen=True)
class H11Reading:
    """What h11 makes of some bytes: a whole request, a need for more data, or an error."""

    outcome: str
    request: _PlainRequest | None = None


def read_with_h11(data: bytes) -> H11Reading:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    head: h11.Request | None = None
    body = b""
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                return H11Reading("need data")
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                pytest.fail(f"unexpected h11 event {event!r}")
    except h11.RemoteProtocolError:
        return H11Reading("error")
    assert head is not None
    request = _PlainRequest(
        method=head.method,
        target=head.target,
        headers=tuple(head.headers),
        body=body,
        keep_alive=connection.their_state is h11.DONE,
        size=len(data) - len(connection.trailing_data[0]),
    )
    return H11Reading("request", request)


def assert_same_as_h11(data: bytes) -> _PlainRequest | _Unparsed:
    parsed = _read_plain_request(data)
    if isinstance(parsed, _PlainRequest):
        assert read_with_h11(data) == H11Reading("request", parsed)
    elif parsed is _Unparsed.NEED_DATA:
        assert read_with_h11(data) == H11Reading("need data")
    return parsed


# Each part of a request comes from its usual values four times in five, else from odd ones.
METHODS = ([b"GET", b"POST", b"HEAD"], [b"PUT", b"CONNECT", b"get", b"G(T", b""])
TARGETS = (
    [
        b"/",
        b"/nim1?act=a_check&key=k&ts=5&wait=25&mode=234&version=3",
        b"/method/users.get?v=5.199",
        b"http://127.0.0.1:8080/x?y",
    ],
    [b"/a b", b"/\x7f", b"/\x80", b"", b"/\x00"],
)
VERSIONS = ([b"HTTP/1.1", b"HTTP/1.0"], [b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/1.1 "])
NAMES = (
    [
        b"Host",
        b"host",
        b"Content-Length",
        b"content-length",
        b"Connection",
        b"Content-Type",
        b"User-Agent",
        b"Expect",
        b"X-Custom_1",
    ],
    [b"Transfer-Encoding", b"Upgrade", b"HOST", b"Bad Name", b"Bad\x01", b""],
)
VALUES = (
    [
        b"",
        b"x",
        b"127.0.0.1:8080",
        b"0",
        b"5",
        b" 5 ",
        b"05",
        b"close",
        b"Close",
        b"keep-alive, CLOSE",
        b"closed",
        b"keep-alive",
        b"100-continue",
        b"application/x-www-form-urlencoded",
        b"a\tb",
        b"a  b",
        b"\ta ",
        b"\x80\xff",
    ],
    [b"5, 5", b"5,6", b"-1", b"1" * 21, b"chunked", b"websocket", b"a\x01b", b"a\x00b"],
)
SEPARATORS = ([b":", b": ", b":\t", b":  "], [b" :", b""])


def mostly(draw: st.DrawFn, parts: tuple[list[bytes], list[bytes]]) -> bytes:
    usual, odd = parts
    if draw(st.integers(0, 4)):
        return draw(st.sampled_from(usual))
    return draw(st.sampled_from(odd) | st.binary(max_size=4))


@st.composite
def request_bytes(draw: st.DrawFn) -> bytes:
    """Requests close to what clients send, with odd parts mixed in."""
    crlf = b"\r\n" if draw(st.integers(0, 9)) else b"\n"
    line = b" ".join([mostly(draw, METHODS), mostly(draw, TARGETS), mostly(draw, VERSIONS)])
    lines = [line]
    if draw(st.integers(0, 4)):
        lines.append(b"Host: 127.0.0.1")
    for _ in range(draw(st.integers(0, 4))):
        lines.append(mostly(draw, NAMES) + mostly(draw, SEPARATORS) + mostly(draw, VALUES))
        if draw(st.integers(0, 9)) == 0:
            lines.append(b" folded")
    head = crlf.join(lines) + crlf + crlf
    if draw(st.integers(0, 9)) == 0:
        head = b"\r\n" + head
    data = head + draw(st.binary(max_size=8))
    if draw(st.booleans()):
        data += b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    if draw(st.integers(0, 3)) == 0:
        data = data[: draw(st.integers(1, len(data)))]
    return data


@settings(max_examples=500)
@given(request_bytes())
@example(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET")
@example(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nabcde")
@example(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive,close\r\n\r\n")
def test_parses_as_h11_reads(data: bytes) -> None:
    assert_same_as_h11(data)


@given(st.binary(min_size=1, max_size=64))
def test_arbitrary_bytes_parse_as_h11_reads(data: bytes) -> None:
    assert_same_as_h11(data)


@pytest.mark.parametrize(
    ("data", "keep_alive"),
    [
        (b"GET /nim1?act=a_check&ts=5 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n", True),
        (
            b"GET / HTTP/1.1\r\nHost: vk.test\r\nUser-Agent: python-requests/2.32\r\n"
            b"Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
            True,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, Close\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"HEAD / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", False),
        (
            b"POST /method/users.get HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 8\r\n\r\n"
            b"v=5.199&",
            True,
        ),
    ],
    ids=["poll", "requests-library", "close-token", "http-1.0", "head-1.0", "form-post"],
)
def test_usual_requests_are_parsed(data: bytes, keep_alive: bool) -> None:
    parsed = assert_same_as_h11(data + b"GET /next HTTP/1.1\r\n")

    assert isinstance(parsed, _PlainRequest)
    assert parsed.keep_alive is keep_alive
    assert parsed.size == len(data)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r",
        b"GET / HTTP/1.1\r\nHo",
        b"G",
    ],
)
def test_incomplete_head_needs_data(data: bytes) -> None:
    assert assert_same_as_h11(data) is _Unparsed.NEED_DATA


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\nHost: x\n\n", id="bare-lf"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", id="folded"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01\r\n\r\n", id="control-character"),
        pytest.param(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", id="leading-crlf"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", id="no-host"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", id="two-hosts"),
        pytest.param(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", id="http-2.0"),
        pytest.param(b"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n", id="connect"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n", id="upgrade"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="chunked",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc", id="part-body"
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_SIZE + 1),
            id="body-over-limit",
        ),
        pytest.param(b"GET /" + b"a" * 16 * 1024 + b" HTTP/1.1\r\n", id="long-head"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="tls-hello"),
    ],
)
def test_other_requests_are_left_to_h11(data: bytes) -> None:
    assert assert_same_as_h11(data) is _Unparsed.FOR_H11
