"""Scrubbing: replace the ids and message text of a fixture with consistent fake values.

A scrubbed fixture can be shared. Each user, chat and community id becomes a fake id of the
same kind, and one real id becomes the same fake id everywhere: in every line of a file, and in
every exchange of a capture recorded with `Recorder(..., scrub=...)`. The peer id ranges stay
as VK uses them. Users stay positive and below 2000000000, or at 200000000000 and above when
they were there. A chat's peer id stays 2000000000 plus a fake chat id, and communities stay
negative. The negated user ids of events 8, 9 and 81 are mapped as users and stay negated.

Ids are replaced in these places:

- update arrays, in poll replies and in getLongPollHistory's `history`: peer ids and user ids,
  the chat ids of events 51 and 62, and the user ids in the `info` of event 52. Also the id
  lists of events 63-68 and the objects of events 50, 114 and 119;
- the additional-data object: `from`, `from_admin`, `source_mid` and `marked_users`;
- the attachments object: the owner ids in `attach{i}`, `attach{i}_photo`, `fwd`, and `geo`
  when it has the `{owner_id}_{item_id}` form;
- getLongPollServer's `server` (`im.vk.com/nim<user id>`), the same path in the poll URLs and
  in transport error texts, and `credentials.server` of getLongPollHistory;
- the API objects of getLongPollHistory (`messages`, `profiles`, `groups`, `conversations`) by
  their key names (`peer_id`, `from_id`, `owner_id`, `member_id`, ...), profile and group `id`s,
  and profile and group photo URLs, which become VK's placeholder image. The replies of
  other API methods get the same treatment by key name;
- the header's `user_id`, the `group_id`, `user_id` and `peer_id` request parameters, and their
  echo in an API error's `request_params`.

Message text becomes filler of the same length: index 5 of message events, `source_text`,
`source_old_text`, `source_message` and `title` of the additional data, and `text`, names and
titles in API objects. Letters become letters of "lorem ipsum" in the same case, digits become
digits, and everything else stays. That includes `<br>` and the entities VK escapes `& < > "`
with, so escaped text stays validly escaped. The filler depends only on where the letters and
digits are, so word lengths stay visible, and the escaped text of an event scrubs to the
escaped form of its plain text scrubbed.

A body that is JSON is parsed, scrubbed and encoded again. It keeps its style (compact or
spaced, raw or \\u-escaped non-ASCII characters, `\\/` for slashes) when one of those styles
reproduces the original bytes, else it becomes compact JSON. A body that is not JSON, such as
an HTML error page or bytes that are not UTF-8, is left as it is. Its exchange gets
`"scrub_skipped": true`, and `scrub_fixture` also lists the line numbers of such exchanges in
the header's `scrub_skipped`. An empty body has nothing to scrub and is not listed.

Not scrubbed: message ids, `ts` and `pts`, times, bot keyboards and payloads, link snippets
(`attach{i}_url`, `_title`, `_desc`), the JSON text in the `attachments` key, URLs inside
attachment objects of API replies, events of unknown codes, and fields this version of the
format does not know. Response headers stay too, except that a Content-Length that matched
the body is set to the scrubbed body's size.

The fake ids come from HMAC-SHA256 of the real id, keyed by a random seed that lives only in
memory. Neither the seed nor the mapping is written anywhere, because either would let anyone
reverse the scrub, so files scrubbed at different times get different fake ids.
"""

import copy
import dataclasses
import enum
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lpcore import CHAT_PEER_LIMIT, CHAT_PEER_OFFSET, PeerKind, peer_kind

from ._fixture import Exchange, ExchangeKind, Fixture, Header, read_fixture, write_fixture

#: The field that marks an exchange whose body was left unscrubbed, and the header field that
#: lists the line numbers of such exchanges.
SKIPPED_FIELD = "scrub_skipped"

#: The URL that replaces profile and group photo URLs: the image VK shows for a user with no
#: photo.
PLACEHOLDER_PHOTO = "https://vk.com/images/camera_100.png"

