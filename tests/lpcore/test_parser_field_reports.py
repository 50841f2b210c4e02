"""Parser tests for faults that users of other VK long poll clients ran into.

Each test states the fault in its docstring and checks the whole kind of
input behind it, not only the one reply where it showed up. The ids, texts
and counters are fake.
"""

import json
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from lpcore import (
    PEER_ACTIVITY_CODES,
    Attachments,
    Failed,
    MalformedUpdate,
    MessageEdit,
    MessageFlags,
    MessageFlagsReplace,
    MessageFlagsReset,
    MessageFlagsSet,
    MessageNew,
    Mode,
    NotificationSettings,
    PeerActivity,
    PeerKind,
    PollResult,
    RemoteProtocolError,
    Request,
    RetryScheduled,
    Session,
    UnknownUpdate,
    Update,
    UpdatesReceived,
    encode_update,
    parse_poll_body,
    parse_update,
    peer_kind,
    unescape_text,
)

TOKEN = "tok-parser-reports-7Hq2"
KEY = "key-parser-reports-Lw4c"
SERVER = "im.example.test/nim3051"

#: The message event classes by code, each with the name of its flags field.
MESSAGE_EVENTS: dict[int, tuple[type[Update], str]] = {
    1: (MessageFlagsReplace, "flags"),
    2: (MessageFlagsSet, "mask"),
    3: (MessageFlagsReset, "mask"),
    4: (MessageNew, "flags"),
    5: (MessageEdit, "flags"),
}

MessageEvent = MessageFlagsReplace | MessageFlagsSet | MessageFlagsReset | MessageNew | MessageEdit

#: Every field of a version 3 message event after the code, in wire order.
FULL_MESSAGE_FIELDS: tuple[Any, ...] = (
    7301,
    65,
    2000000012,
    1710000000,
    "see you",
    {"from": "3051"},
    {"attach1_type": "doc", "attach1": "3051_11"},
    4401,
    88,
    1710000050,
)


def message_field_names(code: int) -> tuple[str, ...]:
    """Return the field names of message event `code`, in wire order."""
    flags_name = MESSAGE_EVENTS[code][1]
    return (
        "message_id",
        flags_name,
        "peer_id",
        "timestamp",
        "raw_text",
        "additional",
        "attachments",
        "random_id",
        "conversation_message_id",
        "update_time",
    )


def as_message(update: Update) -> MessageEvent:
    """Return `update`, failing the test unless it is one of the message events 1-5."""
    assert isinstance(update, MessageEvent), update
    return update


def poll_through_session(updates: list[Any], *, new_ts: int) -> tuple[Session, UpdatesReceived]:
    """Run one poll whose reply carries `updates` and return the session and what it delivered."""
    session = Session(TOKEN)
    server_request = session.next_request(0.0)
    assert isinstance(server_request, Request)
    server_reply = {"response": {"key": KEY, "server": SERVER, "ts": new_ts - 10}}
    session.receive_response(server_request, 200, json.dumps(server_reply).encode(), 0.0)

    poll = session.next_request(0.0)
    assert isinstance(poll, Request)
    body = json.dumps({"ts": new_ts, "updates": updates}).encode()
    [received] = session.receive_response(poll, 200, body, 0.0)
    assert isinstance(received, UpdatesReceived)
    return session, received


def next_poll_ts(session: Session) -> str:
    request = session.next_request(0.0)
    assert isinstance(request, Request)
    return request.params["ts"]


# -- shortened message tuples --------------------------------------------------------------


@pytest.mark.parametrize("length", range(2, len(FULL_MESSAGE_FIELDS) + 1))
@pytest.mark.parametrize("code", sorted(MESSAGE_EVENTS))
def test_short_message_tuple_leaves_rest_none(code: int, length: int) -> None:
    """A message tuple cut after any field reads None past the cut, where vk_api raised."""
    raw = [code, *FULL_MESSAGE_FIELDS[:length]]

    update = parse_update(raw)

    assert type(update) is MESSAGE_EVENTS[code][0]
    for index, name in enumerate(message_field_names(code)):
        expected = FULL_MESSAGE_FIELDS[index] if index < length else None
        assert getattr(update, name) == expected, name
    assert encode_update(update) == raw


