"""The fake server writes each poll reply for the `version` of the poll.

Fixtures are recorded with version 3. A poll with version 10 gets message
events with conversation_message_id and the update time appended and read
events with the unread count. A poll with version 19 gets the renumbered,
conversation_message_id based message events. The expected arrays follow the
unofficial documentation of versions 10 and 19 and the parser of vk-io
4.10.1 (`transformMessage` in its lib/index.js).
"""

import json
from typing import Any
from urllib.parse import urlencode

import pytest
import trio
from server_helpers import (
    FIRST_TS,
    RECORDED_MODE,
    REQUEST_TIMEOUT,
    Client,
    fixture_of,
    poll_reply,
    server_call,
)

from lpcore import Mode
from lprecord import Fixture, Header, open_fake_server
from lprecord._versions import VersionFacts, complete_message, convert_update, split_message

NEW = [4, 1000001, 33, 100002, 1700000000, "hello", {"title": " ... "}, {}, 0]
READ = [6, 100002, 1000001]
IN_CHAT = [4, 1000003, 8193, 2000000007, 1700000020, "hi", {"from": "100003"}, {}, 0]
SECOND = [4, 1000002, 3, 100002, 1700000010, "out", {"title": " ... "}, {"attach1": "1_2"}, 777]
DELETE = [2, 1000002, 128, 100002]
#: VK's documented event 5: one object, the attachments, and no random_id.
DOCUMENTED_EDIT = [5, 1000003, 8193, 2000000007, 1700000020, "edited", {"attach1": "1_2"}]
DELETE_ALL = [13, 100002, 1000002]
RESTORE_ALL = [14, 100002, 1000002]
FRIEND_ONLINE = [8, -100002, 4, 1700000050]
#: Message events whose message the recording never showed with a peer_id.
UNKNOWN_DELETE = [2, 1000012, 131200]
SHORT_NEW = [4, 1000013, 1]
REPLACE_FLAGS = [1, 1000001, 1, 100002]

RECORDED = [
    NEW,
    READ,
    IN_CHAT,
    SECOND,
    DELETE,
    DOCUMENTED_EDIT,
    DELETE_ALL,
    RESTORE_ALL,
    FRIEND_ONLINE,
    UNKNOWN_DELETE,
    SHORT_NEW,
    REPLACE_FLAGS,
]
#: The time at which the recorded updates became available: the derived clock origin
#: (the first message date minus its due second, 1.0) plus 1 second.
AVAILABLE_AT = 1700000000

#: What VK sends for RECORDED to a version-10 poll with the recorded mode. The
#: conversation_message_ids count per peer from 1 in recording order.
VERSION_10 = [
    [*NEW, 1, 0],
    [6, 100002, 1000001, 0],
    [*IN_CHAT, 1, 0],
    [*SECOND, 2, 0],
    DELETE,
    [5, 1000003, 8193, 2000000007, 1700000020, "edited", {}, {"attach1": "1_2"}, 0, 1, 1700000020],
    DELETE_ALL,
    RESTORE_ALL,
    FRIEND_ONLINE,
    UNKNOWN_DELETE,
    SHORT_NEW,
    REPLACE_FLAGS,
]

#: What VK sends for RECORDED to a version-19 poll with the recorded mode.
VERSION_19 = [
    [10004, 1, 33, 0, 100002, 1700000000, "hello", {"title": " ... "}, {}, 0, 1000001, 0],
    [10006, 100002, 1, 0],
    [10004, 1, 8193, 0, 2000000007, 1700000020, "hi", {"from": "100003"}, {}, 0, 1000003, 0],
    [
        10004,
        2,
        3,
        0,
        100002,
        1700000010,
        "out",
        {"title": " ... "},
        {"attach1": "1_2"},
        777,
        1000002,
        0,
    ],
    [10002, 2, 128, 100002],
    [
        10005,
        1,
        8193,
        2000000007,
        1700000020,
        "edited",
        {},
        {"attach1": "1_2"},
        0,
        1000003,
        1700000020,
    ],
    [10013, 100002, 2],
    RESTORE_ALL,
    FRIEND_ONLINE,
    [10002, 0, 131200],
    [10004, 0, 1, 0],
    REPLACE_FLAGS,
]


async def poll_version(
    client: Client, ts: int, *, version: int | str, mode: int = RECORDED_MODE
) -> Any:
    """Poll from `ts` with `version` without waiting and return the parsed reply."""
    query = urlencode(
        {
            "act": "a_check",
            "key": client.credentials["key"],
            "ts": ts,
            "wait": 0,
            "mode": mode,
            "version": version,
        }
    )
    url = f"{client.credentials['server']}?{query}"
    response = await client.http.request("GET", url, timeout=REQUEST_TIMEOUT)
    assert response.status == 200, response
    return json.loads(response.body)


