"""Tests for parse_update, encode_update, peer classification, flags and text unescaping.

The poll bodies below are fake version 3 replies of the kinds VK sends: full and
shortened message tuples, presence and typing events, and codes lpcore has no
class for.
"""

import enum
import json
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from lpcore import (
    CHAT_PEER_LIMIT,
    CHAT_PEER_OFFSET,
    UPDATE_TYPES,
    Call,
    CallbackAnswer,
    ChatChanged,
    ChatInfoChanged,
    ChatUpdateType,
    DialogFlags,
    DialogFlagsReplace,
    DialogFlagsReset,
    DialogFlagsSet,
    ExtendedCall,
    FriendOffline,
    FriendOnline,
    LocalProtocolError,
    MajorIdChanged,
    MalformedUpdate,
    MessageEdit,
    MessageFlags,
    MessageFlagsReset,
    MessageFlagsSet,
    MessageNew,
    MessagesDeleted,
    MessagesRestored,
    Mode,
    NotificationSettings,
    OfflineFlags,
    PeerActivity,
    PeerKind,
    Platform,
    PollResult,
    ReadIncoming,
    UnknownUpdate,
    UnreadCount,
    Update,
    UserTyping,
    UserTypingInChat,
    chat_id_of,
    chat_peer_id,
    encode_update,
    parse_poll_body,
    parse_update,
    peer_kind,
    unescape_text,
)

# Wait expired with no events.
TIMEOUT_BODY = b'{"ts": 1800000000, "updates": []}'

# An incoming private message with every v3 field.
PRIVATE_MESSAGE_BODY = (
    b'{"ts": 1800000001, "updates": [[4, 1000001, 33, 100002, 1700000000, "hello",'
    b' {"title": " ... "}, {}, 0]]}'
)

# A read event, then an outgoing message with attachments and HTML-escaped text.
OUTGOING_ESCAPED_BODY = (
    b'{"ts": 1800000003, "pts": 500012, "updates": [[6, 100002, 1000001], [4, 1000002, 3,'
    b' 100002, 1700000010, "1 &lt; 2 &amp;&amp; 3 &gt; 2<br>&quot;ok&quot;", {"title": " ... "},'
    b' {"attach1_type": "photo", "attach1": "100001_456239017", "attach2_type": "doc",'
    b' "attach2": "100001_456239018"}, 987654321]]}'
)

# A group-chat message with the undocumented flag bit 8192 and a surrogate-pair emoji.
CHAT_MESSAGE_BODY = (
    b'{"ts": 1800000004, "updates": [[4, 1000003, 8193, 2000000007, 1700000020,'
    b' "hi all \\ud83d\\ude00", {"from": "100003", "emoji": "1",'
    b' "marked_users": [[1, [100001]]]}, {}, 0]]}'
)

# A service message (user invited), then chat events 52 and 51.
SERVICE_MESSAGE_BODY = (
    b'{"ts": 1800000007, "updates": [[4, 1000004, 8193, 2000000007, 1700000030, "",'
    b' {"from": "100002", "source_act": "chat_invite_user", "source_mid": "100003"}, {}, 0],'
    b" [52, 6, 2000000007, 100003], [51, 7, 0]]}"
)

# A community message with a bot keyboard, a chat title change and event 52.
COMMUNITY_KEYBOARD_BODY = (
    b'{"ts": 1800000010, "updates": [[4, 1000005, 1, -100004, 1700000040, "Choose:",'
    b' {"title": " ... ", "payload": "{\\"command\\":\\"start\\"}", "keyboard": {"one_time":'
    b' false, "buttons": [[{"action": {"type": "text", "label": "Yes", "payload":'
    b' "{\\"button\\":\\"yes\\"}"}, "color": "positive"}]]}}, {}, 0], [4, 1000006, 8193,'
    b' 2000000007, 1700000041, "", {"from": "100002", "source_act": "chat_title_update",'
    b' "source_text": "New title", "source_old_text": "Old title"}, {}, 0],'
    b" [52, 1, 2000000007, 0]]}"
)

# Message flag events of 4, 4, 4, 4 and 9 elements.
FLAG_CHANGES_BODY = (
    b'{"ts": 1800000015, "updates": [[3, 1000001, 1, 100002], [2, 1000002, 128, 100002],'
    b" [2, 1000003, 131200, 2000000007], [2, 1000004, 8, 2000000007], [3, 1000002, 128, 100002,"
    b' 1700000010, "restored text", {"title": " ... "}, {}, 987654321]]}'
)

