"""Typed updates of User Long Poll version 3, and their array layouts.

Every update is an array ``[code, field1, field2, ...]``. Each class below
lists its fields in wire order in `_LAYOUT`; the first `_REQUIRED` of them
must be present, the rest may be cut off (VK sends shortened tuples, for
example a message event with only ``[code, message_id, flags]`` when the
message was already deleted). Missing fields are None, never shifted, and
elements past the layout stay in `raw`, so newer server builds that append
fields do not break parsing and survive `encode_update`.
"""

import dataclasses
import functools
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from ._flags import ChatUpdateType, DialogFlags, MessageFlags, OfflineFlags, Platform
from ._objects import AdditionalData, Attachments
from ._peers import PeerKind, chat_id_of, peer_kind
from ._text import unescape_text


@dataclass(frozen=True, slots=True)
class _Slot:
    """One position of an update array."""

    name: str
    accepts: tuple[type, ...]
    #: Wire value to field value (for example int to MessageFlags).
    to_field: Callable[[Any], Any] | None = None
    #: Field value to wire value.
    to_wire: Callable[[Any], Any] | None = None
    #: Extra condition on the wire value, as a Python expression with ``{}``
    #: for the value, so that generated readers can inline it. `condition`
    #: compiles it for other callers.
    valid: str | None = None
    #: How an error message describes a value that fails `valid`.
    requirement: str = ""


@functools.cache
def condition(source: str) -> Callable[[Any], bool]:
    """Compile a slot's `valid` expression into a test of one value."""
    test: Callable[[Any], bool] = eval(f"lambda value: {source.format('value')}")
    return test


def _int(name: str) -> _Slot:
    return _Slot(name, (int,))


#: Distinct values remembered per flag or enum type.
_MEMBER_CACHE_SIZE = 1024


class MemberCache(dict[int, Any]):
    """A bounded cache from int to the member that an IntFlag or IntEnum type returns for it.

    Calling the type runs `enum`'s Python code and costs about five times a
    cache hit (timeit, CPython 3.11), and every message event carries flags.
    A hit is a plain subscript, ``cache[value]``, which generated readers
    use; calling the cache does the same. The first `_MEMBER_CACHE_SIZE`
    distinct values are kept, because VK may send any number of them. It
    stores what the type returns, so bits and values that no member names
    are kept. Keys must be exact ints: ``True`` would find the entry of 1.
    """

    __slots__ = ("enum_type",)

    def __init__(self, enum_type: Callable[[int], Any]) -> None:
        super().__init__()
        self.enum_type = enum_type

    def __missing__(self, value: int) -> Any:
        member = self.enum_type(value)
        if len(self) < _MEMBER_CACHE_SIZE:
            self[value] = member
        return member

    def __call__(self, value: int) -> Any:
        return self[value]


# functools.cache makes every slot of one type share that type's cache.
@functools.cache
def _cached_members(enum_type: Callable[[int], Any]) -> MemberCache:
    return MemberCache(enum_type)


def _flag(name: str, flag_type: Callable[[int], Any]) -> _Slot:
    # A negative mask has no meaning, and IntFlag would rewrite it.
    return _Slot(
        name, (int,), _cached_members(flag_type), int, "{} >= 0", "a non-negative integer"
    )


