"""Version profiles: recorded version-3 update arrays as VK sends them to newer versions.

A poll's `version` selects the layout of the update arrays. VK documents
version 3 only. The layouts below are those that vk-io 4.10.1 parses
(`transformMessage` and `pollingContextsEvents` in its lib/index.js). vk-io
polls with version 19. For the fields that vk-io does not read, they follow
unofficial descriptions of versions 10 and 19 that VK has not confirmed:

* Version 10 appends conversation_message_id and the update time (0 for a
  message never edited) to a message event that carries the text:
  ``[4, message_id, flags, peer_id, timestamp, text, {additional},
  {attachments}, random_id, conversation_message_id, update_time]``.
  Events 6 and 7 gain the count of messages left unread:
  ``[6, peer_id, local_id, unread_count]``.
* Version 19 adds 10000 to the codes 2, 3, 4, 5, 6, 7, 13 and 18. Message
  events start with conversation_message_id, and message_id follows
  random_id: ``[10004, conversation_message_id, flags, minor_id, peer_id,
  timestamp, text, {additional}, {attachments}, random_id, message_id,
  update_time]``. Only 10004 has minor_id, so the other codes have
  message_id at index 9, and vk-io inserts a 0 at index 3 of them before
  parsing. Events without the text keep only the fields they had, plus
  minor_id in 10004: ``[10002, conversation_message_id, flags, peer_id]``
  and ``[10004, conversation_message_id, flags, minor_id]``. Read and
  delete events become ``[10006, peer_id, conversation_message_id,
  unread_count]`` and ``[10013, peer_id, conversation_message_id]``. NOTE: descriptions of
  version 19 disagree on whether their third field is the message id or
  the conversation_message_id. This module sends the latter, as in the
  message events, and vk-io reads the field as `localId` without using it.

Polls with versions 4 to 9 get the version-3 layout, because no source
documents those versions. Only these message, read and delete layouts are
converted. The other differences of the newer versions (more fields in
events 8, 9, 20 and 80, no events 8 and 9 since version 11, fewer fields in
event 51) are not applied, so those events reach every version as recorded.
Event 1 and event 14 keep their codes in version 19, because its unofficial
list of renumbered events names neither.

messages.getLongPollHistory serves the version-3 layout for every
`lp_version`, because no source shows how version 19 reduces message events
there. Version 3 reduces them to ``[code, message_id, flags, peer_id]``.
NOTE: its `messages.items` carry the recorded conversation_message_id or 0,
not the values that this module invents for polls.
"""

from dataclasses import dataclass, field
from typing import Any

from lpcore import MessageFlags, Mode

from ._history import code_of
from ._wire import MESSAGE_LAYOUT_CODES, OMITTED, gate_update

#: The version whose layouts recordings have and `convert_update` converts from.
RECORDED_VERSION = 3
#: The first version whose message events carry conversation_message_id and the update time.
VERSION_10 = 10
#: The first version with the renumbered, conversation_message_id based message events.
VERSION_19 = 19
#: The number that version 19 adds to the code of a renumbered event.
RENUMBER_OFFSET = 10000
#: Codes that version 19 renumbers to the code plus RENUMBER_OFFSET.
RENUMBERED_CODES = frozenset({2, 3, 4, 5, 6, 7, 13, 18})
#: Read events, which version 10 extends with the unread count.
READ_CODES = frozenset({6, 7})
#: Events whose third element is a message id up to which something happened to a conversation.
UP_TO_CODES = frozenset({6, 7, 13})
#: Message events whose third element is the message's full flags, not a mask.
FULL_FLAGS_CODES = frozenset({1, 4, 5, 18})
#: Edit events, whose update time is the time of the edit.
EDIT_CODES = frozenset({5, 18})

_TEXT_INDEX = 5
# Keys that mark a lone object after the text as the attachments object of VK's
# documented seven-element edit event rather than the additional-data object.
_ATTACHMENT_KEYS = ("attach", "fwd", "geo", "reply")


def profile_of(version: int) -> int:
    """Return the version whose layouts a poll with `version` gets: 3, 10 or 19."""
    if version >= VERSION_19:
        return VERSION_19
    if version >= VERSION_10:
        return VERSION_10
    return RECORDED_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageParts:
    """The fields of a version-3 message event that carries its text."""

    #: ``[code, message_id, flags, peer_id, timestamp, text]``.
    head: list[Any]
    additional: dict[str, Any] | None
    attachments: dict[str, Any] | None
    random_id: int | None
    #: Values after `random_id`: conversation_message_id and the update time, when recorded.
    tail: list[Any]