# An edit in the observed layout (additional data at 6, attachments at 7), then an
# edit in the documented 7-element layout whose element 6 is the attachments object.
EDIT_BODY = (
    b'{"ts": 1800000017, "updates": [[5, 1000002, 3, 100002, 1700000010, "look again",'
    b' {"title": ""}, {"attach1_type": "photo", "attach1": "100001_456239017"}, 987654321],'
    b' [5, 1000003, 8193, 2000000007, 1700000020, "edited", {"attach1_type": "photo",'
    b' "attach1": "100003_456239019"}]]}'
)

# Friends online and offline (negated user ids), typing, and events 63/64 in both orders.
PRESENCE_TYPING_BODY = (
    b'{"ts": 1800000023, "updates": [[8, -100002, 4, 1700000050], [9, -100003, 1, 1700000051],'
    b" [61, 100002, 1], [62, 100003, 7], [63, [100002, 100003], 2000000007, 2, 1700000052],"
    b" [64, 2000000007, [100002], 1, 1700000053]]}"
)

# Dialog flags, bulk delete and restore, the unread counter, and codes lpcore has no class for.
DIALOG_AND_OTHER_BODY = (
    b'{"ts": 1800000033, "updates": [[12, 100002, 1], [10, 100002, 2], [11, 100002, 3],'
    b' [13, 100002, 1000002], [14, 100002, 1000002], [80, 5, 0], [114, {"peer_id": 2000000007,'
    b' "sound": 0, "disabled_until": -1}], [70, 100002, 555], [20, 100002, 16],'
    b' [999, "unknown", {"x": 1}]]}'
)

# A ts sent as a decimal string, and an undocumented top-level key.
STRING_TS_BODY = b'{"ts": "1800000033", "updates": [], "unexpected": true}'

# Sticker, link, voice, forward/reply and geo attachments, then two shortened tuples.
ATTACHMENTS_AND_SHORT_BODY = (
    b'{"ts": 1800000040, "updates": [[4, 1000007, 33, 100002, 1700000060, "", {"title":'
    b' " ... "}, {"attach1_type": "sticker", "attach1": "9001", "attach1_product_id": "42",'
    b' "attachments_count": "1", "attachments": "[{\\"type\\":\\"sticker\\",\\"sticker\\":'
    b'{\\"sticker_id\\":9001,\\"product_id\\":42}}]"}, 0], [4, 1000008, 33, 100002, 1700000061,'
    b' "see https://example.com/", {"title": " ... "}, {"attach1_type": "link", "attach1":'
    b' "placeholder", "attach1_url": "https://example.com/", "attach1_title": "Example",'
    b' "attach1_desc": "Example page", "attach1_photo": "100002_456239020"}, 0], [4, 1000009,'
    b' 33, 100002, 1700000062, "", {"title": " ... "}, {"attach1_type": "doc", "attach1":'
    b' "100002_456239021", "attach1_kind": "audiomsg"}, 0], [4, 1000010, 33, 100002,'
    b' 1700000063, "as discussed", {"title": " ... "}, {"fwd": "0_0", "reply":'
    b' "{\\"conversation_message_id\\":54}"}, 0], [4, 1000011, 33, 100002, 1700000064, "here",'
    b' {"title": " ... "}, {"geo": "100002_1", "geo_provider": "4"}, 0], [2, 1000012, 131200],'
    b" [4, 1000013, 1]]}"
)

SUCCESS_BODIES = {
    "timeout": TIMEOUT_BODY,
    "private_message": PRIVATE_MESSAGE_BODY,
    "outgoing_escaped": OUTGOING_ESCAPED_BODY,
    "chat_message": CHAT_MESSAGE_BODY,
    "service_message": SERVICE_MESSAGE_BODY,
    "community_keyboard": COMMUNITY_KEYBOARD_BODY,
    "flag_changes": FLAG_CHANGES_BODY,
    "edit": EDIT_BODY,
    "presence_typing": PRESENCE_TYPING_BODY,
    "dialog_and_other": DIALOG_AND_OTHER_BODY,
    "string_ts": STRING_TS_BODY,
    "attachments_and_short": ATTACHMENTS_AND_SHORT_BODY,
}


def read_body(body: bytes) -> tuple[PollResult, list[Update]]:
    """Parse a success body and each of its updates."""
    result = parse_poll_body(body)
    assert isinstance(result, PollResult), f"expected a PollResult, got {result!r}"
    return result, [parse_update(raw) for raw in result.updates]


def raw_updates(body: bytes) -> list[Any]:
    updates = json.loads(body)["updates"]
    assert isinstance(updates, list)
    return updates


# -- every body of the fake traffic ----------------------------------------------


