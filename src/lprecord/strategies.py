"""Hypothesis strategies that generate valid User Long Poll version 3 data.

They are for testing code that consumes long poll updates or poll bodies.
Every array that `updates` generates follows its code's documented
version 3 layout. The forms VK really sends are among them: shortened
message tuples, both orders of events 63 and 64, both forms of event 114,
events 115 and 119 of mode 8, the seven-element event 5 of the documentation, and trailing elements
that newer server builds append. Each array parses with
`lpcore.parse_update` to its typed class (never `MalformedUpdate` or
`UnknownUpdate`), and `lpcore.encode_update` writes it back unchanged.

Ids lie in VK's ranges: users 1 to 1999999999, group chats above
2000000000, communities negative. Flags are non-negative and may carry
bits no table names. Text is HTML-escaped the way VK escapes it.

hypothesis is a test dependency, so only this module imports it, and
``import lprecord`` does not import this module. Example::

    from hypothesis import given
    from lprecord.strategies import update_objects

    @given(update_objects(codes=[4, 5]))
    def test_bot_survives_messages(update):
        bot.handle(update)

Every strategy shrinks towards small ids, short arrays and empty objects.
"""

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from hypothesis import strategies as st

from lpcore import (
    CHAT_PEER_OFFSET,
    PEER_ACTIVITY_CODES,
    UPDATE_TYPES,
    Mode,
    PeerKind,
    Update,
    escape_text,
    parse_update,
    peer_kind,
)

__all__ = [
    "UPDATE_CODES",
    "escape_text",
    "peer_ids",
    "poll_bodies",
    "unknown_updates",
    "update_objects",
    "updates",
]

_MAX_USER_ID = CHAT_PEER_OFFSET - 1
# Chat ids are numbered per user, so real ones stay small.
_MAX_CHAT_ID = 1_000_000
_MAX_GROUP_ID = 999_999_999
_MAX_INT32 = 2**31 - 1
# From mid-2006, when VK launched, to the end of 32-bit Unix time.
_MIN_TIMESTAMP = 1_150_000_000

_user_ids = st.integers(min_value=1, max_value=_MAX_USER_ID)
_chat_ids = st.integers(min_value=1, max_value=_MAX_CHAT_ID)
_community_peer_ids = st.integers(min_value=1, max_value=_MAX_GROUP_ID).map(lambda group: -group)
_message_ids = st.integers(min_value=1, max_value=_MAX_INT32)
_timestamps = st.integers(min_value=_MIN_TIMESTAMP, max_value=_MAX_INT32)
_small_counts = st.integers(min_value=0, max_value=1000)


def peer_ids(*kinds: PeerKind) -> st.SearchStrategy[int]:
    """Generate peer ids of the given kinds (all three when none is given).

    Users are 1 to 1999999999, group chats 2000000000 + chat id, and
    communities the negated group id.
    """
    by_kind: dict[PeerKind, st.SearchStrategy[int]] = {
        PeerKind.USER: _user_ids,
        PeerKind.CHAT: _chat_ids.map(lambda chat_id: CHAT_PEER_OFFSET + chat_id),
        PeerKind.COMMUNITY: _community_peer_ids,
    }
    return st.one_of(*(by_kind[kind] for kind in kinds or tuple(PeerKind)))


_any_peer_ids = peer_ids()


def _flag_values(known: Iterable[int]) -> st.SearchStrategy[int]:
    """Generate sums of distinct bits: the known ones first, then any other bit of 31."""
    named = list(known)
    bits = named + [1 << shift for shift in range(31) if 1 << shift not in named]
    return st.lists(st.sampled_from(bits), unique=True, max_size=4).map(sum)


