"""Recorder and fake server tests for faults that users of other VK clients ran into.

The recorder tests capture the real `LongPoll` against a scripted server on
127.0.0.1 (see test_recorder.py). The fake server tests talk to a running
`FakeServer` over real HTTP with lptrio's `HttpClient`. Time is virtual
(`autojump_clock`). Ids, keys and counters are fake.
"""

import contextlib
import json
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import trio
from e2e_helpers import FIXTURES
from test_recorder import KEY, TOKEN, ScriptedVk, capture, server_body

from lpcore import Request, RequestKind, VersionError
from lprecord import (
    Exchange,
    ExchangeKind,
    FakeServer,
    Fault,
    Fixture,
    FixtureWriter,
    Header,
    Recorder,
    open_fake_server,
    read_fixture,
)
from lprecord._fixture import REDACTED_VALUE, decode_body
from lprecord._httpserver import HttpReply
from lptrio import HttpClient, HttpResponse, LongPoll, TransportError

CLIENT_TOKEN = "tok-fake-server-reports-Yd3Hn"


# -- the recorder stores exchanges unchanged -----------------------------------------------

API_502_PAGE = b"<html><body><h1>502</h1>from the API host</body></html>"
# A poll reply with a byte that is not UTF-8 inside a message text.
ODD_BYTE_BODY = b'{"ts":871,"updates":[[4,9501,1,3051,1710003000,"x\xffy",{},{}]]}'
COOKIES = (("Set-Cookie", "lang=4"), ("Set-Cookie", "sid=91"))


async def replay_strictly(fixture: Path, output: Path, exchanges: int) -> Recorder:
    """Replay `fixture` strictly to the real client, recording into `output`.

    Returns once the client's recorder has written `exchanges` exchanges.
    """
    async with open_fake_server(fixture, strict=True) as server:
        header = Header(lp_version=3, mode=234, wait=25, api_version="5.199")
        with FixtureWriter.create(output, header) as writer:
            recorder = Recorder(writer, token=TOKEN, start=trio.current_time())
            longpoll = LongPoll(TOKEN, api_url=server.api_url, observer=recorder)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_consume, longpoll)
                with trio.fail_after(900):
                    while recorder.exchanges < exchanges:
                        await trio.sleep(1)
                nursery.cancel_scope.cancel()
            await longpoll.aclose()
    return recorder


async def _consume(longpoll: LongPoll) -> None:
    async for _update in longpoll:
        pass


