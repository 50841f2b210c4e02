"""Updates pushed into a running fake server, and the text escaping the server does for them."""

import json
import urllib.request
from typing import Any
from urllib.parse import urlencode

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from server_helpers import (
    FIRST_TS,
    RECORDED_MODE,
    TOKEN,
    Client,
    fixture_of,
    poll_after,
    poll_reply,
    server_call,
)
from trio.testing import MockClock

from lpcore import (
    MessageEdit,
    MessageFlags,
    MessageNew,
    Mode,
    escape_text,
    parse_update,
    unescape_text,
)
from lprecord import FakeServer, open_fake_server, run_fake_server_in_thread
from lprecord.strategies import update_objects

RECORDED_TEXT = "1 &lt; 2 &amp;&amp; 3 &gt; 2<br>&quot;ok&quot;"
RECORDED = [4, 1000002, 3, 100002, 1700000010, RECORDED_TEXT, {"title": " ... "}, {}, 0]
#: The text of the recorded message as its author typed it.
TYPED_TEXT = '1 < 2 && 3 > 2\n"ok"'


def new_message(**changes: Any) -> MessageNew:
    fields: dict[str, Any] = {
        "message_id": 1000100,
        "flags": MessageFlags.UNREAD,
        "peer_id": 100002,
        "timestamp": 1700000100,
        "raw_text": "",
        "additional": {"title": " ... "},
        "attachments": {},
        "random_id": 0,
    }
    fields.update(changes)
    return MessageNew(**fields)


def recorded_fixture() -> Any:
    return fixture_of(server_call(), poll_reply(done=1.0, updates=[RECORDED]))


async def push_and_poll(
    update: Any, *, text: str | None = None, mode: int = RECORDED_MODE
) -> list[Any]:
    """Push `update` at 5 s, after the recorded one, and return what a poll gets after it."""
    async with open_fake_server(recorded_fixture()) as server, Client(server) as client:
        await client.connect()
        await trio.sleep(5.0)
        ts = server.push(update, text=text)
        reply = await client.poll(FIRST_TS + 1, mode=mode, wait=0)

    assert ts == FIRST_TS + 2
    assert reply["ts"] == ts
    updates: list[Any] = reply["updates"]
    return updates


# -- escape_text ---------------------------------------------------------------------------


def test_escape_matches_documented_example() -> None:
    assert escape_text(TYPED_TEXT) == RECORDED_TEXT


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("&quot;", "&amp;quot;"),
        ("<br>", "&lt;br&gt;"),
        ("a\nb\nc", "a<br>b<br>c"),
        ("it's", "it's"),
        ("", ""),
    ],
    ids=["typed-entity", "typed-br", "newlines", "apostrophe", "empty"],
)
def test_escape_cases(typed: str, sent: str) -> None:
    assert escape_text(typed) == sent


@given(st.text())
def test_escape_round_trips_through_unescape_text(text: str) -> None:
    assert unescape_text(escape_text(text)) == text


# -- pushing typed updates and arrays ------------------------------------------------------


async def test_push_typed_text_is_escaped(autojump_clock: trio.abc.Clock) -> None:
    updates = await push_and_poll(new_message(), text=TYPED_TEXT)

    assert updates == [
        [4, 1000100, 1, 100002, 1700000100, RECORDED_TEXT, {"title": " ... "}, {}, 0]
    ]


async def test_push_text_round_trips_through_lpcore(autojump_clock: trio.abc.Clock) -> None:
    updates = await push_and_poll(new_message(), text=TYPED_TEXT)

    message = parse_update(updates[0])
    assert isinstance(message, MessageNew)
    assert message.text == TYPED_TEXT


async def test_push_text_without_raw_text_field_set(autojump_clock: trio.abc.Clock) -> None:
    update = MessageEdit(
        message_id=1000002, flags=MessageFlags.OUTBOX, peer_id=100002, timestamp=1
    )

    updates = await push_and_poll(update, text="a & b")

    assert updates == [[5, 1000002, 2, 100002, 1, "a &amp; b"]]


async def test_push_array_text_is_escaped(autojump_clock: trio.abc.Clock) -> None:
    raw = [4, 1000100, 1, 100002, 1700000100, "placeholder", {}, {}, 0]

    updates = await push_and_poll(raw, text="<b>")

    assert updates == [[4, 1000100, 1, 100002, 1700000100, "&lt;b&gt;", {}, {}, 0]]


async def test_push_array_text_appended_after_timestamp(autojump_clock: trio.abc.Clock) -> None:
    updates = await push_and_poll([4, 1000100, 1, 100002, 1700000100], text='"')

    assert updates == [[4, 1000100, 1, 100002, 1700000100, "&quot;"]]


async def test_push_escaped_raw_text_served_unchanged(autojump_clock: trio.abc.Clock) -> None:
    updates = await push_and_poll(new_message(raw_text=RECORDED_TEXT))

    assert updates[0][5] == RECORDED_TEXT