@pytest.mark.parametrize("length", range(2, len(FULL_MESSAGE_FIELDS) + 1))
@pytest.mark.parametrize("code", sorted(MESSAGE_EVENTS))
def test_short_message_tuple_skips_peer_classification(code: int, length: int) -> None:
    """A message without peer_id gets no user, chat or community kind and raises nothing."""
    update = as_message(parse_update([code, *FULL_MESSAGE_FIELDS[:length]]))

    if length < 3:
        assert update.peer_id is None
        assert update.peer_kind is None
        assert update.chat_id is None
    else:
        assert update.peer_kind is PeerKind.CHAT
        assert update.chat_id == 12
    assert update.text == (None if length < 5 else "see you")
    assert update.from_id == (None if length < 6 else 3051)
    assert len(update.additional_data) == (0 if length < 6 else 1)
    assert len(update.attachment_data.items_list) == (0 if length < 7 else 1)


def test_short_tuples_keep_body_order() -> None:
    """Short and full message tuples in one body parse in server order with the body's ts."""
    body = (
        b'{"ts": 1710000333, "updates": [[2, 7311, 131200], [4, 7312, 1],'
        b' [4, 7313, 1, 3051, 1710000330, "fine", {}, {}]]}'
    )

    result = parse_poll_body(body)
    assert isinstance(result, PollResult)
    deleted, bare, full = (parse_update(raw) for raw in result.updates)

    assert result.ts == 1710000333
    assert isinstance(deleted, MessageFlagsSet)
    assert deleted.message_id == 7311
    assert deleted.mask == MessageFlags.DELETED | MessageFlags.DELETE_FOR_ALL
    assert deleted.peer_id is None
    assert deleted.raw_text is None
    assert deleted.random_id is None
    assert isinstance(bare, MessageNew)
    assert bare.message_id == 7312
    assert bare.peer_id is None
    assert bare.text is None
    assert isinstance(full, MessageNew)
    assert full.message_id == 7313
    assert full.peer_id == 3051
    assert full.text == "fine"


# -- typing and other activity events 63-68 ------------------------------------------------

ACTIVITY_USER_LISTS = {
    "nobody": [],
    "one": [3052],
    "five-with-own-id": [3051, 3052, 3053, 3054, 3055],
}


@pytest.mark.parametrize("peer_id", [2000000031, 3052], ids=["chat", "private"])
@pytest.mark.parametrize("users", ACTIVITY_USER_LISTS.values(), ids=ACTIVITY_USER_LISTS.keys())
@pytest.mark.parametrize("code", sorted(PEER_ACTIVITY_CODES))
def test_activity_event_peer_and_users(code: int, users: list[int], peer_id: int) -> None:
    """Events 63-68 read peer_id and a possibly empty user list, which vksdk swapped for 63."""
    peer_first = [code, peer_id, users, 9, 1710000200]
    documented = [code, users, peer_id, 9, 1710000200]
    cut = [code, peer_id, users]

    first, second, short = (parse_update(raw) for raw in (peer_first, documented, cut))

    assert first == PeerActivity(
        code=code, peer_id=peer_id, user_ids=tuple(users), total_count=9, timestamp=1710000200
    )
    assert second == PeerActivity(
        code=code,
        peer_id=peer_id,
        user_ids=tuple(users),
        total_count=9,
        timestamp=1710000200,
        peer_first=False,
    )
    assert short == PeerActivity(code=code, peer_id=peer_id, user_ids=tuple(users))
    for update, raw in ((first, peer_first), (second, documented), (short, cut)):
        assert encode_update(update) == raw


def test_activity_codes_cover_63_to_68() -> None:
    """Upload and video-message events 65-68 are read like typing, not left unknown."""
    assert set(range(63, 69)) == PEER_ACTIVITY_CODES


