"""Tests that the parser's shortcuts give exactly what the plain code paths give.

`parse_update` reads arrays through readers built at import from the
layouts, builds updates without the dataclass `__init__`, and caches flag
members. Each test compares one shortcut with what it replaces: the
slot-by-slot reader `_read_layout`, the keyword constructor, or the flag
type itself.
"""

import copy
import dataclasses
import math
import pickle
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from lpcore import (
    UPDATE_TYPES,
    ChatUpdateType,
    DialogFlags,
    DialogFlagsReplace,
    FriendOffline,
    MalformedUpdate,
    MessageFlags,
    MessageNew,
    OfflineFlags,
    PollResult,
    RemoteProtocolError,
    Update,
    encode_update,
    parse_poll_body,
    parse_update,
)
from lpcore._parse import _objectless_layout, _read_documented_edit_slowly, _read_layout
from lpcore._updates import (
    _MEMBER_CACHE_SIZE,
    _cached_members,
    looks_like_attachments,
    make_builder,
)
from lprecord.strategies import UPDATE_CODES, unknown_updates, updates

#: Examples per event code; the tests below are parametrized over about 30 codes.
EXAMPLES_PER_CODE = 50

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["attach1", "title", "from"]), st.text(max_size=3)),
)


def rebuilt(update: Update) -> Update:
    """Build `update` again through its class's keyword constructor."""
    values = {item.name: getattr(update, item.name) for item in dataclasses.fields(update)}
    init_values = {
        name: value
        for name, value in values.items()
        if type(update).__dataclass_fields__[name].init
    }
    return type(update)(**init_values)


def assert_same_update(fast: Update, expected: Update) -> None:
    """Check type, equality and every field, including those that == skips."""
    assert type(fast) is type(expected)
    assert fast == expected
    assert fast.raw is expected.raw
    assert fast.recovered is expected.recovered
    for item in dataclasses.fields(expected):
        fast_value = getattr(fast, item.name)
        expected_value = getattr(expected, item.name)
        assert fast_value == expected_value, item.name
        assert type(fast_value) is type(expected_value), item.name
    assert repr(fast) == repr(expected)


def read_slowly(raw: list[Any]) -> Update:
    """Read a layout event with the slot-by-slot reference readers."""
    if raw[0] == 5 and len(raw) == 7 and type(raw[6]) is dict and looks_like_attachments(raw[6]):
        return _read_documented_edit_slowly(raw)
    cls = UPDATE_TYPES[raw[0]]
    objectless = _objectless_layout(cls)
    if objectless is not None and len(raw) > 6 and type(raw[6]) is int:
        return _read_layout(cls, raw, layout=objectless)
    return _read_layout(cls, raw)


@st.composite
def damaged(draw: st.DrawFn, raw: list[Any]) -> list[Any]:
    """Return `raw` unchanged, cut short, with one element replaced, or with a sign flipped."""
    damage = draw(st.sampled_from(["none", "cut", "replace", "negate"]))
    if damage == "cut":
        return raw[: draw(st.integers(min_value=1, max_value=len(raw)))]
    if damage == "replace" and len(raw) > 1:
        index = draw(st.integers(min_value=1, max_value=len(raw) - 1))
        return [*raw[:index], draw(ODD_VALUES), *raw[index + 1 :]]
    if damage == "negate" and len(raw) > 2 and type(raw[2]) is int:
        return [*raw[:2], -raw[2] - 1, *raw[3:]]
    return raw


# -- the builder against the keyword constructor ---------------------------------------


@pytest.mark.parametrize("code", sorted(UPDATE_CODES))
@settings(max_examples=EXAMPLES_PER_CODE)
@given(data=st.data())
def test_parsed_update_equals_constructed(code: int, data: st.DataObject) -> None:
    raw = data.draw(updates(codes=[code]))

    update = parse_update(raw)

    assert not isinstance(update, MalformedUpdate), update
    assert_same_update(update, rebuilt(update))
    assert encode_update(update) == raw
    # Session marks history updates with dataclasses.replace(update, recovered=True).
    recovered = dataclasses.replace(update, recovered=True)
    assert recovered.recovered is True
    assert_same_update(dataclasses.replace(recovered, recovered=False), update)


@settings(max_examples=EXAMPLES_PER_CODE)
@given(unknown_updates())
def test_unknown_update_equals_constructed(raw: list[Any]) -> None:
    update = parse_update(raw)

    assert_same_update(update, rebuilt(update))
    assert encode_update(update) == raw


def test_built_update_is_frozen() -> None:
    update = parse_update([4, 1000001, 33, 100002])

    assert isinstance(update, MessageNew)
    with pytest.raises(dataclasses.FrozenInstanceError):
        update.message_id = 2  # type: ignore[misc]