# The documented message flags, then the bits seen in newer traffic. The
# other bits are flags VK may add without notice.
_DOCUMENTED_MESSAGE_FLAGS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 65536, 131072, 262144)
_OBSERVED_MESSAGE_FLAGS = (4096, 8192, 32768, 524288, 1048576, 2097152, 4194304, 8388608)
_message_flags = _flag_values((*_DOCUMENTED_MESSAGE_FLAGS, *_OBSERVED_MESSAGE_FLAGS))
_dialog_flags = _flag_values([1, 2])
_offline_flags = _flag_values([1])


# -- text ---------------------------------------------------------------------------


# Characters of any script (emoji included) except the control characters
# (category Cc: U+0000 to U+001F and U+007F to U+009F) and the surrogates
# (Cs: U+D800 to U+DFFF), so every one is encodable as UTF-8. They are drawn
# as code points: st.characters() makes Hypothesis build a table of the
# Unicode category of every code point the first time a project uses it,
# which took over a second and tripped the too_slow health check.
_any_characters = st.one_of(
    st.integers(min_value=0x20, max_value=0x7E),
    st.integers(min_value=0xA0, max_value=0xD7FF),
    st.integers(min_value=0xE000, max_value=0x10FFFF),
).map(chr)

# Then the characters VK escapes, often.
_text_characters = st.one_of(_any_characters, st.sampled_from('\n&<>"'))
_short_texts = st.text(_any_characters, max_size=5)
_plain_texts = st.text(_text_characters, max_size=30)
_message_texts = _plain_texts.map(escape_text)


# -- the two objects of a message event ------------------------------------------------


# "{owner_id}_{item_id}", the form of attachment, photo and geo ids.
_owner_item_ids = st.builds(
    "{}_{}".format,
    st.one_of(_user_ids, _community_peer_ids),
    st.integers(min_value=1, max_value=_MAX_INT32),
)

# The author of a group-chat message, as a string. The documentation's own
# chat example has a trailing space in it.
_chat_authors = st.builds(
    "{}{}".format, st.one_of(_user_ids, _community_peer_ids), st.sampled_from(["", " "])
).map(lambda author: {"from": author})


def _service_fields() -> st.SearchStrategy[dict[str, Any]]:
    member = _user_ids.map(str)
    return st.one_of(
        st.builds(lambda mid: {"source_act": "chat_invite_user", "source_mid": mid}, member),
        st.builds(lambda mid: {"source_act": "chat_kick_user", "source_mid": mid}, member),
        st.builds(lambda title: {"source_act": "chat_create", "source_text": title}, _plain_texts),
        st.builds(
            lambda new, old: {
                "source_act": "chat_title_update",
                "source_text": new,
                "source_old_text": old,
            },
            _plain_texts,
            _plain_texts,
        ),
        st.builds(
            lambda mid, text, cmid: {
                "source_act": "chat_pin_message",
                "source_mid": mid,
                "source_message": text,
                "source_chat_local_id": cmid,
            },
            member,
            _plain_texts,
            _message_ids.map(str),
        ),
    )


def _keyboards() -> st.SearchStrategy[dict[str, Any]]:
    button = st.builds(
        lambda label: {
            "action": {"type": "text", "label": label, "payload": '{"button":"1"}'},
            "color": "primary",
        },
        _plain_texts,
    )
    rows = st.lists(st.lists(button, min_size=1, max_size=2), min_size=1, max_size=2)
    return st.builds(
        lambda one_time, buttons: {"one_time": one_time, "buttons": buttons}, st.booleans(), rows
    )


# Optional keys of the additional-data object. Values are strings except
# `keyboard` (an object) and `marked_users` (an array), as VK sends them.
_optional_additional = st.one_of(
    st.just({"emoji": "1"}),
    st.builds(lambda command: {"payload": json.dumps({"command": command})}, _plain_texts),
    _keyboards().map(lambda keyboard: {"keyboard": keyboard}),
    _user_ids.map(lambda user: {"marked_users": [[1, [user]]]}),
    st.sampled_from(["3600", "86400"]).map(lambda ttl: {"expire_ttl": ttl}),
    _service_fields(),
    # A key that only unofficial documentation lists.
    st.just({"has_template": "1"}),
)