def test_bad_activity_event_keeps_poll_going() -> None:
    """An unreadable activity event arrives as malformed and polling goes on, unlike vksdk."""
    good_typing = [63, 2000000031, [3052], 1, 1710000201]
    bad_typing = [63, 2000000031, ["3052"], 1, 1710000202]
    message = [4, 7320, 1, 2000000031, 1710000203, "still polling", {}, {}]

    session, received = poll_through_session([bad_typing, good_typing, message], new_ts=5103)

    bad, typing, new_message = received.updates
    assert isinstance(bad, MalformedUpdate)
    assert bad.raw == bad_typing
    assert isinstance(typing, PeerActivity)
    assert isinstance(new_message, MessageNew)
    assert session.ts == 5103
    assert next_poll_ts(session) == "5103"


# -- event 114, notification settings ------------------------------------------------------

NOTIFICATION_SETTINGS = {
    "object-muted-forever": (
        [114, {"peer_id": 2000000044, "sound": 1, "disabled_until": -1}],
        (2000000044, 1, -1, True),
    ),
    "object-with-unknown-keys": (
        [
            114,
            {
                "peer_id": 3061,
                "sound": 0,
                "disabled_until": 1710007200,
                "later_flag": True,
                "label": "work",
                "meta": {"rule": [1, 2]},
                "nothing": None,
                "ratio": 0.5,
            },
        ],
        (3061, 0, 1710007200, True),
    ),
    "object-with-peer-only": ([114, {"peer_id": 3062}], (3062, None, None, True)),
    "flat-enabled": ([114, 3063, 1, 0], (3063, 1, 0, False)),
}


@pytest.mark.parametrize("mode", [Mode.DEFAULT, Mode.ATTACHMENTS], ids=["mode-8", "no-mode-8"])
@pytest.mark.parametrize(
    ("raw", "expected"), NOTIFICATION_SETTINGS.values(), ids=NOTIFICATION_SETTINGS.keys()
)
def test_notification_settings_in_either_form(
    raw: list[Any], expected: tuple[int | None, int | None, int | None, bool], mode: Mode
) -> None:
    """Event 114 reads in object and flat form, even with unknown keys that vksdk rejected."""
    update = parse_update(raw, mode=mode)

    assert isinstance(update, NotificationSettings)
    assert (update.peer_id, update.sound, update.disabled_until, update.object_form) == expected
    assert update.raw == raw
    assert encode_update(update) == raw


# -- event codes lpcore does not know ------------------------------------------------------


def test_unknown_codes_pass_through_whole() -> None:
    """Unknown codes arrive as UnknownUpdate with the whole array, where vk_api crashed."""
    first = [4, 7501, 1, 3051, 1710000400, "first", {}, {}]
    last = [4, 7502, 1, 3051, 1710000401, "last", {}, {}]
    # Codes no VK version uses, in the shapes newer events take: an object
    # payload, a variable-length tail, nulls, nothing after the code.
    unknown: list[list[Any]] = [
        [4119, {"owner_id": -70001, "peer_id": 3051, "event_id": "cb7f01"}],
        [4504, 9, 3051, 3052, 2000000046],
        [731, "z", None],
        [0],
        [-9, 1],
        [2**40, []],
    ]

    _, received = poll_through_session([first, *unknown, last], new_ts=5120)

    updates = received.updates
    assert len(updates) == len(unknown) + 2
    assert isinstance(updates[0], MessageNew)
    assert updates[0].text == "first"
    assert isinstance(updates[-1], MessageNew)
    assert updates[-1].text == "last"
    for update, raw in zip(updates[1:-1], unknown, strict=True):
        assert type(update) is UnknownUpdate
        assert update.code == raw[0]
        assert update.raw == raw
        assert encode_update(update) == raw


# -- escaped message text ------------------------------------------------------------------

ESCAPED_TEXT = (
    "5 &gt; 4 &amp;&amp; 2 &lt; 3<br>&quot;ok&quot; &lt;br&gt; "
    "&amp;lt;i&amp;gt; &amp;amp;x<br><br>end"
)
UNESCAPED_TEXT = '5 > 4 && 2 < 3\n"ok" <br> &lt;i&gt; &amp;x\n\nend'