async def test_push_array_served_unchanged(autojump_clock: trio.abc.Clock) -> None:
    raw = [999, "unknown", {"x": 1}]

    updates = await push_and_poll(raw)

    assert updates == [raw]


async def test_push_is_gated_for_poll_mode(autojump_clock: trio.abc.Clock) -> None:
    updates = await push_and_poll(new_message(random_id=77), text="hi", mode=Mode.RANDOM_ID)

    assert updates == [[4, 1000100, 1, 100002, 1700000100, "hi", 77]]


@given(update_objects(codes=[4, 5]))
def test_push_keeps_strategy_updates_unchanged(update: Any) -> None:
    async def main() -> list[Any]:
        return await push_and_poll(update)

    assert trio.run(main, clock=MockClock(autojump_threshold=0)) == [update.raw]


@pytest.mark.parametrize("text", ["a < b", 'say "hi"', "line\nbreak", "x > y"])
def test_push_rejects_unescaped_raw_text(text: str) -> None:
    server = FakeServer(recorded_fixture())

    with pytest.raises(ValueError, match="which VK sends escaped"):
        server.push(new_message(raw_text=text))


def test_push_rejects_text_for_other_events() -> None:
    server = FakeServer(recorded_fixture())

    with pytest.raises(ValueError, match="text is only for message events"):
        server.push([6, 100002, 1000001], text="hi")


def test_push_before_serving_is_refused() -> None:
    server = FakeServer(recorded_fixture())

    with pytest.raises(RuntimeError, match="not serving yet"):
        server.push(new_message(), text="hi")


async def test_push_before_consumer_connects_is_refused(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(recorded_fixture()) as server:
        with pytest.raises(RuntimeError, match="push after the consumer has connected"):
            server.push(new_message(), text="hi")


async def test_push_in_strict_mode_is_refused(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(recorded_fixture(), strict=True) as server:
        with pytest.raises(RuntimeError, match="strict mode"):
            server.push(new_message(), text="hi")


# -- timing, history and threads -------------------------------------------------------------


async def test_push_wakes_held_poll(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(recorded_fixture()) as server, Client(server) as client:
        await client.connect()
        await trio.sleep(2.0)

        async def push_later() -> None:
            await trio.sleep(3.0)
            server.push(new_message(), text="late")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(push_later)
            started = trio.current_time()
            reply = await client.poll(FIRST_TS + 1, mode=RECORDED_MODE, wait=25)
            hold_seconds = trio.current_time() - started

    assert hold_seconds == pytest.approx(3.0)
    assert [raw[5] for raw in reply["updates"]] == ["late"]


async def test_push_comes_before_later_recorded_updates(autojump_clock: trio.abc.Clock) -> None:
    later = [4, 1000003, 1, 100002, 1700000020, "recorded later", {}, {}, 0]
    fixture = fixture_of(
        server_call(),
        poll_reply(done=1.0, updates=[RECORDED]),
        poll_reply(done=10.0, updates=[later]),
    )
    async with open_fake_server(fixture) as server, Client(server) as client:
        await client.connect()
        await trio.sleep(5.0)
        server.push(new_message(), text="pushed")
        reply = await poll_after(client, FIRST_TS, mode=RECORDED_MODE, seconds=10.0)

    assert [raw[5] for raw in reply["updates"]] == [RECORDED_TEXT, "pushed", "recorded later"]
    assert reply["ts"] == FIRST_TS + 3


async def test_pushed_message_in_history_unescaped(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(recorded_fixture()) as server, Client(server) as client:
        credentials = await client.connect()
        await trio.sleep(5.0)
        server.push(new_message(), text=TYPED_TEXT)
        reply = await client.api("messages.getLongPollHistory", pts=str(credentials["pts"]))

    history = reply["response"]
    assert history["history"] == [[4, 1000002, 3, 100002], [4, 1000100, 1, 100002]]
    assert [item["text"] for item in history["messages"]["items"]] == [TYPED_TEXT, TYPED_TEXT]


def test_push_from_other_thread() -> None:
    # No recorded updates, so nothing but the pushed update moves ts in real time.
    # An empty ProxyHandler keeps urllib from sending loopback requests to a proxy
    # named in the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with run_fake_server_in_thread(fixture_of(server_call())) as server:
        query = urlencode({"access_token": TOKEN, "v": "5.199", "need_pts": "1"})
        with opener.open(f"{server.api_url}/messages.getLongPollServer?{query}") as reply:
            credentials = json.load(reply)["response"]
        ts = server.push(new_message(), text="from a thread")
        poll = urlencode(
            {"act": "a_check", "key": credentials["key"], "ts": FIRST_TS, "wait": 0, "mode": 234}
        )
        with opener.open(f"{credentials['server']}?{poll}") as reply:
            body = json.load(reply)

    assert ts == FIRST_TS + 1
    assert body["ts"] == ts
    assert [raw[5] for raw in body["updates"]] == ["from a thread"]