@pytest.mark.parametrize("body", SUCCESS_BODIES.values(), ids=SUCCESS_BODIES.keys())
def test_fake_traffic_has_no_malformed_update(body: bytes) -> None:
    _, updates = read_body(body)

    for update in updates:
        assert not isinstance(update, MalformedUpdate), update.reason


@pytest.mark.parametrize("body", SUCCESS_BODIES.values(), ids=SUCCESS_BODIES.keys())
def test_fake_traffic_round_trips(body: bytes) -> None:
    for raw in raw_updates(body):
        assert encode_update(parse_update(raw)) == raw


@pytest.mark.parametrize("body", SUCCESS_BODIES.values(), ids=SUCCESS_BODIES.keys())
def test_fake_traffic_keeps_raw_arrays(body: bytes) -> None:
    result, updates = read_body(body)

    assert [update.raw for update in updates] == list(result.updates)


def test_timeout_body_has_no_updates() -> None:
    result, updates = read_body(TIMEOUT_BODY)

    assert result.ts == 1800000000
    assert updates == []
    assert result.pts is None


def test_private_message_reads_every_field() -> None:
    result, updates = read_body(PRIVATE_MESSAGE_BODY)

    assert result.ts == 1800000001
    [message] = updates
    assert isinstance(message, MessageNew)
    assert message.code == 4
    assert message.message_id == 1000001
    assert message.flags == MessageFlags.UNREAD | MessageFlags.FRIENDS
    assert message.peer_id == 100002
    assert message.timestamp == 1700000000
    assert message.text == "hello"
    assert message.additional == {"title": " ... "}
    assert message.attachments == {}
    assert message.random_id == 0
    assert message.conversation_message_id is None
    assert message.update_time is None
    assert message.peer_kind is PeerKind.USER
    assert message.chat_id is None
    assert message.from_id is None
    assert not message.outgoing


def test_outgoing_message_unescapes_text() -> None:
    result, updates = read_body(OUTGOING_ESCAPED_BODY)

    assert result.ts == 1800000003
    assert result.pts == 500012
    read, message = updates
    assert read == ReadIncoming(peer_id=100002, local_id=1000001)
    assert isinstance(message, MessageNew)
    assert message.flags == MessageFlags.UNREAD | MessageFlags.OUTBOX
    assert message.outgoing
    assert message.text == '1 < 2 && 3 > 2\n"ok"'
    assert message.raw_text == "1 &lt; 2 &amp;&amp; 3 &gt; 2<br>&quot;ok&quot;"
    assert message.attachments == {
        "attach1_type": "photo",
        "attach1": "100001_456239017",
        "attach2_type": "doc",
        "attach2": "100001_456239018",
    }
    assert message.random_id == 987654321


def test_chat_message_keeps_unknown_flag_bit() -> None:
    _, [message] = read_body(CHAT_MESSAGE_BODY)

    assert isinstance(message, MessageNew)
    assert message.peer_id == 2000000007
    assert message.peer_kind is PeerKind.CHAT
    assert message.chat_id == 7
    assert message.from_id == 100003
    assert int(message.flags) == 8193
    assert message.flags & 8192 == 8192
    assert MessageFlags.UNREAD in message.flags
    assert message.text == "hi all \U0001f600"
    assert message.additional is not None
    assert message.additional["marked_users"] == [[1, [100001]]]


def test_service_message_and_chat_events() -> None:
    _, [message, chat_info, chat_change] = read_body(SERVICE_MESSAGE_BODY)

    assert isinstance(message, MessageNew)
    assert message.text == ""
    assert message.from_id == 100002
    assert message.additional is not None
    assert message.additional["source_act"] == "chat_invite_user"
    assert message.additional["source_mid"] == "100003"
    assert chat_info == ChatInfoChanged(
        type_id=ChatUpdateType.USER_JOINED, peer_id=2000000007, info=100003
    )
    assert chat_change == ChatChanged(chat_id=7, by_self=0)


def test_community_message_with_keyboard() -> None:
    _, [message, title_change, chat_info] = read_body(COMMUNITY_KEYBOARD_BODY)

    assert isinstance(message, MessageNew)
    assert message.peer_id == -100004
    assert message.peer_kind is PeerKind.COMMUNITY
    assert message.chat_id is None
    assert message.from_id is None
    assert message.additional is not None
    assert message.additional["payload"] == '{"command":"start"}'
    assert message.additional["keyboard"]["one_time"] is False
    assert isinstance(title_change, MessageNew)
    assert title_change.chat_id == 7
    assert title_change.additional is not None
    assert title_change.additional["source_text"] == "New title"
    assert title_change.additional["source_old_text"] == "Old title"
    assert chat_info == ChatInfoChanged(type_id=ChatUpdateType.TITLE, peer_id=2000000007, info=0)