@pytest.mark.parametrize("code", sorted(MESSAGE_EVENTS))
def test_text_is_unescaped_exactly_once(code: int) -> None:
    """Message text is unescaped once with <br> as newline, where clients showed it escaped."""
    raw = [code, 7601, 1, 3051, 1710000500, ESCAPED_TEXT, {}, {}]

    update = as_message(parse_update(raw))

    assert update.text == UNESCAPED_TEXT
    assert update.raw_text == ESCAPED_TEXT
    assert encode_update(update) == raw


def test_service_texts_are_unescaped_once() -> None:
    """Chat titles and pinned texts of service messages are unescaped like message text."""
    additional = {
        "from": "3051",
        "source_act": "chat_title_update",
        "source_text": ESCAPED_TEXT,
        "source_old_text": ESCAPED_TEXT,
        "source_message": ESCAPED_TEXT,
    }
    update = parse_update([4, 7602, 1, 2000000012, 1710000501, "", additional, {}])

    assert isinstance(update, MessageNew)
    data = update.additional_data
    assert data.source_text == UNESCAPED_TEXT
    assert data.source_old_text == UNESCAPED_TEXT
    assert data.source_message == UNESCAPED_TEXT
    assert data["source_text"] == ESCAPED_TEXT


@pytest.mark.parametrize(
    ("raw_text", "text"),
    [
        ("&lt;br&gt;<br>&lt;br&gt;", "<br>\n<br>"),
        ("&amp;quot;<br>", "&quot;\n"),
        ("&amp;amp;amp;", "&amp;amp;"),
        ("&amp;lt;br&amp;gt;", "&lt;br&gt;"),
    ],
)
def test_unescape_never_decodes_twice(raw_text: str, text: str) -> None:
    """Entities are decoded once and <br> is replaced before them, so typed markup stays text."""
    assert unescape_text(raw_text) == text


# -- the attachments object ----------------------------------------------------------------


def test_attachments_read_with_nested_json() -> None:
    """Nested JSON strings in attachments are decoded with their types, the rest kept as sent."""
    attachments = {
        "attach1_type": "photo",
        "attach1": "3051_880001",
        "attachments_count": "1",
        "attachments": '[{"type":"photo","photo":{"id":880001}}]',
        "reply": '{"conversation_message_id":17}',
        "fwd": "0_0",
    }
    update = parse_update(
        [4, 7701, 1, 2000000012, 1710000600, "see", {"from": "3051"}, attachments]
    )

    assert isinstance(update, MessageNew)
    data = update.attachment_data
    [photo] = data.items_list
    assert (photo.number, photo.type, photo.id) == (1, "photo", "3051_880001")
    assert data.reply == {"conversation_message_id": 17}
    assert data.full_objects == [{"type": "photo", "photo": {"id": 880001}}]
    assert data.fwd == "0_0"
    assert data["attachments_count"] == "1"


BROKEN_JSON_STRINGS = {
    "cut-object": '{"conversation_message_id": 17',
    "not-json": "{broken",
    "empty": "",
    "huge-number": "1" + "0" * 5000,
    "deep-nesting": "[" * 50_000,
}
NON_STRING_VALUES = {
    "number": 17,
    "null": None,
    "boolean": True,
    "object": {"conversation_message_id": 17},
    "array": ["x"],
}