@st.composite
def _additional_objects(draw: st.DrawFn, peer_id: int, *, edit: bool) -> dict[str, Any]:
    """Return the additional-data object: `from` in a group chat, else `title` (empty on edits)."""
    additional: dict[str, Any]
    if peer_kind(peer_id) is PeerKind.CHAT:
        additional = draw(_chat_authors)
    else:
        additional = {"title": "" if edit else " ... "}
    for fields in draw(st.lists(_optional_additional, max_size=2)):
        additional.update(fields)
    return additional


@functools.cache
def _numbered_attachment(number: int) -> st.SearchStrategy[dict[str, str]]:
    prefix = f"attach{number}"

    def plain(kind: str) -> st.SearchStrategy[dict[str, str]]:
        return _owner_item_ids.map(lambda item: {f"{prefix}_type": kind, prefix: item})

    sticker = st.builds(
        lambda sticker_id, product_id: {
            f"{prefix}_type": "sticker",
            prefix: str(sticker_id),
            f"{prefix}_product_id": str(product_id),
        },
        st.integers(min_value=1, max_value=10**6),
        st.integers(min_value=1, max_value=10**4),
    )
    link = st.builds(
        lambda photo: {
            f"{prefix}_type": "link",
            prefix: "placeholder",
            f"{prefix}_url": "https://example.com/",
            f"{prefix}_title": "Example",
            f"{prefix}_desc": "Example page",
            f"{prefix}_photo": photo,
        },
        _owner_item_ids,
    )
    # Voice messages and graffiti arrive as `doc` with a `_kind`.
    doc_kind = st.builds(
        lambda item, kind: {f"{prefix}_type": "doc", prefix: item, f"{prefix}_kind": kind},
        _owner_item_ids,
        st.sampled_from(["audiomsg", "graffiti"]),
    )
    kinds = ["photo", "video", "audio", "doc", "wall", "gift", "poll", "story"]
    return st.one_of(*(plain(kind) for kind in kinds), sticker, link, doc_kind)


_optional_attachment_keys = st.one_of(
    st.just({"fwd": "0_0"}),
    st.builds(
        lambda cmid: {"reply": json.dumps({"conversation_message_id": cmid})},
        st.integers(min_value=1, max_value=10**6),
    ),
    _owner_item_ids.map(lambda geo: {"geo": geo, "geo_provider": "4"}),
)


@st.composite
def _attachment_objects(draw: st.DrawFn, *, min_keys: int = 0) -> dict[str, str]:
    """Return an attachments object, with `min_keys` > 0 never an empty one."""
    count = draw(st.integers(min_value=min_keys, max_value=3))
    attachments: dict[str, str] = {}
    for number in range(1, count + 1):
        attachments.update(draw(_numbered_attachment(number)))
    for fields in draw(st.lists(_optional_attachment_keys, max_size=1)):
        attachments.update(fields)
    return attachments


_any_attachment_objects = _attachment_objects()

# -- update arrays ----------------------------------------------------------------------

# Elements that newer server builds append past a documented layout.
_trailing_elements = st.lists(
    st.one_of(st.integers(min_value=0, max_value=_MAX_INT32), _short_texts),
    max_size=2,
)

_MESSAGE_CODES = (1, 2, 3, 4, 5)
# code, message_id, flags, peer_id, timestamp, text, additional, attachments,
# random_id, conversation_message_id, update_time.
_FULL_MESSAGE_LENGTH = 11


def _message_length_limit(mode: int | None, *, objects: bool) -> int:
    """Return how many elements a message event may have under `mode`."""
    if mode is None or mode & Mode.RANDOM_ID:
        return _FULL_MESSAGE_LENGTH if objects else _FULL_MESSAGE_LENGTH - 2
    # Without random_id nothing is known to follow the objects or the text.
    return 8 if objects else 6