def split_message(raw: list[Any], recorded_mode: int) -> MessageParts | None:
    """Split a message event recorded with `recorded_mode`, or return None when it has no text.

    A lone object after the text is the attachments object when it has an
    attachment, forward, geo or reply key, as in VK's documented edit event
    ``[5, message_id, mask, peer_id, timestamp, new_text, {attachments}]``,
    and the additional-data object otherwise.
    """
    if len(raw) <= _TEXT_INDEX:
        return None
    position = _TEXT_INDEX + 1
    objects: list[dict[str, Any]] = []
    if recorded_mode & Mode.ATTACHMENTS:
        while position < len(raw) and len(objects) < 2 and type(raw[position]) is dict:
            objects.append(raw[position])
            position += 1
    random_id = None
    if recorded_mode & Mode.RANDOM_ID and position < len(raw) and type(raw[position]) is int:
        random_id = raw[position]
        position += 1

    additional: dict[str, Any] | None = None
    attachments: dict[str, Any] | None = None
    if len(objects) == 2:
        additional, attachments = objects
    elif objects and any(key.startswith(_ATTACHMENT_KEYS) for key in objects[0]):
        attachments = objects[0]
    elif objects:
        additional = objects[0]
    return MessageParts(
        head=raw[: _TEXT_INDEX + 1],
        additional=additional,
        attachments=attachments,
        random_id=random_id,
        tail=raw[position:],
    )


def complete_message(parts: MessageParts, recorded_mode: int) -> list[Any]:
    """Return the version-3 array with every field of `recorded_mode` and nothing after them.

    Newer versions put conversation_message_id and the update time at fixed
    positions after `random_id`, so a missing object becomes ``{}`` and a
    missing `random_id` becomes 0, which is VK's value for a message sent
    without one.
    """
    complete = list(parts.head)
    if recorded_mode & Mode.ATTACHMENTS:
        complete += [parts.additional or {}, parts.attachments or {}]
    if recorded_mode & Mode.RANDOM_ID:
        complete.append(parts.random_id or 0)
    return complete


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionFacts:
    """The values of one update that newer versions send and a version-3 recording lacks."""

    #: For a message event, the message's conversation_message_id. For events 6, 7
    #: and 13, that of the newest known message up to their message id. 0 when unknown.
    conversation_message_id: int = 0
    #: The update time of the message (0 when it was never edited).
    update_time: int = 0
    #: For events 6 and 7, the messages in that direction still unread after them.
    unread_count: int = 0


@dataclass(slots=True)
class _Message:
    peer_id: int
    conversation_message_id: int
    #: Whether the message is outgoing, or None when no event gave its full flags.
    out: bool | None
    update_time: int = 0


@dataclass(slots=True)
class VersionHistory:
    """The synthesized values of each update, in the order the updates were recorded.

    NOTE: conversation_message_id, minor_id, the update time and the unread
    count are invented for recordings that lack them. conversation_message_id
    counts the messages of each conversation from 1, in the order in which
    the recording first shows them with a peer_id. minor_id is always 0. An
    edit's update time is the later of the message date and the time its
    event became available. The unread count is the number of known messages
    in that direction after the read one. Values that a recorded array
    carries after random_id are used instead.
    """

    facts: list[VersionFacts] = field(default_factory=list)
    _messages: dict[int, _Message] = field(default_factory=dict)
    _last_cmid: dict[int, int] = field(default_factory=dict)

    def observe(self, raw: Any, *, recorded_mode: int, available_at: int) -> VersionFacts:
        """Record the facts of the next update, available from Unix time `available_at`."""
        code = code_of(raw)
        if code in MESSAGE_LAYOUT_CODES and len(raw) > 1 and type(raw[1]) is int:
            facts = self._observe_message(raw, recorded_mode, available_at)
        elif code in UP_TO_CODES and len(raw) > 2 and type(raw[1]) is int:
            facts = self._observe_up_to(raw)
        else:
            facts = VersionFacts()
        self.facts.append(facts)
        return facts

    def _observe_message(
        self, raw: list[Any], recorded_mode: int, available_at: int
    ) -> VersionFacts:
        code = raw[0]
        message_id = raw[1]
        flags = raw[2] if len(raw) > 2 and type(raw[2]) is int else None
        peer_id = raw[3] if len(raw) > 3 and type(raw[3]) is int else None
        parts = split_message(raw, recorded_mode)
        tail = parts.tail if parts is not None else []
        recorded_cmid = tail[0] if tail and type(tail[0]) is int else None
        recorded_update_time = tail[1] if len(tail) > 1 and type(tail[1]) is int else None

        message = self._messages.get(message_id)
        if message is None and peer_id is not None:
            if recorded_cmid is not None:
                cmid = recorded_cmid
            else:
                cmid = self._last_cmid.get(peer_id, 0) + 1
            self._last_cmid[peer_id] = max(cmid, self._last_cmid.get(peer_id, 0))
            message = _Message(peer_id=peer_id, conversation_message_id=cmid, out=None)
            self._messages[message_id] = message
        if message is None:
            return VersionFacts()
        if code in FULL_FLAGS_CODES and flags is not None:
            message.out = bool(flags & MessageFlags.OUTBOX)

        if recorded_update_time is not None:
            message.update_time = recorded_update_time
        elif code in EDIT_CODES:
            date = raw[4] if len(raw) > 4 and type(raw[4]) is int else 0
            message.update_time = max(date, available_at)
        return VersionFacts(
            conversation_message_id=message.conversation_message_id,
            update_time=message.update_time,
        )

    def _observe_up_to(self, raw: list[Any]) -> VersionFacts:
        peer_id, local_id = raw[1], raw[2]
        if type(local_id) is not int:
            return VersionFacts()
        in_peer = [
            (message_id, message)
            for message_id, message in self._messages.items()
            if message.peer_id == peer_id
        ]
        cmid = max(
            (m.conversation_message_id for i, m in in_peer if i <= local_id),
            default=0,
        )
        out = raw[0] == 7
        unread = sum(1 for i, m in in_peer if i > local_id and m.out is out)
        return VersionFacts(conversation_message_id=cmid, unread_count=unread)


