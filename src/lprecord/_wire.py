"""Mode gating and text escaping of the update arrays the fake server sends to a consumer.

A recorded update array carries what the capture's `mode` requested. A
consumer that polls with fewer mode bits gets the array VK would send for
its own mode, built by `gate_update`. VK's User Long Poll page (version 3)
names what each bit adds:

* 2: message events carry the additional-data and attachments objects.
* 8: an extended set of events. Unofficial documentation of version 10
  names event 114 in its object form and events 115 and 119 as its members.
* 64: event 8 carries the platform in its `extra` field, which is 0 without it.
* 128: message events carry `random_id`.

Bit 32 (`pts` in the reply) is not about the arrays, so the replay engine
handles it. Bits that the capture did not send cannot be added: such a
consumer gets the arrays as recorded.
"""

import enum
from typing import Any

from lpcore import Mode


class _Omitted(enum.Enum):
    OMITTED = enum.auto()


#: Sentinel that `gate_update` returns for an event that VK does not send for the requested
#: mode. It is not None, because a recording may contain a JSON null as an update.
OMITTED = _Omitted.OMITTED

#: Codes of the events laid out as a message: ``[code, message_id, flags, peer_id,
#: timestamp, text, {additional}, {attachments}, random_id, ...]``. Event 18 (version 10
#: and later) uses the same layout.
MESSAGE_LAYOUT_CODES = frozenset({1, 2, 3, 4, 5, 18})
#: Events that VK sends only to consumers whose mode has bit 8.
EXTENDED_CODES = frozenset({114, 115, 119})
#: The mode bits that change update arrays.
GATED_BITS = Mode.ATTACHMENTS | Mode.EXTENDED | Mode.FRIEND_EXTRA | Mode.RANDOM_ID

# Index of the text in a message-layout array; the optional fields follow it.
_TEXT_INDEX = 5
# Index of the `extra` field of event 8.
_FRIEND_EXTRA_INDEX = 2


def unescaped_characters(raw_text: str) -> list[str]:
    """Return the characters of `raw_text` that VK would have escaped, in order of appearance.

    An empty list means the text can be VK's escaped form. A bare ``&`` is
    not reported, because it cannot be distinguished from the start of an entity.
    """
    without_breaks = raw_text.replace("<br>", "")
    return list(dict.fromkeys(c for c in without_breaks if c in '\n<>"'))


def gate_update(raw: Any, *, recorded: int, requested: int) -> Any:
    """Return `raw`, recorded with mode `recorded`, as VK sends it for mode `requested`.

    Returns `raw` itself when the requested mode drops nothing that the
    recorded one had, a shortened or changed copy when it does, and
    `OMITTED` when VK would not send the event at all for that mode. A value
    that is not an array with an integer code is returned unchanged.
    """
    dropped = int(recorded) & ~int(requested) & GATED_BITS
    if not dropped or type(raw) is not list or not raw or type(raw[0]) is not int:
        return raw
    code = raw[0]
    if code in EXTENDED_CODES and dropped & Mode.EXTENDED:
        return OMITTED
    if code == 8 and dropped & Mode.FRIEND_EXTRA and len(raw) > _FRIEND_EXTRA_INDEX:
        return [*raw[:_FRIEND_EXTRA_INDEX], 0, *raw[_FRIEND_EXTRA_INDEX + 1 :]]
    if code in MESSAGE_LAYOUT_CODES:
        return _gate_message(raw, recorded=recorded, dropped=dropped)
    # NOTE: the renumbered message events of version 19 (10002 to 10018) are served as
    # recorded, because no source documents where their fields go without a mode bit.
    return raw


def _gate_message(raw: list[Any], *, recorded: int, dropped: int) -> list[Any]:
    """Remove the message fields of the `dropped` mode bits; later fields move up.

    The two objects are the dict elements right after the text (VK's own
    documentation has a seven-element form with only one of them), and
    `random_id` is the int after them. The fields after `random_id`
    (conversation_message_id and the edit time in version 10) are kept.
    VK's documentation gives the tuple without mode 2 as ``[4, message_id,
    flags, peer_id, timestamp, text]`` but does not say where `random_id`
    goes then. This server puts it right after the text, as a positional
    layout that leaves fields out would.
    """
    end_of_objects = _TEXT_INDEX + 1
    if recorded & Mode.ATTACHMENTS:
        while (
            end_of_objects < len(raw)
            and end_of_objects < _TEXT_INDEX + 3
            and type(raw[end_of_objects]) is dict
        ):
            end_of_objects += 1
    tail_start = end_of_objects
    has_random_id = (
        bool(recorded & Mode.RANDOM_ID) and tail_start < len(raw) and type(raw[tail_start]) is int
    )
    if has_random_id:
        tail_start += 1

    gated = raw[: _TEXT_INDEX + 1]
    if not dropped & Mode.ATTACHMENTS:
        gated += raw[_TEXT_INDEX + 1 : end_of_objects]
    if has_random_id and not dropped & Mode.RANDOM_ID:
        gated.append(raw[end_of_objects])
    gated += raw[tail_start:]
    return gated
