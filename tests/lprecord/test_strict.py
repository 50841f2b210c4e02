"""Strict replay: request matching on its own, and recordings replayed to the real client."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e_helpers import FIXTURES, recorded_updates

from lpcore import Mode
from lprecord import FakeServer, FixtureWriter, Header, Recorder, open_fake_server, read_fixture
from lprecord._faults import Endpoint, Fault, FaultSchedule, ScheduledFault
from lprecord._fixture import Exchange, ExchangeKind
from lprecord._strict import (
    Difference,
    PastEnd,
    ReceivedRequest,
    ScriptedReply,
    StrictMismatch,
    StrictReplay,
    diff_request,
)
from lptrio import LongPoll

TOKEN = "fake-token-0123456789abcdefghijklmnopqrstuvwxyz"
CHAT = FIXTURES / "chat_session.jsonl"
CHAT_UPDATES = recorded_updates(CHAT)
#: Virtual seconds a consumer polls: the chat session's updates end at about 160 s.
SESSION_SECONDS = 240.0
ISSUED_KEY = "a" * 40
POLL_URL = "https://im.vk.com/nim100001"


def recorded_poll(**changes: str) -> Exchange:
    params = {
        "act": "a_check",
        "key": "<redacted>",
        "ts": "1800000003",
        "wait": "25",
        "mode": "234",
        "version": "3",
    }
    params.update(changes)
    return Exchange(
        t=5.336,
        elapsed=6.0,
        kind=ExchangeKind.POLL,
        method="GET",
        url=POLL_URL,
        params=params,
        status=200,
        body=b'{"ts":1800000004,"updates":[[80,1,0]]}',
    )


def received_poll(**changes: str) -> ReceivedRequest:
    params = {
        "act": "a_check",
        "key": ISSUED_KEY,
        "ts": "1800000003",
        "wait": "25",
        "mode": "234",
        "version": "3",
    }
    params.update(changes)
    return ReceivedRequest(kind=ExchangeKind.POLL, method="GET", path="/nim100001", params=params)


# -- diff_request ----------------------------------------------------------------------------


def test_same_request_has_no_differences() -> None:
    assert diff_request(recorded_poll(), received_poll(), issued_key=ISSUED_KEY) == []


def test_ts_difference_shows_both_values() -> None:
    [difference] = diff_request(
        recorded_poll(), received_poll(ts="1800000001"), issued_key=ISSUED_KEY
    )

    assert difference == Difference(field="params.ts", expected="1800000003", got="1800000001")
    assert str(difference) == "params.ts: expected '1800000003', got '1800000001'"


def test_redacted_value_matches_any_value() -> None:
    recorded = recorded_poll(wait="<redacted>")

    assert diff_request(recorded, received_poll(wait="90"), issued_key=ISSUED_KEY) == []


def test_access_token_matches_any_value() -> None:
    recorded = recorded_poll(access_token="recorded-token-value")
    received = received_poll(access_token="another-token-value")

    assert diff_request(recorded, received, issued_key=ISSUED_KEY) == []


def test_key_must_be_issued_key() -> None:
    differences = diff_request(recorded_poll(), received_poll(key="b" * 40), issued_key="c" * 40)

    assert [str(d) for d in differences] == [
        f"params.key: expected '{'c' * 40}', got '{'b' * 40}'"
    ]


def test_key_before_any_issued_is_recorded_value() -> None:
    assert diff_request(recorded_poll(), received_poll(key="anything"), issued_key=None) == []


def test_missing_and_extra_params_show_absent() -> None:
    received = received_poll(extra="1")
    del received.params["mode"]  # type: ignore[attr-defined]

    differences = diff_request(recorded_poll(), received, issued_key=ISSUED_KEY)

    assert [str(d) for d in differences] == [
        "params.mode: expected '234', got (absent)",
        "params.extra: expected (absent), got '1'",
    ]


def test_kind_method_and_path_differ() -> None:
    received = ReceivedRequest.classify(
        "POST", "/method/messages.getLongPollServer", received_poll().params
    )

    differences = diff_request(recorded_poll(), received, issued_key=ISSUED_KEY)

    assert [str(d) for d in differences] == [
        "kind: expected 'poll', got 'api'",
        "method: expected 'GET', got 'POST'",
        "path: expected '/nim100001', got '/method/messages.getLongPollServer'",
    ]


def test_mismatch_message_lists_each_field() -> None:
    received = received_poll(ts="1800000001", wait="20", access_token="secret-token-value")
    mismatch = StrictMismatch(
        step=3,
        total=12,
        request=received,
        expected=recorded_poll(),
        differences=diff_request(recorded_poll(), received, issued_key=ISSUED_KEY),
    )

    lines = str(mismatch).splitlines()

    assert lines[0] == "request does not match step 3 of 12 of the recording (poll GET /nim100001)"
    assert lines[1].startswith("got: poll GET /nim100001?act=a_check&key=aaaa")
    assert "access_token=<redacted>" in lines[1]
    assert "secret-token-value" not in str(mismatch)
    assert lines[2:] == [
        "params.ts: expected '1800000003', got '1800000001'",
        "params.wait: expected '25', got '20'",
        "params.access_token: expected (absent), got '<redacted>'",
    ]


# -- StrictReplay ----------------------------------------------------------------------------


def chat_replay() -> StrictReplay:
    return StrictReplay(read_fixture(CHAT).exchanges, server_base="http://127.0.0.1:8080")


SERVER_CALL = ReceivedRequest.classify(
    "POST",
    "/method/messages.getLongPollServer",
    {"access_token": TOKEN, "v": "5.199", "need_pts": "1", "lp_version": "3"},
)


def test_replay_issues_own_server_and_key() -> None:
    replay = chat_replay()

    decision = replay.answer(SERVER_CALL)

    assert isinstance(decision, ScriptedReply)
    assert decision.reply is not None
    result = json.loads(decision.reply.body)["response"]
    assert result["server"] == "http://127.0.0.1:8080/nim100001"
    assert re.fullmatch(r"[0-9a-f]{40}", result["key"])
    assert result["ts"] == 1800000000


def test_replay_matches_poll_with_issued_key() -> None:
    replay = chat_replay()
    first = replay.answer(SERVER_CALL)
    assert isinstance(first, ScriptedReply)
    assert first.reply is not None
    key = json.loads(first.reply.body)["response"]["key"]

    decision = replay.answer(received_poll(key=key, ts="1800000000"))

    assert isinstance(decision, ScriptedReply)
    assert decision.step == 2
    assert decision.delay == 1.5
    assert replay.position == 2


def test_replay_past_end_is_held() -> None:
    replay = StrictReplay(read_fixture(CHAT).exchanges[:1], server_base="http://127.0.0.1:8080")
    replay.answer(SERVER_CALL)

    decision = replay.answer(received_poll())

    assert decision == PastEnd(count=1)
    assert replay.complete


def test_replay_mismatch_does_not_advance() -> None:
    replay = chat_replay()

    decision = replay.answer(received_poll())

    assert isinstance(decision, StrictMismatch)
    assert decision.step == 1
    assert replay.position == 0
    assert replay.mismatches == [decision]


# -- the real client against a strict server -------------------------------------------------


async def consume(
    server: FakeServer, *, observer: Any = None, wait: int = 25, mode: int = Mode.DEFAULT
) -> list[Any]:
    """Poll `server` for SESSION_SECONDS of virtual time; return the raw updates delivered."""
    longpoll = LongPoll(TOKEN, mode, wait=wait, api_url=server.api_url, observer=observer)
    received: list[Any] = []
    try:
        with trio.move_on_after(SESSION_SECONDS):
            async for update in longpoll:
                received.append(update.raw)
    finally:
        await longpoll.aclose()
    return received


async def record(path: Path, **options: Any) -> None:
    """Record the chat session, served by a fake server with `options`, into `path`."""
    header = Header(lp_version=3, mode=int(Mode.DEFAULT), wait=25, api_version="5.199")
    async with open_fake_server(CHAT, **options) as server:
        with FixtureWriter.create(path, header) as writer:
            recorder = Recorder(writer, token=TOKEN, start=trio.current_time())
            await consume(server, observer=recorder)


def leaves(error: BaseException) -> list[BaseException]:
    """Return the exceptions inside nested exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