def test_flag_changes_of_varying_arity() -> None:
    _, updates = read_body(FLAG_CHANGES_BODY)

    assert [type(update) for update in updates] == [
        MessageFlagsReset,
        MessageFlagsSet,
        MessageFlagsSet,
        MessageFlagsSet,
        MessageFlagsReset,
    ]
    read, deleted, deleted_for_all, important, restored = updates
    assert isinstance(read, MessageFlagsReset)
    assert read.mask == MessageFlags.UNREAD
    assert read.peer_id == 100002
    assert read.timestamp is None
    assert read.text is None
    assert isinstance(deleted, MessageFlagsSet)
    assert deleted.mask == MessageFlags.DELETED
    assert isinstance(deleted_for_all, MessageFlagsSet)
    assert deleted_for_all.mask == MessageFlags.DELETED | MessageFlags.DELETE_FOR_ALL
    assert deleted_for_all.chat_id == 7
    assert isinstance(important, MessageFlagsSet)
    assert important.mask == MessageFlags.IMPORTANT
    assert isinstance(restored, MessageFlagsReset)
    assert restored.mask == MessageFlags.DELETED
    assert restored.text == "restored text"
    assert restored.random_id == 987654321


def test_edit_in_observed_layout() -> None:
    _, [edit, _] = read_body(EDIT_BODY)

    assert isinstance(edit, MessageEdit)
    assert edit.message_id == 1000002
    assert edit.flags == MessageFlags.UNREAD | MessageFlags.OUTBOX
    assert edit.text == "look again"
    assert edit.additional == {"title": ""}
    assert edit.attachments == {"attach1_type": "photo", "attach1": "100001_456239017"}
    assert edit.random_id == 987654321


def test_edit_in_documented_layout_parses() -> None:
    _, [_, edit] = read_body(EDIT_BODY)

    assert isinstance(edit, MessageEdit)
    assert edit.message_id == 1000003
    assert int(edit.flags) == 8193
    assert edit.chat_id == 7
    assert edit.text == "edited"


def test_edit_in_documented_layout_reads_attachments() -> None:
    _, [_, edit] = read_body(EDIT_BODY)

    assert isinstance(edit, MessageEdit)
    assert edit.attachments == {"attach1_type": "photo", "attach1": "100003_456239019"}
    assert edit.additional is None


def test_presence_and_typing() -> None:
    _, updates = read_body(PRESENCE_TYPING_BODY)
    online, offline, typing, typing_in_chat, typing_many, recording = updates

    assert isinstance(online, FriendOnline)
    assert online == FriendOnline(user_id=100002, extra=4, timestamp=1700000050)
    assert online.platform is Platform.ANDROID
    assert offline == FriendOffline(
        user_id=100003, flags=OfflineFlags.TIMEOUT, timestamp=1700000051
    )
    assert typing == UserTyping(user_id=100002, flags=1)
    assert typing_in_chat == UserTypingInChat(user_id=100003, chat_id=7)
    # 63 arrives in the documented order (list first), 64 peer first.
    assert typing_many == PeerActivity(
        code=63,
        peer_id=2000000007,
        user_ids=(100002, 100003),
        total_count=2,
        timestamp=1700000052,
        peer_first=False,
    )
    assert recording == PeerActivity(
        code=64, peer_id=2000000007, user_ids=(100002,), total_count=1, timestamp=1700000053
    )


def test_dialog_flags_and_unknown_codes() -> None:
    _, updates = read_body(DIALOG_AND_OTHER_BODY)
    flags_set, flags_reset, flags_replace, deleted, restored, unread, *others = updates

    assert flags_set == DialogFlagsSet(peer_id=100002, mask=DialogFlags.IMPORTANT)
    assert flags_reset == DialogFlagsReset(peer_id=100002, mask=DialogFlags.UNANSWERED)
    assert flags_replace == DialogFlagsReplace(
        peer_id=100002, flags=DialogFlags.IMPORTANT | DialogFlags.UNANSWERED
    )
    assert deleted == MessagesDeleted(peer_id=100002, local_id=1000002)
    assert restored == MessagesRestored(peer_id=100002, local_id=1000002)
    assert unread == UnreadCount(count=5, unread_unmuted=0)
    settings, call, major, unknown = others
    assert settings == NotificationSettings(peer_id=2000000007, sound=0, disabled_until=-1)
    assert call == Call(user_id=100002, call_id=555)
    assert major == MajorIdChanged(peer_id=100002, major_id=16)
    assert unknown == UnknownUpdate(code=999, raw=[999, "unknown", {"x": 1}])


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5])
def test_message_without_objects_reads_random_id(code: int) -> None:
    # A poll without mode 2 gets no objects, and random_id follows the text.
    raw = [code, 4410, 1, 100002, 1700000300, "plain", 918273, 77, 0]

    update = parse_update(raw)

    assert not isinstance(update, MalformedUpdate), update
    assert getattr(update, "additional", "absent") is None
    assert getattr(update, "attachments", "absent") is None
    assert getattr(update, "random_id", None) == 918273
    assert getattr(update, "conversation_message_id", None) == 77
    assert encode_update(update) == raw


