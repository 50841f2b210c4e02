"""Reading and writing the wire formats: update arrays, poll bodies, poll URLs."""

import dataclasses
import functools
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ._errors import LocalProtocolError, RemoteProtocolError
from ._modes import Mode
from ._updates import (
    PEER_ACTIVITY_CODES,
    UPDATE_TYPES,
    CallbackAnswer,
    ExtendedCall,
    MalformedUpdate,
    MemberCache,
    MessageEdit,
    NotificationSettings,
    PeerActivity,
    UnknownUpdate,
    Update,
    _Slot,
    builder_lines,
    compile_builder,
    condition,
    looks_like_attachments,
    make_builder,
)

#: The longest hold a long poll server grants, in seconds.
MAX_WAIT = 90

#: A counter sent as a string: optional minus, at most 30 ASCII digits
#: (CPython refuses to convert more than 4300, and no counter needs 30).
_DECIMAL = re.compile(r"-?[0-9]{1,30}")


def parse_update(raw: Any, *, mode: Mode = Mode.DEFAULT, version: int = 3) -> Update:
    """Read one element of a poll reply's `updates` array into a typed update.

    Total: for any value `json.loads` can return it returns an `Update` and
    never raises. Unknown codes give `UnknownUpdate`; arrays that do not fit
    their code's layout give `MalformedUpdate` with the reason.
    """
    # `mode` and `version` are part of the contract so that layouts that
    # depend on them can be chosen here; the version 3 layouts below read
    # by type and position and do not need them yet.
    #
    if type(raw) is list and raw and type(raw[0]) is int:
        read = _READERS.get(raw[0])
        if read is None:
            return _build_unknown(raw, raw)
        return read(raw)
    if type(raw) is not list:
        return MalformedUpdate(
            code=-1, raw=raw, reason=f"an update must be an array, got {_kind(raw)}"
        )
    first = "an empty array" if not raw else _json_text(raw[0])
    return MalformedUpdate(
        code=-1, raw=raw, reason=f"element 0 must be the integer event code, got {first}"
    )


_Reader = Callable[[list[Any]], Update]


def _read_layout(
    cls: type[Update], raw: list[Any], layout: tuple[_Slot, ...] | None = None
) -> Update:
    """Read `raw` by `layout` (default `cls._LAYOUT`) one slot at a time, with `cls`'s constructor.

    This is the reference reader: the readers that `_compile_reader` generates give
    the same result, and call this one for the MalformedUpdate reason when
    their checks fail.
    """
    layout = cls._LAYOUT if layout is None else layout
    if len(raw) <= cls._REQUIRED:
        names = ", ".join(slot.name for slot in layout[: cls._REQUIRED])
        return MalformedUpdate(
            code=raw[0],
            raw=raw,
            reason=f"event {raw[0]} needs at least {cls._REQUIRED + 1} elements "
            f"[code, {names}], got {len(raw)}",
        )

    values: dict[str, Any] = {}
    for index, slot in enumerate(layout, start=1):
        if index >= len(raw):
            break
        value = raw[index]
        valid_type = type(value) in slot.accepts
        if not valid_type or (slot.valid is not None and not condition(slot.valid)(value)):
            expected = slot.requirement or " or ".join(_type_name(t) for t in slot.accepts)
            return _malformed(
                raw, f"element {index} ({slot.name}) must be {expected}, got {_json_text(value)}"
            )
        values[slot.name] = value if slot.to_field is None else slot.to_field(value)
    return cls(raw=raw, **values)


