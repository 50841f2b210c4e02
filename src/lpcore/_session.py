"""The long poll session as a sans-IO state machine.

The session hands out the next `Request` (or a `Backoff` to wait out),
and takes back what came of it: a response's status and body bytes, or a
transport failure. It never performs I/O and never reads a clock: the
caller passes `now` in whatever time base it uses (trio's virtual clock,
`time.monotonic()`, ...).

States and transitions (all in `_transition` and the `_on_*` handlers):

    NEED_SERVER --getLongPollServer ok--> POLLING
    POLLING --updates--> POLLING           (ts := reply ts)
    POLLING --failed 1--> POLLING          (ts := reply ts; events lost)
    POLLING --failed 2--> NEED_SERVER      (new key, ts kept)
    POLLING --failed 3--> NEED_SERVER      (new key and ts; events lost)
    any --failed 4 or fatal API error--> STOPPED (the error is raised)

Transport failures and unreadable bodies keep the state and the `ts`
and schedule a retry of the same request after a backoff.
"""

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from ._backoff import BackoffPolicy
from ._errors import ApiError, LocalProtocolError, RemoteProtocolError, VersionError
from ._modes import Mode
from ._parse import (
    MAX_WAIT,
    Failed,
    PollResult,
    build_poll_url,
    parse_poll_body,
    parse_update,
    read_counter,
)
from ._updates import Update

DEFAULT_API_URL = "https://api.vk.com/method"
DEFAULT_API_VERSION = "5.199"

#: Extra time a client waits for a poll reply beyond `wait`: VK holds the
#: request for up to `wait` seconds, and the reply still has to travel.
POLL_TIMEOUT_MARGIN = 10.0
API_TIMEOUT = 30.0

#: API error codes that clear up by themselves: unknown error, too many
#: requests per second, flood control, internal error, rate limit,
#: execution timeout.
TRANSIENT_API_ERRORS = frozenset({1, 6, 9, 10, 29, 36})
#: Flood control and an exhausted quota need a long pause, not seconds.
SLOW_API_ERRORS = frozenset({9, 29})
SLOW_RETRY_DELAY = 60.0

#: After this many failed polls in a row the key is refreshed (ts kept),
#: in case the server stopped accepting it.
FAILURES_BEFORE_REFRESH = 3


class SessionState(enum.Enum):
    """Where the session is in the protocol."""

    #: No usable key: the next request is messages.getLongPollServer.
    NEED_SERVER = "need_server"
    #: The next request is an a_check poll.
    POLLING = "polling"
    #: A fatal error was raised; every later call raises too.
    STOPPED = "stopped"


class RequestKind(enum.StrEnum):
    """What a request is for."""

    API = "api"
    POLL = "poll"


