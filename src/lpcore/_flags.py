"""Flag and enum values carried inside update arrays.

Every flag type is an `enum.IntFlag`, whose default boundary (``KEEP``)
keeps bits this module does not name: VK adds bits without notice (the
official v3 example itself uses 8193 = 8192 | UNREAD). The value types
(`ChatUpdateType`, `Platform`) keep unknown values as members named
``UNKNOWN_<value>`` instead of raising.
"""

import enum
from typing import Any


def _keep_unknown(cls: Any, value: object) -> Any:
    """Make a member for a value the enum does not name, keeping the value."""
    if type(value) is not int:
        return None
    member = int.__new__(cls, value)
    member._name_ = f"UNKNOWN_{value}"
    member._value_ = value
    return member


class MessageFlags(enum.IntFlag):
    """Flags of a message (events 1-5)."""

    #: The message is not read yet.
    UNREAD = 1
    #: The message is outgoing.
    OUTBOX = 2
    #: Somebody replied to the message.
    REPLIED = 4
    #: The message is marked as important.
    IMPORTANT = 8
    #: Legacy marker of a message sent through a chat.
    CHAT = 16
    #: Sent by a friend; not used in group chats.
    FRIENDS = 32
    #: Marked as spam.
    SPAM = 64
    #: Deleted for the current user.
    DELETED = 128
    #: The user checked the message for spam.
    FIXED = 256
    #: The message contains media.
    MEDIA = 512
    #: A community greeting; the dialog must not move up the list.
    HIDDEN = 65536
    #: Deleted for every recipient.
    DELETE_FOR_ALL = 131072
    #: An incoming message that was not delivered.
    NOT_DELIVERED = 262144


class DialogFlags(enum.IntFlag):
    """Flags of a community dialog (events 10-12)."""

    #: The dialog is marked as important.
    IMPORTANT = 1
    #: The community has not answered in this dialog.
    UNANSWERED = 2


class Platform(enum.IntEnum):
    """Platform of a friend who came online: the low byte of event 8's `extra`.

    0 means the server sent no platform (mode without 64); 255 is the low
    byte of the -1 some servers send for "none". Ids 1-5 are mobile.
    """

    UNKNOWN = 0
    MOBILE_WEB = 1
    IPHONE = 2
    IPAD = 3
    ANDROID = 4
    WINDOWS_PHONE = 5
    WINDOWS = 6
    WEB = 7

    @classmethod
    def _missing_(cls, value: object) -> "Platform | None":
        if value == 255:
            return cls.UNKNOWN
        return _keep_unknown(cls, value)  # type: ignore[no-any-return]

    @property
    def is_mobile(self) -> bool:
        """Whether the platform is one of the mobile ones (1-5)."""
        return 1 <= self.value <= 5


class ChatUpdateType(enum.IntEnum):
    """The kind of chat change (event 52 `type_id`), which decides what its `info` contains."""

    #: A phantom chat was created from the conversation.
    PHANTOM_CREATED = 0
    #: The title changed.
    TITLE = 1
    #: The photo changed.
    PHOTO = 2
    #: A new administrator; `info` is the user id.
    ADMIN_ADDED = 3
    #: Settings or permissions changed.
    SETTINGS = 4
    #: A message was pinned; `info` is its conversation_message_id (0 on unpin).
    PINNED = 5
    #: A user joined; `info` is the user id.
    USER_JOINED = 6
    #: A user left; `info` is the user id.
    USER_LEFT = 7
    #: A user was kicked; `info` is the user id.
    USER_KICKED = 8
    #: Administrator rights were removed; `info` is the user id.
    ADMIN_REMOVED = 9
    #: The bot keyboard was shown or hidden.
    KEYBOARD = 11

    @classmethod
    def _missing_(cls, value: object) -> "ChatUpdateType | None":
        return _keep_unknown(cls, value)  # type: ignore[no-any-return]


class OfflineFlags(enum.IntFlag):
    """The reason a friend went offline (event 9). No bit set means the user logged out."""

    #: Offline after a period of inactivity ("away").
    TIMEOUT = 1