_HISTORY_METHOD = "/messages.getLongPollHistory"

_FILLER = "loremipsumdolorsitametconsecteturadipiscingelitseddoeiusmodtempor"

# `<br>` and the entities VK escapes text with stay as they are, so the text stays escaped.
_KEPT_IN_TEXT = re.compile(r"<br>|&(?:amp|lt|gt|quot|#[0-9]+|#[xX][0-9a-fA-F]+);")

# The long poll server's path ends in the user id: im.vk.com/nim100001.
_NIM_USER_ID = re.compile(r"(?<=/nim)[0-9]+(?![0-9])")

# An attachment or forwarded message as "{owner_id}_{item_id}".
_OWNER_ITEM = re.compile(r"(-?[0-9]+)_([0-9]+)")
_ATTACHMENT_ID_KEY = re.compile(r"attach[0-9]+(?:_photo)?|fwd|geo")


class _Id(enum.Enum):
    """The kind of id an integer in an update array or API object is."""

    PEER = enum.auto()
    USER = enum.auto()
    NEGATED_USER = enum.auto()
    CHAT = enum.auto()
    GROUP = enum.auto()


@dataclasses.dataclass(frozen=True, slots=True)
class _Band:
    """A range of ids, low inclusive and high exclusive, that fake ids are drawn from."""

    low: int
    high: int


_USER_BANDS = (
    _Band(1, CHAT_PEER_OFFSET),
    # A user id in a field that holds only users can sit in the chat peer range.
    _Band(CHAT_PEER_OFFSET, CHAT_PEER_LIMIT),
    _Band(CHAT_PEER_LIMIT, 2 * CHAT_PEER_LIMIT),
)
# Chat ids count a user's chats from 1, and community ids stay below VK's 1e9 offset for
# communities in long poll version 0.
_CHAT_BAND = _Band(1, 1_000_000)
_GROUP_BAND = _Band(1, 1_000_000_000)

# Message events: the index of peer_id. Text, additional data and attachments follow it after
# the timestamp, at peer + 2, + 3 and + 4. Codes 10002-10018 are version 19's renumbering.
_MESSAGE_PEER_INDEX: dict[int, int] = {
    **dict.fromkeys((1, 2, 3, 4, 5, 18), 3),
    **dict.fromkeys((10002, 10003, 10005, 10018), 3),
    10004: 4,
}

# Other events: where their ids are.
_ID_POSITIONS: dict[int, tuple[tuple[int, _Id], ...]] = {
    **dict.fromkeys(
        (6, 7, 10, 11, 12, 13, 14, 20, 21, 602, 10006, 10007, 10013), ((1, _Id.PEER),)
    ),
    **dict.fromkeys((8, 9, 81), ((1, _Id.NEGATED_USER),)),
    51: ((1, _Id.CHAT),),
    52: ((2, _Id.PEER),),
    61: ((1, _Id.USER),),
    62: ((1, _Id.USER), (2, _Id.CHAT)),
    70: ((1, _Id.USER),),
    90: ((2, _Id.USER),),
    91: ((2, _Id.PEER), (3, _Id.PEER)),
    601: ((2, _Id.PEER),),
}

# Event 52 types whose `info` is a user id (admin added, user joined, left, kicked, admin
# removed) or a peer id (keyboard shown or hidden).
_INFO_IS_PEER = frozenset({3, 6, 7, 8, 9, 11})
# Events 63-68 list who is typing or uploading, before or after the peer id.
_ACTIVITY_CODES = frozenset(range(63, 69))
# Events whose index 1 is an object: translation, notification settings, callback button
# event.
_OBJECT_CODES = frozenset({50, 114, 119})
# Folder events whose elements from index 2 on are peer ids.
_FOLDER_PEERS_CODES = frozenset({504, 505})

_ADDITIONAL_PEER_KEYS = ("from", "from_admin", "source_mid")
_ADDITIONAL_TEXT_KEYS = ("source_text", "source_old_text", "source_message", "title")

