"""The long poll session as a sans-IO state machine.

The session hands out the next `Request` (or a `Backoff` to wait out),
and takes back what came of it: a response's status and body bytes, or a
transport failure. It never performs I/O and never reads a clock: the
caller passes `now` in whatever time base it uses (trio's virtual clock,
`time.monotonic()`, ...).

States and transitions (the `_on_*` handlers make every one of them):

    NEED_SERVER --getLongPollServer ok--> POLLING, or RECOVERING after a loss
    POLLING --updates--> POLLING           (ts := reply ts)
    POLLING --failed 1--> RECOVERING       (ts := reply ts; events lost)
    POLLING --failed 2--> NEED_SERVER      (new key, ts kept)
    POLLING --failed 3--> NEED_SERVER      (new key and ts; events lost)
    RECOVERING --history page, more--> RECOVERING
    RECOVERING --last history page--> POLLING (ts from its credentials)
    any --failed 4 or fatal API error--> STOPPED (the error is raised)

Lost events are fetched with messages.getLongPollHistory from the `pts`
saved before the loss. Without a `pts`, or when the server no longer
has that history (error 907), the session reports the `ts` range as
`EventsLost` instead.

Transport failures and unreadable bodies keep the state and the `ts`
and schedule a retry of the same request after a backoff.
"""

import dataclasses
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from ._api import HistoryPage, ServerInfo, read_api_reply, read_history_page, read_server_info
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
#: The shortest wait before asking for another key when the last one was
#: rejected before any poll with it succeeded.
FRESH_KEY_RETRY_DELAY = 1.0

#: getLongPollHistory errors that mean the history asked for is gone:
#: pts too old (907), pts too new (908), drop the device cache (990).
HISTORY_GONE_ERRORS = frozenset({907, 908, 990})
#: Messages asked for per history page; the method's minimum is 200.
HISTORY_MSGS_LIMIT = 200

SERVER_METHOD = "messages.getLongPollServer"
HISTORY_METHOD = "messages.getLongPollHistory"


class SessionState(enum.Enum):
    """The session's position in the protocol."""

    #: No usable key: the next request is messages.getLongPollServer.
    NEED_SERVER = "need_server"
    #: The next request is an a_check poll.
    POLLING = "polling"
    #: Events were lost: the next request is messages.getLongPollHistory.
    RECOVERING = "recovering"
    #: A fatal error was raised; every later call raises too.
    STOPPED = "stopped"


class RequestKind(enum.StrEnum):
    """The purpose of a request."""

    API = "api"
    POLL = "poll"
    HISTORY = "history"


#: Parameter names whose values are secrets; never log or record them.
SECRET_PARAMS = frozenset({"access_token", "key"})

