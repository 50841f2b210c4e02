"""Tests of `Recorder`: the real lptrio client against scripted loopback servers.

Each test scripts the replies of a small server on 127.0.0.1, runs `LongPoll` with a
`Recorder` until the client waits in a poll that gets no reply, and reads the fixture back.
Time is virtual (`autojump_clock`), so client backoffs cost no real time.
"""

import base64
import json
import socket
import struct
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

import lpcore
from lprecord._fixture import (
    REDACTED_VALUE,
    Exchange,
    ExchangeKind,
    FixtureWriter,
    Header,
    decode_body,
    read_fixture,
)
from lprecord._httpserver import HttpReply, HttpRequest, serve_http
from lprecord._recorder import Recorder
from lptrio import LongPoll

TOKEN = "vk1.a.recorder-test-token-Qm7Zt2Lw9Xc4Vb8Nn1Pp5Rr3"
KEY = "6f1e0c9a4b7d2e8f3a5c1b9d7e2f4a6c8b0d3e5f"
FIRST_TS = 870
FIRST_PTS = 41
POLL_PATH = "/nim2468"
# Virtual seconds before a test gives up on the client reaching the poll that gets no reply.
TEST_TIMEOUT = 600.0


def to_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def server_body(poll_base: str) -> bytes:
    result = {"key": KEY, "server": f"{poll_base}{POLL_PATH}", "ts": FIRST_TS, "pts": FIRST_PTS}
    return to_json({"response": result})


@dataclass(kw_only=True)
class ScriptedVk:
    """A VK API and long poll server that sends scripted replies, then never replies again.

    `api_failures` are the replies to the first messages.getLongPollServer calls. Later calls
    succeed and name `poll_base` (or this server) as the long poll server. `polls` are the
    replies to the polls, in order. The first poll past them sets `poll_held` and gets no reply.
    """

    api_failures: list[HttpReply] = field(default_factory=list)
    polls: list[HttpReply] = field(default_factory=list)
    poll_base: str | None = None
    port: int = 0
    poll_held: trio.Event = field(default_factory=trio.Event)

    async def handle(self, request: HttpRequest) -> HttpReply:
        if request.path == "/method/messages.getLongPollServer":
            if self.api_failures:
                return self.api_failures.pop(0)
            base = self.poll_base or f"http://127.0.0.1:{self.port}"
            return HttpReply(body=server_body(base))
        if request.path == POLL_PATH and self.polls:
            return self.polls.pop(0)
        if request.path == POLL_PATH:
            self.poll_held.set()
            await trio.sleep_forever()
        return HttpReply(status=404, body=b'{"error":"unexpected path in a recorder test"}')


@dataclass(frozen=True, slots=True, kw_only=True)
class Capture:
    """A finished capture: the fixture file and its bytes while the client was held."""

    path: Path
    while_held: bytes
    #: The port of the scripted VK API server.
    api_port: int

    def exchanges(self) -> tuple[Exchange, ...]:
        return read_fixture(self.path).exchanges

    def polls(self) -> list[Exchange]:
        return [e for e in self.exchanges() if e.kind is ExchangeKind.POLL]

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines()]


async def consume(longpoll: LongPoll) -> None:
    async for _update in longpoll:
        pass


async def capture(vk: ScriptedVk, path: Path, *, poll_held: trio.Event | None = None) -> Capture:
    """Record the real client against `vk` until it waits in a poll that gets no reply.

    `poll_held` is the event that signals that poll, vk's own by default.
    """
    poll_held = vk.poll_held if poll_held is None else poll_held
    async with trio.open_nursery() as server_nursery:
        bound = await server_nursery.start(partial(serve_http, vk.handle))
        vk.port = bound.port
        header = Header(lp_version=3, mode=234, wait=25, api_version="5.199")
        with FixtureWriter.create(path, header) as writer:
            recorder = Recorder(writer, token=TOKEN, start=trio.current_time())
            longpoll = LongPoll(
                TOKEN, api_url=f"http://127.0.0.1:{bound.port}/method", observer=recorder
            )
            async with trio.open_nursery() as client_nursery:
                client_nursery.start_soon(consume, longpoll)
                with trio.fail_after(TEST_TIMEOUT):
                    await poll_held.wait()
                while_held = path.read_bytes()
                client_nursery.cancel_scope.cancel()
            await longpoll.aclose()
        server_nursery.cancel_scope.cancel()
    return Capture(path=path, while_held=while_held, api_port=vk.port)


async def capture_polls(tmp_path: Path, *polls: HttpReply) -> Capture:
    return await capture(ScriptedVk(polls=list(polls)), tmp_path / "capture.jsonl")


# -- bodies ----------------------------------------------------------------------------------