#: Parameter names whose values are secrets; never log or record them.
SECRET_PARAMS = frozenset({"access_token", "key"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One HTTP request the transport must send.

    `url` is complete (with the query for GET); for POST the form is in
    `body`. `params` repeats the parameters for recorders and logs: mask
    the names in `SECRET_PARAMS` before showing them anywhere.
    """

    kind: RequestKind
    method: str
    url: str
    params: Mapping[str, str] = field(repr=False)
    body: bytes = field(default=b"", repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float
    api_method: str | None = None

    @property
    def base_url(self) -> str:
        """The URL without its query, safe to show."""
        return self.url.split("?", 1)[0]

    def __repr__(self) -> str:
        return f"Request({self.kind.value}, {self.method} {self.base_url}, timeout={self.timeout})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Nothing may be sent before `until` (in the caller's time base)."""

    until: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """What a consumer saves to resume later without loss or duplicates.

    Save it after the updates of a batch were handled; a session started
    with ``Session(..., ts=cp.ts, pts=cp.pts)`` continues after them.
    """

    ts: int
    pts: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdatesReceived:
    """A poll succeeded; `updates` are in server order (possibly none)."""

    updates: tuple[Update, ...]
    ts: int
    pts: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsLost:
    """The server dropped the events between `from_ts` and `to_ts`.

    `failed` is the code that reported it (1 or 3). The events may be
    fetched with messages.getLongPollHistory from `pts` when it is known.
    """

    failed: int
    from_ts: int
    to_ts: int
    pts: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerObtained:
    """messages.getLongPollServer gave a new key (never shown here) and server."""

    server: str
    ts: int
    pts: int | None
    kept_ts: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled:
    """A request failed for a passing reason and will be retried after `delay` seconds."""

    delay: float
    reason: str
    attempt: int


SessionEvent = UpdatesReceived | EventsLost | ServerObtained | RetryScheduled


class Session:
    """A User Long Poll session: messages.getLongPollServer, then the a_check loop.

    Drive it like this::

        while True:
            action = session.next_request(now())
            if isinstance(action, Backoff):
                sleep_until(action.until)
                continue
            try:
                status, body = send(action)
            except OSError as error:
                events = session.receive_failure(action, str(error), now())
            else:
                events = session.receive_response(action, status, body, now())
            for event in events:
                ...

    A fatal condition (`VersionError`, `ApiError` with a code that retrying
    cannot fix) is raised from `receive_response` and stops the session.
    """

    def __init__(
        self,
        token: str,
        *,
        mode: Mode | int = Mode.DEFAULT,
        wait: int = 25,
        version: int = 3,
        api_version: str = DEFAULT_API_VERSION,
        api_url: str = DEFAULT_API_URL,
        group_id: int | None = None,
        ts: int | None = None,
        pts: int | None = None,
        backoff: BackoffPolicy | None = None,
        seed: int = 0,
    ) -> None:
        if not token:
            raise LocalProtocolError("token is empty; pass a VK access token")
        if not 0 <= wait <= MAX_WAIT:
            raise LocalProtocolError(
                f"wait={wait} is out of range; the server holds a poll 0 to {MAX_WAIT} s"
            )
        self._token = token
        self.mode = Mode(mode)
        self.wait = wait
        self.version = version
        self.api_version = api_version
        self.api_url = api_url.rstrip("/")
        self.group_id = group_id
        self._backoff = backoff or BackoffPolicy()
        self._seed = seed

        self.state = SessionState.NEED_SERVER
        self.server: str | None = None
        self._key: str | None = None
        self.ts = ts
        self.pts = pts
        # A resume point's ts must survive the first getLongPollServer.
        self._keep_ts = ts is not None
        self._lost_from_ts: int | None = None
        self._in_flight: Request | None = None
        self._not_before: float | None = None
        self._not_before_reason = ""
        self._lost_code = 3
        self._failures = 0
        self._retries = 0
        self._last_delay = 0.0
        self._stop_error: Exception | None = None

    def __repr__(self) -> str:
        return (
            f"<Session {self.state.value} server={self.server!r} ts={self.ts} pts={self.pts} "
            f"mode={int(self.mode)} version={self.version}>"
        )

    @property
    def has_key(self) -> bool:
        """Whether the session holds a key (the key itself is never exposed)."""
        return self._key is not None

    def checkpoint(self) -> Checkpoint:
        """Return the resume point after everything delivered so far."""
        if self.ts is None:
            raise LocalProtocolError("no checkpoint yet: the session has not received a ts")
        return Checkpoint(ts=self.ts, pts=self.pts)

    # -- handing out requests -------------------------------------------------

    def next_request(self, now: float) -> Request | Backoff:
        """Return the request to send now, or a `Backoff` to wait out first."""
        self._check_usable()
        if self._in_flight is not None:
            raise LocalProtocolError(
                f"{self._in_flight!r} is still in flight; pass its outcome to "
                "receive_response() or receive_failure() first"
            )
        if self._not_before is not None and now < self._not_before:
            return Backoff(until=self._not_before, reason=self._not_before_reason)
        self._not_before = None

        request = (
            self._server_request()
            if self.state is SessionState.NEED_SERVER
            else self._poll_request()
        )
        self._in_flight = request
        return request

    def _server_request(self) -> Request:
        params = {
            "access_token": self._token,
            "v": self.api_version,
            "need_pts": "1",
            "lp_version": str(self.version),
        }
        if self.group_id is not None:
            params["group_id"] = str(self.group_id)
        return Request(
            kind=RequestKind.API,
            method="POST",
            url=f"{self.api_url}/messages.getLongPollServer",
            params=params,
            body=urlencode(params).encode("ascii"),
            headers=(("Content-Type", "application/x-www-form-urlencoded"),),
            timeout=API_TIMEOUT,
            api_method="messages.getLongPollServer",
        )

    def _poll_request(self) -> Request:
        assert self.server is not None
        assert self._key is not None
        assert self.ts is not None
        url = build_poll_url(
            self.server,
            key=self._key,
            ts=self.ts,
            wait=self.wait,
            mode=self.mode,
            version=self.version,
        )
        params = {
            "act": "a_check",
            "key": self._key,
            "ts": str(self.ts),
            "wait": str(self.wait),
            "mode": str(int(self.mode)),
            "version": str(self.version),
        }
        return Request(
            kind=RequestKind.POLL,
            method="GET",
            url=url,
            params=params,
            timeout=self.wait + POLL_TIMEOUT_MARGIN,
        )

    # -- taking outcomes back -------------------------------------------------

    def receive_response(
        self, request: Request, status: int, body: bytes, now: float
    ) -> list[SessionEvent]:
        """Take the response to `request` and return what it means, in order.

        Raises `VersionError` or `ApiError` when polling cannot go on.
        """
        self._take_in_flight(request)
        try:
            if request.kind is RequestKind.API:
                return self._on_server_reply(status, body, now)
            return self._on_poll_reply(status, body, now)
        except (VersionError, ApiError) as error:
            self._stop(error)
            raise

    def receive_failure(self, request: Request, reason: str, now: float) -> list[SessionEvent]:
        """Take a transport failure of `request` (timeout, reset, TLS, ...)."""
        self._take_in_flight(request)
        return self._retry(reason, now)

    def _take_in_flight(self, request: Request) -> None:
        self._check_usable()
        if request is not self._in_flight:
            raise LocalProtocolError(
                f"{request!r} is not the request in flight; pass the one next_request() returned"
            )
        self._in_flight = None

    def _on_server_reply(self, status: int, body: bytes, now: float) -> list[SessionEvent]:
        try:
            result = _read_api_reply(status, body, "messages.getLongPollServer")
        except RemoteProtocolError as error:
            return self._retry(str(error), now)
        except ApiError as error:
            if error.code not in TRANSIENT_API_ERRORS:
                raise
            floor = SLOW_RETRY_DELAY if error.code in SLOW_API_ERRORS else 0.0
            return self._retry(str(error), now, floor=floor)

        try:
            key, server, ts, pts = _read_server_object(result)
        except RemoteProtocolError as error:
            return self._retry(str(error), now)

        self._key, self.server = key, server
        kept_ts = self._keep_ts and self.ts is not None
        events: list[SessionEvent] = []
        if not kept_ts:
            if self._lost_from_ts is not None and self._lost_from_ts != ts:
                events.append(
                    EventsLost(failed=3, from_ts=self._lost_from_ts, to_ts=ts, pts=self.pts)
                )
            self.ts = ts
        if self.pts is None:
            self.pts = pts
        self._lost_from_ts = None
        self._keep_ts = True
        self.state = SessionState.POLLING
        assert self.ts is not None
        return [ServerObtained(server=server, ts=self.ts, pts=self.pts, kept_ts=kept_ts), *events]

    def _on_poll_reply(self, status: int, body: bytes, now: float) -> list[SessionEvent]:
        if status != 200:
            return self._retry(f"poll returned HTTP {status}", now)
        try:
            reply = parse_poll_body(body)
        except RemoteProtocolError as error:
            return self._retry(str(error), now)

        if isinstance(reply, Failed):
            return self._on_failed(reply, now)
        return self._on_updates(reply)

    def _on_updates(self, reply: PollResult) -> list[SessionEvent]:
        self._failures = 0
        self._retries = 0
        self._last_delay = 0.0
        self.ts = reply.ts
        if reply.pts is not None:
            self.pts = reply.pts
        updates = tuple(
            parse_update(raw, mode=self.mode, version=self.version) for raw in reply.updates
        )
        return [UpdatesReceived(updates=updates, ts=self.ts, pts=self.pts)]

    def _on_failed(self, reply: Failed, now: float) -> list[SessionEvent]:
        assert self.ts is not None
        if reply.code == 1:
            # The history is partly lost; the reply names the ts to go on
            # from, and the key stays valid.
            if reply.ts is None:
                return self._retry("failed: 1 reply has no ts", now)
            lost = EventsLost(failed=1, from_ts=self.ts, to_ts=reply.ts, pts=self.pts)
            self.ts = reply.ts
            self._failures = 0
            return [lost]
        if reply.code == 2:
            # Only the key expired: no event is lost, so the ts is kept.
            return self._refresh(keep_ts=True, reason="key expired (failed: 2)", now=now)
        if reply.code == 3:
            # The server lost the user's information: a new key and ts are
            # needed, and the events in between are gone.
            self._lost_from_ts = self.ts
            return self._refresh(
                keep_ts=False, reason="user information lost (failed: 3)", now=now
            )
        if reply.code == 4:
            raise VersionError(self.version, reply.min_version, reply.max_version)
        # An undocumented code: start a new session as for failed: 3, with a
        # backoff in case the code repeats.
        self._lost_from_ts, self._lost_code = self.ts, reply.code
        self.state = SessionState.NEED_SERVER
        self._key = None
        self._keep_ts = False
        return self._retry(f"unknown failed: {reply.code}", now)

    def _refresh(self, *, keep_ts: bool, reason: str, now: float) -> list[SessionEvent]:
        self.state = SessionState.NEED_SERVER
        self._key = None
        self._keep_ts = keep_ts
        self._failures += 1
        if self._failures == 1:
            return []
        # The fresh key failed again before a single poll succeeded (for
        # example, it was issued to another egress IP): wait before asking
        # for yet another key instead of spinning on getLongPollServer.
        return self._retry(reason, now)

    def _retry(self, reason: str, now: float, *, floor: float = 0.0) -> list[SessionEvent]:
        self._retries += 1
        if self.state is SessionState.POLLING and self._retries >= FAILURES_BEFORE_REFRESH:
            self.state = SessionState.NEED_SERVER
            self._keep_ts = True
        # Within one run of failures a delay never shrinks, even after a
        # long pause that a rate-limit error (29) imposed.
        delay = max(floor, self._last_delay, self._backoff.delay(self._retries, seed=self._seed))
        self._last_delay = delay
        self._not_before = now + delay
        self._not_before_reason = reason
        return [RetryScheduled(delay=delay, reason=reason, attempt=self._retries)]

    def _stop(self, error: Exception) -> None:
        self.state = SessionState.STOPPED
        self._stop_error = error

    def _check_usable(self) -> None:
        if self.state is SessionState.STOPPED:
            raise LocalProtocolError(
                f"the session stopped after {self._stop_error!r}; create a new one"
            )


def _read_api_reply(status: int, body: bytes, method: str) -> Any:
    """Return the ``response`` value of a VK API reply, or raise its error."""
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


def _read_server_object(result: Any) -> tuple[str, str, int, int | None]:
    # The errors carry no body: it holds the key.
    if type(result) is not dict:
        raise RemoteProtocolError("messages.getLongPollServer response must be an object")
    key, server = result.get("key"), result.get("server")
    if type(key) is not str or not key:
        raise RemoteProtocolError("messages.getLongPollServer response has no 'key' string")
    if type(server) is not str or not server:
        raise RemoteProtocolError("messages.getLongPollServer response has no 'server' string")
    ts = read_counter(result, "ts", b"")
    if ts is None:
        raise RemoteProtocolError("messages.getLongPollServer response has no integer 'ts'")
    # VK has been seen to omit pts even with need_pts=1; a missing or
    # unreadable pts leaves the session without one rather than failing.
    try:
        pts = read_counter(result, "pts", b"")
    except RemoteProtocolError:
        pts = None
    return key, server, ts, pts