def _compile_reader(
    cls: type[Update], layouts: Sequence[tuple[_Slot, ...]], required: int, fallback: _Reader
) -> _Reader:
    """Generate a reader of `cls` from arrays laid out as any of `layouts`.

    It accepts exactly what `_read_layout` accepts with one of the layouts:
    at least `required` fields, each of a type its slot accepts and passing
    the slot's `valid`. Any other array goes to `fallback`, which names the
    element at fault. Where two layouts accept the same element types, the
    later one is used.

    The reader has one branch per array length. In it, each combination of
    accepted types gets one test, followed by the statements that build the
    update (see `builder_lines`). So a well-formed array costs no call and
    no lookup besides the update's own construction. Reading
    ``[6, 100002, 1000001]`` as ReadIncoming (two int fields) runs::

        def read(raw):
            n = len(raw)
            if n > 2:
                if type(raw[1]) is int and type(raw[2]) is int:
                    update = new(writable)
                    ...
                    return update
            return fallback(raw)

    Elements past the longest layout are not tested; they stay in `raw`.
    """
    cases: dict[int, dict[tuple[type, ...], tuple[_Slot, ...]]] = {}
    for layout in layouts:
        for length in range(required, len(layout) + 1):
            for types in itertools.product(*(slot.accepts for slot in layout[:length])):
                cases.setdefault(length, {})[types] = layout[:length]

    size = max(cases)
    scope: dict[str, Any] = {"fallback": fallback}
    lines = ["def read(raw):", "    n = len(raw)"]
    for branch, length in enumerate(sorted(cases, reverse=True)):
        keyword = "if" if branch == 0 else "elif"
        # The longest branch also takes arrays with elements past the layouts.
        test = f"n > {length}" if length == size else f"n == {length + 1}"
        lines.append(f"    {keyword} {test}:")
        for types, slots in cases[length].items():
            tests = []
            for index, kind in enumerate(types, start=1):
                scope[f"type_{kind.__name__}"] = kind
                tests.append(f"type(raw[{index}]) is type_{kind.__name__}")
            lines.append(f"        if {' and '.join(tests)}:")
            lines += [f"            {line}" for line in _slot_lines(cls, slots, scope)]
    lines.append("    return fallback(raw)")
    exec("\n".join(lines), scope)
    read: _Reader = scope["read"]
    read.__qualname__ = f"read_{cls.__name__}"
    return read


def _slot_lines(cls: type[Update], slots: tuple[_Slot, ...], scope: dict[str, Any]) -> list[str]:
    """Statements that check `slots` of `raw` beyond their types and build `cls` from them."""
    values = {"raw": "raw"}
    checks = []
    for index, slot in enumerate(slots, start=1):
        element = f"raw[{index}]"
        if slot.valid is not None:
            checks.append(f"if not ({slot.valid.format(element)}): return fallback(raw)")
        if slot.to_field is not None:
            scope[f"to_field_{slot.name}"] = slot.to_field
            # A member cache is subscripted, so a hit runs no Python code.
            form = "{}[{}]" if isinstance(slot.to_field, MemberCache) else "{}({})"
            element = form.format(f"to_field_{slot.name}", element)
        values[slot.name] = element
    return [*checks, *builder_lines(cls, values, scope)]


def _malformed(raw: list[Any], reason: str) -> MalformedUpdate:
    return MalformedUpdate(code=raw[0], raw=raw, reason=f"event {raw[0]} {reason}")


def _all_ints(values: list[Any]) -> bool:
    # A loop: all() over a generator or map() costs several times as much
    # for the few elements an update has (timeit, CPython 3.11).
    for value in values:  # noqa: SIM110
        if type(value) is not int:
            return False
    return True


def _positional_builder(cls: type[Update], names: tuple[str, ...]) -> Callable[..., Update]:
    """Build `cls` from ``raw`` and the values of `names` as positional arguments."""
    return compile_builder(cls, ", ".join(("raw", *names)), {"raw": "raw"} | {n: n for n in names})


_build_peer_activity = _positional_builder(
    PeerActivity, ("code", "peer_id", "user_ids", "total_count", "timestamp", "peer_first")
)