def test_message_built_without_objects_encodes_without_them() -> None:
    update = MessageNew(
        message_id=4411,
        flags=MessageFlags.OUTBOX,
        peer_id=100002,
        timestamp=1,
        raw_text="sent",
        random_id=5,
    )

    assert encode_update(update) == [4, 4411, 2, 100002, 1, "sent", 5]


def test_callback_answer_reads_its_object() -> None:
    answer = {
        "owner_id": -318004,
        "peer_id": 100007,
        "event_id": "9c04e1f3a2b7",
        "action": {"type": "show_snackbar", "text": "Saved"},
        "added_later": True,
    }

    update = parse_update([119, answer])

    assert update == CallbackAnswer(
        owner_id=-318004,
        peer_id=100007,
        event_id="9c04e1f3a2b7",
        action={"type": "show_snackbar", "text": "Saved"},
    )
    assert encode_update(update) == [119, answer]


def test_callback_answer_without_action() -> None:
    update = parse_update([119, {"owner_id": -318004, "peer_id": 100007, "event_id": "e1"}])

    assert isinstance(update, CallbackAnswer)
    assert update.action is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([119, [1, 2]], "needs an object at index 1, got an array"),
        ([119, {"event_id": 77}], "event_id must be a string, got 77"),
        ([119, {"owner_id": "-318004"}], 'owner_id must be an integer, got "-318004"'),
        ([119, {"action": "show_snackbar"}], 'action must be an object, got "show_snackbar"'),
    ],
)
def test_callback_answer_with_wrong_types_is_malformed(raw: list[Any], reason: str) -> None:
    update = parse_update(raw)

    assert isinstance(update, MalformedUpdate)
    assert update.reason == f"event 119 {reason}"


def test_callback_answer_built_in_code_encodes_its_object() -> None:
    update = CallbackAnswer(owner_id=-5, peer_id=2000000003, event_id="ab")

    assert encode_update(update) == [
        119,
        {"owner_id": -5, "peer_id": 2000000003, "event_id": "ab"},
    ]
    assert encode_update(CallbackAnswer()) == [119]


@pytest.mark.parametrize(
    "raw", [[115], [115, {"call_id": "c-7", "state": 2}], [115, {"x": 1}, 4, "later"]]
)
def test_extended_call_keeps_its_payload(raw: list[Any]) -> None:
    update = parse_update(raw)

    assert isinstance(update, ExtendedCall)
    assert update.payload == (raw[1] if len(raw) > 1 else None)
    assert encode_update(update) == raw


def test_string_ts_becomes_integer() -> None:
    result, updates = read_body(STRING_TS_BODY)

    assert result.ts == 1800000033
    assert updates == []


def test_attachment_objects_are_kept_whole() -> None:
    _, updates = read_body(ATTACHMENTS_AND_SHORT_BODY)
    sticker, link, voice, reply, geo = updates[:5]

    assert isinstance(sticker, MessageNew)
    assert sticker.attachments is not None
    assert sticker.attachments["attach1_product_id"] == "42"
    assert json.loads(sticker.attachments["attachments"])[0]["sticker"]["sticker_id"] == 9001
    assert isinstance(link, MessageNew)
    assert link.attachments is not None
    assert link.attachments["attach1_url"] == "https://example.com/"
    assert isinstance(voice, MessageNew)
    assert voice.attachments is not None
    assert voice.attachments["attach1_kind"] == "audiomsg"
    assert isinstance(reply, MessageNew)
    assert reply.attachments == {"fwd": "0_0", "reply": '{"conversation_message_id":54}'}
    assert isinstance(geo, MessageNew)
    assert geo.attachments == {"geo": "100002_1", "geo_provider": "4"}