def _negated_id(name: str) -> _Slot:
    # Events 8 and 9 carry the user id negated; the field holds it positive.
    return _Slot(
        name,
        (int,),
        abs,
        lambda value: -value,
        "{} < 0",
        "a negative integer (-user_id)",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """Base class of every update.

    `code` is the event code (element 0) and `raw` the array as it arrived,
    or an empty list for an update built in code. `recovered` is True for
    updates fetched with messages.getLongPollHistory after the long poll
    server lost them; their message events carry only id, flags and peer.
    """

    code: int
    raw: Any = field(default_factory=list, compare=False, repr=False)
    recovered: bool = field(default=False, compare=False, repr=False)

    _LAYOUT: ClassVar[tuple[_Slot, ...]] = ()
    _REQUIRED: ClassVar[int] = 0


def _code(value: int) -> Any:
    """Declare the fixed `code` field of a class that stands for one event code."""
    return field(default=value, init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownUpdate(Update):
    """An event whose code this version of lpcore does not know.

    VK's documentation says such events must be skipped, not treated as
    errors; they are delivered so that a consumer can log or inspect them.
    """

    raw: Any = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class MalformedUpdate(Update):
    """An element of `updates` that cannot be read as its event code says.

    `code` is element 0 when that is an integer, else -1. `reason` names
    the element at fault and the type that was expected there.
    """

    raw: Any = field(default_factory=list)
    reason: str = ""


class _MessageFields:
    """Accessors shared by the message events 1-5."""

    __slots__ = ()

    peer_id: int | None
    raw_text: str | None
    additional: dict[str, Any] | None
    attachments: dict[str, Any] | None

    @property
    def text(self) -> str | None:
        """The message text with VK's HTML escaping undone.

        VK escapes ``& < > "`` and sends line breaks as a literal ``<br>``.
        `<br>` is replaced first, then each entity is decoded exactly once,
        so a typed ``&quot;`` (sent as ``&amp;quot;``) stays ``&quot;``.
        """
        if self.raw_text is None:
            return None
        return unescape_text(self.raw_text)

    @property
    def peer_kind(self) -> PeerKind | None:
        """Whether the dialog is with a user, a group chat or a community."""
        return None if self.peer_id is None else peer_kind(self.peer_id)

    @property
    def chat_id(self) -> int | None:
        """The chat id when the message is in a group chat."""
        return None if self.peer_id is None else chat_id_of(self.peer_id)

    @property
    def from_id(self) -> int | None:
        """The author of a group-chat message (`from` in the additional data).

        VK sends it as a string, sometimes with surrounding spaces, and
        negative for a community. None when absent or not a number.
        """
        return self.additional_data.from_id

    @property
    def additional_data(self) -> AdditionalData:
        """The additional-data object with typed accessors (empty when absent)."""
        return AdditionalData(self.additional or {})

    @property
    def attachment_data(self) -> Attachments:
        """The attachments object with typed accessors (empty when absent)."""
        return Attachments(self.attachments or {})


#: Keys that only the attachments object carries.
ATTACHMENT_KEY_PREFIXES = ("attach", "fwd", "geo", "reply")


def looks_like_attachments(value: dict[str, Any]) -> bool:
    """Whether an object has keys that belong in the attachments object."""
    # A loop, because any() over a generator costs several times as much here.
    for key in value:  # noqa: SIM110
        if key.startswith(ATTACHMENT_KEY_PREFIXES):
            return True
    return False


_MESSAGE_TAIL = (
    _int("peer_id"),
    _int("timestamp"),
    _Slot("raw_text", (str,)),
    _Slot("additional", (dict,)),
    _Slot("attachments", (dict,)),
    _int("random_id"),
    _int("conversation_message_id"),
    _int("update_time"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _MessageEvent(_MessageFields, Update):
    message_id: int
    peer_id: int | None = None
    timestamp: int | None = None
    raw_text: str | None = None
    additional: dict[str, Any] | None = None
    attachments: dict[str, Any] | None = None
    random_id: int | None = None
    conversation_message_id: int | None = None
    update_time: int | None = None

    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageFlagsReplace(_MessageEvent):
    """Event 1: the message's flags became `flags`."""

    code: int = _code(1)
    flags: MessageFlags
    _LAYOUT = (_int("message_id"), _flag("flags", MessageFlags), *_MESSAGE_TAIL)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageFlagsSet(_MessageEvent):
    """Event 2: the bits of `mask` were set on the message (128: deleted)."""

    code: int = _code(2)
    mask: MessageFlags
    _LAYOUT = (_int("message_id"), _flag("mask", MessageFlags), *_MESSAGE_TAIL)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageFlagsReset(_MessageEvent):
    """Event 3: the bits of `mask` were cleared (1: the message was read)."""

    code: int = _code(3)
    mask: MessageFlags
    _LAYOUT = (_int("message_id"), _flag("mask", MessageFlags), *_MESSAGE_TAIL)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageNew(_MessageEvent):
    """Event 4: a new message, incoming or outgoing."""

    code: int = _code(4)
    flags: MessageFlags
    _LAYOUT = (_int("message_id"), _flag("flags", MessageFlags), *_MESSAGE_TAIL)

    @property
    def outgoing(self) -> bool:
        """Whether the OUTBOX flag is set.

        NOTE: VK omits OUTBOX in the user's own "saved messages" dialog and
        inverts it in some community dialogs; compare `from_id` with the
        account's id there.
        """
        return MessageFlags.OUTBOX in self.flags


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEdit(_MessageEvent):
    """Event 5: a message was edited; `flags` are the message's full flags.

    VK's documentation gives event 5 seven elements with the attachments
    object at index 6, while observed traffic uses event 4's layout. A
    seven-element event 5 whose object has attachment keys is read the
    documented way: `additional` None and `attachments` set.
    """

    code: int = _code(5)
    flags: MessageFlags
    _LAYOUT = (_int("message_id"), _flag("flags", MessageFlags), *_MESSAGE_TAIL)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIncoming(Update):
    """Event 6: incoming messages in `peer_id` up to `local_id` were read."""

    code: int = _code(6)
    peer_id: int
    local_id: int
    _LAYOUT = (_int("peer_id"), _int("local_id"))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadOutgoing(Update):
    """Event 7: the other side read outgoing messages up to `local_id`."""

    code: int = _code(7)
    peer_id: int
    local_id: int
    _LAYOUT = (_int("peer_id"), _int("local_id"))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class FriendOnline(Update):
    """Event 8: a friend came online. `extra` is non-zero only with mode 64."""

    code: int = _code(8)
    user_id: int
    extra: int | None = None
    timestamp: int | None = None
    _LAYOUT = (_negated_id("user_id"), _int("extra"), _int("timestamp"))
    _REQUIRED = 1

    @property
    def platform(self) -> Platform:
        """The platform in the low byte of `extra`; UNKNOWN when not sent."""
        if self.extra is None:
            return Platform.UNKNOWN
        return Platform(self.extra & 0xFF)


@dataclass(frozen=True, slots=True, kw_only=True)
class FriendOffline(Update):
    """Event 9: a friend went offline."""

    code: int = _code(9)
    user_id: int
    flags: OfflineFlags | None = None
    timestamp: int | None = None
    _LAYOUT = (_negated_id("user_id"), _flag("flags", OfflineFlags), _int("timestamp"))
    _REQUIRED = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogFlagsReset(Update):
    """Event 10: the bits of `mask` were cleared on a community dialog."""

    code: int = _code(10)
    peer_id: int
    mask: DialogFlags
    _LAYOUT = (_int("peer_id"), _flag("mask", DialogFlags))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogFlagsReplace(Update):
    """Event 11: a community dialog's flags became `flags`."""

    code: int = _code(11)
    peer_id: int
    flags: DialogFlags
    _LAYOUT = (_int("peer_id"), _flag("flags", DialogFlags))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogFlagsSet(Update):
    """Event 12: the bits of `mask` were set on a community dialog."""

    code: int = _code(12)
    peer_id: int
    mask: DialogFlags
    _LAYOUT = (_int("peer_id"), _flag("mask", DialogFlags))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagesDeleted(Update):
    """Event 13: every message in `peer_id` up to `local_id` was deleted."""

    code: int = _code(13)
    peer_id: int
    local_id: int
    _LAYOUT = (_int("peer_id"), _int("local_id"))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagesRestored(Update):
    """Event 14: recently deleted messages up to `local_id` were restored."""

    code: int = _code(14)
    peer_id: int
    local_id: int
    _LAYOUT = (_int("peer_id"), _int("local_id"))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class UserTyping(Update):
    """Event 61: a user is typing in a private dialog."""

    code: int = _code(61)
    user_id: int
    flags: int | None = None
    _LAYOUT = (_int("user_id"), _int("flags"))
    _REQUIRED = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class UserTypingInChat(Update):
    """Event 62: a user is typing in group chat `chat_id` (a chat id, not a peer id)."""

    code: int = _code(62)
    user_id: int
    chat_id: int
    _LAYOUT = (_int("user_id"), _int("chat_id"))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class UnreadCount(Update):
    """Event 80: the unread-dialogs counter became `count`.

    Version 3 sends a literal 0 after the count; later versions put the
    unmuted count there, hence the name.
    """

    code: int = _code(80)
    count: int
    unread_unmuted: int | None = None
    _LAYOUT = (_int("count"), _int("unread_unmuted"))
    _REQUIRED = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class MajorIdChanged(Update):
    """Event 20: the dialog's major_id (its pinned position) changed."""

    code: int = _code(20)
    peer_id: int
    major_id: int
    _LAYOUT = (_int("peer_id"), _int("major_id"))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class MinorIdChanged(Update):
    """Event 21: the dialog's minor_id changed."""

    code: int = _code(21)
    peer_id: int
    minor_id: int
    _LAYOUT = (_int("peer_id"), _int("minor_id"))
    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatChanged(Update):
    """Event 51: members or title of chat `chat_id` (a chat id, not a peer id) changed.

    `by_self` is 1 when the current user made the change.
    """

    code: int = _code(51)
    chat_id: int
    by_self: int | None = None
    _LAYOUT = (_int("chat_id"), _int("by_self"))
    _REQUIRED = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatInfoChanged(Update):
    """Event 52: something about a chat changed; `type_id` says what, `info` carries the detail.

    `info` is an int by the documentation, but some servers send it as a
    string, so both are accepted and kept as sent.
    """

    code: int = _code(52)
    type_id: ChatUpdateType
    peer_id: int
    info: int | str | None = None
    _LAYOUT = (
        _Slot("type_id", (int,), _cached_members(ChatUpdateType), int),
        _int("peer_id"),
        _Slot("info", (int, str)),
    )
    _REQUIRED = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(Update):
    """Event 70: a call from `user_id`."""

    code: int = _code(70)
    user_id: int
    call_id: int | str | None = None
    _LAYOUT = (_int("user_id"), _Slot("call_id", (int, str)))
    _REQUIRED = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerActivity(Update):
    """Events 63-68: users are typing, recording voice, uploading, ... in `peer_id`.

    The documentation puts the user-id list first (``[63, user_ids,
    peer_id, total_count, ts]``); real traffic puts the peer first. Both are
    read by finding the list; `peer_first` remembers which one arrived.
    At most five ids are listed; `total_count` is the full number.
    """

    code: int
    peer_id: int
    user_ids: tuple[int, ...]
    total_count: int | None = None
    timestamp: int | None = None
    peer_first: bool = True


#: Event codes that `PeerActivity` stands for.
PEER_ACTIVITY_CODES = frozenset(range(63, 69))


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationSettings(Update):
    """Event 114: notification settings of `peer_id` changed.

    With mode 8 the event is ``[114, {"peer_id", "sound", "disabled_until"}]``
    (`object_form` True); otherwise the three values follow the code.
    `disabled_until` is -1 for "forever", 0 for "enabled", else a Unix time.
    """

    code: int = _code(114)
    peer_id: int | None = None
    sound: int | None = None
    disabled_until: int | None = None
    object_form: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedCall(Update):
    """Event 115: a call event sent with mode 8, with a payload VK does not document.

    `payload` is the element after the code as it arrived (None when the
    array holds only the code); later elements stay in `raw`.
    """

    code: int = _code(115)
    payload: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackAnswer(Update):
    """Event 119: a community responded to a press of a callback button (mode 8).

    The event is ``[119, {"owner_id", "peer_id", "event_id", "action"?}]``.
    `owner_id` is the community's id negated; `action`, when present, tells
    the client what to do: ``{"type": "show_snackbar", "text"}``,
    ``{"type": "open_link", "link"}`` or ``{"type": "open_app", "app_id",
    "owner_id"?, "hash"}``. Keys not named here stay in ``raw[1]``.
    """

    code: int = _code(119)
    owner_id: int | None = None
    peer_id: int | None = None
    event_id: str | None = None
    action: Mapping[str, Any] | None = None


def _fixed_code(cls: type[Update]) -> int:
    code = cls.__dataclass_fields__["code"].default
    assert isinstance(code, int), f"{cls.__name__} has no fixed code"
    return code


#: The class of each event code that has exactly one.
UPDATE_TYPES: dict[int, type[Update]] = {
    _fixed_code(cls): cls
    for cls in (
        MessageFlagsReplace,
        MessageFlagsSet,
        MessageFlagsReset,
        MessageNew,
        MessageEdit,
        ReadIncoming,
        ReadOutgoing,
        FriendOnline,
        FriendOffline,
        DialogFlagsReset,
        DialogFlagsReplace,
        DialogFlagsSet,
        MessagesDeleted,
        MessagesRestored,
        UserTyping,
        UserTypingInChat,
        UnreadCount,
        MajorIdChanged,
        MinorIdChanged,
        ChatChanged,
        ChatInfoChanged,
        Call,
    )
}


_U = TypeVar("_U", bound=Update)


def make_builder(cls: type[_U], names: tuple[str, ...]) -> Callable[[Any, Sequence[Any]], _U]:
    """Return a function that builds `cls` from `raw` and a sequence of values for `names`.

    ``make_builder(cls, names)(raw, values)`` equals
    ``cls(raw=raw, **dict(zip(names, values)))``, and every other field gets
    its declared default, but the class's generated `__init__` is skipped.
    The builder checks nothing, so the parser passes only values it has
    checked. Raises TypeError for a class or field that the builder cannot
    build exactly.
    """
    unknown = [name for name in names if name not in cls.__dataclass_fields__ or name == "raw"]
    if unknown:
        raise TypeError(
            f"invalid names {unknown} for {cls.__name__}: pass fields of the class other "
            "than raw, which the builder takes as its first argument"
        )
    values = {"raw": "raw", **{name: f"values[{index}]" for index, name in enumerate(names)}}
    return compile_builder(cls, "raw, values", values)


def compile_builder(
    cls: type[_U],
    parameters: str,
    values: Mapping[str, str],
    *,
    checks: Sequence[str] = (),
    namespace: Mapping[str, Any] | None = None,
) -> Callable[..., _U]:
    """Generate a function of `parameters` that builds an instance of `cls` without `__init__`.

    `values` and the returned instance are as in `builder_lines`; each of
    `checks` is a statement that runs first, for example one that returns
    early. For UnknownUpdate built from ``{"raw": "raw", "code":
    "values[0]"}`` the source is::

        def build(raw, values):
            update = new(writable)
            update.code = values[0]
            update.raw = raw
            update.recovered = default_recovered
            update.__class__ = cls
            return update
    """
    scope = dict(namespace or {})
    lines = [f"def build({parameters}):", *checks, *builder_lines(cls, values, scope)]
    exec("\n    ".join(lines), scope)
    build: Callable[..., _U] = scope["build"]
    build.__qualname__ = f"build_{cls.__name__}"
    return build


def builder_lines(
    cls: type[Update], values: Mapping[str, str], scope: dict[str, Any]
) -> list[str]:
    """Return statements that build an instance of `cls` without `__init__` and return it.

    `values` maps field names to Python expressions; every other field gets
    its plain default. The names the statements use are added to `scope`,
    which must become the generated code's globals. Raises TypeError for a
    class or field that cannot be built exactly this way.

    A frozen dataclass's `__init__` stores each field through
    ``object.__setattr__``, which took about half of `parse_update`'s time
    for a MessageNew (timeit, CPython 3.11). The statements instead make an
    instance of a writable twin of `cls`: a subclass with no slots of its
    own and `object`'s plain attribute setting, so each field is one fast
    slot store. Then they set ``__class__`` to `cls`, which Python allows
    because the two classes have the same layout.
    """
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __post_init__, which the builder would skip")
    fields = dataclasses.fields(cls)
    for item in fields:
        _member_descriptor(cls, item.name)
    without_default = [
        item.name
        for item in fields
        if item.name not in values and item.default is dataclasses.MISSING
    ]
    if without_default:
        raise TypeError(
            f"{cls.__name__} fields {without_default} have no plain default; add them to names"
        )

    scope.update(new=object.__new__, cls=cls, writable=_writable_twin(cls))
    lines = ["update = new(writable)"]
    for item in fields:
        if item.name in values:
            lines.append(f"update.{item.name} = {values[item.name]}")
        else:
            scope[f"default_{item.name}"] = item.default
            lines.append(f"update.{item.name} = default_{item.name}")
    return [*lines, "update.__class__ = cls", "return update"]


#: The writable twin of each class that a builder was made for.
_TWINS: dict[type, type] = {}


def _writable_twin(cls: type) -> type:
    """Return a subclass of `cls` whose instances accept plain attribute stores.

    Both `__setattr__` and `__delattr__` must be object's own: the frozen
    dataclass defines both, and either one in Python code makes every store
    go through a Python-level call. The twin adds no slots, so an instance
    can become a `cls` by assigning ``__class__``, and no builder returns
    an instance of the twin.
    """
    twin = _TWINS.get(cls)
    if twin is None:
        namespace = {
            "__slots__": (),
            "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__,
            "__module__": cls.__module__,
            "__qualname__": f"{cls.__qualname__}.writable",
        }
        twin = _TWINS[cls] = type(cls.__name__, (cls,), namespace)
    return twin


def _member_descriptor(cls: type, name: str) -> types.MemberDescriptorType:
    descriptor = getattr(cls, name)
    if type(descriptor) is not types.MemberDescriptorType:
        raise TypeError(f"{cls.__name__}.{name} is not a slot; declare the class with slots=True")
    return descriptor