async def test_empty_body_stays_empty(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    result = await capture_polls(tmp_path, HttpReply(body=b""))

    [poll] = result.polls()
    assert poll.status == 200
    assert poll.body == b""


async def test_empty_body_line_decodes_to_empty(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    result = await capture_polls(tmp_path, HttpReply(body=b""))

    body_object = result.lines()[2]["response"]["body"]
    assert decode_body(body_object) == b""


# A poll reply whose message text contains a byte that is not UTF-8.
INVALID_UTF8_BODY = b'{"ts":871,"updates":[[4,6120,1,2000000009,1700003000,"a\xffb",{},{}]]}'


async def test_invalid_utf8_body_kept_exact(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    result = await capture_polls(tmp_path, HttpReply(body=INVALID_UTF8_BODY))

    [poll] = result.polls()
    assert poll.body == INVALID_UTF8_BODY


async def test_invalid_utf8_body_stored_as_base64(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    result = await capture_polls(tmp_path, HttpReply(body=INVALID_UTF8_BODY))

    body_object = result.lines()[2]["response"]["body"]
    assert list(body_object) == ["base64"]
    assert base64.b64decode(body_object["base64"]) == INVALID_UTF8_BODY


async def test_html_502_kept_verbatim(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    page = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>502</body>\r\n</html>"
    vk = ScriptedVk(api_failures=[HttpReply(status=502, body=page, content_type="text/html")])

    result = await capture(vk, tmp_path / "capture.jsonl")

    first = result.exchanges()[0]
    assert first.kind is ExchangeKind.API
    assert first.status == 502
    assert first.body == page


async def test_headers_kept_in_order_with_duplicates(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    body = to_json({"ts": FIRST_TS, "updates": []})
    reply = HttpReply(
        body=body,
        content_type="text/javascript; charset=utf-8",
        headers=(("Set-Cookie", "remixlang=3"), ("Set-Cookie", "remixstid=77")),
    )

    result = await capture_polls(tmp_path, reply)

    [poll] = result.polls()
    assert poll.headers == (
        ("content-type", "text/javascript; charset=utf-8"),
        ("content-length", str(len(body))),
        ("set-cookie", "remixlang=3"),
        ("set-cookie", "remixstid=77"),
    )


# -- secrets ---------------------------------------------------------------------------------

SECRET_UPDATES = {
    "ts": FIRST_TS + 1,
    "updates": [[4, 6121, 1, 2000000009, 1700003001, f"key {KEY} token {TOKEN}", {}, {}]],
}


async def capture_with_secrets(tmp_path: Path) -> Capture:
    """Record a session whose server reply, poll reply and headers carry the secrets."""
    reply = HttpReply(body=to_json(SECRET_UPDATES), headers=(("X-Echo-Key", KEY),))
    return await capture_polls(tmp_path, reply)


async def test_token_appears_nowhere(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    result = await capture_with_secrets(tmp_path)

    assert TOKEN not in result.path.read_text("utf-8")


async def test_key_appears_nowhere(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    result = await capture_with_secrets(tmp_path)

    assert KEY not in result.path.read_text("utf-8")


async def test_server_params_redacted_only(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    result = await capture_with_secrets(tmp_path)

    server_call = result.exchanges()[0]
    assert dict(server_call.params) == {
        "access_token": REDACTED_VALUE,
        "v": lpcore.DEFAULT_API_VERSION,
        "need_pts": "1",
        "lp_version": "3",
    }


async def test_poll_params_redacted_only(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    result = await capture_with_secrets(tmp_path)

    poll = result.polls()[0]
    assert dict(poll.params) == {
        "act": "a_check",
        "key": REDACTED_VALUE,
        "ts": str(FIRST_TS),
        "wait": "25",
        "mode": "234",
        "version": "3",
    }


async def test_server_body_redacted_only(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    result = await capture_with_secrets(tmp_path)

    server_call = result.exchanges()[0]
    expected = server_body(f"http://127.0.0.1:{result.api_port}")
    assert server_call.body == expected.replace(KEY.encode(), REDACTED_VALUE.encode())


async def test_poll_body_redacted_only(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    result = await capture_with_secrets(tmp_path)

    expected = (
        to_json(SECRET_UPDATES)
        .replace(KEY.encode(), REDACTED_VALUE.encode())
        .replace(TOKEN.encode(), REDACTED_VALUE.encode())
    )
    assert result.polls()[0].body == expected


# -- transport errors ------------------------------------------------------------------------


@dataclass(kw_only=True)
class ResettingPollServer:
    """A long poll server that resets its first connection and never replies on later ones."""

    connections: int = 0
    poll_held: trio.Event = field(default_factory=trio.Event)

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        await stream.receive_some(64 * 1024)
        if self.connections > 1:
            self.poll_held.set()
            await trio.sleep_forever()
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()


async def capture_reset(tmp_path: Path) -> Capture:
    resetting = ResettingPollServer()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, resetting.handle, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        vk = ScriptedVk(poll_base=f"http://127.0.0.1:{port}")
        result = await capture(vk, tmp_path / "capture.jsonl", poll_held=resetting.poll_held)
        nursery.cancel_scope.cancel()
    return result


async def test_reset_recorded_as_error(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    result = await capture_reset(tmp_path)

    [poll] = result.polls()
    assert poll.error_kind == "reset"
    assert poll.status is None


async def test_reset_line_has_error_object(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    result = await capture_reset(tmp_path)

    poll_line = result.lines()[2]
    assert "response" not in poll_line
    assert poll_line["error"]["kind"] == "reset"


async def test_reset_detail_has_no_secret(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    result = await capture_reset(tmp_path)

    detail = result.polls()[0].error_detail
    assert detail
    assert KEY not in detail
    assert TOKEN not in detail


# -- flushing --------------------------------------------------------------------------------


async def test_exchanges_on_disk_while_held(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    first = HttpReply(body=to_json({"ts": FIRST_TS + 1, "updates": [[80, 3, 0]]}))
    second = HttpReply(body=to_json({"ts": FIRST_TS + 2, "updates": [[80, 4, 0]]}))

    result = await capture_polls(tmp_path, first, second)

    assert result.while_held.endswith(b"\n")
    kinds = [json.loads(line).get("kind") for line in result.while_held.splitlines()[1:]]
    assert kinds == ["api", "poll", "poll"]