def test_short_tuples_leave_fields_none() -> None:
    _, updates = read_body(ATTACHMENTS_AND_SHORT_BODY)
    deleted, new = updates[5:]

    assert isinstance(deleted, MessageFlagsSet)
    assert deleted.message_id == 1000012
    assert deleted.mask == MessageFlags.DELETED | MessageFlags.DELETE_FOR_ALL
    assert deleted.peer_id is None
    assert deleted.timestamp is None
    assert deleted.raw_text is None
    assert deleted.text is None
    assert deleted.additional is None
    assert deleted.attachments is None
    assert deleted.random_id is None
    assert deleted.peer_kind is None
    assert deleted.chat_id is None
    assert deleted.from_id is None
    assert isinstance(new, MessageNew)
    assert new.message_id == 1000013
    assert new.flags == MessageFlags.UNREAD
    assert new.peer_id is None
    assert new.text is None


def test_peer_only_tuple_is_not_shifted() -> None:
    update = parse_update([2, 1000002, 128, 100002])

    assert isinstance(update, MessageFlagsSet)
    assert update.peer_id == 100002
    assert update.timestamp is None
    assert update.raw_text is None


def test_trailing_elements_survive_round_trip() -> None:
    raw = [4, 1000014, 1, 100002, 1700000100, "v10 hello", {"title": " ... "}, {}, 0, 57, 0, "x"]

    update = parse_update(raw)

    assert isinstance(update, MessageNew)
    assert update.conversation_message_id == 57
    assert update.update_time == 0
    assert encode_update(update) == raw


def test_read_event_with_extra_count_round_trips() -> None:
    raw = [6, 100002, 1000014, 0]

    update = parse_update(raw)

    assert update == ReadIncoming(peer_id=100002, local_id=1000014)
    assert encode_update(update) == raw


# -- malformed updates ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "element", "field_name"),
    [
        ([4, "1000001", 33], "element 1", "message_id"),
        ([4, True, 33], "element 1", "message_id"),
        ([4, 1000001, "33"], "element 2", "flags"),
        ([4, 1000001, 33.0], "element 2", "flags"),
        ([2, 1000001, 128, "100002"], "element 3", "peer_id"),
        ([4, 1000001, 33, 100002, None], "element 4", "timestamp"),
        ([4, 1000001, 33, 100002, 1700000000, 5], "element 5", "raw_text"),
        ([4, 1000001, 33, 100002, 1700000000, "t", []], "element 6", "additional"),
        ([4, 1000001, 33, 100002, 1700000000, "t", {}, "x"], "element 7", "attachments"),
        ([4, 1000001, 33, 100002, 1700000000, "t", {}, {}, 1.5], "element 8", "random_id"),
        ([6, 100002, None], "element 2", "local_id"),
        ([8, "-100002"], "element 1", "user_id"),
        ([9, -100002, False], "element 2", "flags"),
        ([12, 100002, [1]], "element 2", "mask"),
        ([62, 100003, "7"], "element 2", "chat_id"),
        ([80, {"count": 5}], "element 1", "count"),
    ],
)
def test_wrong_element_type_is_malformed(raw: list[Any], element: str, field_name: str) -> None:
    update = parse_update(raw)

    assert isinstance(update, MalformedUpdate)
    assert update.code == raw[0]
    assert update.raw is raw
    assert element in update.reason
    assert field_name in update.reason


@pytest.mark.parametrize(
    ("raw", "missing_field"),
    [
        ([1, 1000001], "flags"),
        ([4], "message_id"),
        ([4, 1000001], "flags"),
        ([6, 100002], "local_id"),
        ([8], "user_id"),
        ([9], "user_id"),
        ([10, 100002], "mask"),
        ([61], "user_id"),
        ([62, 100003], "chat_id"),
        ([80], "count"),
    ],
)
def test_short_array_is_malformed(raw: list[Any], missing_field: str) -> None:
    update = parse_update(raw)

    assert isinstance(update, MalformedUpdate)
    assert update.code == raw[0]
    assert update.raw is raw
    assert missing_field in update.reason


@pytest.mark.parametrize(
    "raw",
    [None, 1, "x", {}, {"type": "x"}, [], [True], ["4", 5050], [4.0, 1, 1], [[4]], [None]],
    ids=repr,
)
def test_value_without_integer_code_is_malformed(raw: Any) -> None:
    update = parse_update(raw)

    assert isinstance(update, MalformedUpdate)
    assert update.code == -1
    assert update.raw is raw
    assert update.reason


@pytest.mark.parametrize(
    "raw",
    [
        None,
        1,
        -1,
        1.5,
        True,
        "x",
        "",
        {},
        [],
        [True],
        [False, 1],
        [4, None],
        [4, None, None],
        [[[]]],
        [4, [1, [2, [3]]], {"a": [[]]}],
        [-1],
        [0],
        [2**63, 1],
        [4, 1, -1],
        [4, 1, 2**70],
        [8, 0, -1],
        [999, None, [], {}],
        {"updates": [[4, 1, 1]]},
    ],
    ids=repr,
)
def test_parse_update_never_raises_on_odd_values(raw: Any) -> None:
    assert isinstance(parse_update(raw), Update)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