#: Codes of the events VK keeps for messages.getLongPollHistory. Each one
#: advances `pts` by one, and typing, presence, counter and call events do not.
#: NOTE: VK documents pts only as the counter of what it keeps permanently,
#: so this list is inferred from which events history returns.
PTS_CODES = frozenset({1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 18, 19, 20, 21, 51, 52})


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
    """A resume point: what a consumer saves to continue without loss or duplicates.

    A session started with ``Session(..., resume=cp)`` continues right
    after the last update handled. `skip` counts updates already handled
    from the batch that starts at `ts`: because `ts` is an event counter,
    the first `skip` events after it are the same ones however the server
    batches them on the next poll.

    While lost events are being fetched from history, `loss_from_ts` is
    the ts the loss began at and `loss_failed` the code that reported it.
    `ts` is then where polling goes on after the recovery, `pts` the
    history position, and `skip` counts the recovered updates handled
    after it: history from one pts returns the same events in the same
    order, whatever the page size.
    """

    ts: int
    pts: int | None = None
    skip: int = 0
    loss_from_ts: int | None = None
    loss_failed: int | None = None

    def advanced(self, handled: Sequence[Update]) -> "Checkpoint":
        """Return the resume point after `handled`, the next updates of the batch from here.

        `skip` grows by their number. Outside a recovery `pts` grows by the
        number of them that VK keeps (`PTS_CODES`), so that the point stays
        exact when the resumed poll's ts turns out lost and history is
        fetched from `pts` instead.
        """
        skip = self.skip + len(handled)
        if self.pts is None or self.loss_from_ts is not None:
            return dataclasses.replace(self, skip=skip)
        kept = sum(1 for update in handled if update.code in PTS_CODES)
        return dataclasses.replace(self, skip=skip, pts=self.pts + kept)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdatesReceived:
    """A poll succeeded; `updates` are in server order (possibly none)."""

    updates: tuple[Update, ...]
    ts: int
    pts: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsLost:
    """Events between `from_ts` and `to_ts` are lost and could not be recovered.

    `failed` is the code that reported the loss (1, 3 or an undocumented
    one); `reason` states why recovery fell short. With `persistent_recovered`
    True, messages.getLongPollHistory gave back every event VK keeps, so
    only the kinds it does not keep (typing, presence, counters) are gone;
    otherwise (no `pts` was known, or the history was gone) any event in
    the range may be.
    """

    failed: int
    from_ts: int
    to_ts: int
    pts: int | None
    reason: str
    persistent_recovered: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRecovered:
    """Events lost by the long poll server, fetched with messages.getLongPollHistory.

    `updates` are in the reduced form the method returns (message events
    carry only id, flags and peer), each with ``recovered=True``;
    `messages` contains the full message objects for them. They precede
    every update polled after them.
    """

    updates: tuple[Update, ...]
    messages: tuple[Mapping[str, Any], ...]
    from_pts: int
    new_pts: int


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


SessionEvent = UpdatesReceived | HistoryRecovered | EventsLost | ServerObtained | RetryScheduled