@pytest.mark.parametrize(
    "broken",
    [*BROKEN_JSON_STRINGS.values(), *NON_STRING_VALUES.values()],
    ids=[*BROKEN_JSON_STRINGS, *NON_STRING_VALUES],
)
def test_broken_nested_values_read_as_none(broken: Any) -> None:
    """A malformed nested value reads as None beside intact attachments, where vk-io threw."""
    attachments = {
        "reply": broken,
        "attachments": broken,
        "attach1_type": "doc",
        "attach1": "-70001_5",
    }
    additional = {"from": "3051", "payload": broken}
    raw = [4, 7702, 1, 2000000012, 1710000601, "bad", additional, attachments]
    body = json.dumps({"ts": 5130, "updates": [raw, [4, 7703, 1, 3051, 1710000602, "ok"]]})

    result = parse_poll_body(body.encode())
    assert isinstance(result, PollResult)
    update, after = (parse_update(item) for item in result.updates)

    assert isinstance(update, MessageNew)
    data = update.attachment_data
    assert data.reply is None
    assert data.full_objects is None
    assert update.additional_data.payload is None
    assert [(item.type, item.id) for item in data.items_list] == [("doc", "-70001_5")]
    assert data["reply"] == broken
    assert update.from_id == 3051
    assert isinstance(after, MessageNew)
    assert after.text == "ok"


def test_attachment_number_with_leading_zero() -> None:
    """An odd attachment number must not make items_list raise, as its readers promise."""
    data = Attachments(
        {
            "attach1_type": "photo",
            "attach1": "3051_880001",
            "attach02_type": "doc",
            "attach02": "3",
        }
    )

    assert [item.type for item in data.items_list] == ["photo", "doc"]


# -- peer ids and chat senders -------------------------------------------------------------

PEERS = {
    "chat-17": (2000000017, PeerKind.CHAT, 17),
    "chat-1": (2000000001, PeerKind.CHAT, 1),
    "last-chat": (199999999999, PeerKind.CHAT, 197999999999),
    "offset-itself": (2000000000, PeerKind.USER, None),
    "first-new-user": (200000000000, PeerKind.USER, None),
    "new-user": (300000000457, PeerKind.USER, None),
    "above-2**53": (9007199254740993, PeerKind.USER, None),
    "user": (3051, PeerKind.USER, None),
    "community": (-70001, PeerKind.COMMUNITY, None),
}


@pytest.mark.parametrize(("peer_id", "kind", "chat_id"), PEERS.values(), ids=PEERS.keys())
@pytest.mark.parametrize("code", sorted(MESSAGE_EVENTS))
def test_peer_kind_uses_bounded_chat_range(
    code: int, peer_id: int, kind: PeerKind, chat_id: int | None
) -> None:
    """Only 2e9 < peer_id < 2e11 is a chat and ids stay exact, where 'above 2e9' misfiled users."""
    body = b'{"ts": 5140, "updates": [[%d, 7801, 3, %d, 1710000700, "x", {}, {}]]}' % (
        code,
        peer_id,
    )

    result = parse_poll_body(body)
    assert isinstance(result, PollResult)
    [raw] = result.updates
    update = as_message(parse_update(raw))

    assert type(update.peer_id) is int
    assert update.peer_id == peer_id
    assert update.peer_kind is kind
    assert update.chat_id == chat_id


@pytest.mark.parametrize(
    ("sender", "from_id", "sender_kind"),
    [
        ("4051", 4051, PeerKind.USER),
        (" 4052 ", 4052, PeerKind.USER),
        ("-70001", -70001, PeerKind.COMMUNITY),
        ("300000000457", 300000000457, PeerKind.USER),
    ],
)
def test_chat_sender_string_reads_as_int(sender: str, from_id: int, sender_kind: PeerKind) -> None:
    """The chat sender arrives as a string, negative for a community, and must read as an int."""
    update = parse_update([4, 7811, 1, 2000000017, 1710000701, "hi", {"from": sender}, {}])

    assert isinstance(update, MessageNew)
    assert update.chat_id == 17
    assert type(update.from_id) is int
    assert update.from_id == from_id
    assert peer_kind(from_id) is sender_kind


def test_outgoing_private_message_stays_private() -> None:
    """An outgoing message to a user with a large id is private and outgoing, not a chat."""
    update = parse_update([4, 7812, 3, 300000000457, 1710000702, "out", {}, {}])

    assert isinstance(update, MessageNew)
    assert update.outgoing
    assert update.peer_kind is PeerKind.USER
    assert update.chat_id is None