# Shallow values are enough to put a wrong type in every position of a known layout.
SHALLOW_JSON_VALUES = (
    JSON_SCALARS
    | st.lists(JSON_SCALARS, max_size=3)
    | st.dictionaries(st.text(max_size=5), JSON_SCALARS, max_size=3)
)


@settings(database=None, derandomize=True, max_examples=200)
@given(JSON_VALUES)
def test_parse_update_is_total_on_json_values(raw: Any) -> None:
    assert isinstance(parse_update(raw), Update)


@settings(database=None, derandomize=True, max_examples=200)
@given(st.sampled_from(sorted(UPDATE_TYPES)), st.lists(SHALLOW_JSON_VALUES, max_size=10))
def test_parse_update_is_total_on_known_codes(code: int, rest: list[Any]) -> None:
    update = parse_update([code, *rest])

    assert isinstance(update, Update)
    assert update.code == code


def build_message_array(code: int, fields: tuple[Any, ...], length: int) -> list[Any]:
    return [code, *fields[:length]]


MESSAGE_ARRAYS = st.builds(
    build_message_array,
    st.sampled_from([1, 2, 3, 4, 5]),
    st.tuples(
        st.integers(min_value=0),
        st.integers(min_value=0, max_value=2**40),
        st.integers(),
        st.integers(),
        st.text(),
        st.dictionaries(st.text(), st.text()),
        st.dictionaries(st.text(), st.text()),
        st.integers(),
        st.integers(),
        st.integers(),
        JSON_VALUES,
    ),
    st.integers(min_value=2, max_value=11),
)


@settings(database=None, derandomize=True, max_examples=200)
@given(MESSAGE_ARRAYS)
def test_message_arrays_round_trip(raw: list[Any]) -> None:
    update = parse_update(raw)

    assert not isinstance(update, MalformedUpdate), update.reason
    assert encode_update(update) == raw


def test_negative_flags_round_trip() -> None:
    raw = [4, 1000001, -1, 100002]

    assert encode_update(parse_update(raw)) == raw


def test_positive_friend_id_round_trips() -> None:
    raw = [8, 100002, 4, 1700000050]

    assert encode_update(parse_update(raw)) == raw


# -- encode_update on updates built in code -------------------------------------


def test_encode_built_message() -> None:
    update = MessageNew(message_id=1000001, flags=MessageFlags.UNREAD, peer_id=100002)

    assert encode_update(update) == [4, 1000001, 1, 100002]


def test_encode_negates_friend_id() -> None:
    assert encode_update(FriendOnline(user_id=100002)) == [8, -100002]


def test_encode_rejects_gap_before_set_field() -> None:
    update = MessageNew(message_id=1000001, flags=MessageFlags.UNREAD, timestamp=1700000000)

    with pytest.raises(LocalProtocolError) as caught:
        encode_update(update)

    assert "peer_id" in str(caught.value)
    assert "timestamp" in str(caught.value)


def test_encode_rejects_malformed_non_array() -> None:
    update = parse_update({"type": "x"})

    with pytest.raises(LocalProtocolError):
        encode_update(update)


def test_encode_returns_unknown_raw() -> None:
    raw = [777, "x", None]

    assert encode_update(parse_update(raw)) == raw


# -- peers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer_id", "kind"),
    [
        (1, PeerKind.USER),
        (100001, PeerKind.USER),
        (1_999_999_999, PeerKind.USER),
        (CHAT_PEER_OFFSET, PeerKind.USER),
        (CHAT_PEER_OFFSET + 1, PeerKind.CHAT),
        (2_000_000_005, PeerKind.CHAT),
        (CHAT_PEER_LIMIT - 1, PeerKind.CHAT),
        (CHAT_PEER_LIMIT, PeerKind.USER),
        (200_000_000_123, PeerKind.USER),
        (10**15, PeerKind.USER),
        (-1, PeerKind.COMMUNITY),
        (-200001, PeerKind.COMMUNITY),
    ],
)
def test_peer_kind_ranges(peer_id: int, kind: PeerKind) -> None:
    assert peer_kind(peer_id) is kind


def test_chat_peer_bounds() -> None:
    assert CHAT_PEER_OFFSET == 2 * 10**9
    assert CHAT_PEER_LIMIT == 2 * 10**11


def test_chat_id_of_chat_peer() -> None:
    assert chat_id_of(2_000_000_005) == 5
    assert chat_peer_id(5) == 2_000_000_005