# Key names of ids and text in VK API objects, wherever they nest.
_API_PEER_KEYS = frozenset(
    {"peer_id", "from_id", "owner_id", "user_id", "member_id", "admin_id", "to_id", "invited_by"}
)
_API_PEER_LIST_KEYS = frozenset({"admin_ids", "active_ids", "member_ids", "user_ids"})
_API_TEXT_KEYS = frozenset(
    {
        "text",
        "title",
        "translation",
        "first_name",
        "last_name",
        "nickname",
        "maiden_name",
        "screen_name",
        "domain",
        "name",
        "email",
    }
)
_PARAM_IDS = {"group_id": _Id.GROUP, "user_id": _Id.USER, "peer_id": _Id.PEER}
# A conversation's `peer.local_id`, by `peer.type`: the chat id of a chat, else the id itself.
_LOCAL_ID_KINDS = {"chat": _Id.CHAT, "user": _Id.USER, "group": _Id.GROUP}


class Scrubber:
    """Replaces ids and message text consistently: one real id always gets the same fake id.

    One Scrubber keeps its mapping for its lifetime, so scrub a header and all exchanges that
    belong together with the same one. `seed` fixes the fake ids, which tests need. Leave it
    None elsewhere to get a random seed, because anyone with the seed can reverse the scrub.
    """

    def __init__(self, *, seed: bytes | None = None) -> None:
        self._seed = secrets.token_bytes(32) if seed is None else seed
        self._fakes: dict[tuple[_Id, int], int] = {}
        self._taken: set[tuple[_Id, int]] = set()

    def __repr__(self) -> str:
        # The seed and the mapping would reverse the scrub, so they stay out of logs.
        return f"<Scrubber with {len(self._fakes)} ids mapped>"

    # -- ids ------------------------------------------------------------------------------

    def fake_user_id(self, user_id: int) -> int:
        """Return the fake id of a user, in the same range as the real one.

        0 stays 0. A negative value is no user id, so it is mapped as a peer id.
        """
        if user_id <= 0:
            return self.fake_peer_id(user_id)
        band = next((band for band in _USER_BANDS if user_id < band.high), _USER_BANDS[-1])
        return self._fake(_Id.USER, user_id, band)

    def fake_chat_id(self, chat_id: int) -> int:
        """Return the fake id of a chat (the number after 2000000000 in its peer id)."""
        return chat_id if chat_id <= 0 else self._fake(_Id.CHAT, chat_id, _CHAT_BAND)

    def fake_group_id(self, group_id: int) -> int:
        """Return the fake id of a community, positive like the real one."""
        return group_id if group_id <= 0 else self._fake(_Id.GROUP, group_id, _GROUP_BAND)

    def fake_peer_id(self, peer_id: int) -> int:
        """Return the fake peer id of a user, chat or community, of the same kind."""
        if peer_id == 0:
            return 0
        kind = peer_kind(peer_id)
        if kind is PeerKind.COMMUNITY:
            return -self.fake_group_id(-peer_id)
        if kind is PeerKind.CHAT:
            return CHAT_PEER_OFFSET + self.fake_chat_id(peer_id - CHAT_PEER_OFFSET)
        return self.fake_user_id(peer_id)

    def _fake(self, kind: _Id, real: int, band: _Band) -> int:
        fake = self._fakes.get((kind, real))
        if fake is not None:
            return fake
        message = f"{kind.name}:{real}".encode()
        digest = hmac.new(self._seed, message, hashlib.sha256).digest()
        size = band.high - band.low
        offset = int.from_bytes(digest[:8], "big") % size
        # Linear probing keeps the mapping one-to-one. A band has room for far more ids
        # than a session mentions, so the loop ends after a step or two.
        while (kind, band.low + offset) in self._taken:
            offset = (offset + 1) % size
        fake = band.low + offset
        self._fakes[kind, real] = fake
        self._taken.add((kind, fake))
        return fake

    def _fake_as(self, kind: _Id, value: int) -> int:
        if kind is _Id.USER:
            return self.fake_user_id(value)
        if kind is _Id.NEGATED_USER:
            return -self.fake_user_id(-value) if value < 0 else self.fake_user_id(value)
        if kind is _Id.CHAT:
            return self.fake_chat_id(value)
        if kind is _Id.GROUP:
            return self.fake_group_id(value)
        return self.fake_peer_id(value)

    def _fake_in_string(self, kind: _Id, text: str) -> str:
        """Map an id written as a string, such as `"from": " 100003"`, keeping its spacing."""
        digits = text.strip()
        if not _is_integer_text(digits):
            return text
        return text.replace(digits, str(self._fake_as(kind, int(digits))), 1)

    def _fake_server(self, server: str) -> str:
        return _NIM_USER_ID.sub(lambda match: str(self.fake_user_id(int(match[0]))), server)

    # -- header and exchanges -------------------------------------------------------------

    def scrub_header(self, header: Header) -> Header:
        """Return the header with a fake `user_id` and `scrubbed` set."""
        user_id = None if header.user_id is None else self.fake_user_id(header.user_id)
        return dataclasses.replace(header, user_id=user_id, scrubbed=True)

    def scrub_exchange(self, exchange: Exchange) -> Exchange:
        """Return the exchange with fake ids and filler text.

        A body that is not JSON is left as it is, and the exchange gets `"scrub_skipped":
        true` among its extra fields.
        """
        extra = {key: value for key, value in exchange.extra.items() if key != SKIPPED_FIELD}
        body = exchange.body
        if body is not None:
            scrubbed = self._scrub_body(exchange, body)
            if scrubbed is None:
                extra[SKIPPED_FIELD] = True
            else:
                body = scrubbed
        return dataclasses.replace(
            exchange,
            url=self._fake_server(exchange.url),
            params=self._scrub_params(exchange.params),
            headers=_fix_content_length(exchange.headers, exchange.body, body),
            body=body,
            error_detail=self._fake_server(exchange.error_detail),
            extra=extra,
        )

    def _scrub_params(self, params: Mapping[str, str]) -> dict[str, str]:
        scrubbed = dict(params)
        for name, kind in _PARAM_IDS.items():
            if name in scrubbed:
                scrubbed[name] = self._fake_in_string(kind, scrubbed[name])
        return scrubbed

    def _scrub_body(self, exchange: Exchange, body: bytes) -> bytes | None:
        """Return the scrubbed body, or None when it is not JSON."""
        if not body:
            return body
        parsed = _parse_json(body)
        if parsed is None:
            return None
        [value] = parsed
        try:
            scrubbed = self._scrub_reply(exchange, copy.deepcopy(value))
            if scrubbed == value:
                return body
        except RecursionError:
            # Nested too deeply to walk, so treated like a body that is not JSON.
            return None
        return _dump_like(body, value, scrubbed)

    def _scrub_reply(self, exchange: Exchange, reply: Any) -> Any:
        """Scrub a parsed reply in place and return it."""
        if not isinstance(reply, dict):
            return reply
        if isinstance(reply.get("updates"), list):
            for update in reply["updates"]:
                self._scrub_update(update)
        if isinstance(reply.get("error"), dict):
            self._scrub_request_params(reply["error"].get("request_params"))
        if "response" in reply:
            reply["response"] = self._scrub_api_response(exchange, reply["response"])
        return reply

    def _scrub_request_params(self, request_params: Any) -> None:
        for pair in request_params if isinstance(request_params, list) else ():
            if not isinstance(pair, dict) or not isinstance(pair.get("value"), str):
                continue
            key = pair.get("key")
            kind = _PARAM_IDS.get(key) if isinstance(key, str) else None
            if kind is not None:
                pair["value"] = self._fake_in_string(kind, pair["value"])

    def _scrub_api_response(self, exchange: Exchange, response: Any) -> Any:
        if not isinstance(response, dict):
            return self._scrub_api_value(response)
        if isinstance(response.get("server"), str):
            response["server"] = self._fake_server(response["server"])
        if exchange.kind is ExchangeKind.HISTORY or exchange.url.endswith(_HISTORY_METHOD):
            self._scrub_history(response)
            return response
        return self._scrub_api_value(response)

    # -- update arrays --------------------------------------------------------------------

    def _scrub_update(self, update: Any) -> None:
        """Scrub one update array in place. Unknown codes stay as they are."""
        if not isinstance(update, list) or not update or not _is_int(update[0]):
            return
        code: int = update[0]
        if code in _MESSAGE_PEER_INDEX:
            self._scrub_message_event(update, _MESSAGE_PEER_INDEX[code])
        for index, kind in _ID_POSITIONS.get(code, ()):
            self._fake_at(update, index, kind)
        if code == 52 and len(update) > 3 and _is_int(update[1]) and update[1] in _INFO_IS_PEER:
            self._fake_at(update, 3, _Id.PEER)
        if code in _ACTIVITY_CODES:
            self._scrub_activity(update)
        if code in _OBJECT_CODES and len(update) > 1:
            update[1] = self._scrub_api_value(update[1])
        if code in _FOLDER_PEERS_CODES:
            for index in range(2, len(update)):
                self._fake_at(update, index, _Id.PEER)

    def _scrub_message_event(self, update: list[Any], peer_index: int) -> None:
        self._fake_at(update, peer_index, _Id.PEER)
        text_index = peer_index + 2
        if len(update) > text_index and isinstance(update[text_index], str):
            update[text_index] = scrub_text(update[text_index])
        # An edit (5) may carry the attachments right after the text, and the documentation
        # lists some additional-data keys among the attachments. The two objects share no
        # key names, so both get both treatments.
        for obj in update[text_index + 1 : text_index + 3]:
            if isinstance(obj, dict):
                self._scrub_additional(obj)
                self._scrub_attachments(obj)

    def _scrub_activity(self, update: list[Any]) -> None:
        # The documentation puts the id list first, but VK sends the peer id first, so
        # whichever of index 1 and 2 is a list is the id list.
        for index in (1, 2):
            if index >= len(update):
                continue
            if isinstance(update[index], list):
                for position in range(len(update[index])):
                    self._fake_at(update[index], position, _Id.USER)
            else:
                self._fake_at(update, index, _Id.PEER)

    def _scrub_additional(self, additional: dict[str, Any]) -> None:
        for key in _ADDITIONAL_PEER_KEYS:
            if isinstance(additional.get(key), str):
                additional[key] = self._fake_in_string(_Id.PEER, additional[key])
        for key in _ADDITIONAL_TEXT_KEYS:
            if isinstance(additional.get(key), str):
                additional[key] = scrub_text(additional[key])
        # Mentions: [[1, [100001, ...]], [1, "all"], [1, "online", [ids]]].
        marked = additional.get("marked_users")
        for entry in marked if isinstance(marked, list) else ():
            for part in entry if isinstance(entry, list) else ():
                if isinstance(part, list):
                    for position in range(len(part)):
                        self._fake_at(part, position, _Id.PEER)

    def _scrub_attachments(self, attachments: dict[str, Any]) -> None:
        for key, value in attachments.items():
            if not isinstance(value, str):
                continue
            if _ATTACHMENT_ID_KEY.fullmatch(key):
                attachments[key] = _OWNER_ITEM.sub(self._fake_owner_item, value)

    def _fake_owner_item(self, match: re.Match[str]) -> str:
        return f"{self.fake_peer_id(int(match[1]))}_{match[2]}"

    def _fake_at(self, values: list[Any], index: int, kind: _Id) -> None:
        if index < len(values) and _is_int(values[index]):
            values[index] = self._fake_as(kind, values[index])

    # -- API objects ----------------------------------------------------------------------

    def _scrub_history(self, response: dict[str, Any]) -> None:
        for update in _items(response.get("history")):
            self._scrub_update(update)
        messages = response.get("messages")
        # Very old API versions return messages as [count, item, ...].
        items = messages.get("items") if isinstance(messages, dict) else messages
        for message in _items(items):
            self._scrub_api_value(message)
        for profile in _items(response.get("profiles")):
            self._scrub_owner(profile, _Id.USER)
        for group in _items(response.get("groups")):
            self._scrub_owner(group, _Id.GROUP)
        for conversation in _items(response.get("conversations")):
            self._scrub_conversation(conversation)
        credentials = response.get("credentials")
        if isinstance(credentials, dict) and isinstance(credentials.get("server"), str):
            credentials["server"] = self._fake_server(credentials["server"])

    def _scrub_owner(self, owner: Any, kind: _Id) -> None:
        """Scrub a profile or group object: its id, names and photo URLs."""
        if not isinstance(owner, dict):
            return
        if _is_int(owner.get("id")):
            owner["id"] = self._fake_as(kind, owner["id"])
        for key, value in owner.items():
            if key.startswith("photo") and isinstance(value, str) and value.startswith("http"):
                owner[key] = PLACEHOLDER_PHOTO
        self._scrub_api_value(owner)

    def _scrub_conversation(self, conversation: Any) -> None:
        if not isinstance(conversation, dict):
            return
        peer = conversation.get("peer")
        if isinstance(peer, dict):
            self._fake_at_key(peer, "id", _Id.PEER)
            peer_type = peer.get("type")
            kind = _LOCAL_ID_KINDS.get(peer_type) if isinstance(peer_type, str) else None
            if kind is not None:
                self._fake_at_key(peer, "local_id", kind)
        self._scrub_api_value(conversation)

    def _scrub_api_value(self, value: Any) -> Any:
        """Scrub ids and text by key name wherever they nest, in place; return the value."""
        if isinstance(value, list):
            for item in value:
                self._scrub_api_value(item)
            return value
        if not isinstance(value, dict):
            return value
        for key, item in value.items():
            if key in _API_PEER_KEYS and _is_int(item):
                value[key] = self.fake_peer_id(item)
            elif key in _API_PEER_LIST_KEYS and isinstance(item, list):
                for position in range(len(item)):
                    self._fake_at(item, position, _Id.PEER)
            elif key in _API_TEXT_KEYS and isinstance(item, str):
                value[key] = scrub_text(item)
            else:
                self._scrub_api_value(item)
        return value

    def _fake_at_key(self, obj: dict[str, Any], key: str, kind: _Id) -> None:
        if _is_int(obj.get(key)):
            obj[key] = self._fake_as(kind, obj[key])


