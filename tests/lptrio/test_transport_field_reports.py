"""Transport tests for faults that users of other VK long poll clients ran into.

The real `LongPoll` polls a scripted h11 server on 127.0.0.1 over real trio
sockets, in virtual time (`autojump_clock`), so a 120-second stall costs no
real time. Each docstring states the fault; each test covers the whole kind
of reply or network condition behind it. Ids, keys and counters are fake.
"""

import contextlib
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qsl

import h11
import pytest
import trio
import trustme
from test_http import Reply, read_request, send_reply, send_reset, start_server, start_tls_server

from lpcore import MessageNew, Update, UpdatesReceived
from lptrio import LongPoll

TOKEN = "tok-transport-reports-Zr5Kv"
POLL_PATH = "/nim5050"
SERVER_METHOD_PATH = "/method/messages.getLongPollServer"
FIRST_TS = 6200
#: Virtual seconds a test waits for the client to reach the poll that gets no reply.
TEST_TIMEOUT = 900.0

#: What the server does with one poll: it returns whether the connection can carry
#: another request.
PollStep = Callable[[trio.abc.Stream, h11.Connection], Awaitable[bool]]


@dataclass(frozen=True, slots=True, kw_only=True)
class SeenRequest:
    """A request as the scripted server received it, and when."""

    path: str
    params: dict[str, str]
    at: float


@dataclass(kw_only=True)
class ScriptedVk:
    """A VK API and long poll server that plays one scripted step per poll.

    messages.getLongPollServer issues a new key each call, with `first_ts`
    and a server string `server_value` (by default this server's own URL).
    A poll past the scripted steps gets no reply and sets `idle`.
    """

    steps: list[PollStep]
    first_ts: int = FIRST_TS
    server_value: str = ""
    seen: list[SeenRequest] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    idle: trio.Event = field(default_factory=trio.Event)

    def polls(self) -> list[SeenRequest]:
        return [request for request in self.seen if request.path != SERVER_METHOD_PATH]

    def server_calls(self) -> list[SeenRequest]:
        return [request for request in self.seen if request.path == SERVER_METHOD_PATH]

    async def handle(self, stream: trio.abc.Stream) -> None:
        protocol = h11.Connection(our_role=h11.SERVER)
        try:
            while (request := await read_request(stream, protocol)) is not None:
                path, _, query = request.target.decode().partition("?")
                params = dict(parse_qsl(query))
                params.update(parse_qsl(request.body.decode()))
                self.seen.append(SeenRequest(path=path, params=params, at=trio.current_time()))
                if path == SERVER_METHOD_PATH:
                    await send_reply(stream, protocol, Reply(body=self._credentials()))
                elif self.steps:
                    if not await self.steps.pop(0)(stream, protocol):
                        return
                else:
                    self.idle.set()
                    await trio.sleep_forever()
                if protocol.our_state is h11.MUST_CLOSE:
                    return
                protocol.start_next_cycle()
        except trio.BrokenResourceError:
            pass  # the client dropped the connection while this server was sending

    def _credentials(self) -> bytes:
        key = f"key-{len(self.keys)}-transport-9fQ2"
        self.keys.append(key)
        result = {"key": key, "server": self.server_value, "ts": self.first_ts}
        return json.dumps({"response": result}).encode()


# -- poll steps ----------------------------------------------------------------------------


def reply(
    body: bytes,
    *,
    status: int = 200,
    headers: tuple[tuple[str, str], ...] = (),
    delay: float = 0.0,
) -> PollStep:
    """Send a whole reply after `delay` seconds."""

    async def step(stream: trio.abc.Stream, protocol: h11.Connection) -> bool:
        await send_reply(
            stream, protocol, Reply(status=status, headers=headers, body=body, delay=delay)
        )
        return True

    return step


def updates_reply(ts: int, updates: list[Any], *, delay: float = 0.0) -> PollStep:
    return reply(json.dumps({"ts": ts, "updates": updates}).encode(), delay=delay)


def send_nothing(seconds: float, closed_at: list[float]) -> PollStep:
    """Send nothing until the client closes the connection or `seconds` pass.

    The time the client closed it is appended to `closed_at`.
    """

    async def step(stream: trio.abc.Stream, protocol: h11.Connection) -> bool:
        with trio.move_on_after(seconds):
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.receive_some()
            closed_at.append(trio.current_time())
        return False

    return step


def send_raw_then_close(data: bytes, *, after: float = 0.0, reset: bool = False) -> PollStep:
    """Send `data` as is after `after` seconds, then close (FIN) or reset (RST) the connection."""

    async def step(stream: trio.abc.Stream, protocol: h11.Connection) -> bool:
        await trio.sleep(after)
        await stream.send_all(data)
        if reset:
            assert isinstance(stream, trio.SocketStream)
            await send_reset(stream)
        else:
            await stream.aclose()
        return False

    return step


