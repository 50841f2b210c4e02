"""What the fake server returns from messages.getLongPollHistory."""

from typing import Any

from lpcore import MessageFlags, unescape_text

#: Message events whose history form keeps only the first three fields.
MESSAGE_CODES = frozenset({1, 2, 3, 4, 5})
#: Codes whose arrays give a full message object in `messages.items`.
NEW_MESSAGE_CODES = frozenset({4, 5})


def code_of(raw: Any) -> int | None:
    """Return the event code of a recorded update, or None when it is not an array
    that starts with an integer (a recording may hold any JSON value there).
    """
    if type(raw) is list and raw and type(raw[0]) is int:
        return raw[0]
    return None


def history_form(raw: list[Any]) -> list[Any]:
    """Return an update as getLongPollHistory lists it.

    Message events keep only ``[code, message_id, flags, peer_id]``, the
    "first three fields" the method's documentation describes.
    """
    if code_of(raw) in MESSAGE_CODES:
        return raw[:4]
    return raw


def message_object(raw: list[Any], *, user_id: int) -> dict[str, Any] | None:
    """Build the messages.getLongPollHistory item for a full message event, if it is one."""
    if code_of(raw) not in NEW_MESSAGE_CODES or len(raw) < 6:
        return None
    message_id, flags, peer_id, date, text = raw[1:6]
    if not all(type(value) is int for value in (message_id, flags, peer_id, date)):
        return None
    if type(text) is not str:
        return None
    additional = raw[6] if len(raw) > 6 and isinstance(raw[6], dict) else {}
    out = bool(flags & MessageFlags.OUTBOX)
    return {
        "id": message_id,
        "date": date,
        "peer_id": peer_id,
        "from_id": _author(additional, out=out, peer_id=peer_id, user_id=user_id),
        "out": int(out),
        "text": unescape_text(text),
        "conversation_message_id": raw[9] if len(raw) > 9 else 0,
        "random_id": raw[8] if len(raw) > 8 else 0,
        "attachments": [],
        "fwd_messages": [],
        "important": bool(flags & MessageFlags.IMPORTANT),
        "is_hidden": False,
    }


def _author(additional: dict[str, Any], *, out: bool, peer_id: int, user_id: int) -> int:
    sender = additional.get("from")
    if isinstance(sender, str) and sender.strip().lstrip("-").isdigit():
        return int(sender.strip())
    return user_id if out else peer_id