# --- text -----------------------------------------------------------------------------


def scrub_text(text: str) -> str:
    """Replace the letters and digits of a text with filler of the same length and case.

    `<br>` and the entities `&amp;`, `&lt;`, `&gt;`, `&quot;` and `&#...;` stay whole, and so
    does every character that is neither a letter nor a digit. Equal texts get equal filler.
    """
    positions = itertools.count()
    parts: list[str] = []
    start = 0
    for match in _KEPT_IN_TEXT.finditer(text):
        parts.append(_fill(text[start : match.start()], positions))
        parts.append(match[0])
        start = match.end()
    parts.append(_fill(text[start:], positions))
    return "".join(parts)


def _fill(chunk: str, positions: Iterator[int]) -> str:
    characters = []
    for character in chunk:
        if character.isalpha():
            filler = _FILLER[next(positions) % len(_FILLER)]
            characters.append(filler.upper() if character.isupper() else filler)
        elif character.isdigit():
            characters.append(str(next(positions) % 10))
        else:
            characters.append(character)
    return "".join(characters)


# --- bodies ---------------------------------------------------------------------------


def _parse_json(body: bytes) -> list[Any] | None:
    """Parse a body as strict JSON into a one-item list, or return None when it is not JSON."""
    try:
        return [json.loads(body.decode("utf-8"), parse_constant=_reject_constant)]
    except (ValueError, RecursionError):
        # UnicodeDecodeError and JSONDecodeError are both ValueErrors.
        return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@dataclasses.dataclass(frozen=True, slots=True)
