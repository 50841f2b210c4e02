"""The fake server writes each poll reply for the mode of the poll, whatever mode it recorded."""

from typing import Any

import pytest
import trio
from server_helpers import (
    FIRST_PTS,
    FIRST_TS,
    RECORDED_MODE,
    Client,
    fixture_of,
    poll_after,
    poll_reply,
    server_call,
)

from lpcore import Mode
from lprecord import Timeline, open_fake_server
from lprecord._wire import OMITTED, gate_update

MESSAGE = [4, 1000001, 33, 100002, 1700000000, "hello", {"title": " ... "}, {}, 0]
WITH_ATTACHMENT = [
    4,
    1000002,
    3,
    100002,
    1700000010,
    "1 &lt; 2 &amp;&amp; 3 &gt; 2<br>&quot;ok&quot;",
    {"title": " ... "},
    {"attach1_type": "photo", "attach1": "100001_456239017"},
    987654321,
]
#: Version 10 appends conversation_message_id and the edit time after random_id.
EDIT_WITH_TAIL = [5, 1000002, 3, 100002, 1700000010, "again", {"title": ""}, {}, 987654321, 57, 9]
#: VK's documented event 5: one object, the attachments, and no random_id.
DOCUMENTED_EDIT = [5, 1000003, 8193, 2000000007, 1700000020, "edited", {"attach1": "1_2"}]
SHORT_DELETE = [2, 1000002, 128, 100002]
RESTORE = [3, 1000002, 128, 100002, 1700000010, "back", {"title": " ... "}, {}, 987654321]
SNIPPET = [
    18,
    1000014,
    1,
    100002,
    1700000100,
    "v10",
    {"title": " ... "},
    {"attach1": "x"},
    0,
    57,
    0,
]
FRIEND_ONLINE = [8, -100002, 4, 1700000050]
FRIEND_OFFLINE = [9, -100003, 1, 1700000051]
NOTIFICATIONS = [114, {"peer_id": 2000000007, "sound": 0, "disabled_until": -1}]
CALL = [115, {"call_id": "fake"}]
CALLBACK = [119, {"owner_id": -100004, "peer_id": 100002, "event_id": "fake-event"}]
COUNTER = [80, 5, 0]
READ = [6, 100002, 1000001]
VERSION_19 = [10004, 58, 8193, 1000015, 2000000007, 1700000200, "hi", {"from": "100003"}, {}, 0]

RECORDED = [
    MESSAGE,
    WITH_ATTACHMENT,
    EDIT_WITH_TAIL,
    DOCUMENTED_EDIT,
    SHORT_DELETE,
    RESTORE,
    SNIPPET,
    FRIEND_ONLINE,
    FRIEND_OFFLINE,
    NOTIFICATIONS,
    CALL,
    CALLBACK,
    COUNTER,
    READ,
    VERSION_19,
]

#: What VK sends for each recorded array to a poll with mode 0.
WITHOUT_ANY_BIT = [
    [4, 1000001, 33, 100002, 1700000000, "hello"],
    [4, 1000002, 3, 100002, 1700000010, "1 &lt; 2 &amp;&amp; 3 &gt; 2<br>&quot;ok&quot;"],
    [5, 1000002, 3, 100002, 1700000010, "again", 57, 9],
    [5, 1000003, 8193, 2000000007, 1700000020, "edited"],
    SHORT_DELETE,
    [3, 1000002, 128, 100002, 1700000010, "back"],
    [18, 1000014, 1, 100002, 1700000100, "v10", 57, 0],
    [8, -100002, 0, 1700000050],
    FRIEND_OFFLINE,
    COUNTER,
    READ,
    VERSION_19,
]


# -- gate_update ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", RECORDED, ids=lambda raw: str(raw[0]))
def test_gate_same_mode_returns_array_itself(raw: list[Any]) -> None:
    assert gate_update(raw, recorded=RECORDED_MODE, requested=RECORDED_MODE) is raw


@pytest.mark.parametrize("raw", RECORDED, ids=lambda raw: str(raw[0]))
def test_gate_richer_mode_returns_array_itself(raw: list[Any]) -> None:
    assert gate_update(raw, recorded=RECORDED_MODE, requested=RECORDED_MODE | 512) is raw


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (0, [4, 1000002, 3, 100002, 1700000010, WITH_ATTACHMENT[5]]),
        (Mode.RANDOM_ID, [4, 1000002, 3, 100002, 1700000010, WITH_ATTACHMENT[5], 987654321]),
        (Mode.ATTACHMENTS, WITH_ATTACHMENT[:8]),
        (Mode.ATTACHMENTS | Mode.RANDOM_ID, WITH_ATTACHMENT),
    ],
    ids=["none", "random_id-only", "objects-only", "both"],
)
def test_gate_message_fields(requested: int, expected: list[Any]) -> None:
    assert gate_update(WITH_ATTACHMENT, recorded=RECORDED_MODE, requested=requested) == expected


def test_gate_keeps_fields_after_random_id() -> None:
    gated = gate_update(EDIT_WITH_TAIL, recorded=RECORDED_MODE, requested=Mode.ATTACHMENTS)

    assert gated == [5, 1000002, 3, 100002, 1700000010, "again", {"title": ""}, {}, 57, 9]


def test_gate_documented_edit_drops_its_one_object() -> None:
    gated = gate_update(DOCUMENTED_EDIT, recorded=RECORDED_MODE, requested=Mode.RANDOM_ID)

    assert gated == DOCUMENTED_EDIT[:6]


def test_gate_does_not_change_recorded_array() -> None:
    original = list(WITH_ATTACHMENT)

    gate_update(WITH_ATTACHMENT, recorded=RECORDED_MODE, requested=0)

    assert original == WITH_ATTACHMENT