def convert_update(
    raw: Any, facts: VersionFacts, *, version: int, recorded_mode: int, requested_mode: int
) -> Any:
    """Return a version-3 update as VK sends it for `version` and `requested_mode`.

    Returns `OMITTED` when VK would not send the event for that mode (see
    `gate_update`), and the gated array when its layout does not change.
    """
    profile = profile_of(version)
    code = code_of(raw)
    if profile == RECORDED_VERSION or code is None:
        return gate_update(raw, recorded=recorded_mode, requested=requested_mode)

    if code in MESSAGE_LAYOUT_CODES:
        return _convert_message(raw, facts, profile, recorded_mode, requested_mode)
    if code in UP_TO_CODES and len(raw) > 2:
        return _convert_up_to(raw, facts, profile)
    return gate_update(raw, recorded=recorded_mode, requested=requested_mode)


def _convert_message(
    raw: list[Any], facts: VersionFacts, profile: int, recorded_mode: int, requested_mode: int
) -> Any:
    code = raw[0]
    parts = split_message(raw, recorded_mode)
    if parts is None:
        # Without the text the event has no fields that move in version 10.
        return _renumber_short(raw, facts) if _is_renumbered(code, profile) else raw

    complete = complete_message(parts, recorded_mode)
    # NOTE: a mode without bit 2 or 128 moves the later fields up, as `gate_update` does
    # in version 3. No source shows where VK puts them in versions 10 and 19 then.
    gated = gate_update(complete, recorded=recorded_mode, requested=requested_mode)
    if gated is OMITTED:
        return OMITTED
    if not _is_renumbered(code, profile):
        return [*gated, facts.conversation_message_id, facts.update_time]
    # NOTE: minor_id is invented, always 0, because a version-3 recording has no minor_id.
    minor_id = [0] if code == 4 else []
    return [
        code + RENUMBER_OFFSET,
        facts.conversation_message_id,
        gated[2],
        *minor_id,
        *gated[3:],
        raw[1],
        facts.update_time,
    ]


def _renumber_short(raw: list[Any], facts: VersionFacts) -> list[Any]:
    """Renumber a message event without the text, such as ``[2, message_id, mask, peer_id]``."""
    renumbered = [raw[0] + RENUMBER_OFFSET, facts.conversation_message_id, *raw[2:]]
    if raw[0] == 4 and len(raw) > 2:
        renumbered.insert(3, 0)
    return renumbered


def _convert_up_to(raw: list[Any], facts: VersionFacts, profile: int) -> list[Any]:
    converted = list(raw)
    if raw[0] in READ_CODES and len(raw) == 3:
        converted.append(facts.unread_count)
    if profile == VERSION_19:
        converted[0] += RENUMBER_OFFSET
        converted[2] = facts.conversation_message_id
    return converted


def _is_renumbered(code: int, profile: int) -> bool:
    return profile == VERSION_19 and code in RENUMBERED_CODES