def _read_peer_activity(raw: list[Any]) -> Update:
    n = len(raw)
    if n < 3:
        return _malformed(raw, f"needs at least 3 elements [code, peer_id, user_ids], got {n}")
    peer_first = type(raw[2]) is list
    peer_id, user_ids = (raw[1], raw[2]) if peer_first else (raw[2], raw[1])
    if type(peer_id) is not int or type(user_ids) is not list or not _all_ints(user_ids):
        return _malformed(
            raw,
            "must carry an integer peer_id and an array of integer user ids at index 1 and 2, "
            f"got {_json_text(raw[1:3])}",
        )
    total_count = raw[3] if n > 3 else None
    timestamp = raw[4] if n > 4 else None
    if (n > 3 and type(total_count) is not int) or (n > 4 and type(timestamp) is not int):
        return _malformed(
            raw, f"total_count and timestamp must be integers, got {_json_text(raw[3:5])}"
        )
    return _build_peer_activity(
        raw, raw[0], peer_id, tuple(user_ids), total_count, timestamp, peer_first
    )


_NOTIFICATION_KEYS = ("peer_id", "sound", "disabled_until")

_build_notification_settings = _positional_builder(
    NotificationSettings, ("peer_id", "sound", "disabled_until", "object_form")
)


def _read_notification_settings(raw: list[Any]) -> Update:
    object_form = len(raw) > 1 and type(raw[1]) is dict
    if object_form:
        settings = raw[1]
        values = [settings.get("peer_id"), settings.get("sound"), settings.get("disabled_until")]
    else:
        values = (raw[1:4] + [None] * 3)[:3]
    for value in values:
        if value is not None and type(value) is not int:
            return _malformed(
                raw,
                "peer_id, sound and disabled_until must be integers, "
                f"got {_json_text(raw[1] if object_form else raw[1:4])}",
            )
    return _build_notification_settings(raw, *values, object_form)


_build_extended_call = make_builder(ExtendedCall, ("payload",))


def _read_extended_call(raw: list[Any]) -> Update:
    return _build_extended_call(raw, (raw[1] if len(raw) > 1 else None,))


#: The keys of event 119's object, each with the type its value must have.
_CALLBACK_ANSWER_KEYS = (("owner_id", int), ("peer_id", int), ("event_id", str), ("action", dict))

_build_callback_answer = make_builder(CallbackAnswer, tuple(k for k, _ in _CALLBACK_ANSWER_KEYS))


def _read_callback_answer(raw: list[Any]) -> Update:
    if len(raw) == 1:
        return _build_callback_answer(raw, (None,) * len(_CALLBACK_ANSWER_KEYS))
    answer = raw[1]
    if type(answer) is not dict:
        return _malformed(raw, f"needs an object at index 1, got {_kind(answer)}")
    values = tuple(answer.get(key) for key, _ in _CALLBACK_ANSWER_KEYS)
    for (key, kind), value in zip(_CALLBACK_ANSWER_KEYS, values, strict=True):
        if value is not None and type(value) is not kind:
            return _malformed(raw, f"{key} must be {_type_name(kind)}, got {_json_text(value)}")
    return _build_callback_answer(raw, values)


def _encode_object(update: Update, values: Mapping[str, Any]) -> list[Any]:
    """Encode an update whose fields live in one object at index 1.

    Keys of the object in `update.raw` that no field names are kept; a
    field that is None leaves its key out.
    """
    original = update.raw[1] if isinstance(update.raw, list) and len(update.raw) > 1 else {}
    merged = dict(original) if isinstance(original, dict) else {}
    merged.update({key: value for key, value in values.items() if value is not None})
    return [update.code, merged]


# -- the reader of each event code ----------------------------------------------------


def _class_reader(cls: type[Update]) -> _Reader:
    return _compile_reader(cls, [cls._LAYOUT], cls._REQUIRED, functools.partial(_read_layout, cls))


#: The two objects of a message event, which VK leaves out for a mode without 2.
_OBJECT_SLOTS = frozenset({"additional", "attachments"})