def message(message_id: int, text: str) -> list[Any]:
    return [4, message_id, 1, 3051, 1710002000, text, {}, {}]


# -- running the client --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """What the client delivered before it waited in the poll that gets no reply."""

    updates: list[Update]
    replies: list[UpdatesReceived]
    ts: int | None


async def run_until_idle(vk: ScriptedVk, **options: Any) -> Run:
    """Run `LongPoll` against `vk` on 127.0.0.1 until it waits in a poll that gets no reply."""
    updates: list[Update] = []
    replies: list[UpdatesReceived] = []
    async with trio.open_nursery() as server_nursery:
        base = await start_server(server_nursery, vk.handle)
        vk.server_value = vk.server_value or f"{base}{POLL_PATH}"
        longpoll = LongPoll(TOKEN, api_url=f"{base}/method", **options)
        longpoll.on_response(replies.append)

        async def consume() -> None:
            async for update in longpoll:
                updates.append(update)

        async with trio.open_nursery() as client_nursery:
            client_nursery.start_soon(consume)
            with trio.fail_after(TEST_TIMEOUT):
                await vk.idle.wait()
            client_nursery.cancel_scope.cancel()
        await longpoll.aclose()
        server_nursery.cancel_scope.cancel()
    return Run(updates=updates, replies=replies, ts=longpoll.ts)


def message_ids(updates: list[Update]) -> list[int]:
    return [update.message_id for update in updates if isinstance(update, MessageNew)]


# -- read timeouts and cut connections -----------------------------------------------------


@pytest.mark.parametrize("wait", [0, 5, 25, 90])
async def test_silent_poll_times_out(autojump_clock: trio.testing.MockClock, wait: int) -> None:
    """A poll that gets no reply times out at wait + 10 s and is resent, where clients hung."""
    closed_at: list[float] = []
    vk = ScriptedVk(steps=[send_nothing(1000.0, closed_at)])

    await run_until_idle(vk, wait=wait)

    silent, resent = vk.polls()
    assert closed_at[0] - silent.at == pytest.approx(wait + 10.0)
    assert resent.params["key"] == silent.params["key"]
    assert resent.params["ts"] == silent.params["ts"] == str(FIRST_TS)
    assert len(vk.server_calls()) == 1


async def test_stalls_and_cuts_keep_ts(autojump_clock: trio.testing.MockClock) -> None:
    """Timeouts and cut connections are retried with the same key and ts, not a new session."""
    closed_at: list[float] = []
    vk = ScriptedVk(
        steps=[
            send_nothing(120.0, closed_at),
            send_raw_then_close(b"", after=30.0),
            updates_reply(FIRST_TS, [], delay=25.0),
            updates_reply(FIRST_TS + 1, [message(9101, "after the stalls")]),
        ]
    )

    run = await run_until_idle(vk, wait=25)

    polls = vk.polls()
    assert len(polls) == 5
    assert len(vk.server_calls()) == 1
    assert {poll.params["key"] for poll in polls} == {vk.keys[0]}
    assert [poll.params["ts"] for poll in polls] == [str(FIRST_TS)] * 4 + [str(FIRST_TS + 1)]
    assert closed_at[0] - polls[0].at == pytest.approx(35.0)
    # The reply held for the whole wait is a success: the next poll goes out at once.
    assert polls[3].at - polls[2].at == pytest.approx(25.0)
    assert [len(received.updates) for received in run.replies] == [0, 1]
    assert message_ids(run.updates) == [9101]
    assert run.ts == FIRST_TS + 1