@st.composite
def _message_event(draw: st.DrawFn, code: int, mode: int | None) -> list[Any]:
    # Without mode 2 VK leaves out both objects, and random_id follows the text.
    objects = draw(st.booleans()) if mode is None else bool(mode & Mode.ATTACHMENTS)
    limit = _message_length_limit(mode, objects=objects)
    if code == 5 and objects and draw(st.booleans()):
        return draw(_documented_edits)
    # Shortened tuples come first, so examples shrink to [code, message_id, flags].
    length = draw(st.integers(min_value=3, max_value=limit))
    raw: list[Any] = [code, draw(_message_ids), draw(_message_flags)]
    if length == 3:
        return raw
    peer_id = draw(_any_peer_ids)
    raw.append(peer_id)
    object_slots = (_additional_objects(peer_id, edit=code == 5), _any_attachment_objects)
    tail = (
        _timestamps,
        _message_texts,
        *(object_slots if objects else ()),
        # random_id: 0 when the sender gave none.
        st.one_of(st.just(0), st.integers(-(2**31), _MAX_INT32)),
        # conversation_message_id, which v3 traffic carries undocumented.
        st.integers(min_value=1, max_value=10**6),
        # update_time: 0 for a message never edited.
        st.one_of(st.just(0), _timestamps),
    )
    raw.extend(draw(strategy) for strategy in tail[: length - 4])
    if length == 4 + len(tail):
        raw.extend(draw(_trailing_elements))
    return raw


@st.composite
def _documented_edit(draw: st.DrawFn) -> list[Any]:
    """Return event 5 as VK's documentation writes it: the attachments object at index 6."""
    return [
        5,
        draw(_message_ids),
        draw(_message_flags),
        draw(_any_peer_ids),
        draw(_timestamps),
        draw(_message_texts),
        draw(_attachment_objects(min_keys=1)),
    ]


_documented_edits = _documented_edit()


@st.composite
def _positional(
    draw: st.DrawFn, code: int, fields: tuple[st.SearchStrategy[Any], ...], required: int
) -> list[Any]:
    """Return ``[code, *fields]``, possibly cut after the first `required` fields.

    Trailing elements are added only after a complete layout, where the
    parser does not look.
    """
    length = draw(st.integers(min_value=required, max_value=len(fields)))
    raw: list[Any] = [code, *(draw(field) for field in fields[:length])]
    if length == len(fields):
        raw.extend(draw(_trailing_elements))
    return raw


def _friend_extra(mode: int | None) -> st.SearchStrategy[int]:
    """Event 8's `extra`: the platform in the low byte, sent only with mode 64."""
    platform = st.integers(min_value=1, max_value=7)
    with_platform = st.one_of(
        platform,
        st.builds(lambda low, high: low | high << 8, platform, st.integers(1, 255)),
    )
    if mode is None:
        # Some servers send -1 for "no platform".
        return st.one_of(st.just(0), with_platform, st.just(-1))
    return with_platform if mode & Mode.FRIEND_EXTRA else st.just(0)


@st.composite
def _chat_info_changed(draw: st.DrawFn) -> list[Any]:
    """Return event 52 with the `info` its type carries."""
    type_id = draw(st.integers(min_value=0, max_value=28))
    if type_id in (3, 6, 7, 8, 9):
        info: int = draw(_user_ids)
    elif type_id == 5:
        info = draw(st.integers(min_value=0, max_value=10**6))
    else:
        info = 0
    raw: list[Any] = [52, type_id, draw(peer_ids(PeerKind.CHAT))]
    # `info` is an int by the documentation, a string on some servers.
    if draw(st.booleans()):
        raw.append(draw(st.sampled_from([info, str(info)])))
        raw.extend(draw(_trailing_elements))
    return raw