def _objectless_layout(cls: type[Update]) -> tuple[_Slot, ...] | None:
    """Return `cls`'s layout without the two message objects, or None if it has none."""
    layout = tuple(slot for slot in cls._LAYOUT if slot.name not in _OBJECT_SLOTS)
    return layout if len(layout) < len(cls._LAYOUT) else None


def _read_message_slowly(cls: type[Update], raw: list[Any]) -> Update:
    """Read a message event with its two objects, or without them as a mode without 2 sends it.

    Without mode 2 the documented tuple ends with the text, and `random_id`
    (mode 128) follows the text directly; an int where the additional-data
    object belongs distinguishes the two.
    """
    if len(raw) > 6 and type(raw[6]) is int:
        return _read_layout(cls, raw, layout=_objectless_layout(cls))
    return _read_layout(cls, raw)


def _message_reader(cls: type[Update]) -> _Reader:
    """Read a message event the way `_read_message_slowly` does, with one generated reader.

    The additional-data object accepts only a dict, so a key whose element 6
    is an int can only come from the layout without objects.
    """
    objectless = _objectless_layout(cls)
    assert objectless is not None
    fallback = functools.partial(_read_message_slowly, cls)
    return _compile_reader(cls, [objectless, cls._LAYOUT], cls._REQUIRED, fallback)


def _read_documented_edit_slowly(raw: list[Any]) -> Update:
    """Read the documented event 5 slot by slot, as `_read_layout` reads the others."""
    edit = _read_layout(MessageEdit, raw[:6])
    if isinstance(edit, MalformedUpdate):
        return dataclasses.replace(edit, raw=raw)
    assert isinstance(edit, MessageEdit)
    return dataclasses.replace(edit, attachments=raw[6], raw=raw)


#: Event 5 as VK's documentation lays it out: the attachments object at index 6.
_DOCUMENTED_EDIT_LAYOUT = (
    *MessageEdit._LAYOUT[:5],
    next(slot for slot in MessageEdit._LAYOUT if slot.name == "attachments"),
)

_read_documented_edit = _compile_reader(
    MessageEdit,
    [_DOCUMENTED_EDIT_LAYOUT],
    len(_DOCUMENTED_EDIT_LAYOUT),
    _read_documented_edit_slowly,
)
_read_observed_edit = _message_reader(MessageEdit)


def _read_edit(raw: list[Any]) -> Update:
    # See MessageEdit for when the documented layout applies.
    if len(raw) == 7 and type(raw[6]) is dict and looks_like_attachments(raw[6]):
        return _read_documented_edit(raw)
    return _read_observed_edit(raw)


_build_unknown = make_builder(UnknownUpdate, ("code",))

#: The reader of each event code that lpcore has a class for.
_READERS: dict[int, _Reader] = {
    **{
        code: _class_reader(cls)
        for code, cls in UPDATE_TYPES.items()
        if code != 5 and _objectless_layout(cls) is None
    },
    **{
        code: _message_reader(cls)
        for code, cls in UPDATE_TYPES.items()
        if code != 5 and _objectless_layout(cls) is not None
    },
    5: _read_edit,
    **dict.fromkeys(PEER_ACTIVITY_CODES, _read_peer_activity),
    114: _read_notification_settings,
    115: _read_extended_call,
    119: _read_callback_answer,
}


def _encode_special(update: Update) -> list[Any] | None:
    """Encode the updates whose layout is not a plain position list."""
    if isinstance(update, PeerActivity):
        lead = [update.peer_id, list(update.user_ids)]
        wire = [update.code, *(lead if update.peer_first else lead[::-1])]
        wire += [v for v in (update.total_count, update.timestamp) if v is not None]
        return wire
    if isinstance(update, NotificationSettings):
        values = (update.peer_id, update.sound, update.disabled_until)
        if not update.object_form:
            return [update.code, *(v for v in values if v is not None)]
        return _encode_object(update, dict(zip(_NOTIFICATION_KEYS, values, strict=True)))
    if isinstance(update, ExtendedCall):
        return [update.code] if update.payload is None else [update.code, update.payload]
    if isinstance(update, CallbackAnswer):
        answer = {key: getattr(update, key) for key, _ in _CALLBACK_ANSWER_KEYS}
        has_object = isinstance(update.raw, list) and len(update.raw) > 1
        if not has_object and all(value is None for value in answer.values()):
            return [update.code]
        return _encode_object(update, answer)
    if isinstance(update, MessageEdit) and _has_documented_edit_layout(update):
        without = dataclasses.replace(update, attachments=None, raw=[])
        return [*encode_update(without), update.attachments]
    return None


