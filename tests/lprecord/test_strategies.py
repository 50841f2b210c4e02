"""Tests for lprecord.strategies: it generates valid version 3 data that lpcore reads back."""

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from lpcore import (
    CHAT_PEER_OFFSET,
    PEER_ACTIVITY_CODES,
    Failed,
    MalformedUpdate,
    MessageEdit,
    Mode,
    PeerKind,
    PollResult,
    UnknownUpdate,
    Update,
    encode_update,
    parse_poll_body,
    parse_update,
    peer_kind,
    unescape_text,
)
from lprecord.strategies import (
    UPDATE_CODES,
    escape_text,
    peer_ids,
    poll_bodies,
    unknown_updates,
    update_objects,
    updates,
)

MESSAGE_CODES = (1, 2, 3, 4, 5)
modes = st.integers(min_value=0, max_value=255)

# Searching without shrinking: the tests below need an example, not the smallest.
FIND_SETTINGS = settings(
    max_examples=1000, phases=[Phase.generate], derandomize=True, database=None
)


def first_example(strategy: st.SearchStrategy[Any], condition: Callable[[Any], bool]) -> Any:
    """Return the first example of `strategy` that satisfies `condition`."""
    return find(strategy, condition, settings=FIND_SETTINGS)


# -- updates ------------------------------------------------------------------------------


@given(updates())
def test_updates_round_trip(raw: list[Any]) -> None:
    update = parse_update(raw)

    assert not isinstance(update, MalformedUpdate), update.reason
    assert not isinstance(update, UnknownUpdate)
    assert encode_update(update) == raw


@given(modes.flatmap(lambda mode: st.tuples(st.just(mode), updates(mode=mode))))
def test_updates_of_mode_round_trip(mode_and_raw: tuple[int, list[Any]]) -> None:
    _, raw = mode_and_raw
    update = parse_update(raw)

    assert not isinstance(update, MalformedUpdate), update.reason
    assert not isinstance(update, UnknownUpdate)
    assert encode_update(update) == raw


@given(updates(mode=Mode.DEFAULT & ~Mode.ATTACHMENTS & ~Mode.RANDOM_ID))
def test_updates_without_attachments_mode_end_at_text(raw: list[Any]) -> None:
    if raw[0] in MESSAGE_CODES:
        assert len(raw) <= 6


@given(updates(mode=Mode.DEFAULT & ~Mode.ATTACHMENTS, codes=MESSAGE_CODES))
def test_random_id_follows_text_without_attachments(raw: list[Any]) -> None:
    # Without mode 2 the objects are left out, so random_id (mode 128),
    # conversation_message_id and update_time follow the text directly.
    # Elements past them stand for fields of newer server builds.
    assert all(type(element) is int for element in raw[6:9])


@given(updates(mode=Mode.DEFAULT & ~Mode.RANDOM_ID, codes=MESSAGE_CODES))
def test_updates_without_random_id_mode_end_at_objects(raw: list[Any]) -> None:
    assert len(raw) <= 8


@given(updates(codes=[114], mode=Mode.EXTENDED))
def test_extended_mode_sends_settings_object(raw: list[Any]) -> None:
    assert type(raw[1]) is dict


@given(updates(codes=[8], mode=Mode.DEFAULT & ~Mode.FRIEND_EXTRA))
def test_friend_extra_is_zero_without_mode_64(raw: list[Any]) -> None:
    if len(raw) > 2:
        assert raw[2] == 0


@given(update_objects())
def test_update_objects_keep_their_array(update: Update) -> None:
    assert update.code in UPDATE_CODES
    assert encode_update(update) == update.raw


@pytest.mark.parametrize("code", sorted(UPDATE_CODES))
def test_updates_generate_each_code(code: int) -> None:
    raw = first_example(updates(codes=[code]), lambda raw: True)

    assert raw[0] == code


def test_updates_reject_unknown_code() -> None:
    with pytest.raises(ValueError, match=r"\[18\]"):
        updates(codes=[4, 18])


def test_updates_reject_mode_8_codes() -> None:
    with pytest.raises(ValueError, match="add mode 8"):
        updates(codes=[115, 119], mode=Mode.DEFAULT & ~Mode.EXTENDED)


def test_updates_reject_empty_codes() -> None:
    with pytest.raises(ValueError, match="empty"):
        updates(codes=[])


@given(updates(codes=MESSAGE_CODES))
def test_message_text_is_escaped_as_vk_does(raw: list[Any]) -> None:
    if len(raw) > 5:
        assert escape_text(unescape_text(raw[5])) == raw[5]


@given(updates(codes=MESSAGE_CODES))
def test_message_peer_in_vk_ranges(raw: list[Any]) -> None:
    if len(raw) > 3:
        peer_id = raw[3]
        assert peer_id != 0
        assert peer_id != CHAT_PEER_OFFSET


@given(peer_ids(PeerKind.CHAT))
def test_chat_peer_ids_are_chats(peer_id: int) -> None:
    assert peer_kind(peer_id) is PeerKind.CHAT