@dataclass(slots=True, kw_only=True)
class _Gap:
    """Events lost after `from_ts`, while recovery is under way."""

    failed: int
    from_ts: int
    #: The pts saved before the loss: history is fetched from here.
    pts: int | None
    to_ts: int | None = None
    #: Why history cannot fill the gap, once that is known.
    unrecoverable: str | None = None
    #: Whether history may have delivered events of this gap already.
    progressed: bool = False


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
    `seed` makes the backoff jitter reproducible. `loads` decodes poll
    bodies and may be a faster decoder such as ``orjson.loads``; see
    `parse_poll_body` for what it must do.
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
        skip: int = 0,
        backoff: BackoffPolicy | None = None,
        seed: int = 0,
        loads: Callable[[bytes], Any] = json.loads,
        resume: Checkpoint | None = None,
    ) -> None:
        if resume is not None:
            if ts is not None or pts is not None or skip:
                raise LocalProtocolError(
                    "pass either resume= or ts=, pts= and skip=, not both, because resume "
                    "contains all three"
                )
            ts, pts, skip = resume.ts, resume.pts, resume.skip
        if skip and ts is None:
            raise LocalProtocolError(f"skip={skip} needs the ts it counts from; pass ts too")
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
        self._loads = loads

        self.state = SessionState.NEED_SERVER
        self.server: str | None = None
        self._key: str | None = None
        self.ts = ts
        self.pts = pts
        # A resume point's ts must survive the first getLongPollServer.
        self._keep_ts = ts is not None
        self._skip = skip
        self._gap: _Gap | None = None
        if resume is not None and resume.loss_from_ts is not None:
            if pts is None:
                raise LocalProtocolError(
                    f"{resume!r} recovers a loss but has no pts; history needs the pts"
                )
            # History may have delivered part of this loss before the
            # restart, hence progressed.
            self._gap = _Gap(
                failed=resume.loss_failed or 1,
                from_ts=resume.loss_from_ts,
                pts=pts,
                to_ts=ts,
                progressed=True,
            )
        self._in_flight: Request | None = None
        self._not_before: float | None = None
        self._not_before_reason = ""
        # Keys rejected in a row before any poll with them succeeded.
        self._failures = 0
        # Whether a poll with the current key has succeeded.
        self._key_proven = False
        # Failed polls since the last success or the last new key.
        self._poll_failures = 0
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
        """Whether the session has a key (the key itself is never exposed)."""
        return self._key is not None

    def checkpoint(self) -> Checkpoint:
        """Return the resume point after everything delivered so far."""
        if self.ts is None:
            raise LocalProtocolError("no checkpoint yet: the session has not received a ts")
        gap = self._gap
        if gap is not None and gap.to_ts is not None and gap.pts is not None:
            # Mid-recovery: a restart goes on with history from the current
            # pts. Polling from to_ts instead would skip the rest of the
            # history and repeat any delivered event produced after to_ts.
            return Checkpoint(
                ts=gap.to_ts,
                pts=self.pts,
                skip=self._skip,
                loss_from_ts=gap.from_ts,
                loss_failed=gap.failed,
            )
        return Checkpoint(ts=self.ts, pts=self.pts, skip=self._skip)

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

        if self.state is SessionState.NEED_SERVER:
            request = self._server_request()
        elif self.state is SessionState.RECOVERING:
            request = self._history_request()
        else:
            request = self._poll_request()
        self._in_flight = request
        return request

    def _api_request(self, kind: RequestKind, method: str, params: dict[str, str]) -> Request:
        # A POSTed form keeps the token out of URLs, which proxies and
        # servers tend to log.
        params = {"access_token": self._token, "v": self.api_version, **params}
        if self.group_id is not None:
            params["group_id"] = str(self.group_id)
        return Request(
            kind=kind,
            method="POST",
            url=f"{self.api_url}/{method}",
            params=params,
            body=urlencode(params).encode("ascii"),
            headers=(("Content-Type", "application/x-www-form-urlencoded"),),
            timeout=API_TIMEOUT,
            api_method=method,
        )

    def _server_request(self) -> Request:
        params = {"need_pts": "1", "lp_version": str(self.version)}
        return self._api_request(RequestKind.API, SERVER_METHOD, params)

    def _history_request(self) -> Request:
        gap = self._gap
        assert gap is not None
        assert self.pts is not None
        params = {
            "ts": str(gap.from_ts),
            "pts": str(self.pts),
            "lp_version": str(self.version),
            "msgs_limit": str(HISTORY_MSGS_LIMIT),
            # The credentials come with a ts that matches the history's
            # end, so polling resumes exactly after the recovered events.
            "credentials": "1",
        }
        return self._api_request(RequestKind.HISTORY, HISTORY_METHOD, params)

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
            if request.kind is RequestKind.HISTORY:
                return self._on_history_reply(status, body, now)
            return self._on_poll_reply(status, body, now)
        except (VersionError, ApiError) as error:
            self._stop(error)
            raise

    def receive_failure(self, request: Request, reason: str, now: float) -> list[SessionEvent]:
        """Take a transport failure of `request` (timeout, reset, TLS, ...)."""
        self._take_in_flight(request)
        return self._retry(reason, now)

    def abandon(self, request: Request) -> None:
        """Forget `request`, cancelled before its outcome was known.

        Nothing changes: the next `next_request` hands out the same request
        again, which is safe because every request of a session may be
        repeated (a poll only reads from its `ts`).
        """
        self._take_in_flight(request)

    def _take_in_flight(self, request: Request) -> None:
        self._check_usable()
        if request is not self._in_flight:
            raise LocalProtocolError(
                f"{request!r} is not the request in flight; pass the one next_request() returned"
            )
        self._in_flight = None

    def _read_api(self, status: int, body: bytes, method: str, now: float) -> Any:
        """Return the API result, or the list of events of a retry scheduled instead.

        Raises `ApiError` for codes that retrying cannot fix.
        """
        try:
            return read_api_reply(status, body, method)
        except RemoteProtocolError as error:
            return self._retry(str(error), now)
        except ApiError as error:
            if error.code not in TRANSIENT_API_ERRORS:
                raise
            floor = SLOW_RETRY_DELAY if error.code in SLOW_API_ERRORS else 0.0
            return self._retry(str(error), now, floor=floor)

    def _on_server_reply(self, status: int, body: bytes, now: float) -> list[SessionEvent]:
        result = self._read_api(status, body, SERVER_METHOD, now)
        if isinstance(result, _Retry):
            return result.events
        try:
            info = read_server_info(result, SERVER_METHOD)
        except RemoteProtocolError as error:
            return self._retry(str(error), now)

        self._key, self.server = info.key, self._secured(info.server)
        self._key_proven = False
        self._poll_failures = 0
        kept_ts = self._keep_ts and self.ts is not None
        self._keep_ts = True
        if kept_ts:
            # The key expired but nothing was lost: keep ts and pts. The
            # reply's pts belongs to the reply's newer ts, so it is not taken
            # even when no pts is known: history from it would skip the
            # persistent events in between. The next poll in mode 32 gives
            # the pts that goes with the kept ts. A session resumed in the
            # middle of a recovery goes on with it.
            self.state = SessionState.POLLING if self._gap is None else SessionState.RECOVERING
            return [self._obtained(info, kept_ts=True)]

        self.ts = info.ts
        if self._gap is None:
            self.pts = info.pts if info.pts is not None else self.pts
            self.state = SessionState.POLLING
            return [self._obtained(info, kept_ts=False)]
        self._gap.to_ts = info.ts
        recovery = self._start_recovery(new_pts=info.pts)
        return [self._obtained(info, kept_ts=False), *recovery]

    def _secured(self, server: str) -> str:
        """Return `server` with an ``http://`` scheme made ``https://`` for an HTTPS API.

        A session whose API calls use TLS must not send its key in clear to
        port 80 because a server value came with ``http://``. Only a session
        whose `api_url` is plain HTTP itself (a local test server) polls over
        plain HTTP.
        """
        if server[:7].lower() == "http://" and self.api_url.startswith("https://"):
            return "https://" + server[7:]
        return server

    def _obtained(self, info: ServerInfo, *, kept_ts: bool) -> ServerObtained:
        assert self.ts is not None
        return ServerObtained(
            server=self.server or info.server, ts=self.ts, pts=self.pts, kept_ts=kept_ts
        )

    def _on_poll_reply(self, status: int, body: bytes, now: float) -> list[SessionEvent]:
        if status != 200:
            return self._retry(f"poll returned HTTP {status}: {_preview(body)}", now)
        try:
            reply = parse_poll_body(body, loads=self._loads)
        except RemoteProtocolError as error:
            return self._retry(str(error), now)

        if isinstance(reply, Failed):
            return self._on_failed(reply, now)
        return self._on_updates(reply)

    def _on_updates(self, reply: PollResult) -> list[SessionEvent]:
        self._succeeded()
        self._key_proven = True
        if reply.pts is not None:
            self.pts = reply.pts
        elif reply.ts != self.ts:
            # Without mode 32 the poll moves ts but not pts, and a pts that
            # lags its ts would make history return delivered events again.
            self.pts = None
        self.ts = reply.ts
        raws = self._unhandled(reply.updates)
        updates = tuple(parse_update(raw, mode=self.mode, version=self.version) for raw in raws)
        return [UpdatesReceived(updates=updates, ts=self.ts, pts=self.pts)]

    def _unhandled(self, raws: Sequence[Any]) -> Sequence[Any]:
        """Drop the updates a resumed consumer handled before its restart."""
        if not self._skip:
            return raws
        skip, self._skip = self._skip, max(0, self._skip - len(raws))
        return raws[skip:]

    def _succeeded(self) -> None:
        self._failures = 0
        self._poll_failures = 0
        self._retries = 0
        self._last_delay = 0.0

    def _on_failed(self, reply: Failed, now: float) -> list[SessionEvent]:
        assert self.ts is not None
        if reply.code == 1:
            # The history is partly lost; the reply names the ts to go on
            # from, and the key stays valid.
            if reply.ts is None:
                return self._retry("failed: 1 reply has no ts", now)
            self._gap = _Gap(failed=1, from_ts=self.ts, pts=self.pts, to_ts=reply.ts)
            self.ts = reply.ts
            self._skip = 0
            self._failures = 0
            return self._start_recovery(new_pts=None)
        if reply.code == 2:
            # Only the key expired: no event is lost, so the ts is kept.
            return self._refresh(keep_ts=True, reason="key expired (failed: 2)", now=now)
        if reply.code == 3:
            # The server lost the user's information: a new key and ts are
            # needed, and the events in between are gone.
            self._gap = _Gap(failed=3, from_ts=self.ts, pts=self.pts)
            self._skip = 0
            return self._refresh(
                keep_ts=False, reason="user information lost (failed: 3)", now=now
            )
        if reply.code == 4:
            raise VersionError(self.version, reply.min_version, reply.max_version)
        # An undocumented code: start a new session as for failed: 3, with a
        # backoff in case the code repeats.
        self._gap = _Gap(failed=reply.code, from_ts=self.ts, pts=self.pts)
        self._skip = 0
        self.state = SessionState.NEED_SERVER
        self._key = None
        self._keep_ts = False
        return self._retry(f"unknown failed: {reply.code}", now)

    def _start_recovery(self, *, new_pts: int | None) -> list[SessionEvent]:
        """Fetch the lost events from the saved pts, or report them lost without one."""
        gap = self._gap
        assert gap is not None
        if gap.pts is not None and gap.unrecoverable is None:
            self.pts = gap.pts
            self.state = SessionState.RECOVERING
            return []
        self.pts = new_pts
        reason = gap.unrecoverable or "no pts was known (mode without PTS, or need_pts ignored)"
        return [self._give_up(gap, reason)]

    def _give_up(self, gap: _Gap, reason: str) -> EventsLost:
        assert gap.to_ts is not None
        self._gap = None
        self.state = SessionState.POLLING
        return EventsLost(
            failed=gap.failed, from_ts=gap.from_ts, to_ts=gap.to_ts, pts=gap.pts, reason=reason
        )

    def _on_history_reply(self, status: int, body: bytes, now: float) -> list[SessionEvent]:
        gap = self._gap
        assert gap is not None
        try:
            result = self._read_api(status, body, HISTORY_METHOD, now)
        except ApiError as error:
            if error.code not in HISTORY_GONE_ERRORS:
                raise
            if not gap.progressed:
                # Nothing recovered yet: the loss ends at the ts polling
                # goes on from, with the key it has. The next poll in mode
                # 32 gives the pts that goes with that ts.
                self.pts = None
                return [self._give_up(gap, f"history unavailable ({error})")]
            # Earlier pages delivered events up to a pts whose ts is
            # unknown. Polling from the gap's end would deliver some of
            # them again, so polling restarts at a fresh getLongPollServer's
            # ts and the loss reaches it.
            gap.unrecoverable = f"history unavailable after pts {self.pts} ({error})"
            self.state = SessionState.NEED_SERVER
            self._key = None
            self._keep_ts = False
            return []
        if isinstance(result, _Retry):
            return result.events
        try:
            page = read_history_page(result)
        except RemoteProtocolError as error:
            return self._retry(str(error), now)
        return self._take_history_page(page)

    def _take_history_page(self, page: HistoryPage) -> list[SessionEvent]:
        assert self.pts is not None
        gap = self._gap
        assert gap is not None
        raws = self._unhandled(page.history)
        updates = tuple(
            dataclasses.replace(
                parse_update(raw, mode=self.mode, version=self.version), recovered=True
            )
            for raw in raws
        )
        messages = page.messages
        if len(raws) < len(page.history):
            kept = {getattr(update, "message_id", None) for update in updates}
            messages = tuple(item for item in messages if item.get("id") in kept)
        recovered = HistoryRecovered(
            updates=updates, messages=messages, from_pts=self.pts, new_pts=page.new_pts
        )
        self.pts = page.new_pts
        self._succeeded()
        if page.more:
            gap.progressed = True
            return [recovered]

        if page.credentials is not None:
            self._key = page.credentials.key
            self._key_proven = False
            self.server = self._secured(page.credentials.server)
            self.ts = page.credentials.ts
        assert gap.to_ts is not None
        self._gap = None
        self.state = SessionState.POLLING
        # History keeps only persistent events: any typing, presence or
        # counter event the server dropped is gone for good.
        rest = EventsLost(
            failed=gap.failed,
            from_ts=gap.from_ts,
            # Polling resumes from the credentials' ts: everything before it
            # that history does not keep is gone.
            to_ts=max(gap.to_ts, self.ts or gap.to_ts),
            pts=gap.pts,
            reason="history returns only the events VK keeps; typing, presence and counter "
            "events in this range are lost",
            persistent_recovered=True,
        )
        return [recovered, rest]

    def _refresh(self, *, keep_ts: bool, reason: str, now: float) -> list[SessionEvent]:
        proven = self._key_proven
        self.state = SessionState.NEED_SERVER
        self._key = None
        self._keep_ts = keep_ts
        if proven:
            # A key that served polls has run its course: ask for the next at once.
            self._failures = 0
            return []
        self._failures += 1
        if not keep_ts:
            # failed 3 is about the server, not the key: the first new key
            # comes at once, and only a repeat waits.
            return [] if self._failures == 1 else self._retry(reason, now)
        # The key was rejected before a single poll with it succeeded.
        # VK binds a key to the address that requested it, so the likely
        # cause is an API call and a poll leaving through different egress
        # addresses, and asking again at full speed would only burn the
        # method's rate limit.
        reason = (
            f"{reason} with a fresh key, {self._failures} time(s) in a row; VK binds a key to "
            "the IP address that requested it, so send API calls and polls through the same "
            "proxy or address"
        )
        return self._retry(reason, now, floor=FRESH_KEY_RETRY_DELAY)

    def _retry(self, reason: str, now: float, *, floor: float = 0.0) -> "_Retry":
        self._retries += 1
        if self.state is SessionState.POLLING:
            self._poll_failures += 1
            if self._poll_failures >= FAILURES_BEFORE_REFRESH:
                self.state = SessionState.NEED_SERVER
                self._keep_ts = True
        # Within one run of failures a delay never shrinks, even after a
        # long pause that a rate-limit error (29) imposed.
        delay = max(floor, self._last_delay, self._backoff.delay(self._retries, seed=self._seed))
        self._last_delay = delay
        self._not_before = now + delay
        self._not_before_reason = reason
        return _Retry([RetryScheduled(delay=delay, reason=reason, attempt=self._retries)])

    def _stop(self, error: Exception) -> None:
        self.state = SessionState.STOPPED
        self._stop_error = error

    def _check_usable(self) -> None:
        if self.state is SessionState.STOPPED:
            raise LocalProtocolError(
                f"the session stopped after {self._stop_error!r}; create a new one"
            )


def _preview(body: bytes) -> str:
    """Return the start of a body for a message: at most 100 bytes, whitespace collapsed."""
    text = " ".join(body[:100].decode("utf-8", "replace").split())
    return repr(text + ("..." if len(body) > 100 else ""))


class _Retry(list[SessionEvent]):
    """The events of a scheduled retry, distinguished from an API result by its type."""

    @property
    def events(self) -> list[SessionEvent]:
        return self
