"""Readers for the two objects of a message event: additional data and attachments.

VK sends every value in them as a string (numbers and nested JSON
included), some keys only in some versions, and new keys without notice.
These readers expose the documented keys with types, keep every key
(`raw`), and never raise: a value of the wrong type or a nested JSON
string that does not parse reads as None.
"""

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._text import unescape_text

# ASCII digits only: int() also reads other scripts' digits, which no key uses.
_ATTACHMENT_TYPE_KEY = re.compile(r"attach([0-9]+)_type")


def _int_or_none(value: Any) -> int | None:
    if type(value) is int:
        return value
    if type(value) is str:
        text = value.strip()
        if re.fullmatch(r"-?\d{1,30}", text):
            return int(text)
    return None


def _json_or_none(value: Any) -> Any:
    if type(value) is not str:
        return None
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


def _flag(value: Any) -> bool:
    return value in ("1", 1)


class _ObjectView(Mapping[str, Any]):
    """A read-only mapping over a message object's `raw` dict, so unknown keys stay reachable."""

    __slots__ = ()

    raw: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


@dataclass(frozen=True, slots=True)
class AdditionalData(_ObjectView):
    """The additional-data object (index 6 of a message event), with typed accessors.

    It behaves as the read-only mapping it came from, so unknown keys stay
    reachable (``data["some_new_key"]``).
    """

    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str | None:
        """The legacy subject: " ... " in private dialogs, "" on edits."""
        value = self.raw.get("title")
        return value if type(value) is str else None

    @property
    def from_id(self) -> int | None:
        """The author of a group-chat message; negative for a community."""
        return _int_or_none(self.raw.get("from"))

    @property
    def from_admin(self) -> int | None:
        """In a community dialog, the administrator who sent the message."""
        return _int_or_none(self.raw.get("from_admin"))

    @property
    def has_emoji(self) -> bool:
        """Whether the text contains emoji."""
        return _flag(self.raw.get("emoji"))

    @property
    def has_template(self) -> bool:
        """Whether the message has a bot template; fetch it through the API."""
        return _flag(self.raw.get("has_template"))

    @property
    def payload(self) -> Any:
        """The bot payload, decoded from its JSON string; None when absent or broken."""
        return _json_or_none(self.raw.get("payload"))

    @property
    def keyboard(self) -> Mapping[str, Any] | None:
        """The bot keyboard object."""
        value = self.raw.get("keyboard")
        return value if isinstance(value, dict) else None

    @property
    def expire_ttl(self) -> int | None:
        """Seconds until a disappearing message disappears."""
        return _int_or_none(self.raw.get("expire_ttl"))

    @property
    def is_expired(self) -> bool:
        """Whether a disappearing message has disappeared."""
        return _flag(self.raw.get("is_expired"))

    @property
    def source_act(self) -> str | None:
        """The service-message action, such as "chat_invite_user"."""
        value = self.raw.get("source_act")
        return value if type(value) is str else None

    @property
    def source_mid(self) -> int | None:
        """The member a service action concerns."""
        return _int_or_none(self.raw.get("source_mid"))

    @property
    def source_text(self) -> str | None:
        """The new chat title of a service message, unescaped."""
        return self._text("source_text")

    @property
    def source_old_text(self) -> str | None:
        """The previous chat title (chat_title_update), unescaped."""
        return self._text("source_old_text")

    @property
    def source_message(self) -> str | None:
        """The text of a pinned message (chat_pin_message), unescaped."""
        return self._text("source_message")

    @property
    def source_chat_local_id(self) -> int | None:
        """The conversation_message_id of a pinned or unpinned message."""
        return _int_or_none(self.raw.get("source_chat_local_id"))

    def _text(self, key: str) -> str | None:
        value = self.raw.get(key)
        return unescape_text(value) if type(value) is str else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """One numbered attachment: ``attach{number}_type`` and its neighbours."""

    number: int
    type: str
    #: "{owner_id}_{item_id}", or the sticker or gift id.
    id: str | None
    #: "audiomsg" or "graffiti" for a doc that is a voice message or graffiti.
    kind: str | None
    #: The other ``attach{number}_*`` keys without their prefix (url, title, product_id, ...).
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Attachments(_ObjectView):
    """The attachments object (index 7 of a message event), with typed accessors."""

    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def items_list(self) -> list[Attachment]:
        """The numbered attachments in order of their number."""
        # The number's own spelling names its keys: "attach02_type" goes
        # with "attach02", not "attach2".
        numbers = sorted(
            (int(match.group(1)), match.group(1))
            for key in self.raw
            if (match := _ATTACHMENT_TYPE_KEY.fullmatch(key)) is not None
        )
        return [self._attachment(number, spelling) for number, spelling in numbers]

    def _attachment(self, number: int, spelling: str) -> Attachment:
        prefix = f"attach{spelling}_"
        fields = {
            key.removeprefix(prefix): value
            for key, value in self.raw.items()
            if key.startswith(prefix) and key != f"{prefix}type" and type(value) is str
        }
        attachment_id = self.raw.get(f"attach{spelling}")
        return Attachment(
            number=number,
            type=str(self.raw[f"{prefix}type"]),
            id=attachment_id if type(attachment_id) is str else None,
            kind=fields.pop("kind", None),
            fields=fields,
        )

    @property
    def fwd(self) -> str | None:
        """The forwarded-messages marker ("0_0" in newer traffic); the API has the details."""
        value = self.raw.get("fwd")
        return value if type(value) is str else None

    @property
    def reply(self) -> Mapping[str, Any] | None:
        """The reply object decoded from its JSON string, like {"conversation_message_id": 54}."""
        value = _json_or_none(self.raw.get("reply"))
        return value if isinstance(value, dict) else None

    @property
    def geo(self) -> str | None:
        """The attached location's id."""
        value = self.raw.get("geo")
        return value if type(value) is str else None

    @property
    def full_objects(self) -> list[Any] | None:
        """The full API attachment objects some types carry in `attachments` (a JSON string)."""
        value = _json_or_none(self.raw.get("attachments"))
        return value if isinstance(value, list) else None
