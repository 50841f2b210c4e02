"""Fuzzing the input boundaries: poll bodies, fixture lines, and the fake server's HTTP parser.

Each property states what any input may produce. Hypothesis shrinks a
failing input to a small one; those found while building are kept as
ordinary tests below the properties.
"""

import json
from pathlib import Path

import hypothesis.strategies as st
import trio
from e2e_helpers import FIXTURES
from hypothesis import HealthCheck, given, settings

from lpcore import Failed, PollResult, RemoteProtocolError, parse_poll_body, parse_update
from lprecord import FakeServer, FixtureError, read_fixture

# Bytes that look like poll replies: JSON fragments, numbers, brackets,
# and arbitrary bytes mixed in.
_JSONISH = st.lists(
    st.sampled_from(
        [
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b'"ts"',
            b'"updates"',
            b'"failed"',
            b'"pts"',
            b"1",
            b"-",
            b"1800000000",
            b"null",
            b"true",
            b'"x"',
            b" ",
            b"\\",
            b'"',
            b"\xff",
            b"4",
        ]
    )
    | st.binary(max_size=4),
    max_size=40,
).map(b"".join)


def _outcome(body: bytes) -> PollResult | Failed | RemoteProtocolError:
    """Return what parse_poll_body made of `body`, its RemoteProtocolError included."""
    try:
        return parse_poll_body(body)
    except RemoteProtocolError as error:
        return error


@given(st.binary(max_size=200) | _JSONISH)
def test_poll_body_gives_result_or_protocol_error(body: bytes) -> None:
    outcome = _outcome(body)

    assert isinstance(outcome, PollResult | Failed | RemoteProtocolError)
    if isinstance(outcome, RemoteProtocolError):
        assert outcome.body is not None
        assert len(outcome.body) <= 200
    if isinstance(outcome, PollResult):
        for raw in outcome.updates:
            parse_update(raw)


_FIXTURE_LINES = st.lists(
    st.text(max_size=60).filter(lambda line: "\n" not in line)
    | st.sampled_from(['{"t": 0}', "[]", "{}", '{"lprecord": 1}', "null", '"x"', "{"]),
    min_size=1,
    max_size=5,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=_FIXTURE_LINES)
def test_fixture_reader_names_file_and_line(tmp_path: Path, lines: list[str]) -> None:
    header = (FIXTURES / "chat_session.jsonl").read_text().splitlines()[0]
    path = tmp_path / "fuzzed.jsonl"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")

    error: FixtureError | None = None
    try:
        read_fixture(path)
    except FixtureError as caught:
        error = caught

    if error is not None:
        assert error.path == path
        assert error.line is not None
        assert 2 <= error.line <= len(lines) + 1
        assert str(error).startswith(f"{path}:{error.line}: ")


async def _send_raw(port: int, payload: bytes) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(payload)
        # Give the server a moment to parse what it got; an incomplete
        # request would otherwise hold the connection open.
        with trio.move_on_after(0.05):
            while await stream.receive_some(4096):
                pass
    except trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()


async def _poll_once(port: int) -> bytes:
    """Send one well-formed API request and return the whole response."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    request = (
        b"POST /method/messages.getLongPollServer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n"
        b"Connection: close\r\n\r\naccess_token=fuzzfuzz&v=5.199"
    )
    await stream.send_all(request)
    chunks = []
    while chunk := await stream.receive_some(4096):
        chunks.append(chunk)
    await stream.aclose()
    return b"".join(chunks)


_HTTP_GARBAGE = st.lists(
    st.sampled_from(
        [
            b"GET ",
            b"POST ",
            b"/nim100001",
            b"/method/x",
            b"?act=a_check",
            b" HTTP/1.1",
            b"\r\n",
            b"Host: a",
            b"Content-Length: ",
            b"99999999999",
            b"-1",
            b"Transfer-Encoding: chunked",
            b"\r\n\r\n",
            b"\x00",
            b"\xff",
            b":",
            b" ",
            b"0\r\n",
        ]
    )
    | st.binary(max_size=8),
    max_size=30,
).map(b"".join)


@settings(max_examples=40, deadline=None)
@given(garbage=_HTTP_GARBAGE)
def test_fake_server_survives_malformed_http(garbage: bytes) -> None:
    async def main() -> None:
        server = FakeServer(FIXTURES / "chat_session.jsonl")
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            await _send_raw(server.port, garbage)
            reply = await _poll_once(server.port)
            nursery.cancel_scope.cancel()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert "key" in json.loads(body)["response"]

    trio.run(main)