async def test_capture_keeps_bytes_and_replays_them(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Bodies and headers are kept as received except secrets, where interceptors rewrote them."""
    vk = ScriptedVk(
        api_failures=[HttpReply(status=502, body=API_502_PAGE, content_type="text/html")],
        polls=[
            HttpReply(body=b""),
            HttpReply(body=ODD_BYTE_BODY, content_type="text/javascript", headers=COOKIES),
        ],
    )

    result = await capture(vk, tmp_path / "first.jsonl")

    exchanges = result.exchanges()
    kinds = [exchange.kind for exchange in exchanges]
    assert kinds == [ExchangeKind.API, ExchangeKind.API, ExchangeKind.POLL, ExchangeKind.POLL]
    api_502, api_ok, empty, odd = exchanges
    assert api_502.status == 502
    assert api_502.body == API_502_PAGE
    assert ("content-type", "text/html") in api_502.headers
    assert api_ok.body == server_body(f"http://127.0.0.1:{result.api_port}").replace(
        KEY.encode(), REDACTED_VALUE.encode()
    )
    assert empty.body == b""
    assert ("content-length", "0") in empty.headers
    empty_line = result.lines()[3]["response"]["body"]
    assert empty_line != {"json": {}}
    assert decode_body(empty_line) == b""
    assert odd.body == ODD_BYTE_BODY
    assert odd.headers == (
        ("content-type", "text/javascript"),
        ("content-length", str(len(ODD_BYTE_BODY))),
        ("set-cookie", "lang=4"),
        ("set-cookie", "sid=91"),
    )

    text = result.path.read_text("utf-8")
    assert TOKEN not in text
    assert KEY not in text
    for exchange in exchanges:
        secret = "access_token" if exchange.kind is ExchangeKind.API else "key"
        assert exchange.params[secret] == REDACTED_VALUE
    assert dict(empty.params) == {
        "act": "a_check",
        "key": REDACTED_VALUE,
        "ts": "870",
        "wait": "25",
        "mode": "234",
        "version": "3",
    }

    replayed = await replay_strictly(result.path, tmp_path / "second.jsonl", len(exchanges))

    again = read_fixture(tmp_path / "second.jsonl").exchanges
    assert replayed.exchanges == len(exchanges)
    assert [exchange.status for exchange in again] == [exchange.status for exchange in exchanges]
    for recorded, served in zip(exchanges, again, strict=True):
        # Strict replay issues its own key and server in getLongPollServer results.
        if recorded.kind is not ExchangeKind.API or recorded.status != 200:
            assert served.body == recorded.body


# -- the fake server's failed replies ------------------------------------------------------

#: The keys VK's failed replies have, by code; failed 2 may carry an error text.
VK_FAILED_KEYS: dict[int, tuple[frozenset[str], ...]] = {
    1: (frozenset({"failed", "ts"}),),
    2: (frozenset({"failed"}), frozenset({"failed", "error"})),
    3: (frozenset({"failed"}),),
    4: (frozenset({"failed", "min_version", "max_version"}),),
}


def assert_vk_poll_shape(reply: Any) -> None:
    """Fail unless `reply` has exactly the keys and value types of a VK poll reply."""
    assert type(reply) is dict, reply
    if "failed" not in reply:
        assert {"ts", "updates"} <= set(reply) <= {"ts", "updates", "pts"}, reply
        assert type(reply["ts"]) is int, reply
        assert type(reply["updates"]) is list, reply
        assert type(reply.get("pts", 0)) is int, reply
        return
    code = reply["failed"]
    assert type(code) is int, reply
    assert frozenset(reply) in VK_FAILED_KEYS[code], reply
    for name in ("ts", "min_version", "max_version"):
        if name in reply:
            assert type(reply[name]) is int, reply
    if "error" in reply:
        assert type(reply["error"]) is str, reply


class FakeVkClient:
    """Calls a fake server's API and long poll by hand, the way a consumer in any language does."""

    def __init__(self, http: HttpClient, server: FakeServer) -> None:
        self.http = http
        self.server = server
        self.credentials: dict[str, Any] = {}

    async def get_server(self) -> dict[str, Any]:
        form = urlencode({"access_token": CLIENT_TOKEN, "v": "5.199", "lp_version": "3"})
        response = await self.http.request(
            "POST",
            f"{self.server.api_url}/messages.getLongPollServer",
            headers=[("Content-Type", "application/x-www-form-urlencoded")],
            body=form.encode(),
            timeout=30,
        )
        result: dict[str, Any] = json.loads(response.body)["response"]
        self.credentials = result
        return result

    async def poll(self, **params: Any) -> Any:
        query = {
            "act": "a_check",
            "key": self.credentials["key"],
            "ts": self.credentials["ts"],
            "wait": 1,
            "mode": 234,
            "version": 3,
        }
        query.update(params)
        response = await self.http.request(
            "GET", f"{self.credentials['server']}?{urlencode(query)}", timeout=100
        )
        assert response.status == 200
        return json.loads(response.body)


async def test_failed_replies_have_vk_shapes(autojump_clock: trio.abc.Clock) -> None:
    """Each failed code has exactly VK's keys and types, since simpler fakes hid client crashes."""
    fixture = FIXTURES / "chat_session.jsonl"
    async with open_fake_server(fixture, key_ttl=600) as server, HttpClient() as http:
        client = FakeVkClient(http, server)
        credentials = await client.get_server()
        newest = credentials["ts"]
        replies: dict[str, Any] = {}

        replies["ts-ahead"] = await client.poll(ts=newest + 7)
        replies["ts-behind"] = await client.poll(ts=newest - 400)
        replies["version-99"] = await client.poll(version=99)
        for code in (1, 4):
            server.inject(Fault.failed(code))
            replies[f"injected-{code}"] = await client.poll()
        replies["normal"] = await client.poll()
        server.inject(Fault.failed(3))
        replies["injected-3"] = await client.poll()
        await client.get_server()
        server.inject(Fault.failed(2, error="key expired"))
        replies["injected-2"] = await client.poll()
        await client.get_server()
        await trio.sleep(601)
        replies["expired"] = await client.poll()

    for reply in replies.values():
        assert_vk_poll_shape(reply)
    assert replies["ts-ahead"] == {"failed": 1, "ts": newest}
    assert replies["ts-behind"] == {"failed": 1, "ts": newest}
    assert replies["version-99"] == {"failed": 4, "min_version": 0, "max_version": 19}
    assert replies["injected-3"] == {"failed": 3}
    assert replies["injected-2"] == {"failed": 2, "error": "key expired"}
    assert replies["expired"]["failed"] == 2
    assert "updates" not in replies["injected-1"]


class PollReplies:
    """An exchange observer that keeps the parsed body of every poll reply."""

    def __init__(self) -> None:
        self.replies: list[Any] = []

    def exchange(
        self,
        request: Request,
        *,
        started: float,
        finished: float,
        response: HttpResponse | None,
        error: TransportError | None,
    ) -> None:
        if response is not None and request.kind is RequestKind.POLL:
            self.replies.append(json.loads(response.body))


def recorded_failed_keys(fixture: Fixture) -> dict[int, frozenset[str]]:
    """Return the key set of each failed code among a fixture's poll replies."""
    keys: dict[int, frozenset[str]] = {}
    for exchange in fixture.exchanges:
        reply = exchange.json_body()
        if exchange.kind is ExchangeKind.POLL and isinstance(reply, dict) and "failed" in reply:
            keys[reply["failed"]] = frozenset(reply)
    return keys


@pytest.mark.parametrize("name", ["chat_session", "failures_session", "version_error"])
async def test_replayed_fixture_keeps_reply_shapes(
    autojump_clock: trio.abc.Clock, name: str
) -> None:
    """Replaying a recorded session serves VK's reply shapes, adding no keys to any reply."""
    path = FIXTURES / f"{name}.jsonl"
    recorded = recorded_failed_keys(read_fixture(path))
    observer = PollReplies()

    async with open_fake_server(path) as server:
        longpoll = LongPoll(CLIENT_TOKEN, api_url=server.api_url, observer=observer)
        with trio.move_on_after(400), contextlib.suppress(VersionError):
            async for _update in longpoll:
                pass
        await longpoll.aclose()

    assert observer.replies
    for reply in observer.replies:
        assert_vk_poll_shape(reply)
        if "failed" in reply and reply["failed"] in recorded:
            assert frozenset(reply) == recorded[reply["failed"]]
    served_failed = {reply["failed"] for reply in observer.replies if "failed" in reply}
    assert set(recorded) <= served_failed


# -- the ts window, the hold and the key lifetime ------------------------------------------

WINDOW_FIRST_TS = 41000
WINDOW_EVENTS = 300
WINDOW_NEWEST = WINDOW_FIRST_TS + WINDOW_EVENTS
COUNTERS = [[80, count, 0] for count in range(WINDOW_EVENTS)]


def window_fixture() -> Fixture:
    """Build a session whose 300 counter events are all available when it starts."""
    credentials = {
        "key": REDACTED_VALUE,
        "server": "im.example.test/nim3051",
        "ts": WINDOW_FIRST_TS,
    }
    server = Exchange(
        t=0.0,
        elapsed=0.1,
        kind=ExchangeKind.API,
        method="POST",
        url="https://api.example.test/method/messages.getLongPollServer",
        params={"access_token": REDACTED_VALUE, "v": "5.199", "lp_version": "3"},
        status=200,
        body=json.dumps({"response": credentials}).encode(),
    )
    poll = Exchange(
        t=0.0,
        elapsed=0.0,
        kind=ExchangeKind.POLL,
        method="GET",
        url="https://im.example.test/nim3051",
        params={"act": "a_check", "key": REDACTED_VALUE, "ts": str(WINDOW_FIRST_TS)},
        status=200,
        body=json.dumps({"ts": WINDOW_NEWEST, "updates": COUNTERS}).encode(),
    )
    header = Header(lp_version=3, mode=234, wait=25, api_version="5.199", user_id=3051)
    return Fixture(header=header, exchanges=(server, poll))


async def test_ts_window_and_key_lifetime(autojump_clock: trio.abc.Clock) -> None:
    """The fake keeps 256 events, keeps polls open for wait and expires keys, as VK does."""
    async with open_fake_server(window_fixture(), key_ttl=1800) as server, HttpClient() as http:
        client = FakeVkClient(http, server)
        issued_at = trio.current_time()
        credentials = await client.get_server()
        edge = await client.poll(ts=WINDOW_NEWEST - 256)
        too_old = await client.poll(ts=WINDOW_NEWEST - 257)
        ahead = await client.poll(ts=WINDOW_NEWEST + 1)
        wait_from = trio.current_time()
        after_wait = await client.poll(ts=WINDOW_NEWEST, wait=1)
        waited = trio.current_time() - wait_from
        await trio.sleep_until(issued_at + 1790)
        before_expiry = await client.poll(ts=WINDOW_NEWEST, wait=1)
        await trio.sleep_until(issued_at + 1810)
        expired = await client.poll(ts=WINDOW_NEWEST, wait=1)

    assert credentials["ts"] == WINDOW_NEWEST
    assert edge == {"ts": WINDOW_NEWEST, "updates": COUNTERS[-256:]}
    assert too_old == {"failed": 1, "ts": WINDOW_NEWEST}
    assert ahead == {"failed": 1, "ts": WINDOW_NEWEST}
    assert after_wait == {"ts": WINDOW_NEWEST, "updates": []}
    assert waited == pytest.approx(1.0)
    assert before_expiry == {"ts": WINDOW_NEWEST, "updates": []}
    assert expired == {"failed": 2}


async def open_from(local_host: str, host: str, port: int) -> trio.abc.Stream:
    """Connect to `host`:`port` from the loopback address `local_host`."""
    sock = trio.socket.socket()
    try:
        await sock.bind((local_host, 0))
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def test_key_from_other_address_rejected(autojump_clock: trio.abc.Clock) -> None:
    """A key polled from an IP other than the one it was issued to gets failed 2, as from VK."""
    async with open_fake_server(window_fixture()) as server:
        async with HttpClient() as issuing_http:
            credentials = await FakeVkClient(issuing_http, server).get_server()
        async with HttpClient(stream_opener=partial(open_from, "127.0.0.2")) as other_http:
            other = FakeVkClient(other_http, server)
            other.credentials = credentials
            reply = await other.poll(ts=WINDOW_NEWEST, wait=1)

    assert reply == {"failed": 2}


async def test_window_size_is_an_option(autojump_clock: trio.abc.Clock) -> None:
    """The window is a parameter, because VK does not document its size or edge."""
    async with (
        open_fake_server(window_fixture(), event_window=40) as server,
        HttpClient() as http,
    ):
        client = FakeVkClient(http, server)
        await client.get_server()
        edge = await client.poll(ts=WINDOW_NEWEST - 40)
        too_old = await client.poll(ts=WINDOW_NEWEST - 41)

    assert edge == {"ts": WINDOW_NEWEST, "updates": COUNTERS[-40:]}
    assert too_old == {"failed": 1, "ts": WINDOW_NEWEST}


async def test_unbound_keys_work_from_any_address(autojump_clock: trio.abc.Clock) -> None:
    """With bind_keys=False a key issued to one address polls from another."""
    async with open_fake_server(window_fixture(), bind_keys=False) as server:
        async with HttpClient() as issuing_http:
            credentials = await FakeVkClient(issuing_http, server).get_server()
        async with HttpClient(stream_opener=partial(open_from, "127.0.0.2")) as other_http:
            other = FakeVkClient(other_http, server)
            other.credentials = credentials
            reply = await other.poll(ts=WINDOW_NEWEST, wait=1)

    assert reply == {"ts": WINDOW_NEWEST, "updates": []}