# -- update entries that are not readable arrays -------------------------------------------

UNREADABLE_ENTRIES: list[Any] = [
    [],
    ["4", 7901],
    None,
    {"type": "y"},
    True,
    12,
    3.5,
    "4",
    [True, 7901, 1],
    [4.0, 7901, 1],
    [[4]],
    [None, 1],
    [4, "7901", 1],
    [4],
]


def test_unreadable_entries_do_not_block_progress() -> None:
    """Entries with no integer code read as malformed and ts moves on, where vksdk panicked."""
    message = [4, 7902, 1, 3051, 1710000800, "still here", {}, {}]

    session, received = poll_through_session([*UNREADABLE_ENTRIES, message], new_ts=5150)

    *malformed, last = received.updates
    assert len(malformed) == len(UNREADABLE_ENTRIES)
    for update, entry in zip(malformed, UNREADABLE_ENTRIES, strict=True):
        assert isinstance(update, MalformedUpdate)
        assert update.raw == entry
        assert update.reason
    assert isinstance(last, MessageNew)
    assert last.text == "still here"
    assert session.ts == 5150
    assert next_poll_ts(session) == "5150"


# -- the poll reply envelope ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"failed": 1, "ts": 40217}', Failed(code=1, ts=40217)),
        (b'{"failed": 1, "ts": "40217"}', Failed(code=1, ts=40217)),
        (b'{"failed": 2, "error": "any text"}', Failed(code=2, error="any text")),
        (b'{"failed": 2}', Failed(code=2)),
        (b'{"failed": 3}', Failed(code=3)),
        (
            b'{"failed": 4, "min_version": 0, "max_version": 12}',
            Failed(code=4, min_version=0, max_version=12),
        ),
        (b'{"ts": 1710000900, "updates": []}', PollResult(ts=1710000900, updates=())),
        (b'{"ts": "1710000900", "updates": []}', PollResult(ts=1710000900, updates=())),
    ],
    ids=["1", "1-string-ts", "2-text", "2", "3", "4", "ok", "ok-string-ts"],
)
def test_envelope_reads_every_reply_shape(body: bytes, expected: PollResult | Failed) -> None:
    """Failed replies without updates or ts read cleanly, where clients raised KeyError."""
    assert parse_poll_body(body) == expected


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"ts": 1710000900}', b'{"updates": []}', b'{"error": "x"}', b'{"pts": 3}'],
    ids=["empty", "ts-only", "updates-only", "error-only", "pts-only"],
)
def test_shapeless_envelope_is_protocol_error(body: bytes) -> None:
    """A reply with neither failed nor ts and updates raises RemoteProtocolError, not KeyError."""
    with pytest.raises(RemoteProtocolError) as caught:
        parse_poll_body(body)

    assert caught.value.body == body


ENVELOPE_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
ENVELOPE_KEYS = ["ts", "updates", "failed", "pts", "error", "min_version", "max_version", "x"]


@settings(database=None, derandomize=True, max_examples=300)
@given(st.dictionaries(st.sampled_from(ENVELOPE_KEYS), ENVELOPE_VALUES))
def test_envelope_raises_only_protocol_error(reply: dict[str, Any]) -> None:
    """Any mix of envelope keys and value types gives a result or RemoteProtocolError only."""
    try:
        result = parse_poll_body(json.dumps(reply).encode())
    except RemoteProtocolError:
        return

    assert isinstance(result, PollResult | Failed)


def test_null_ts_is_protocol_error() -> None:
    """A reply with a null ts must be a RemoteProtocolError and a retry, not a crash."""
    session, _ = poll_through_session([], new_ts=5160)
    poll = session.next_request(0.0)
    assert isinstance(poll, Request)

    with pytest.raises(RemoteProtocolError):
        parse_poll_body(b'{"ts": null, "updates": []}')
    events = session.receive_response(poll, 200, b'{"ts": null, "updates": []}', 0.0)

    assert [type(event) for event in events] == [RetryScheduled]
    assert session.ts == 5160