def test_built_update_copies_and_pickles() -> None:
    update = parse_update([4, 1000001, 8193, 2000000007, 1700000000, "hi", {"from": "1"}, {}, 0])

    assert_same_update(copy.copy(update), update)
    unpickled = pickle.loads(pickle.dumps(update))
    assert unpickled == update
    assert unpickled.raw == update.raw


def test_builder_fills_defaults() -> None:
    build = make_builder(MessageNew, ("message_id", "flags"))
    raw = [4, 1000001, 2]

    update = build(raw, (1000001, MessageFlags.OUTBOX))

    assert_same_update(update, MessageNew(raw=raw, message_id=1000001, flags=MessageFlags.OUTBOX))
    assert update.code == 4
    assert update.peer_id is None


def test_builder_rejects_unknown_field() -> None:
    with pytest.raises(TypeError, match=r"invalid names \['sender'\] for MessageNew"):
        make_builder(MessageNew, ("message_id", "flags", "sender"))


def test_builder_rejects_missing_required_field() -> None:
    with pytest.raises(TypeError, match="message_id"):
        make_builder(MessageNew, ("flags",))


def test_builder_rejects_class_without_slots() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WithDict(Update):
        extra: int = 0

    with pytest.raises(TypeError, match=r"WithDict\.extra is not a slot"):
        make_builder(WithDict, ("code", "extra"))


def test_builder_rejects_post_init() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Checked(Update):
        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError, match="__post_init__"):
        make_builder(Checked, ("code",))


# -- the fast readers against the slot-by-slot reader ----------------------------------


@pytest.mark.parametrize("code", sorted(UPDATE_TYPES))
@settings(max_examples=EXAMPLES_PER_CODE)
@given(data=st.data())
def test_fast_reader_matches_slow_reader(code: int, data: st.DataObject) -> None:
    raw = data.draw(updates(codes=[code]).flatmap(damaged))

    assert_same_update(parse_update(raw), read_slowly(raw))


@pytest.mark.parametrize("code", sorted(UPDATE_TYPES))
@settings(max_examples=EXAMPLES_PER_CODE)
@given(rest=st.lists(ODD_VALUES, max_size=11))
def test_fast_reader_on_odd_values(code: int, rest: list[Any]) -> None:
    raw = [code, *rest]

    assert_same_update(parse_update(raw), read_slowly(raw))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([4, 1000001, -1], "event 4 element 2 (flags) must be a non-negative integer, got -1"),
        ([4, 1000001, True], "event 4 element 2 (flags) must be a non-negative integer, got true"),
        ([4, 1000001, 1, 100002, 17, "x", []], "event 4 element 6 (additional) must be an object"),
        ([8, 100002], "event 8 element 1 (user_id) must be a negative integer (-user_id), got"),
        ([9, -100003, -2], "event 9 element 2 (flags) must be a non-negative integer, got -2"),
        (
            [52, 1, 2000000007, 1.5],
            "event 52 element 3 (info) must be an integer or a string, got 1.5",
        ),
        ([6, 100002], "event 6 needs at least 3 elements [code, peer_id, local_id], got 2"),
        # Received values are shown as JSON, the form they arrived in.
        ([80, "1", 0], 'event 80 element 1 (count) must be an integer, got "1"'),
        ([4, None, 1], "event 4 element 1 (message_id) must be an integer, got null"),
        (
            [114, "x", None, None],
            'event 114 peer_id, sound and disabled_until must be integers, got ["x", null, null]',
        ),
        (
            [114, {"peer_id": "5"}],
            'event 114 peer_id, sound and disabled_until must be integers, got {"peer_id": "5"}',
        ),
        (
            [63, 2000000001, None],
            "event 63 must carry an integer peer_id and an array of integer user ids at index 1 "
            "and 2, got [2000000001, null]",
        ),
        ([None], "element 0 must be the integer event code, got null"),
        (["4"], 'element 0 must be the integer event code, got "4"'),
        ([True], "element 0 must be the integer event code, got true"),
        ([], "element 0 must be the integer event code, got an empty array"),
    ],
)
def test_malformed_reason_is_unchanged(raw: list[Any], reason: str) -> None:
    update = parse_update(raw)

    assert isinstance(update, MalformedUpdate)
    assert update.reason.startswith(reason)
    assert update.raw is raw


@pytest.mark.parametrize(
    "raw",
    [
        [4, 1000001, 33, 100002, 1700000000, "hi", {}, {}, 0, 17, 1700000001, "later", [1]],
        [4, 1000001, 33, 100002, 1700000000, "hi", 0, 17, 1700000001, "later"],
        [6, 100002, 1000001, None, {"x": 1}],
        [52, 6, 2000000007, "text", 5],
    ],
    ids=["message", "message-without-objects", "read", "chat-info"],
)
def test_elements_past_the_layout_stay_in_raw(raw: list[Any]) -> None:
    update = parse_update(raw)

    assert_same_update(update, read_slowly(raw))
    assert encode_update(update) == raw