def _has_documented_edit_layout(edit: MessageEdit) -> bool:
    """Whether an edit has attachments but nothing that only event 4's layout can carry."""
    return (
        edit.additional is None
        and edit.attachments is not None
        and edit.random_id is None
        and edit.conversation_message_id is None
        and edit.update_time is None
    )


def encode_update(update: Update) -> list[Any]:
    """Write a typed update back as its wire array; the inverse of `parse_update`.

    Elements that followed the known layout in `update.raw` are appended
    unchanged, so ``encode_update(parse_update(raw)) == raw`` for every
    well-formed `raw`.
    """
    if isinstance(update, UnknownUpdate | MalformedUpdate):
        if not isinstance(update.raw, list):
            raise LocalProtocolError(
                f"cannot encode {update!r}: its raw value is not an array, so no update array "
                "can carry it"
            )
        return update.raw

    special = _encode_special(update)
    if special is not None:
        return _with_trailing(special, update)

    layout = update._LAYOUT
    if getattr(update, "additional", 0) is None and getattr(update, "attachments", 0) is None:
        # Without its objects a message is written as a mode without 2 sends it.
        layout = _objectless_layout(type(update)) or layout
    wire: list[Any] = [update.code]
    missing: str | None = None
    for slot in layout:
        value = getattr(update, slot.name)
        if value is None:
            missing = missing or slot.name
            continue
        if missing is not None:
            raise LocalProtocolError(
                f"cannot encode {type(update).__name__}: {slot.name} is set but the earlier "
                f"field {missing} is None; set {missing} or clear {slot.name}"
            )
        wire.append(value if slot.to_wire is None else slot.to_wire(value))
    return _with_trailing(wire, update)


def _with_trailing(wire: list[Any], update: Update) -> list[Any]:
    """Append the elements that followed the known layout in `update.raw`."""
    if isinstance(update.raw, list) and len(update.raw) > len(wire):
        wire.extend(update.raw[len(wire) :])
    return wire


