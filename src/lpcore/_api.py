"""Reading VK API replies: the envelope, getLongPollServer and getLongPollHistory."""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import ApiError, RemoteProtocolError
from ._parse import read_counter


def read_api_reply(status: int, body: bytes, method: str) -> Any:
    """Return the ``response`` value of a VK API reply, or raise its error.

    Raises `ApiError` for an ``{"error": ...}`` reply and
    `RemoteProtocolError` for anything that is not a VK API reply.
    """
    # A JSON object may carry the long poll key (getLongPollServer, or
    # getLongPollHistory with credentials), so only other bodies, such
    # as an HTML error page, are quoted in errors.
    shown = None if body.lstrip().startswith(b"{") else body
    if status != 200:
        raise RemoteProtocolError(f"{method} returned HTTP {status}", shown)
    try:
        reply = json.loads(body)
    except (ValueError, RecursionError):
        raise RemoteProtocolError(f"{method} reply is not JSON", shown) from None
    if type(reply) is not dict:
        raise RemoteProtocolError(f"{method} reply must be a JSON object", shown)
    if "error" in reply:
        error = reply["error"]
        raise ApiError.from_object(error if type(error) is dict else {}, method=method)
    if "response" not in reply:
        raise RemoteProtocolError(f"{method} reply has neither 'response' nor 'error'")
    return reply["response"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInfo:
    """The long poll credentials from getLongPollServer (or history's `credentials`)."""

    key: str
    server: str
    ts: int
    pts: int | None

    def __repr__(self) -> str:
        return f"ServerInfo(server={self.server!r}, ts={self.ts}, pts={self.pts})"


def read_server_info(result: Any, method: str) -> ServerInfo:
    """Read `key`, `server`, `ts` and the optional `pts` of a credentials object."""
    # The errors quote no body: it holds the key.
    if type(result) is not dict:
        raise RemoteProtocolError(f"{method} credentials must be an object")
    key, server = result.get("key"), result.get("server")
    if type(key) is not str or not key:
        raise RemoteProtocolError(f"{method} credentials have no 'key' string")
    if type(server) is not str or not server:
        raise RemoteProtocolError(f"{method} credentials have no 'server' string")
    ts = read_counter(result, "ts", b"")
    if ts is None:
        raise RemoteProtocolError(f"{method} credentials have no integer 'ts'")
    # VK has been seen to omit pts even with need_pts=1; a missing or
    # unreadable pts leaves the session without one rather than failing.
    try:
        pts = read_counter(result, "pts", b"")
    except RemoteProtocolError:
        pts = None
    return ServerInfo(key=key, server=server, ts=ts, pts=pts)


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryPage:
    """One reply of messages.getLongPollHistory."""

    history: tuple[Any, ...]
    messages: tuple[Mapping[str, Any], ...]
    new_pts: int
    more: bool
    credentials: ServerInfo | None


def read_history_page(result: Any) -> HistoryPage:
    """Read a getLongPollHistory response object."""
    method = "messages.getLongPollHistory"
    if type(result) is not dict:
        raise RemoteProtocolError(f"{method} response must be an object")
    history = result.get("history", [])
    if type(history) is not list:
        raise RemoteProtocolError(f"{method} 'history' must be an array")
    new_pts = read_counter(result, "new_pts", b"")
    if new_pts is None:
        raise RemoteProtocolError(f"{method} response has no integer 'new_pts'")
    # `more` is a boolean in the schema, 0/1 in traffic.
    more = result.get("more", False)
    credentials = result.get("credentials")
    return HistoryPage(
        history=tuple(history),
        messages=_message_items(result.get("messages")),
        new_pts=new_pts,
        more=bool(more) if type(more) in (bool, int) else False,
        credentials=None if credentials is None else read_server_info(credentials, method),
    )


def _message_items(messages: Any) -> tuple[Mapping[str, Any], ...]:
    # Current API versions send {"count": N, "items": [...]}; very old
    # ones sent an array whose first element was the count.
    if type(messages) is dict:
        messages = messages.get("items", [])
    if type(messages) is not list:
        return ()
    return tuple(item for item in messages if type(item) is dict)
