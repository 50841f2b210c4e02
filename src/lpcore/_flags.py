"""Flag and enum values carried inside update arrays.

Every flag type is an `enum.IntFlag`, whose default boundary (``KEEP``)
keeps bits this module does not name: VK adds bits without notice (the
official v3 example itself uses 8193 = 8192 | UNREAD).
"""

import enum


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
    """Platform of a friend who came online: the low byte of event 8's `extra`."""

    UNKNOWN = 0
    MOBILE_WEB = 1
    IPHONE = 2
    IPAD = 3
    ANDROID = 4
    WINDOWS_PHONE = 5
    WINDOWS = 6
    WEB = 7

    @classmethod
    def _missing_(cls, value: object) -> "Platform":
        # Ids outside 1-7 (255 from an `extra` of -1, vkwave's 8 "other")
        # carry no documented meaning.
        return cls.UNKNOWN


class OfflineFlags(enum.IntFlag):
    """Why a friend went offline (event 9); no bit set means the user logged out."""

    #: Offline after a period of inactivity ("away").
    TIMEOUT = 1
