"""Peer ids: one integer space for users, group chats and communities."""

import enum

#: A group chat's peer id is this offset plus the chat id.
CHAT_PEER_OFFSET = 2_000_000_000

#: Upper bound (exclusive) of chat peer ids. VK now issues user ids above
#: 2e11, so "greater than 2e9" alone misfiles private dialogs as chats.
#: NOTE: the bound is empirical (vk_api uses it); VK has not documented one.
CHAT_PEER_LIMIT = 200_000_000_000


class PeerKind(enum.Enum):
    """What a peer id points at."""

    USER = "user"
    CHAT = "chat"
    COMMUNITY = "community"


def peer_kind(peer_id: int) -> PeerKind:
    """Classify a peer id: negative ids are communities, the chat range is chats."""
    if peer_id < 0:
        return PeerKind.COMMUNITY
    if CHAT_PEER_OFFSET < peer_id < CHAT_PEER_LIMIT:
        return PeerKind.CHAT
    return PeerKind.USER


def chat_peer_id(chat_id: int) -> int:
    """Return the peer id of group chat `chat_id`."""
    return CHAT_PEER_OFFSET + chat_id


def chat_id_of(peer_id: int) -> int | None:
    """Return the chat id of a chat peer, or None for users and communities."""
    if peer_kind(peer_id) is PeerKind.CHAT:
        return peer_id - CHAT_PEER_OFFSET
    return None