@pytest.mark.parametrize("raw", [NOTIFICATIONS, CALL, CALLBACK], ids=["114", "115", "119"])
def test_gate_omits_extended_events_without_8(raw: list[Any]) -> None:
    assert gate_update(raw, recorded=RECORDED_MODE, requested=RECORDED_MODE & ~8) is OMITTED


def test_gate_zeroes_friend_extra_without_64() -> None:
    gated = gate_update(FRIEND_ONLINE, recorded=RECORDED_MODE, requested=RECORDED_MODE & ~64)

    assert gated == [8, -100002, 0, 1700000050]


def test_gate_keeps_offline_flags_without_64() -> None:
    gated = gate_update(FRIEND_OFFLINE, recorded=RECORDED_MODE, requested=0)

    assert gated is FRIEND_OFFLINE


def test_gate_cannot_add_unrecorded_random_id() -> None:
    recorded_without_128 = [4, 1000001, 33, 100002, 1700000000, "hello", {}, {}]

    gated = gate_update(recorded_without_128, recorded=Mode.ATTACHMENTS, requested=RECORDED_MODE)

    assert gated is recorded_without_128


def test_gate_random_id_right_after_text() -> None:
    recorded_128_only = [4, 1000001, 33, 100002, 1700000000, "hello", 4242]

    gated = gate_update(recorded_128_only, recorded=Mode.RANDOM_ID, requested=0)

    assert gated == [4, 1000001, 33, 100002, 1700000000, "hello"]


@pytest.mark.parametrize(
    "raw",
    [None, 5, "text", {"code": 4}, [], ["4", 1], [[4], 1], [4.0, 1, 2, 3, 4, "text", {}, {}, 0]],
    ids=["null", "int", "string", "object", "empty", "string-code", "list-code", "float-code"],
)
def test_gate_serves_unreadable_updates_as_recorded(raw: Any) -> None:
    assert gate_update(raw, recorded=RECORDED_MODE, requested=0) is raw


# -- the timeline's recorded mode ----------------------------------------------------------


def test_timeline_takes_mode_from_poll_request() -> None:
    fixture = fixture_of(server_call(), poll_reply(done=1.0, updates=[MESSAGE], mode=130))

    timeline = Timeline.from_fixture(fixture)

    assert [update.mode for update in timeline.updates] == [130]


def test_timeline_falls_back_to_header_mode() -> None:
    fixture = fixture_of(server_call(), poll_reply(done=1.0, updates=[MESSAGE], mode=None), mode=2)

    timeline = Timeline.from_fixture(fixture)

    assert [update.mode for update in timeline.updates] == [2]


# -- over loopback sockets -----------------------------------------------------------------


async def poll_recorded(
    *, mode: int, updates: list[Any] = RECORDED, recorded_mode: int | None = RECORDED_MODE
) -> Any:
    """Replay `updates` recorded at 1 s and poll them once with `mode` at 2 s."""
    fixture = fixture_of(server_call(), poll_reply(done=1.0, updates=updates, mode=recorded_mode))
    async with open_fake_server(fixture) as server, Client(server) as client:
        await client.connect()
        return await poll_after(client, FIRST_TS, mode=mode, seconds=2.0)


async def test_recorded_mode_gets_recorded_arrays(autojump_clock: trio.abc.Clock) -> None:
    reply = await poll_recorded(mode=RECORDED_MODE)

    assert reply["updates"] == RECORDED


async def test_mode_0_gets_gated_arrays(autojump_clock: trio.abc.Clock) -> None:
    reply = await poll_recorded(mode=0)

    assert reply["updates"] == WITHOUT_ANY_BIT


async def test_omitted_events_still_count_in_ts(autojump_clock: trio.abc.Clock) -> None:
    reply = await poll_recorded(mode=0)

    assert reply["ts"] == FIRST_TS + len(RECORDED)


async def test_mode_with_2_and_128_keeps_message_fields(autojump_clock: trio.abc.Clock) -> None:
    reply = await poll_recorded(mode=Mode.ATTACHMENTS | Mode.RANDOM_ID)

    assert reply["updates"][:7] == RECORDED[:7]
    assert NOTIFICATIONS not in reply["updates"]
    assert [8, -100002, 0, 1700000050] in reply["updates"]


async def test_pts_only_with_mode_32(autojump_clock: trio.abc.Clock) -> None:
    with_pts = await poll_recorded(mode=Mode.PTS)
    without_pts = await poll_recorded(mode=RECORDED_MODE & ~Mode.PTS)

    # Seven message-layout events and event 6 are persistent, so pts advances by 8.
    assert with_pts["pts"] == FIRST_PTS + 8
    assert "pts" not in without_pts


async def test_invalid_mode_counts_as_0(autojump_clock: trio.abc.Clock) -> None:
    fixture = fixture_of(server_call(), poll_reply(done=1.0, updates=RECORDED))
    async with open_fake_server(fixture) as server, Client(server) as client:
        await client.connect()
        await trio.sleep(2.0)
        reply = await client.poll(FIRST_TS, mode="2x", wait=0)  # type: ignore[arg-type]

    assert reply["updates"] == WITHOUT_ANY_BIT


async def test_richer_mode_gets_what_was_recorded(autojump_clock: trio.abc.Clock) -> None:
    recorded = [[4, 1000001, 33, 100002, 1700000000, "hello", {"title": " ... "}, {}]]

    reply = await poll_recorded(
        mode=RECORDED_MODE, updates=recorded, recorded_mode=Mode.ATTACHMENTS
    )

    assert reply["updates"] == recorded
