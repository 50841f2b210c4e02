"""The fake server's replies to VK API methods other than the long poll ones.

A call gets the reply from the recorded session when the fixture contains
a call to the same method (`RecordedApi`), else a reply from the default
set below (`default_result`), else VK's error 3, "Unknown method passed".

The default set:

* ``users.get``: a user object with fake names for each id in `user_ids`
  (numbers or ``id<number>``), or for the recorded account when none is given.
* ``groups.getById``: a community object with a fake name for each id in
  `group_ids` or `group_id` (numbers or ``club<number>``, ``public<number>``,
  ``event<number>``), or for the community of the recorded session (the
  `group_id` of its messages.getLongPollServer call) when none is given.
* ``utils.getServerTime``: the server's virtual clock in Unix seconds.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._fixture import REDACTED_VALUE, ExchangeKind, Fixture

#: The methods that the replay engine handles itself, never with recorded replies.
LONG_POLL_METHODS = frozenset({"messages.getLongPollServer", "messages.getLongPollHistory"})
#: The methods that `default_result` handles when the fixture has no call to them.
DEFAULT_METHODS = ("users.get", "groups.getById", "utils.getServerTime")

#: Parameters left out when a request is compared with a recorded call, because the token
#: and the API version do not change which reply the call gets.
_UNCOMPARED_PARAMS = frozenset({"access_token", "v"})
# VK's API schema (version 5.199) documents groups.getById's reply as {"groups": [...],
# "profiles": [...]}, while clients written for older API versions read a bare array.
# NOTE: 5.194 as the first version with the object is not checked against VK's changelog.
_GROUPS_OBJECT_SINCE = (5, 194)
_USER_ID = re.compile(r"(?:id)?([0-9]{1,19})")
_GROUP_ID = re.compile(r"(?:club|public|event)?([0-9]{1,19})")
_API_VERSION = re.compile(r"([0-9]+)\.([0-9]+)")
_JSON_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedCall:
    """A recorded call to an API method and the reply it got."""

    method: str
    params: Mapping[str, str]
    status: int
    body: bytes
    content_type: str = _JSON_TYPE


def recorded_calls(fixture: Fixture) -> tuple[RecordedCall, ...]:
    """Return the fixture's completed calls to API methods other than the long poll ones."""
    calls = []
    for exchange in fixture.exchanges:
        if exchange.kind is not ExchangeKind.API or exchange.status is None:
            continue
        method = exchange.url.rpartition("/")[2]
        if method in LONG_POLL_METHODS:
            continue
        calls.append(
            RecordedCall(
                method=method,
                params=exchange.params,
                status=exchange.status,
                body=exchange.body or b"",
                content_type=dict(exchange.headers).get("content-type", _JSON_TYPE),
            )
        )
    return tuple(calls)


@dataclass(slots=True)
class RecordedApi:
    """Picks the recorded reply for an API call.

    The recorded calls with the same parameters as the request (ignoring
    the token, the API version and the values the fixture redacted) are
    served in recorded order. When no call matches, every recorded call to
    the method is served in recorded order instead. Once a list runs out,
    its last reply repeats.
    """

    calls: tuple[RecordedCall, ...]
    _served: dict[tuple[str, int | None], int] = field(default_factory=dict)

    def answer(self, method: str, params: Mapping[str, str]) -> RecordedCall | None:
        """Return the recorded reply for a call to `method`, or None if none was recorded."""
        of_method = [call for call in self.calls if call.method == method]
        if not of_method:
            return None
        matching = [call for call in of_method if _same_params(call.params, params)]
        candidates = matching or of_method
        # Each list is counted under the index of its first call, so each distinct
        # request walks through its own recorded replies.
        key: tuple[str, int | None] = (method, self.calls.index(matching[0]) if matching else None)
        served = self._served.get(key, 0)
        self._served[key] = served + 1
        return candidates[min(served, len(candidates) - 1)]


def _same_params(recorded: Mapping[str, str], request: Mapping[str, str]) -> bool:
    names = (recorded.keys() | request.keys()) - _UNCOMPARED_PARAMS
    return all(
        recorded.get(name) == REDACTED_VALUE or recorded.get(name) == request.get(name)
        for name in names
    )


@dataclass(frozen=True, slots=True)
class ApiFailure:
    """A VK API error to reply with: `error_code` and `error_msg`."""

    code: int
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """Replayed session data for the default methods."""

    user_id: int
    group_id: int | None
    server_time: int


def default_result(
    method: str, params: Mapping[str, str], account: Account
) -> Any | ApiFailure | None:
    """Return the `response` value of a call to a default method, or an `ApiFailure`.

    Returns None when `method` is not in `DEFAULT_METHODS`.
    """
    if method == "users.get":
        return _users(params, account)
    if method == "groups.getById":
        return _groups(params, account)
    if method == "utils.getServerTime":
        return account.server_time
    return None


def _users(params: Mapping[str, str], account: Account) -> list[dict[str, Any]] | ApiFailure:
    names = _split_ids(params.get("user_ids", "") or params.get("user_id", ""))
    if not names:
        return [_fake_user(account.user_id)]
    users = []
    for name in names:
        match = _USER_ID.fullmatch(name)
        if match is None or int(match.group(1)) == 0:
            return ApiFailure(113, "Invalid user id")
        users.append(_fake_user(int(match.group(1))))
    return users


def _fake_user(user_id: int) -> dict[str, Any]:
    return {
        "id": user_id,
        "first_name": "Test",
        "last_name": "User",
        "can_access_closed": True,
        "is_closed": False,
    }


def _groups(params: Mapping[str, str], account: Account) -> Any:
    names = _split_ids(params.get("group_ids", "") or params.get("group_id", ""))
    if not names:
        if account.group_id is None:
            return ApiFailure(
                100,
                "One of the parameters specified was missing or invalid: group_ids is undefined",
            )
        names = [str(account.group_id)]
    groups = []
    for name in names:
        match = _GROUP_ID.fullmatch(name)
        if match is None or int(match.group(1)) == 0:
            return ApiFailure(
                100, f"One of the parameters specified was missing or invalid: group_ids {name!r}"
            )
        groups.append(_fake_group(int(match.group(1))))
    if _api_version(params.get("v", "")) >= _GROUPS_OBJECT_SINCE:
        return {"groups": groups, "profiles": []}
    return groups


def _fake_group(group_id: int) -> dict[str, Any]:
    return {
        "id": group_id,
        "name": f"Test Community {group_id}",
        "screen_name": f"club{group_id}",
        "is_closed": 0,
        "type": "group",
    }


def _split_ids(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _api_version(value: str) -> tuple[int, int]:
    """Parse an API version such as "5.199"; an unreadable one counts as the newest."""
    match = _API_VERSION.fullmatch(value.strip())
    if match is None:
        return (10**9, 0)
    return (int(match.group(1)), int(match.group(2)))
