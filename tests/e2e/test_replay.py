"""Whole-system tests: fixtures replayed by the fake server to the real lptrio client."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e_helpers import FIXTURES, recorded_updates

import lpcore
from lpcore import Request, RequestKind
from lprecord import (
    FakeServer,
    FixtureError,
    FixtureWriter,
    Header,
    Recorder,
    open_fake_server,
    read_fixture,
)
from lptrio import HttpResponse, LongPoll, TransportError

TOKEN = "fake-token-0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass
class Seen:
    kind: RequestKind
    params: dict[str, str]
    reply: Any


class ExchangeLog:
    """An observer that keeps each request's parameters and parsed reply."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    def exchange(
        self,
        request: Request,
        *,
        started: float,
        finished: float,
        response: HttpResponse | None,
        error: TransportError | None,
    ) -> None:
        reply = json.loads(response.body) if response is not None else None
        self.seen.append(Seen(request.kind, dict(request.params), reply))

    def polls(self) -> list[Seen]:
        return [s for s in self.seen if s.kind is RequestKind.POLL]


async def consume(server: FakeServer, *, seconds: float, observer: Any = None) -> list[Any]:
    """Poll `server` for `seconds` of (virtual) time and return the raw updates received."""
    longpoll = LongPoll(
        TOKEN, api_url=server.api_url, ssl_context=server.client_ssl_context(), observer=observer
    )
    received: list[Any] = []
    with trio.move_on_after(seconds):
        async for update in longpoll:
            received.append(update.raw)
    await longpoll.aclose()
    return received


@pytest.mark.lp_fixture("fixtures/chat_session.jsonl", tls=True)
async def test_consumer_gets_every_recorded_update(
    lp_trio_server: FakeServer, autojump_clock: trio.abc.Clock
) -> None:
    received = await consume(lp_trio_server, seconds=300)

    expected = recorded_updates(FIXTURES / "chat_session.jsonl")
    assert len(expected) >= 30
    assert received == expected


async def capture(server: FakeServer, path: Path, seconds: float) -> None:
    header = Header(lp_version=3, mode=234, wait=25, api_version="5.199")
    with FixtureWriter.create(path, header) as writer:
        recorder = Recorder(writer, token=TOKEN, start=trio.current_time())
        await consume(server, seconds=seconds, observer=recorder)


async def test_capture_replay_capture_is_stable(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    async with open_fake_server(FIXTURES / "chat_session.jsonl", tls=True) as server:
        await capture(server, first, seconds=300)
    async with open_fake_server(first, tls=True) as server:
        await capture(server, second, seconds=300)

    source = recorded_updates(FIXTURES / "chat_session.jsonl")
    assert recorded_updates(first) == source
    assert recorded_updates(second) == source


async def test_recorded_fixture_holds_no_secret(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "capture.jsonl"
    async with open_fake_server(FIXTURES / "failures_session.jsonl", tls=True) as server:
        await capture(server, path, seconds=120)
        issued_keys = list(server.engine._keys)

    text = path.read_text()
    assert issued_keys
    assert TOKEN not in text
    for key in issued_keys:
        assert key not in text
    assert '"access_token": "<redacted>"' in text


async def test_failed_2_keeps_ts(autojump_clock: trio.abc.Clock) -> None:
    log = ExchangeLog()
    async with open_fake_server(FIXTURES / "failures_session.jsonl", tls=True) as server:
        await consume(server, seconds=120, observer=log)

    polls = log.polls()
    index = next(i for i, s in enumerate(polls) if s.reply == {"failed": 2})
    assert polls[index + 1].params["ts"] == polls[index].params["ts"]
    server_calls = [s for s in log.seen if s.kind is RequestKind.API]
    assert len(server_calls) >= 2


async def test_failed_3_takes_new_ts(autojump_clock: trio.abc.Clock) -> None:
    log = ExchangeLog()
    async with open_fake_server(FIXTURES / "failures_session.jsonl", tls=True) as server:
        await consume(server, seconds=120, observer=log)

    seen = log.seen
    index = next(i for i, s in enumerate(seen) if s.reply == {"failed": 3})
    refresh, next_poll = seen[index + 1], seen[index + 2]
    assert refresh.kind is RequestKind.API
    assert next_poll.params["ts"] == str(refresh.reply["response"]["ts"])


async def test_failed_1_takes_reply_ts(autojump_clock: trio.abc.Clock) -> None:
    log = ExchangeLog()
    async with open_fake_server(FIXTURES / "failures_session.jsonl", tls=True) as server:
        await consume(server, seconds=120, observer=log)

    seen = log.seen
    index = next(i for i, s in enumerate(seen) if s.reply and s.reply.get("failed") == 1)
    failed, history, next_poll = seen[index : index + 3]
    # The lost events are fetched from the pts before the loss; polling
    # resumes from the ts of the history's credentials.
    assert history.kind is RequestKind.HISTORY
    assert history.params["pts"] == str(seen[index - 1].reply["pts"])
    credentials = history.reply["response"]["credentials"]
    assert next_poll.params["ts"] == str(credentials["ts"])
    assert int(next_poll.params["ts"]) >= failed.reply["ts"]


async def test_failures_session_delivers_every_update(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(FIXTURES / "failures_session.jsonl", tls=True) as server:
        received = await consume(server, seconds=120)

    assert received == recorded_updates(FIXTURES / "failures_session.jsonl")


async def test_failed_4_raises_version_error(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(FIXTURES / "version_error.jsonl", tls=True) as server:
        longpoll = LongPoll(TOKEN, api_url=server.api_url, ssl_context=server.client_ssl_context())
        with pytest.raises(lpcore.VersionError) as caught:
            async for _update in longpoll:
                pass
        await longpoll.aclose()

    assert caught.value.min_version == 0
    assert caught.value.max_version == 2
    assert "version=3" in str(caught.value)


async def test_hour_of_held_polls_in_virtual_time(autojump_clock: trio.abc.Clock) -> None:
    log = ExchangeLog()
    start = trio.current_time()
    async with open_fake_server(FIXTURES / "chat_session.jsonl") as server:
        longpoll = LongPoll(TOKEN, api_url=server.api_url, observer=log)
        with trio.move_on_after(3600):
            async for _update in longpoll:
                pass
        await longpoll.aclose()

    assert trio.current_time() - start == pytest.approx(3600)
    empty = [
        s
        for s in log.polls()
        if s.reply == {"ts": s.reply.get("ts"), "pts": s.reply.get("pts"), "updates": []}
    ]
    # After the recorded 3 minutes every poll is held for the whole wait:
    # about (3600 - 182) / 25 of them, minus one key refresh per hour.
    assert len(empty) >= 130


def test_corrupt_fixture_names_file_line_and_reason(tmp_path: Path) -> None:
    lines = (FIXTURES / "chat_session.jsonl").read_text().splitlines()
    lines[4] = lines[4][:-7] + ",]}"
    path = tmp_path / "corrupt.jsonl"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(FixtureError) as caught:
        FakeServer(path)

    message = str(caught.value)
    assert str(path) in message
    assert ":5:" in message
    assert "JSON" in message


def test_shipped_fixtures_read_back() -> None:
    for path in sorted(FIXTURES.glob("*.jsonl")):
        fixture = read_fixture(path)
        assert fixture.exchanges, path