# Names that error messages give the types that JSON decodes to.
_JSON_TYPE_NAMES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _json_text(value: Any) -> str:
    """Write `value` as JSON for an error message, cut to 60 characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(kind: type) -> str:
    return _JSON_TYPE_NAMES.get(kind, kind.__name__)


def _kind(value: Any) -> str:
    return _type_name(type(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class PollResult:
    """A successful poll reply: the new `ts`, the updates, and `pts` with mode 32."""

    ts: int
    updates: tuple[Any, ...]
    pts: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """A ``{"failed": N, ...}`` poll reply.

    `ts` comes with code 1, the version range with code 4, and `error`
    with the text that newer server versions add to code 2.
    """

    code: int
    ts: int | None = None
    min_version: int | None = None
    max_version: int | None = None
    error: str | None = None


def parse_poll_body(
    body: bytes, *, loads: Callable[[bytes], Any] = json.loads
) -> PollResult | Failed:
    """Read a whole `a_check` reply body.

    Raises `RemoteProtocolError` (carrying the first bytes of the body) for
    anything that is not a JSON object with either `failed` or both `ts`
    and `updates`: an HTML error page, an empty or truncated body, and so
    on. The updates stay raw JSON values; `parse_update` reads each one.

    `loads` decodes the body and may be a faster decoder such as
    ``orjson.loads``. It must raise a `ValueError` subclass for a body that
    is not valid JSON, as `json.loads` and `orjson.loads` (3.13) do. Any other
    exception it raises, except RecursionError, propagates unchanged.
    NOTE: orjson 3.13 returns integers outside the signed and unsigned 64-bit
    ranges as floats, so such a `ts` is rejected and such an update element
    reads as malformed, where `json.loads` keeps the exact integer.
    """
    try:
        reply = loads(body)
    except ValueError as error:
        # JSONDecodeError, UnicodeDecodeError, and the ValueError CPython
        # raises for an integer of more than 4300 digits.
        reason = "poll reply is empty" if not body.strip() else f"poll reply is not JSON ({error})"
        raise RemoteProtocolError(reason, body) from None
    except RecursionError:
        raise RemoteProtocolError("poll reply nests too deeply to decode", body) from None
    if type(reply) is not dict:
        raise RemoteProtocolError(f"poll reply must be a JSON object, got {_kind(reply)}", body)

    if "failed" in reply:
        return _read_failed(reply, body)
    if "ts" not in reply or "updates" not in reply:
        raise RemoteProtocolError(
            "poll reply has neither 'failed' nor both 'ts' and 'updates'", body
        )
    updates = reply["updates"]
    if type(updates) is not list:
        raise RemoteProtocolError(f"'updates' must be an array, got {_kind(updates)}", body)
    ts = read_counter(reply, "ts", body)
    if ts is None:
        raise RemoteProtocolError("'ts' is null; a poll reply needs the ts to go on from", body)
    return PollResult(ts=ts, updates=tuple(updates), pts=read_counter(reply, "pts", body))


def _read_failed(reply: Mapping[str, Any], body: bytes) -> Failed:
    code = reply["failed"]
    if type(code) is not int:
        raise RemoteProtocolError(f"'failed' must be an integer, got {_json_text(code)}", body)
    error = reply.get("error")
    return Failed(
        code=code,
        ts=read_counter(reply, "ts", body),
        min_version=read_counter(reply, "min_version", body),
        max_version=read_counter(reply, "max_version", body),
        error=error if isinstance(error, str) else None,
    )


def read_counter(reply: Mapping[str, Any], name: str, body: bytes) -> int | None:
    """Read an integer field that VK may also send as a decimal string ("ts": "1800000033")."""
    value = reply.get(name)
    if value is None:
        return None
    if type(value) is int:
        return value
    if type(value) is str and _DECIMAL.fullmatch(value):
        return int(value)
    raise RemoteProtocolError(f"{name!r} must be an integer, got {_json_text(value)}", body)


def build_poll_url(
    server: str, *, key: str, ts: int, wait: int, mode: Mode | int, version: int
) -> str:
    """Build the `a_check` URL for one poll.

    `server` comes from `messages.getLongPollServer` as host and path with
    no scheme (``im.vk.com/nim100001``); ``https://`` is added only when it
    has none, so a server value that gains a scheme never becomes
    ``https://https://``. Every parameter appears once and is percent-encoded
    once: a key with ``+`` or ``=`` in it reaches the server intact.
    """
    if not server:
        raise LocalProtocolError("server is empty; call messages.getLongPollServer first")
    if not 0 <= wait <= MAX_WAIT:
        raise LocalProtocolError(
            f"wait={wait} is out of range; the server holds a poll 0 to {MAX_WAIT} s"
        )
    if "?" in server:
        raise LocalProtocolError(f"server {server!r} already has a query; pass host and path only")

    # Schemes are case-insensitive (RFC 3986, section 3.1).
    has_scheme = server[:8].lower().startswith(("https://", "http://"))
    base = server if has_scheme else "https://" + server
    query = urlencode(
        {
            "act": "a_check",
            "key": key,
            "ts": ts,
            "wait": wait,
            "mode": int(mode),
            "version": version,
        }
    )
    return f"{base}?{query}"