@pytest.mark.parametrize("peer_id", [100001, 200_000_000_123, -200001, CHAT_PEER_OFFSET])
def test_chat_id_of_other_peers_is_none(peer_id: int) -> None:
    assert chat_id_of(peer_id) is None


def test_large_user_id_is_private_dialog() -> None:
    update = parse_update([4, 1000020, 1, 200_000_000_123, 1700000003, "new user", {}, {}])

    assert isinstance(update, MessageNew)
    assert update.peer_id == 200_000_000_123
    assert type(update.peer_id) is int
    assert update.peer_kind is PeerKind.USER
    assert update.chat_id is None


@pytest.mark.parametrize(
    ("sender", "from_id"),
    [
        ("100003", 100003),
        ("100003 ", 100003),
        (" 100003\t", 100003),
        ("-200001", -200001),
        (" -200001 ", -200001),
        ("", None),
        ("abc", None),
        ("1e5", None),
    ],
)
def test_from_id_of_chat_message(sender: str, from_id: int | None) -> None:
    update = parse_update([4, 1000021, 1, 2_000_000_005, 1700000000, "c", {"from": sender}, {}])

    assert isinstance(update, MessageNew)
    assert update.chat_id == 5
    assert update.from_id == from_id


def test_community_sender_in_chat() -> None:
    update = parse_update([4, 1000022, 1, 2_000_000_005, 1700000001, "g", {"from": "-200001"}])

    assert isinstance(update, MessageNew)
    assert update.peer_kind is PeerKind.CHAT
    assert update.from_id == -200001
    assert update.from_id is not None
    assert peer_kind(update.from_id) is PeerKind.COMMUNITY


def test_from_id_absent_without_additional() -> None:
    update = parse_update([4, 1000023, 1, 2_000_000_005, 1700000001, "g"])

    assert isinstance(update, MessageNew)
    assert update.from_id is None


# -- text unescaping ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_text", "text"),
    [
        ("&amp;quot;", "&quot;"),
        ("&lt;br&gt;", "<br>"),
        ("a<br>b", "a\nb"),
        ("&amp;lt;br&amp;gt;", "&lt;br&gt;"),
        ("&amp;amp;", "&amp;"),
        ("&quot;q&quot; &lt;br&gt; x<br>y", '"q" <br> x\ny'),
        ("<br><br>", "\n\n"),
        ("plain", "plain"),
    ],
)
def test_unescape_text_decodes_once(raw_text: str, text: str) -> None:
    assert unescape_text(raw_text) == text


def test_message_text_keeps_raw_text() -> None:
    raw_text = "say &amp;quot;hi&amp;quot; &lt;br&gt; then<br>bye"

    update = parse_update([4, 1000024, 1, 100001, 1700000000, raw_text, {}, {}])

    assert isinstance(update, MessageNew)
    assert update.text == "say &quot;hi&quot; <br> then\nbye"
    assert update.raw_text == raw_text


# -- flags ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag_type", "value"),
    [
        (MessageFlags, 8192 | 1),
        (MessageFlags, 1 << 26),
        (DialogFlags, 16 | 1),
        (OfflineFlags, 2 | 1),
        (Mode, 1024 | 234),
    ],
)
def test_flag_type_keeps_unknown_bits(flag_type: type[enum.IntFlag], value: int) -> None:
    assert int(flag_type(value)) == value


def test_dialog_mask_keeps_unknown_bits() -> None:
    update = parse_update([12, 100002, 16 | 1])

    assert isinstance(update, DialogFlagsSet)
    assert int(update.mask) == 17
    assert DialogFlags.IMPORTANT in update.mask


def test_offline_flags_keep_unknown_bits() -> None:
    update = parse_update([9, -100003, 2 | 1, 1700000051])

    assert isinstance(update, FriendOffline)
    assert update.flags is not None
    assert int(update.flags) == 3
    assert OfflineFlags.TIMEOUT in update.flags


@pytest.mark.parametrize(
    ("extra", "platform"),
    [
        (None, Platform.UNKNOWN),
        (0, Platform.UNKNOWN),
        (4, Platform.ANDROID),
        (0x100 | 7, Platform.WEB),
        (-1, Platform.UNKNOWN),
    ],
)
def test_friend_online_platform(extra: int | None, platform: Platform) -> None:
    update = FriendOnline(user_id=100002, extra=extra)

    assert update.platform is platform


def test_undocumented_platform_keeps_its_value() -> None:
    platform = FriendOnline(user_id=100002, extra=8).platform

    assert platform == 8
    assert platform.name == "UNKNOWN_8"
    assert not platform.is_mobile