async def test_strict_replay_of_own_recording(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    recording = tmp_path / "recording.jsonl"
    await record(recording)

    async with open_fake_server(recording, strict=True) as server:
        received = await consume(server)

    assert received == CHAT_UPDATES
    assert server.strict_replay.complete
    # The recording ends with the poll held when its capture stopped, which the recorder
    # never writes, so the replay holds that one too.
    assert server.strict_replay.past_end == 1
    assert server.strict_replay.mismatches == []


async def test_strict_replay_of_recorded_faults(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    recording = tmp_path / "recording.jsonl"
    schedule = FaultSchedule(
        (
            ScheduledFault(fault=Fault.stall(), at_step=3),
            ScheduledFault(fault=Fault.reset_after_headers(), at_step=5),
            ScheduledFault(fault=Fault.failed(2), at_step=7),
            ScheduledFault(fault=Fault.http_error(503), on=Endpoint.SERVER, at_step=2),
        )
    )
    await record(recording, faults=schedule)
    errors = [e.error_kind for e in read_fixture(recording).exchanges if e.error_kind]

    async with open_fake_server(recording, strict=True) as server:
        received = await consume(server)

    assert errors == ["timeout", "reset"]
    assert received == CHAT_UPDATES
    assert server.strict_replay.complete
    assert server.strict_replay.mismatches == []


@pytest.mark.parametrize(
    ("options", "line"),
    [
        pytest.param({"wait": 20}, "params.wait: expected '25', got '20'", id="wait"),
        pytest.param(
            {"mode": Mode.ATTACHMENTS}, "params.mode: expected '234', got '2'", id="mode"
        ),
    ],
)
async def test_different_client_fails_with_diff(
    options: dict[str, Any], line: str, autojump_clock: trio.abc.Clock
) -> None:
    with pytest.RaisesGroup(StrictMismatch, flatten_subgroups=True) as caught:
        async with open_fake_server(CHAT, strict=True) as server:
            await consume(server, **options)

    [mismatch] = leaves(caught.value)
    assert isinstance(mismatch, StrictMismatch)
    assert mismatch.step == 2
    message = str(mismatch).splitlines()
    assert message[0].startswith("request does not match step 2 of 12 of the recording")
    assert message[2:] == [line]


async def test_mismatch_reply_explains(autojump_clock: trio.abc.Clock) -> None:
    replies: list[bytes] = []
    target = f"/method/messages.getLongPollServer?access_token={TOKEN}&v=5.199"
    with pytest.RaisesGroup(StrictMismatch, flatten_subgroups=True) as caught:
        async with open_fake_server(CHAT, strict=True) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                # The server's failure cancels this task, so the shield lets it read the 500.
                with trio.CancelScope(shield=True), trio.fail_after(30):
                    while data := await stream.receive_some():
                        replies.append(bytes(data))
            # The server's error must cancel this wait long before the deadline.
            await trio.sleep(600)

    reply = b"".join(replies).decode()
    [mismatch] = leaves(caught.value)
    assert isinstance(mismatch, StrictMismatch)
    assert reply.startswith("HTTP/1.1 500 ")
    assert "connection: close" in reply.lower()
    assert "method: expected 'POST', got 'GET'" in reply
    assert "params.need_pts: expected '1', got (absent)" in reply
    assert "params.lp_version: expected '3', got (absent)" in reply
    assert TOKEN not in reply
    assert reply.endswith(f"{mismatch}\n")


def test_strict_server_rejects_inject() -> None:
    server = FakeServer(CHAT, strict=True)

    with pytest.raises(RuntimeError, match="strict mode"):
        server.inject(Fault.empty())
