"""Tests for LongPoll against the project's fake server, in virtual time."""

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e_helpers import FIXTURES, recorded_updates

from lpcore import Checkpoint, MessageNew, Update, UpdatesReceived
from lprecord import (
    Exchange,
    ExchangeKind,
    FakeServer,
    Fault,
    FixtureWriter,
    Header,
    open_fake_server,
)
from lptrio import LongPoll, TransportError, TransportErrorKind

TOKEN = "fake-token-for-longpoll-tests-0123456789"
CHAT = FIXTURES / "chat_session.jsonl"


def client(server: FakeServer, **options: Any) -> LongPoll:
    return LongPoll(TOKEN, api_url=server.api_url, **options)


async def test_checkpoint_file_resume_after_crash_between_batches(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "checkpoint.json"
    expected = recorded_updates(CHAT)
    first_run: list[Any] = []

    async with open_fake_server(CHAT) as server:
        longpoll = client(server, checkpoint=path)
        async for update in longpoll:
            first_run.append(update.raw)
            if len(first_run) == 3:
                # Batch 2 (updates 2 and 3) is handled: asking for the next
                # update saves its end, and the crash comes while the client
                # waits for batch 3. Abandon the client without shutdown.
                with trio.move_on_after(0.5):
                    await longpoll.__anext__()
                break
        saved = json.loads(path.read_text())

        second_run: list[Any] = []
        resumed = client(server, checkpoint=path)
        with trio.move_on_after(400):
            async for update in resumed:
                second_run.append(update.raw)
        await resumed.aclose()
        await longpoll.aclose()

    assert saved["skip"] == 0
    assert first_run + second_run == expected


async def test_checkpoint_counts_into_a_batch(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(CHAT) as server:
        longpoll = client(server)
        seen = 0
        async for _update in longpoll:
            seen += 1
            if seen == 3:
                break
        checkpoint = longpoll.checkpoint()
        await longpoll.aclose()

    # Batch 1 is one update and ends at ts 1800000001; batch 2 holds
    # updates 2 and 3. With update 3 handed out, update 2 is handled, and
    # as an event VK keeps (code 6) it also moves pts on by one.
    assert checkpoint == Checkpoint(ts=1800000001, pts=500002, skip=1)


async def test_resume_mid_batch_skips_handled_updates(autojump_clock: trio.abc.Clock) -> None:
    expected = recorded_updates(CHAT)
    async with open_fake_server(CHAT) as server:
        longpoll = client(server)
        first_run: list[Any] = []
        async for update in longpoll:
            first_run.append(update.raw)
            if len(first_run) == 3:
                break
        checkpoint = longpoll.checkpoint()
        await longpoll.aclose()
        assert checkpoint is not None

        resumed = client(server, ts=checkpoint.ts, pts=checkpoint.pts, skip=checkpoint.skip)
        second_run: list[Any] = []
        with trio.move_on_after(400):
            async for update in resumed:
                second_run.append(update.raw)
        await resumed.aclose()

    # Update 3 was handed out but never handled, so it comes again.
    assert first_run[:2] + second_run == expected


async def test_shutdown_cancels_held_poll_at_once(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(CHAT) as server:
        longpoll = client(server)
        received: list[Update] = []

        async def consume() -> None:
            async for update in longpoll:
                received.append(update)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            # The recorded session ends after about 182 s; by 200 s the
            # client is held in a poll that would last until 225 s.
            await trio.sleep(200)
            stopped_at = trio.current_time()
            longpoll.shutdown()
        returned_at = trio.current_time()

    assert len(received) == 40
    assert returned_at - stopped_at <= 0.1


async def test_aclose_elsewhere_ends_held_poll(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(CHAT) as server:
        longpoll = client(server)
        received: list[Update] = []
        errors: list[trio.ClosedResourceError] = []

        async def consume() -> None:
            try:
                async for update in longpoll:
                    received.append(update)
            except trio.ClosedResourceError as error:
                errors.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            # Held in a poll that would last until 225 s, as in the shutdown test above.
            await trio.sleep(200)
            closed_at = trio.current_time()
            await longpoll.aclose()
        returned_at = trio.current_time()

    assert len(received) == 40
    [error] = errors
    assert "LongPoll was closed by aclose()" in str(error)
    assert returned_at - closed_at <= 0.1


async def test_aclose_in_loop_stops_queued_updates(autojump_clock: trio.abc.Clock) -> None:
    received: list[Update] = []

    async def consume(longpoll: LongPoll) -> None:
        async for update in longpoll:
            received.append(update)
            if len(received) == 2:
                # Update 3 came in the same batch as update 2 and is still queued.
                await longpoll.aclose()

    async with open_fake_server(CHAT) as server:
        with pytest.raises(trio.ClosedResourceError, match="closed by aclose"):
            await consume(client(server))

    assert [update.raw for update in received] == recorded_updates(CHAT)[:2]


async def test_shutdown_lets_running_handler_finish(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(CHAT) as server:
        longpoll = client(server)
        finished: list[int] = []

        @longpoll.on(MessageNew)
        async def slow(message: MessageNew) -> None:
            longpoll.shutdown()
            await trio.sleep(5)
            finished.append(message.message_id)

        await longpoll.run()

    assert finished == [1000001]


async def test_handler_error_logged_and_skipped(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_fake_server(CHAT) as server:
        longpoll = client(server)
        handled: list[int] = []

        @longpoll.on(MessageNew)
        def explode(message: MessageNew) -> None:
            if message.message_id == 1000001:
                raise RuntimeError("handler bug")
            handled.append(message.message_id)
            if len(handled) == 2:
                longpoll.shutdown()

        with caplog.at_level(logging.ERROR, logger="lptrio"):
            await longpoll.run()

    assert handled == [1000002, 1000003]
    [record] = [r for r in caplog.records if "raised" in r.getMessage()]
    assert "handler for update 4" in record.getMessage()
    assert record.exc_info is not None


async def test_handler_error_can_stop_the_loop(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(CHAT) as server:
        longpoll = client(server, raise_handler_errors=True)

        @longpoll.on(MessageNew)
        def explode(message: MessageNew) -> None:
            raise RuntimeError("handler bug")

        with pytest.raises(RuntimeError, match="handler bug"):
            await longpoll.run()
        await longpoll.aclose()


async def test_on_response_sees_whole_replies(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(CHAT) as server:
        longpoll = client(server)
        replies: list[UpdatesReceived] = []
        longpoll.on_response(replies.append)
        with trio.move_on_after(100):
            await longpoll.run()
        await longpoll.aclose()

    assert replies
    assert [len(reply.updates) for reply in replies][:3] == [1, 2, 1]


async def test_many_accounts_in_one_nursery(autojump_clock: trio.abc.Clock) -> None:
    expected = recorded_updates(CHAT)
    counts: list[int] = []

    async with open_fake_server(CHAT) as server:

        async def account(number: int) -> None:
            longpoll = LongPoll(f"{TOKEN}-{number}", api_url=server.api_url)
            received = 0
            with trio.move_on_after(250):
                async for _update in longpoll:
                    received += 1
            await longpoll.aclose()
            counts.append(received)

        async with trio.open_nursery() as nursery:
            for number in range(200):
                nursery.start_soon(account, number)

    assert counts == [len(expected)] * 200


async def test_repeated_retries_are_rate_limited_in_logs(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on this port: every request fails at once.
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    longpoll = LongPoll(TOKEN, api_url=f"http://127.0.0.1:{port}/method")

    with caplog.at_level(logging.WARNING, logger="lptrio"), trio.move_on_after(600):
        async for _update in longpoll:
            pass
    await longpoll.aclose()

    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    # The backoff reaches 60 s within a few attempts; over ten minutes that
    # is about 15 attempts, and the log lets one through per minute.
    assert 3 <= len(retries) <= 12
    assert any("suppressed" in r.getMessage() for r in retries)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


async def test_untrusted_certificate_stops_with_clear_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_fake_server(CHAT, tls=True) as server:
        # No ssl_context: the default trust store does not know the fake CA.
        longpoll = client(server)
        with pytest.raises(TransportError) as caught:
            async for _update in longpoll:
                pass
        await longpoll.aclose()

    assert caught.value.kind is TransportErrorKind.TLS
    assert "certificate verify failed" in str(caught.value)
    assert "ssl_context" in str(caught.value)


def one_batch_fixture(path: Path, updates: list[Any]) -> Path:
    """Write a session whose first poll reply carries all of `updates`."""
    header = Header(lp_version=3, mode=234, wait=25, api_version="5.199", user_id=100001)
    server_reply = {"response": {"key": "<redacted>", "server": "im.vk.com/nim100001", "ts": 100}}
    poll_reply = {"ts": 100 + len(updates), "updates": updates}
    with FixtureWriter.create(path, header) as writer:
        for kind, url, reply in [
            (
                ExchangeKind.API,
                "https://api.vk.com/method/messages.getLongPollServer",
                server_reply,
            ),
            (ExchangeKind.POLL, "https://im.vk.com/nim100001", poll_reply),
        ]:
            body = json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode()
            writer.append(
                Exchange(
                    t=0.0,
                    elapsed=0.5,
                    kind=kind,
                    method="GET",
                    url=url,
                    params={},
                    status=200,
                    body=body,
                )
            )
    return path


async def test_fresh_consumer_checkpoint_inside_first_batch(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    expected = recorded_updates(CHAT)
    fixture = one_batch_fixture(tmp_path / "one_batch.jsonl", expected)
    async with open_fake_server(fixture) as server:
        async with client(server) as longpoll:
            first_run: list[Any] = []
            async for update in longpoll:
                first_run.append(update.raw)
                if len(first_run) == 10:
                    break
            checkpoint = longpoll.checkpoint()
        assert checkpoint is not None

        second_run: list[Any] = []
        resumed = client(server, ts=checkpoint.ts, pts=checkpoint.pts, skip=checkpoint.skip)
        async with resumed:
            with trio.move_on_after(60):
                async for update in resumed:
                    second_run.append(update.raw)

    # The tenth update was handed out but not handled, so it comes again.
    assert checkpoint == Checkpoint(ts=100, pts=None, skip=9)
    assert first_run[:9] + second_run == expected


def two_poll_fixture(path: Path, first: list[Any], later: list[Any]) -> Path:
    """Write a session with pts: `first` arrives at once, `later` 100 s after."""
    header = Header(lp_version=3, mode=234, wait=25, api_version="5.199", user_id=100001)
    server = {"key": "<redacted>", "server": "im.vk.com/nim100001", "ts": 100, "pts": 9000}
    ts = 100 + len(first)
    exchanges = [
        (0.0, ExchangeKind.API, "https://api.vk.com/method/messages.getLongPollServer", server),
        (0.0, ExchangeKind.POLL, "https://im.vk.com/nim100001", {"ts": ts, "updates": first}),
        (
            100.0,
            ExchangeKind.POLL,
            "https://im.vk.com/nim100001",
            {"ts": ts + len(later), "pts": 9000 + len(first) + len(later), "updates": later},
        ),
    ]
    with FixtureWriter.create(path, header) as writer:
        for t, kind, url, reply in exchanges:
            body = {"response": reply} if kind is ExchangeKind.API else reply
            writer.append(
                Exchange(
                    t=t,
                    elapsed=0.5,
                    kind=kind,
                    method="GET",
                    url=url,
                    params={},
                    status=200,
                    body=json.dumps(body, separators=(",", ":")).encode(),
                )
            )
    return path


async def test_resume_inside_recovered_batch_skips_handled_updates(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    first = [[4, 3001, 1, 100002, 1700000000, "one", {}]]
    later = [[4, 3000 + n, 1, 100002, 1700000100 + n, f"msg {n}", {}] for n in (2, 3, 4)]
    fixture = two_poll_fixture(tmp_path / "recovery.jsonl", first, later)
    async with open_fake_server(fixture) as server:
        longpoll = client(server)
        first_run: list[Update] = []
        async for update in longpoll:
            first_run.append(update)
            if len(first_run) == 1:
                # The later messages arrive while the consumer is busy, and
                # the next poll hears that the server lost them.
                await trio.sleep(150)
                server.inject(Fault.failed(1))
            if len(first_run) == 3:
                break
        checkpoint = longpoll.checkpoint()
        await longpoll.aclose()
        assert checkpoint is not None

        resumed = client(server, resume=checkpoint)
        second_run: list[Update] = []
        with trio.move_on_after(60):
            async for update in resumed:
                second_run.append(update)
        await resumed.aclose()

    # The third update (message 3003) was handed out but not handled, so
    # the resumed consumer takes history from the same pts past one update.
    assert checkpoint == Checkpoint(ts=104, pts=9001, skip=1, loss_from_ts=101, loss_failed=1)
    handled = first_run[:2] + second_run
    assert [update.raw[1] for update in handled] == [3001, 3002, 3003, 3004]
    assert [update.recovered for update in handled] == [False, True, True, True]


async def test_iteration_cancelled_from_outside_goes_on(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(CHAT) as server, client(server) as longpoll:
        received: list[Any] = []
        # The recorded session lasts about 182 s, so the cancel comes in a held poll.
        with trio.move_on_after(60):
            async for update in longpoll:
                received.append(update.raw)
        cut_at = len(received)
        with trio.move_on_after(400):
            async for update in longpoll:
                received.append(update.raw)

    assert 0 < cut_at < len(received)
    assert received == recorded_updates(CHAT)


async def test_shutdown_before_run_is_harmless(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(CHAT) as server, client(server) as longpoll:
        longpoll.shutdown()
        received: list[Any] = []
        with trio.move_on_after(400):
            async for update in longpoll:
                received.append(update.raw)

    assert received == recorded_updates(CHAT)


async def test_checkpoint_file_saved_when_loop_breaks(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "checkpoint.json"
    async with open_fake_server(CHAT) as server, client(server, checkpoint=path) as longpoll:
        handled = 0
        async for _update in longpoll:
            handled += 1
            if handled == 3:
                break
        expected = longpoll.checkpoint()

    saved = json.loads(path.read_text())
    assert expected is not None
    assert (saved["ts"], saved["pts"], saved["skip"]) == (expected.ts, expected.pts, expected.skip)
    assert saved["skip"] == 1