@st.composite
def _peer_activity(draw: st.DrawFn, code: int) -> list[Any]:
    """Return events 63-68: the peer first as traffic has it, or the list first as documented."""
    user_ids = draw(st.lists(_user_ids, min_size=1, max_size=5, unique=True))
    total_count = len(user_ids) + draw(st.integers(min_value=0, max_value=50))
    peer_id = draw(_any_peer_ids)
    # The documentation gives the list-first order for 63 and 64 only.
    documented_order = code in (63, 64) and draw(st.booleans())
    lead = [user_ids, peer_id] if documented_order else [peer_id, user_ids]
    return [code, *lead, total_count, draw(_timestamps), *draw(_trailing_elements)]


@st.composite
def _notification_settings(draw: st.DrawFn, mode: int | None) -> list[Any]:
    """Return event 114: one object with mode 8, three numbers as the documentation lists them."""
    peer_id = draw(_any_peer_ids)
    sound = draw(st.sampled_from([0, 1]))
    # -1: disabled forever, 0: enabled, otherwise when notifications come back.
    disabled_until = draw(st.one_of(st.sampled_from([0, -1]), _timestamps))
    object_form = draw(st.booleans()) if mode is None else bool(mode & Mode.EXTENDED)
    if object_form:
        settings = {"peer_id": peer_id, "sound": sound, "disabled_until": disabled_until}
        return [114, settings, *draw(_trailing_elements)]
    return [114, peer_id, sound, disabled_until, *draw(_trailing_elements)]


_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**31), 2**31), st.text(_any_characters, max_size=10)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_short_texts, children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _extended_call(draw: st.DrawFn) -> list[Any]:
    """Return event 115, whose payload VK does not document: any object, or nothing."""
    payload = draw(st.none() | st.dictionaries(_short_texts, _json_values, max_size=3))
    return [115] if payload is None else [115, payload, *draw(_trailing_elements)]


_callback_actions = st.one_of(
    st.builds(lambda text: {"type": "show_snackbar", "text": text}, _plain_texts),
    st.builds(lambda n: {"type": "open_link", "link": f"https://example.com/{n}"}, _message_ids),
    st.builds(
        lambda app_id, n: {"type": "open_app", "app_id": app_id, "hash": f"h{n}"},
        st.integers(min_value=1, max_value=_MAX_INT32),
        _message_ids,
    ),
)


@st.composite
def _callback_answer(draw: st.DrawFn) -> list[Any]:
    """Return event 119, a community's response to a callback button, with or without an action."""
    answer: dict[str, Any] = {
        "owner_id": -draw(st.integers(min_value=1, max_value=_MAX_INT32)),
        "peer_id": draw(_any_peer_ids),
        "event_id": draw(st.text(alphabet="0123456789abcdef", min_size=1, max_size=14)),
    }
    action = draw(st.none() | _callback_actions)
    if action is not None:
        answer["action"] = action
    return [119, answer, *draw(_trailing_elements)]


@functools.cache
def _update_builders(mode: int | None) -> Mapping[int, st.SearchStrategy[list[Any]]]:
    """Return the strategy of each supported code under `mode` (None: any mode)."""
    any_peer = _any_peer_ids
    builders: dict[int, st.SearchStrategy[list[Any]]] = {
        code: _message_event(code, mode) for code in _MESSAGE_CODES
    }
    for code in (6, 7, 13, 14):
        builders[code] = _positional(code, (any_peer, _message_ids), 2)
    negated_users = _user_ids.map(lambda user: -user)
    builders[8] = _positional(8, (negated_users, _friend_extra(mode), _timestamps), 1)
    builders[9] = _positional(9, (negated_users, _offline_flags, _timestamps), 1)
    # Dialog flags exist on community dialogs, whose peer is the customer.
    for code in (10, 11, 12):
        builders[code] = _positional(code, (_user_ids, _dialog_flags), 2)
    pin_positions = st.sampled_from([0, 16, 32, 48, 64, 80])
    builders[20] = _positional(20, (any_peer, pin_positions), 2)
    builders[21] = _positional(21, (any_peer, st.integers(min_value=0, max_value=_MAX_INT32)), 2)
    builders[51] = _positional(51, (_chat_ids, st.sampled_from([0, 1])), 1)
    builders[52] = _chat_info_changed()
    builders[61] = _positional(61, (_user_ids, st.just(1)), 1)
    builders[62] = _positional(62, (_user_ids, _chat_ids), 2)
    for code in sorted(PEER_ACTIVITY_CODES):
        builders[code] = _peer_activity(code)
    call_ids = st.one_of(st.integers(min_value=1, max_value=_MAX_INT32), _message_ids.map(str))
    builders[70] = _positional(70, (_user_ids, call_ids), 1)
    builders[80] = _positional(80, (_small_counts, st.just(0)), 1)
    builders[114] = _notification_settings(mode)
    # VK sends 115 and 119 only to a poll with mode 8.
    if mode is None or mode & Mode.EXTENDED:
        builders[115] = _extended_call()
        builders[119] = _callback_answer()
    return builders