@given(peer_ids(PeerKind.USER))
def test_user_peer_ids_are_users(peer_id: int) -> None:
    assert 1 <= peer_id < CHAT_PEER_OFFSET


# -- the forms VK really sends -----------------------------------------------------------------


def is_shortened_message(raw: list[Any]) -> bool:
    return len(raw) == 3


def has_trailing_elements(raw: list[Any]) -> bool:
    return len(raw) > 11


def is_documented_edit(raw: list[Any]) -> bool:
    update = parse_update(raw)
    return len(raw) == 7 and isinstance(update, MessageEdit) and update.additional is None


def lists_users_first(raw: list[Any]) -> bool:
    return type(raw[1]) is list


def lists_peer_first(raw: list[Any]) -> bool:
    return type(raw[2]) is list


def is_settings_object(raw: list[Any]) -> bool:
    return type(raw[1]) is dict


def is_settings_numbers(raw: list[Any]) -> bool:
    return type(raw[1]) is int


FORMS: list[tuple[list[int], Callable[[list[Any]], bool]]] = [
    ([4], is_shortened_message),
    ([4], has_trailing_elements),
    ([5], is_documented_edit),
    ([63], lists_users_first),
    ([63], lists_peer_first),
    ([64], lists_users_first),
    ([64], lists_peer_first),
    ([114], is_settings_object),
    ([114], is_settings_numbers),
]


@pytest.mark.parametrize(
    ("codes", "form"), FORMS, ids=[f"{codes[0]}-{form.__name__}" for codes, form in FORMS]
)
def test_updates_generate_form(codes: list[int], form: Callable[[list[Any]], bool]) -> None:
    raw = first_example(updates(codes=codes), form)

    assert form(raw)


def test_documented_edit_reads_attachments_at_index_6() -> None:
    raw = first_example(updates(codes=[5]), is_documented_edit)
    update = parse_update(raw)

    assert isinstance(update, MessageEdit)
    assert update.additional is None
    assert update.attachments == raw[6]


# -- unknown updates ------------------------------------------------------------------------


@given(unknown_updates())
def test_unknown_updates_parse_as_unknown(raw: list[Any]) -> None:
    update = parse_update(raw)

    assert isinstance(update, UnknownUpdate)
    assert raw[0] not in UPDATE_CODES
    assert raw[0] not in PEER_ACTIVITY_CODES
    assert encode_update(update) == raw


# -- text escaping --------------------------------------------------------------------------


def test_escape_text_matches_vk_example() -> None:
    assert escape_text('1 < 2 && 3 > 2\n"ok"') == "1 &lt; 2 &amp;&amp; 3 &gt; 2<br>&quot;ok&quot;"


def test_escape_text_escapes_typed_entity_once() -> None:
    assert escape_text("&quot;") == "&amp;quot;"


@given(st.text())
def test_unescape_undoes_escape_text(text: str) -> None:
    assert unescape_text(escape_text(text)) == text


# -- poll bodies ----------------------------------------------------------------------------


@given(poll_bodies())
def test_poll_bodies_parse(body: bytes) -> None:
    reply = parse_poll_body(body)

    assert isinstance(reply, PollResult | Failed)


@given(modes.flatmap(lambda mode: st.tuples(st.just(mode), poll_bodies(mode, failed_codes=()))))
def test_poll_bodies_carry_pts_with_mode_32(mode_and_body: tuple[int, bytes]) -> None:
    mode, body = mode_and_body
    reply = parse_poll_body(body)

    assert isinstance(reply, PollResult)
    assert (reply.pts is not None) == bool(mode & Mode.PTS)
    for raw in reply.updates:
        assert not isinstance(parse_update(raw, mode=Mode(mode)), MalformedUpdate | UnknownUpdate)


def failed_reply(code: int) -> Failed:
    """Return the first failed reply that poll_bodies(failed_codes=[code]) generates, parsed."""
    body = first_example(poll_bodies(failed_codes=[code]), lambda body: b"failed" in body)
    reply = parse_poll_body(body)
    assert isinstance(reply, Failed)
    return reply


@pytest.mark.parametrize("code", [1, 2, 3, 4])
def test_poll_bodies_generate_failed_code(code: int) -> None:
    assert failed_reply(code).code == code


def test_failed_1_body_carries_ts() -> None:
    assert failed_reply(1).ts is not None


def test_failed_4_body_carries_version_range() -> None:
    reply = failed_reply(4)

    assert isinstance(reply, Failed)
    assert reply.min_version == 0
    assert reply.max_version is not None


def test_poll_bodies_reject_undocumented_failed_code() -> None:
    with pytest.raises(ValueError, match=r"\[5\]"):
        poll_bodies(failed_codes=[5])


@given(poll_bodies(failed_codes=()))
def test_poll_bodies_are_json_objects(body: bytes) -> None:
    assert type(json.loads(body)) is dict


# -- packaging ------------------------------------------------------------------------------


def test_lprecord_import_leaves_hypothesis_unloaded() -> None:
    script = "import sys, lprecord; print('hypothesis' in sys.modules)"

    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"