async def poll_recorded(
    *, version: int | str, mode: int = RECORDED_MODE, updates: list[Any] = RECORDED
) -> Any:
    """Replay `updates` recorded at 1 s and poll them once with `version` at 2 s."""
    fixture = fixture_of(server_call(), poll_reply(done=1.0, updates=updates))
    async with open_fake_server(fixture) as server, Client(server) as client:
        await client.connect()
        await trio.sleep(2.0)
        return await poll_version(client, FIRST_TS, version=version, mode=mode)


# -- over loopback sockets -----------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 4, 9])
async def test_versions_below_10_get_recorded_arrays(
    autojump_clock: trio.abc.Clock, version: int
) -> None:
    reply = await poll_recorded(version=version)

    assert reply["updates"] == RECORDED


async def test_version_10_layout(autojump_clock: trio.abc.Clock) -> None:
    reply = await poll_recorded(version=10)

    assert reply["updates"] == VERSION_10


async def test_version_18_gets_version_10_layout(autojump_clock: trio.abc.Clock) -> None:
    reply = await poll_recorded(version=18)

    assert reply["updates"] == VERSION_10


async def test_version_19_layout(autojump_clock: trio.abc.Clock) -> None:
    reply = await poll_recorded(version=19)

    assert reply["updates"] == VERSION_19


async def test_version_keeps_ts(autojump_clock: trio.abc.Clock) -> None:
    reply = await poll_recorded(version=19)

    assert reply["ts"] == FIRST_TS + len(RECORDED)


async def test_version_10_with_mode_0(autojump_clock: trio.abc.Clock) -> None:
    """Fields that mode 0 drops leave the appended ones right after the text."""
    reply = await poll_recorded(version=10, mode=0, updates=[NEW, SECOND])

    assert reply["updates"] == [
        [4, 1000001, 33, 100002, 1700000000, "hello", 1, 0],
        [4, 1000002, 3, 100002, 1700000010, "out", 2, 0],
    ]


async def test_version_19_with_mode_2(autojump_clock: trio.abc.Clock) -> None:
    reply = await poll_recorded(version=19, mode=Mode.ATTACHMENTS, updates=[SECOND])

    assert reply["updates"] == [
        [
            10004,
            1,
            3,
            0,
            100002,
            1700000010,
            "out",
            {"title": " ... "},
            {"attach1": "1_2"},
            1000002,
            0,
        ],
    ]


async def test_invalid_version_gets_failed_4(autojump_clock: trio.abc.Clock) -> None:
    reply = await poll_recorded(version="x")

    assert reply["failed"] == 4


async def test_recorded_cmid_and_update_time_kept(autojump_clock: trio.abc.Clock) -> None:
    """Values a recording carries after random_id are sent instead of invented ones."""
    with_tail = [*NEW, 57, 9]
    next_message = [4, 1000004, 33, 100002, 1700000001, "next", {}, {}, 0]

    reply = await poll_recorded(version=19, updates=[with_tail, next_message])

    assert reply["updates"] == [
        [10004, 57, 33, 0, 100002, 1700000000, "hello", {"title": " ... "}, {}, 0, 1000001, 9],
        [10004, 58, 33, 0, 100002, 1700000001, "next", {}, {}, 0, 1000004, 0],
    ]


async def test_edit_update_time_when_available(autojump_clock: trio.abc.Clock) -> None:
    """An edit's update time is the time its event became available, when later than the date."""
    edit = [5, 1000001, 33, 100002, 1700000000, "again", {}, {}, 0]
    fixture = fixture_of(
        server_call(),
        poll_reply(done=1.0, updates=[NEW]),
        poll_reply(done=30.0, updates=[edit]),
    )
    async with open_fake_server(fixture) as server, Client(server) as client:
        await client.connect()
        await trio.sleep(31.0)
        reply = await poll_version(client, FIRST_TS, version=10)

    assert reply["updates"][1] == [*edit, 1, AVAILABLE_AT + 29]


async def test_values_stable_across_polls(autojump_clock: trio.abc.Clock) -> None:
    """A second poll, a second consumer and a poll that repeats a ts get the same values."""
    fixture = fixture_of(
        server_call(),
        poll_reply(done=1.0, updates=[NEW, SECOND]),
        poll_reply(done=5.0, updates=[DELETE]),
    )
    async with (
        open_fake_server(fixture) as server,
        Client(server) as first,
        Client(server) as second,
    ):
        await first.connect()
        await trio.sleep(2.0)
        early = await poll_version(first, FIRST_TS, version=19)
        await trio.sleep(4.0)
        late = await poll_version(first, early["ts"], version=19)
        await second.connect()
        again = await poll_version(second, FIRST_TS, version=19)

    assert [update[1] for update in early["updates"]] == [1, 2]
    assert late["updates"] == [[10002, 2, 128, 100002]]
    assert again["updates"] == early["updates"] + late["updates"]