#: The event codes `updates` generates.
UPDATE_CODES: frozenset[int] = frozenset(_update_builders(None))


def updates(
    codes: Iterable[int] | None = None, *, mode: Mode | int | None = None
) -> st.SearchStrategy[list[Any]]:
    """Generate raw update arrays, as they appear in a poll reply's `updates`.

    `codes` limits the event codes (default: all of `UPDATE_CODES`).
    With `mode`, only the layouts a server sends under that mode appear:
    no message objects without 2 (`random_id` then follows the text), no
    `random_id` without 128, event 114 as an object only with 8, a
    platform in event 8 only with 64. Without
    `mode`, every layout appears. Raises ValueError for a code outside
    `UPDATE_CODES` (`unknown_updates` generates the others)::

        @given(updates(codes=[63, 64]))
        def test_typing(raw):
            assert isinstance(parse_update(raw), PeerActivity)
    """
    chosen = _check_codes(codes)
    builders = _update_builders(None if mode is None else int(mode))
    sent = [code for code in chosen if code in builders]
    if not sent:
        raise ValueError(f"codes {chosen} are never sent with mode {mode}; add mode 8 (EXTENDED)")
    return st.one_of(*(builders[code] for code in sent))


def _check_codes(codes: Iterable[int] | None) -> list[int]:
    if codes is None:
        return sorted(UPDATE_CODES)
    chosen = list(codes)
    if not chosen:
        raise ValueError("codes is empty; pass at least one code from UPDATE_CODES, or None")
    unsupported = sorted(set(chosen) - UPDATE_CODES)
    if unsupported:
        raise ValueError(
            f"no version 3 layout for codes {unsupported}; pass codes from UPDATE_CODES, "
            "or use unknown_updates() for codes lpcore does not know"
        )
    return list(dict.fromkeys(chosen))


def update_objects(
    codes: Iterable[int] | None = None, *, mode: Mode | int | None = None
) -> st.SearchStrategy[Update]:
    """Generate typed updates: `updates` read by `lpcore.parse_update`.

    Each update keeps its array in `raw`::

        @given(update_objects(codes=[4]))
        def test_new_message(update):
            assert update.message_id > 0
    """
    return updates(codes, mode=mode).map(parse_update)


# Codes of newer versions and undocumented ones; those that lpcore learns
# to read drop out of this list on their own.
_UNKNOWN_CODE_CANDIDATES = (
    0,
    18,
    19,
    50,
    81,
    90,
    91,
    115,
    119,
    501,
    502,
    503,
    504,
    505,
    506,
    507,
    601,
    602,
    999,
    10002,
    10004,
    10006,
    10018,
)
_KNOWN_CODES = frozenset(UPDATE_TYPES) | PEER_ACTIVITY_CODES | {114, 115, 119}