async def test_cut_long_wait_suggests_lower_wait(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Polls with wait above 25 s cut at 30 s must log a hint to lower wait, besides retrying."""
    vk = ScriptedVk(
        steps=[
            send_raw_then_close(b"", after=30.0),
            send_raw_then_close(b"", after=30.0),
            updates_reply(FIRST_TS, []),
        ]
    )

    with caplog.at_level(logging.INFO, logger="lptrio"):
        await run_until_idle(vk, wait=90)

    assert [poll.params["ts"] for poll in vk.polls()] == [str(FIRST_TS)] * 4
    messages = [record.getMessage() for record in caplog.records]
    assert any(re.search(r"\bwait\b.*\b25\b", text) for text in messages), messages


# -- HTTP error replies and empty bodies ---------------------------------------------------

NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>"
)
HTML = (("Content-Type", "text/html"),)
ERROR_REPLIES = {
    "502-html": reply(NGINX_502, status=502, headers=HTML),
    "503-empty": reply(b"", status=503, headers=HTML),
    "200-empty": reply(b""),
    "403-html": reply(b"<html><body>403 Forbidden</body></html>", status=403, headers=HTML),
    "500-json": reply(b'{"ts": 1, "updates": []}', status=500),
    "429-empty": reply(b"", status=429),
    "404-html": reply(b"<html>404</html>", status=404, headers=HTML),
    "200-html": reply(NGINX_502, headers=HTML),
    "200-json-array": reply(b"[]"),
    "200-api-envelope": reply(b'{"response": 1}'),
}


@pytest.mark.parametrize("bad_reply", ERROR_REPLIES.values(), ids=ERROR_REPLIES.keys())
async def test_error_reply_retried_same_ts(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, bad_reply: PollStep
) -> None:
    """An HTTP error or non-JSON reply is retried with ts kept, where clients crashed on it."""
    vk = ScriptedVk(
        steps=[bad_reply, updates_reply(FIRST_TS + 1, [message(9201, "after the error")])]
    )

    with caplog.at_level(logging.WARNING, logger="lptrio"):
        run = await run_until_idle(vk)

    first, second, last = vk.polls()
    assert first.params["ts"] == second.params["ts"] == str(FIRST_TS)
    assert second.params["key"] == first.params["key"]
    assert last.params["ts"] == str(FIRST_TS + 1)
    assert message_ids(run.updates) == [9201]
    retries = [record.getMessage() for record in caplog.records if "retry" in record.getMessage()]
    assert len(retries) == 1
    assert TOKEN not in retries[0]
    assert vk.keys[0] not in retries[0]


async def test_error_streak_keeps_ts(autojump_clock: trio.testing.MockClock) -> None:
    """A run of 5xx, empty and 403 replies keeps ts, never refreshes in a loop, loses nothing."""
    vk = ScriptedVk(
        steps=[
            ERROR_REPLIES["502-html"],
            ERROR_REPLIES["503-empty"],
            ERROR_REPLIES["200-empty"],
            ERROR_REPLIES["403-html"],
            updates_reply(FIRST_TS + 1, [message(9211, "after the streak")]),
        ]
    )

    run = await run_until_idle(vk)

    polls = vk.polls()
    assert [poll.params["ts"] for poll in polls] == [str(FIRST_TS)] * 5 + [str(FIRST_TS + 1)]
    assert {poll.params["key"] for poll in polls} <= set(vk.keys)
    # A key refresh may follow a failed poll, but never two refreshes in a row.
    paths = [request.path for request in vk.seen]
    assert all(
        (earlier, later) != (SERVER_METHOD_PATH, SERVER_METHOD_PATH)
        for earlier, later in pairwise(paths)
    )
    gaps = [later.at - earlier.at for earlier, later in pairwise(polls[:5])]
    assert all(gap > 0 for gap in gaps)
    assert message_ids(run.updates) == [9211]
    assert run.ts == FIRST_TS + 1


# -- broken and cut bodies -----------------------------------------------------------------

GOOD_BODY = json.dumps(
    {"ts": FIRST_TS + 1, "updates": [message(9301, "only once")]}, separators=(",", ":")
).encode()


def chunked_head() -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )


async def test_broken_bodies_never_move_ts(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Bad JSON and cut bodies are retried with ts kept, where other clients stopped polling."""
    trailing_comma = GOOD_BODY.replace(b"]]}", b"],]}")
    declared = b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n"
    first_chunk = GOOD_BODY[:16]
    vk = ScriptedVk(
        steps=[
            reply(trailing_comma),
            # Content-Length not reached, then the server closes.
            send_raw_then_close(declared + GOOD_BODY[:20]),
            # The connection is reset in the middle of the second chunk.
            send_raw_then_close(
                chunked_head() + b"%x\r\n%s\r\n%x\r\n" % (16, first_chunk, 64) + GOOD_BODY[16:30],
                reset=True,
            ),
            # The part that arrived is complete JSON with a newer ts, but the body is cut.
            send_raw_then_close(declared + GOOD_BODY),
            reply(GOOD_BODY),
        ]
    )

    with caplog.at_level(logging.WARNING, logger="lptrio"):
        run = await run_until_idle(vk)

    polls = vk.polls()
    assert [poll.params["ts"] for poll in polls] == [str(FIRST_TS)] * 5 + [str(FIRST_TS + 1)]
    assert message_ids(run.updates) == [9301]
    assert run.ts == FIRST_TS + 1
    retries = [record.getMessage() for record in caplog.records if "retry" in record.getMessage()]
    assert "not JSON" in retries[0]


# -- the scheme of the server value --------------------------------------------------------


@pytest.mark.parametrize(
    ("server_value", "path"),
    [
        ("im.example.test/nim707", "/nim707"),
        ("https://im.example.test/nim707", "/nim707"),
        ("HTTPS://im.example.test/nim707", "/nim707"),
        ("im.example.test/lp/v3/nim707", "/lp/v3/nim707"),
    ],
)
async def test_server_value_is_polled_over_https(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, server_value: str, path: str
) -> None:
    """A server value with or without https:// is polled once over TLS on 443, never on port 80."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("api.example.test", "im.example.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    vk = ScriptedVk(steps=[], server_value=server_value)
    tls_base = await start_tls_server(nursery, vk.handle, server_context)
    tls_port = int(tls_base.rsplit(":", 1)[1])
    opened: list[tuple[str, int]] = []

    async def open_loopback(host: str, port: int) -> trio.abc.Stream:
        # Every name leads to the TLS server on 127.0.0.1; the names only label the connection.
        opened.append((host, port))
        return await trio.open_tcp_stream("127.0.0.1", tls_port)

    longpoll = LongPoll(
        TOKEN,
        api_url="https://api.example.test/method",
        ssl_context=client_context,
        stream_opener=open_loopback,
    )
    async with trio.open_nursery() as client_nursery:
        client_nursery.start_soon(_consume_nothing, longpoll)
        with trio.fail_after(TEST_TIMEOUT):
            await vk.idle.wait()
        client_nursery.cancel_scope.cancel()
    await longpoll.aclose()

    assert opened == [("api.example.test", 443), ("im.example.test", 443)]
    [poll] = vk.polls()
    assert poll.path == path
    assert poll.params["act"] == "a_check"
    assert poll.params["key"] == vk.keys[0]


async def _consume_nothing(longpoll: LongPoll) -> None:
    async for _update in longpoll:
        pass


# -- shutdown ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class LateReply:
    """A poll step that replies after 25 s unless the client closes the connection first."""

    body: bytes
    arrived: trio.Event = field(default_factory=trio.Event)
    client_left_at: float | None = None

    async def __call__(self, stream: trio.abc.Stream, protocol: h11.Connection) -> bool:
        self.arrived.set()
        with trio.move_on_after(25.0):
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.receive_some()
            self.client_left_at = trio.current_time()
            return False
        await send_reply(stream, protocol, Reply(body=self.body))
        return True


LATE_BODY = json.dumps({"ts": FIRST_TS + 1, "updates": [message(9401, "late")]}).encode()


async def test_shutdown_ends_held_poll_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """shutdown() cancels the held poll within a second and keeps ts, where vksdk waited it out."""
    late = LateReply(body=LATE_BODY)
    vk = ScriptedVk(steps=[late, reply(LATE_BODY)])
    base = await start_server(nursery, vk.handle)
    vk.server_value = f"{base}{POLL_PATH}"
    never_run = LongPoll(TOKEN, api_url=f"{base}/method")
    never_run.shutdown()
    await never_run.aclose()
    longpoll = LongPoll(TOKEN, api_url=f"{base}/method")
    received: list[Update] = []

    async with trio.open_nursery() as client_nursery:

        async def consume() -> None:
            async for update in longpoll:
                received.append(update)

        client_nursery.start_soon(consume)
        await late.arrived.wait()
        await trio.sleep(1.0)
        stopped_at = trio.current_time()
        longpoll.shutdown()
    returned_at = trio.current_time()
    await trio.testing.wait_all_tasks_blocked()

    assert returned_at - stopped_at <= 1.0
    assert late.client_left_at is not None
    assert late.client_left_at - stopped_at <= 1.0
    assert received == []
    assert longpoll.ts == FIRST_TS
    assert len(vk.server_calls()) == 1

    # A new client from the saved ts gets the event the cancelled poll would have had.
    resumed = LongPoll(TOKEN, api_url=f"{base}/method", ts=longpoll.ts)
    async for update in resumed:
        received.append(update)
        break
    await resumed.aclose()
    assert message_ids(received) == [9401]
    assert vk.polls()[-1].params["ts"] == str(FIRST_TS)


async def test_polling_again_after_shutdown(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A LongPoll stopped with shutdown() can poll again from the same ts, unlike vkbottle's."""
    late = LateReply(body=LATE_BODY)
    vk = ScriptedVk(steps=[late, reply(LATE_BODY)])
    base = await start_server(nursery, vk.handle)
    vk.server_value = f"{base}{POLL_PATH}"
    longpoll = LongPoll(TOKEN, api_url=f"{base}/method")
    received: list[Update] = []

    async def consume() -> None:
        async for update in longpoll:
            received.append(update)
            longpoll.shutdown()

    async with trio.open_nursery() as client_nursery:
        client_nursery.start_soon(consume)
        await late.arrived.wait()
        longpoll.shutdown()
    with trio.fail_after(60):
        await consume()
    await longpoll.aclose()

    assert message_ids(received) == [9401]
    assert vk.polls()[-1].params["ts"] == str(FIRST_TS)
    assert vk.polls()[-1].params["key"] == vk.keys[0]