async def test_pushed_message_gets_next_cmid(autojump_clock: trio.abc.Clock) -> None:
    fixture = fixture_of(server_call(), poll_reply(done=1.0, updates=[NEW]))
    async with open_fake_server(fixture) as server, Client(server) as client:
        await client.connect()
        await trio.sleep(2.0)
        first = await poll_version(client, FIRST_TS, version=10)
        server.push([4, 1000020, 1, 100002, 1700000005, "pushed", {}, {}, 0])
        pushed = await poll_version(client, first["ts"], version=10)

    assert pushed["updates"] == [[4, 1000020, 1, 100002, 1700000005, "pushed", {}, {}, 0, 2, 0]]


async def test_unread_count_counts_later_incoming(autojump_clock: trio.abc.Clock) -> None:
    """Event 6 counts the incoming messages after it, and event 7 the outgoing ones."""
    incoming = [4, 1000005, 1, 100002, 1700000003, "in", {}, {}, 0]
    updates = [NEW, SECOND, incoming, [6, 100002, 1000001], [7, 100002, 1000001]]

    reply = await poll_recorded(version=19, updates=updates)

    # NEW and `incoming` lack the OUTBOX flag (2), but SECOND has it.
    assert reply["updates"][3:] == [[10006, 100002, 1, 1], [10007, 100002, 1, 1]]


async def test_other_recorded_version_as_recorded(autojump_clock: trio.abc.Clock) -> None:
    """Only version-3 recordings are converted, so others reach every version as recorded."""
    header = Header(lp_version=10, mode=RECORDED_MODE, wait=25, api_version="5.199")
    recorded = [[*NEW, 5, 0]]
    fixture = Fixture(
        header=header, exchanges=(server_call(), poll_reply(done=1.0, updates=recorded))
    )
    async with open_fake_server(fixture) as server, Client(server) as client:
        await client.connect()
        await trio.sleep(2.0)
        reply = await poll_version(client, FIRST_TS, version=19)

    assert reply["updates"] == recorded


async def test_history_keeps_version_3_form(autojump_clock: trio.abc.Clock) -> None:
    fixture = fixture_of(server_call(), poll_reply(done=1.0, updates=[NEW, READ]))
    async with open_fake_server(fixture) as server, Client(server) as client:
        credentials = await client.connect()
        await trio.sleep(2.0)
        reply = await client.api(
            "messages.getLongPollHistory", pts=str(credentials["pts"]), lp_version="19"
        )

    assert reply["response"]["history"] == [NEW[:4], READ]


# -- the conversion functions --------------------------------------------------------------


def test_split_lone_object_is_attachments() -> None:
    parts = split_message(DOCUMENTED_EDIT, RECORDED_MODE)

    assert parts is not None
    assert parts.additional is None
    assert parts.attachments == {"attach1": "1_2"}
    assert parts.random_id is None


def test_split_lone_object_is_additional() -> None:
    parts = split_message([4, 1, 1, 2, 3, "x", {"from": "5"}], RECORDED_MODE)

    assert parts is not None
    assert parts.additional == {"from": "5"}
    assert parts.attachments is None


def test_split_short_event_has_no_parts() -> None:
    assert split_message(DELETE, RECORDED_MODE) is None


def test_complete_fills_missing_fields() -> None:
    parts = split_message(DOCUMENTED_EDIT, RECORDED_MODE)
    assert parts is not None

    complete = complete_message(parts, RECORDED_MODE)

    assert complete == [*DOCUMENTED_EDIT[:6], {}, {"attach1": "1_2"}, 0]


def test_complete_without_mode_bits_adds_nothing() -> None:
    parts = split_message(NEW[:6], 0)
    assert parts is not None

    assert complete_message(parts, 0) == NEW[:6]


def test_convert_does_not_change_recorded_array() -> None:
    recorded = [*DOCUMENTED_EDIT]
    facts = VersionFacts(conversation_message_id=3, update_time=4)

    convert_update(
        recorded, facts, version=19, recorded_mode=RECORDED_MODE, requested_mode=RECORDED_MODE
    )

    assert recorded == DOCUMENTED_EDIT


@pytest.mark.parametrize("raw", [None, "text", [], ["4", 1], {"code": 4}])
def test_convert_serves_unreadable_updates_as_recorded(raw: Any) -> None:
    converted = convert_update(
        raw, VersionFacts(), version=19, recorded_mode=RECORDED_MODE, requested_mode=RECORDED_MODE
    )

    assert converted == raw