class _JsonStyle:
    separators: tuple[str, str]
    ensure_ascii: bool
    escape_slashes: bool

    def dump(self, value: Any) -> bytes | None:
        try:
            text = json.dumps(
                value, separators=self.separators, ensure_ascii=self.ensure_ascii, allow_nan=False
            )
            if self.escape_slashes:
                # A slash can only occur inside a JSON string, so this escapes every one of
                # them the way PHP's json_encode, and so VK, does.
                text = text.replace("/", "\\/")
            return text.encode("utf-8")
        except (ValueError, RecursionError):
            # UnicodeEncodeError: a lone surrogate cannot be written as raw UTF-8.
            return None


_STYLES = tuple(
    _JsonStyle(separators, ensure_ascii, escape_slashes)
    for separators in ((",", ":"), (", ", ": "))
    for ensure_ascii in (False, True)
    for escape_slashes in (False, True)
)


def _dump_like(original: bytes, value: Any, scrubbed: Any) -> bytes | None:
    """Encode `scrubbed` in the style that reproduces `original` from `value`.

    Falls back to compact JSON, escaped when the original was ASCII. Returns None only when
    no style can encode the scrubbed value.
    """
    for style in _STYLES:
        if style.dump(value) == original:
            return style.dump(scrubbed)
    fallback = _JsonStyle((",", ":"), original.isascii(), b"\\/" in original)
    return fallback.dump(scrubbed) or _STYLES[2].dump(scrubbed)