def unknown_updates() -> st.SearchStrategy[list[Any]]:
    """Generate arrays whose code lpcore has no class for, with any JSON after the code.

    VK's documentation says such events must be skipped; they parse to
    `lpcore.UnknownUpdate` and encode back unchanged::

        @given(unknown_updates())
        def test_unknown_code_is_skipped(raw):
            assert bot.handle(parse_update(raw)) is None
    """
    codes = st.one_of(
        st.sampled_from([code for code in _UNKNOWN_CODE_CANDIDATES if code not in _KNOWN_CODES]),
        st.integers(min_value=0, max_value=20_000).filter(lambda code: code not in _KNOWN_CODES),
    )
    return st.builds(lambda code, rest: [code, *rest], codes, st.lists(_json_values, max_size=5))


# -- poll bodies ------------------------------------------------------------------------

_poll_ts = st.integers(min_value=0, max_value=_MAX_INT32)
_pts_values = st.integers(min_value=0, max_value=_MAX_INT32)


def _counter_forms(values: st.SearchStrategy[int]) -> st.SearchStrategy[int | str]:
    """Generate each value as an integer or as the decimal string some replies send instead."""
    return values.flatmap(lambda value: st.sampled_from([value, str(value)]))


@st.composite
def _success_reply(
    draw: st.DrawFn, mode: int, update_arrays: st.SearchStrategy[list[Any]]
) -> dict[str, Any]:
    reply: dict[str, Any] = {"ts": draw(_counter_forms(_poll_ts))}
    if mode & Mode.PTS:
        reply["pts"] = draw(_pts_values)
    reply["updates"] = draw(st.lists(update_arrays, max_size=6))
    return reply


def _failed_replies(codes: Iterable[int]) -> st.SearchStrategy[dict[str, Any]]:
    by_code: dict[int, st.SearchStrategy[dict[str, Any]]] = {
        # The history is partly lost; continue from the given ts.
        1: st.builds(lambda ts: {"failed": 1, "ts": ts}, _counter_forms(_poll_ts)),
        # The key expired; newer server versions add an `error` text.
        2: st.sampled_from([{"failed": 2}, {"failed": 2, "error": "fake error text"}]),
        # The user's information was lost.
        3: st.just({"failed": 3}),
        # The version parameter is out of range.
        4: st.builds(
            lambda top: {"failed": 4, "min_version": 0, "max_version": top},
            st.integers(min_value=1, max_value=19),
        ),
    }
    chosen = list(codes)
    unsupported = sorted(set(chosen) - set(by_code))
    if unsupported:
        raise ValueError(f"failed codes {unsupported} are not documented; pass some of 1, 2, 3, 4")
    return st.one_of(*(by_code[code] for code in chosen))


@st.composite
def _encoded(draw: st.DrawFn, reply: dict[str, Any]) -> bytes:
    """Serialize a reply with one of the spellings JSON allows and VK uses."""
    ensure_ascii = draw(st.booleans())
    separators = draw(st.sampled_from([(", ", ": "), (",", ":")]))
    text = json.dumps(reply, ensure_ascii=ensure_ascii, separators=separators)
    # VK escapes slashes; a slash can only occur inside a JSON string.
    if draw(st.booleans()):
        text = text.replace("/", "\\/")
    return text.encode("utf-8")


def poll_bodies(
    mode: Mode | int = Mode.DEFAULT, *, failed_codes: Iterable[int] = (1, 2, 3, 4)
) -> st.SearchStrategy[bytes]:
    """Generate whole `a_check` reply bodies for a poll sent with `mode`.

    A successful reply is ``{"ts", "updates"}`` with `pts` when `mode` has
    32, its updates in the layouts of `mode`. A failed reply is one of
    `failed_codes`: 1 with a `ts`, 2, 3, or 4 with `min_version` and
    `max_version`; pass ``failed_codes=()`` for successful replies only::

        @given(poll_bodies(Mode.DEFAULT))
        def test_reader(body):
            parse_poll_body(body)
    """
    mode = int(mode)
    replies = _success_reply(mode, updates(mode=mode))
    failed = list(failed_codes)
    if failed:
        replies = st.one_of(replies, _failed_replies(failed))
    return replies.flatmap(_encoded)