def test_writable_twin_never_escapes() -> None:
    update = parse_update([4, 1000001, 33, 100002])

    assert type(update) is MessageNew
    assert update.__class__ is MessageNew
    assert hash(update) == hash(
        MessageNew(message_id=1000001, flags=MessageFlags(33), peer_id=100002)
    )


# -- the flag and enum caches ----------------------------------------------------------


@pytest.mark.parametrize("enum_type", [MessageFlags, DialogFlags, OfflineFlags, ChatUpdateType])
@settings(max_examples=EXAMPLES_PER_CODE)
@given(value=st.integers(min_value=0, max_value=2**64))
def test_cached_member_equals_constructor(enum_type: Any, value: int) -> None:
    cached = _cached_members(enum_type)(value)
    constructed = enum_type(value)

    assert type(cached) is enum_type
    assert cached == constructed
    assert repr(cached) == repr(constructed)


def test_cache_keeps_unknown_bits() -> None:
    flags = 8192 | 1 << 40 | 1

    first = parse_update([4, 1000001, flags, 100002])
    second = parse_update([4, 1000002, flags, 100002])

    assert isinstance(first, MessageNew)
    assert isinstance(second, MessageNew)
    assert first.flags == second.flags == flags
    assert MessageFlags.UNREAD in second.flags
    assert encode_update(second) == [4, 1000002, flags, 100002]


def test_cache_keeps_unknown_offline_bits() -> None:
    update = parse_update([9, -100003, 1 | 8, 1700000051])

    assert isinstance(update, FriendOffline)
    assert update.flags == 9
    assert update.flags is not None
    assert OfflineFlags.TIMEOUT in update.flags


def test_cache_keeps_unknown_chat_update_type() -> None:
    first = parse_update([52, 99, 2000000007])
    second = parse_update([52, 99, 2000000007])

    assert first == second
    assert repr(first).count("UNKNOWN_99") == 1


def test_cache_is_bounded() -> None:
    cached = _cached_members(DialogFlags)

    for value in range(_MEMBER_CACHE_SIZE + 10):
        update = parse_update([11, 100002, value])
        assert isinstance(update, DialogFlagsReplace)
        assert update.flags == DialogFlags(value)

    assert len(cached) <= _MEMBER_CACHE_SIZE


# -- parse_poll_body with another decoder -----------------------------------------------


class ReplyDecodeError(ValueError):
    """What a third-party decoder raises for bytes that are not JSON."""


def test_poll_body_uses_given_decoder() -> None:
    bodies: list[bytes] = []

    def loads(body: bytes) -> Any:
        bodies.append(body)
        return {"ts": 1800000101, "updates": [[80, 2, 0]]}

    result = parse_poll_body(b"not read by json", loads=loads)

    assert bodies == [b"not read by json"]
    assert result == PollResult(ts=1800000101, updates=([80, 2, 0],))


def test_poll_body_decoder_error_is_protocol_error() -> None:
    def loads(body: bytes) -> Any:
        raise ReplyDecodeError("unexpected character")

    with pytest.raises(RemoteProtocolError, match=r"not JSON \(unexpected character\)"):
        parse_poll_body(b"<html>", loads=loads)


def test_poll_body_decoder_other_error_propagates() -> None:
    def loads(body: bytes) -> Any:
        raise TypeError("decoder bug")

    with pytest.raises(TypeError, match="decoder bug"):
        parse_poll_body(b"{}", loads=loads)


@pytest.mark.parametrize(
    "body",
    [
        b'{"ts": 1800000101, "pts": "500020", "updates": [[80, 2, 0], [4, 1, 33]]}',
        b'{"failed": 1, "ts": 1800000300}',
        b"",
        b"<html>502</html>",
        b'{"ts": 18000',
        b"\xff\xfe",
        b"[" * 5000,
        b"[1, 2]",
    ],
)
def test_poll_body_same_with_orjson(body: bytes) -> None:
    orjson = pytest.importorskip("orjson")

    try:
        expected: Any = parse_poll_body(body)
    except RemoteProtocolError as error:
        expected = type(error)
    try:
        result: Any = parse_poll_body(body, loads=orjson.loads)
    except RemoteProtocolError as error:
        result = type(error)

    assert result == expected


def test_default_decoder_is_stdlib_json() -> None:
    # NaN is not JSON, but the stdlib decoder reads it.
    result = parse_poll_body(b'{"ts": 1, "updates": [NaN]}')

    assert isinstance(result, PollResult)
    assert math.isnan(result.updates[0])