# --- fixtures -------------------------------------------------------------------------


def scrub_fixture(fixture: Fixture, scrubber: Scrubber | None = None) -> Fixture:
    """Return the fixture with fake ids and filler text, ready to write.

    The header's `scrub_skipped` lists the line numbers of the exchanges whose bodies were
    not JSON and were left as they were (an empty list when there are none).
    """
    scrubber = Scrubber() if scrubber is None else scrubber
    header = scrubber.scrub_header(fixture.header)
    exchanges = tuple(scrubber.scrub_exchange(exchange) for exchange in fixture.exchanges)
    # The header is line 1, so exchange i (from 0) is written on line i + 2.
    skipped = [
        number
        for number, exchange in enumerate(exchanges, start=2)
        if exchange.extra.get(SKIPPED_FIELD)
    ]
    header = dataclasses.replace(header, extra={**header.extra, SKIPPED_FIELD: skipped})
    return Fixture(header=header, exchanges=exchanges, truncated=fixture.truncated)


def scrub_file(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    scrubber: Scrubber | None = None,
) -> Fixture:
    """Read a fixture, scrub it and write the result to `target`; return what was written.

    Raises ValueError when `target` is `source`, FileExistsError when `target` exists
    (unless `overwrite` is true), and FixtureError for an invalid source.
    """
    source_path, target_path = Path(source), Path(target)
    if _same_file(source_path, target_path):
        raise ValueError(f"{target_path} is the input file; write the scrubbed copy elsewhere")
    scrubbed = scrub_fixture(read_fixture(source_path), scrubber)
    write_fixture(target_path, scrubbed.header, scrubbed.exchanges, overwrite=overwrite)
    return scrubbed


def _same_file(first: Path, second: Path) -> bool:
    if first.resolve() == second.resolve():
        return True
    return first.exists() and second.exists() and first.samefile(second)


def _fix_content_length(
    headers: tuple[tuple[str, str], ...], old_body: bytes | None, new_body: bytes | None
) -> tuple[tuple[str, str], ...]:
    """Set a Content-Length that gave the old body's size to the new body's size."""
    if old_body is None or new_body is None or len(old_body) == len(new_body):
        return headers
    return tuple(
        (name, str(len(new_body)))
        if name == "content-length" and value.strip() == str(len(old_body))
        else (name, value)
        for name, value in headers
    )


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_int(value: Any) -> bool:
    # bool is a subclass of int in Python, but true is no integer in JSON.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_integer_text(text: str) -> bool:
    return text.removeprefix("-").isdigit() and text.isascii()
