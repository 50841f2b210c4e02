"""The `mode` bit mask of the `a_check` request."""

import enum


class Mode(enum.IntFlag):
    """Extra data a long poll server adds to its replies, as sent in `mode=`.

    Unknown bits are kept (``enum.KEEP`` is the IntFlag default), so a mask
    from a newer client or a recorded session survives a round trip unchanged.
    """

    #: Message events carry the additional-data and attachments objects.
    ATTACHMENTS = 2
    #: Extended set of events; event 114 arrives as an object.
    EXTENDED = 8
    #: Replies carry `pts`, which `messages.getLongPollHistory` needs.
    PTS = 32
    #: Event 8 (friend online) carries the platform in its `extra` field.
    FRIEND_EXTRA = 64
    #: Message events carry `random_id`.
    RANDOM_ID = 128

    #: All five documented bits (234), the value vk_api and vkbottle send.
    DEFAULT = ATTACHMENTS | EXTENDED | PTS | FRIEND_EXTRA | RANDOM_ID
