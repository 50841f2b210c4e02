"""The replay engine: a recorded session turned into a timeline a fake server serves.

No I/O and no clock: the server passes `now` (seconds on its own clock)
into every call, which is what lets trio's MockClock replay an hour of
held polls in milliseconds.

A timeline holds each recorded update with the time it became available
(the moment its poll reply completed, relative to the first
messages.getLongPollServer call) and each recorded failure reply with its
time. Updates get consecutive `ts` numbers from the recorded starting
`ts`, because a long poll server's `ts` is an event counter.

The engine also decides which injected fault (see `_faults`) a request
gets, and builds the replies of the faults that replace a reply. Each poll
reply is written for the consumer's `mode` (see `_wire`) and `version`
(see `_versions`), and `_api`
handles the API methods other than the long poll ones.
"""

import bisect
import dataclasses
import datetime
import email.utils
import hashlib
import http
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from lpcore import PTS_CODES, Mode

from ._api import Account, ApiFailure, RecordedApi, RecordedCall, default_result, recorded_calls
from ._faults import Endpoint, Fault, FaultInjector, FaultKind, FiredFault
from ._fixture import Exchange, ExchangeKind, Fixture
from ._history import code_of, history_form, message_object
from ._versions import (
    RECORDED_VERSION,
    VersionFacts,
    VersionHistory,
    convert_update,
    profile_of,
)
from ._wire import MESSAGE_LAYOUT_CODES, OMITTED, gate_update

#: The server keeps this many recent events for ts-based polling; an older
#: (or a future) ts gets ``{"failed": 1, "ts": newest}``.
EVENT_WINDOW = 256
#: A poll is held for at most this long, whatever its `wait`.
MAX_HOLD = 90.0
DEFAULT_KEY_TTL = 3600.0
DEFAULT_MAX_VERSION = 19
#: Events per getLongPollHistory page when `events_limit` is not given (VK's default).
HISTORY_EVENTS_LIMIT = 1000
#: The Unix time of the recorded start when the fixture gives no clue to it (a fake value).
DEFAULT_CLOCK_ORIGIN = 1_700_000_000

_NIM = re.compile(r"/nim(\d+)")
_JSON_TYPE = "application/json; charset=utf-8"
_HTML_TYPE = "text/html; charset=utf-8"
_API_PREFIX = "/method/"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedUpdate:
    """A recorded update, when it became available (seconds from the start), and the
    `mode` of the poll that received it.
    """

    due: float
    raw: list[Any]
    mode: int = int(Mode.DEFAULT)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedReply:
    """A recorded poll reply that is not a batch of updates: a `failed` object,
    an HTML error page, an empty body. It is served once, to the first poll
    after `due`.
    """

    due: float
    status: int
    body: bytes
    failed: int | None
    content_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """Everything a fake server needs from a recorded session."""

    initial_ts: int
    initial_pts: int | None
    user_id: int
    updates: tuple[TimedUpdate, ...]
    replies: tuple[TimedReply, ...]
    #: The community whose messages the session received (the `group_id` of its
    #: messages.getLongPollServer call), or None for a user's own messages.
    group_id: int | None = None
    #: Recorded calls to API methods other than the long poll ones.
    api_calls: tuple[RecordedCall, ...] = ()
    #: The Unix time at the recorded start, which the server's virtual clock counts from.
    clock_origin: int = DEFAULT_CLOCK_ORIGIN
    #: The long poll `version` the session was recorded with.
    lp_version: int = RECORDED_VERSION

    @classmethod
    def from_fixture(cls, fixture: Fixture) -> "Timeline":
        """Build the timeline of a recorded session.

        Raises ValueError when the fixture never obtained a long poll server.
        """
        start: float | None = None
        initial_ts: int | None = None
        initial_pts: int | None = None
        group_id: int | None = None
        server = ""
        dated_origin: int | None = None
        updates: list[TimedUpdate] = []
        replies: list[TimedReply] = []

        for exchange in fixture.exchanges:
            if exchange.kind is ExchangeKind.API and exchange.url.endswith(
                "/messages.getLongPollServer"
            ):
                result = _response_object(exchange.json_body())
                if result is None:
                    continue
                if start is None:
                    start = exchange.t
                    initial_ts = _as_int(result.get("ts"))
                    initial_pts = _as_int(result.get("pts"))
                    server = str(result.get("server", ""))
                    group_id = _as_int(exchange.params.get("group_id", "")) or None
                    dated_origin = _date_of(exchange)
            elif (
                exchange.kind is ExchangeKind.POLL
                and start is not None
                and exchange.status is not None
            ):
                recorded = TimedReply(
                    due=exchange.t + exchange.elapsed - start,
                    status=exchange.status,
                    body=exchange.body or b"",
                    failed=None,
                    content_type=dict(exchange.headers).get("content-type", _JSON_TYPE),
                )
                mode = _as_int(exchange.params.get("mode", ""))
                _add_poll_reply(
                    recorded,
                    exchange.json_body(),
                    fixture.header.mode if mode is None else mode,
                    updates,
                    replies,
                )

        if start is None or initial_ts is None:
            raise ValueError(
                "the fixture has no successful messages.getLongPollServer reply with a ts, "
                "so there is no session to replay"
            )
        return cls(
            initial_ts=initial_ts,
            initial_pts=initial_pts,
            user_id=fixture.header.user_id or _user_id_from_server(server),
            updates=tuple(updates),
            replies=tuple(replies),
            group_id=group_id,
            api_calls=recorded_calls(fixture),
            clock_origin=_clock_origin(dated_origin, updates),
            lp_version=fixture.header.lp_version,
        )


def _add_poll_reply(
    recorded: TimedReply,
    reply: Any,
    mode: int,
    updates: list[TimedUpdate],
    replies: list[TimedReply],
) -> None:
    """File a recorded poll reply as updates, or as a reply to serve verbatim once."""
    if recorded.status == 200 and isinstance(reply, dict) and "failed" not in reply:
        batch = reply.get("updates")
        if isinstance(batch, list) and "ts" in reply:
            updates.extend(TimedUpdate(due=recorded.due, raw=raw, mode=mode) for raw in batch)
            return
    failed = reply.get("failed") if isinstance(reply, dict) else None
    replies.append(dataclasses.replace(recorded, failed=failed if type(failed) is int else None))


def _response_object(reply: Any) -> dict[str, Any] | None:
    if isinstance(reply, dict) and isinstance(reply.get("response"), dict):
        return reply["response"]  # type: ignore[no-any-return]
    return None


def _as_int(value: Any) -> int | None:
    if type(value) is int:
        return value
    # isdigit() alone also accepts digits such as "²" that int() rejects.
    if type(value) is str and value.isascii() and value.isdigit():
        return int(value)
    return None


def _user_id_from_server(server: str) -> int:
    match = _NIM.search(server)
    return int(match.group(1)) if match else 1


def _date_of(exchange: Exchange) -> int | None:
    """Return the Unix time at which `exchange` was sent, from its reply's Date header."""
    date = dict(exchange.headers).get("date")
    if date is None:
        return None
    try:
        sent = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    if sent.tzinfo is None:
        # RFC 9110 dates are in GMT; parsedate_to_datetime leaves "-0000" ones naive.
        sent = sent.replace(tzinfo=datetime.UTC)
    return round(sent.timestamp() - exchange.elapsed)


def _clock_origin(dated_origin: int | None, updates: list[TimedUpdate]) -> int:
    """Return the Unix time at the recorded start.

    The recorded Date header gives it. Without one, the first message event's
    timestamp minus its due time is close to it (VK stamps a message when it
    is sent, which is before the poll reply that carries it completes).
    """
    if dated_origin is not None:
        return dated_origin
    for update in updates:
        raw = update.raw
        if code_of(raw) in MESSAGE_LAYOUT_CODES and len(raw) > 4 and type(raw[4]) is int:
            return raw[4] - math.floor(update.due)
    return DEFAULT_CLOCK_ORIGIN


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What to send back: status, body, and its Content-Type."""

    status: int
    body: bytes
    content_type: str = _JSON_TYPE


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """Nothing to send yet: ask again at `until`."""

    until: float


_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json(value: Any) -> bytes:
    # One shared encoder: json.dumps builds a new one for every call with options.
    return _JSON_ENCODER.encode(value).encode()


def _api_error(code: int, message: str, method: str, **extra: str) -> Reply:
    params = [{"key": "method", "value": method}, {"key": "oauth", "value": "1"}]
    error = {"error_code": code, "error_msg": message, "request_params": params, **extra}
    # VK escapes every slash in its JSON as "\/", which a client's JSON parser must undo.
    body = _json({"error": error}).replace(b"/", b"\\/")
    return Reply(status=200, body=body)


def _html_error_page(status: int) -> str:
    """Return an nginx-style error page, as a proxy in front of VK sends."""
    try:
        title = f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        title = f"{status} Error"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


@dataclass(slots=True)
class _Key:
    issued: float
    #: The address the key was issued to, or "" for a key any address may use.
    host: str = ""
    valid: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class _DueIndex:
    """Prefix tables over the engine's updates, for one start time, speed and update count."""

    start: float
    speed: float
    size: int
    #: ready[i] is the server time by which updates 0 to i have all become available.
    ready: list[float]
    #: persistent[i] is how many of the first i updates have a pts code.
    persistent: list[int]


@dataclass(slots=True)
class ReplayEngine:
    """A long poll server that serves one timeline, deciding every reply.

    `server_base` is what messages.getLongPollServer returns before the
    path: ``127.0.0.1:8080`` for HTTPS (VK's own form, no scheme) or
    ``http://127.0.0.1:8080`` for a plain HTTP fake. `speed` divides every
    recorded time: 2.0 replays twice as fast.

    `push` adds updates after the recorded ones that are due. Poll replies
    are written for the `mode` of each poll (see `_wire.gate_update`) and,
    from a version-3 recording, for its `version` (see `_versions`).
    """

    timeline: Timeline
    server_base: str
    speed: float = 1.0
    key_ttl: float = DEFAULT_KEY_TTL
    max_version: int = DEFAULT_MAX_VERSION
    seed: int = 0
    faults: FaultInjector = field(default_factory=FaultInjector)
    #: How many of the newest events a poll's ts may lag behind (VK keeps about 256).
    event_window: int = EVENT_WINDOW
    #: Whether a key works only from the address it was issued to, as VK's do.
    bind_keys: bool = True
    _start: float | None = None
    _keys: dict[str, _Key] = field(default_factory=dict)
    _served_replies: int = 0
    #: The recorded updates and the pushed ones, ordered by due time.
    _updates: list[TimedUpdate] = field(init=False)
    _recorded_api: RecordedApi = field(init=False)
    #: What newer versions send and the recording lacks, for each update served so far.
    _version_history: VersionHistory = field(default_factory=VersionHistory)
    _due_index: _DueIndex | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._updates = list(self.timeline.updates)
        self._recorded_api = RecordedApi(self.timeline.api_calls)

    @property
    def server_path(self) -> str:
        """The path long polls are sent to."""
        return f"/nim{self.timeline.user_id}"

    def _at(self, due: float) -> float:
        """Return the server time at which something recorded at `due` becomes available.

        Every due check compares this same expression with `now`, so a
        poll woken at exactly `_at(due)` sees the item as due (comparing
        `(now - start) * speed` with `due` instead can miss by one ulp
        and leave the poll waking up again and again at the same instant).
        """
        assert self._start is not None
        return self._start + due / self.speed

    def _available(self, now: float) -> int:
        """Return how many updates are available at `now`.

        Counts the leading updates whose `_at(due)` is not after `now`, so an update
        whose due time has come still waits for every update before it.
        """
        if self._start is None:
            return 0
        return bisect.bisect_right(self._index().ready, now)

    def _index(self) -> _DueIndex:
        """Return the prefix tables of the current updates, rebuilt after any change."""
        assert self._start is not None
        index = self._due_index
        if (
            index is not None
            and index.start == self._start
            and index.speed == self.speed
            and index.size == len(self._updates)
        ):
            return index
        ready: list[float] = []
        persistent = [0]
        latest = -math.inf
        for update in self._updates:
            moment = self._at(update.due)
            # Written as a comparison rather than max(), so that a NaN due time counts as
            # available, as the comparison in `_available` always treated it.
            if moment > latest:
                latest = moment
            ready.append(latest)
            persistent.append(persistent[-1] + (code_of(update.raw) in PTS_CODES))
        index = _DueIndex(
            start=self._start,
            speed=self.speed,
            size=len(self._updates),
            ready=ready,
            persistent=persistent,
        )
        self._due_index = index
        return index

    def newest_ts(self, now: float) -> int:
        """The ts of the newest available event (the server's event counter)."""
        return self.timeline.initial_ts + self._available(now)

    def _pts(self, now: float) -> int | None:
        if self.timeline.initial_pts is None:
            return None
        if self._start is None:
            return self.timeline.initial_pts
        return self.timeline.initial_pts + self._index().persistent[self._available(now)]

    # -- injected faults --------------------------------------------------------

    def endpoint_of(self, path: str, params: dict[str, str]) -> Endpoint | None:
        """Return the kind of request a path and its parameters make, if faults can target it."""
        if path == self.server_path and params.get("act") == "a_check":
            return Endpoint.POLL
        for endpoint in (Endpoint.SERVER, Endpoint.HISTORY):
            if path == f"{_API_PREFIX}{endpoint.api_method}":
                return endpoint
        return None

    def take_fault(self, endpoint: Endpoint, now: float) -> FiredFault | None:
        """Count a request to `endpoint` arriving at `now`; return the fault it gets, if any."""
        return self.faults.take(endpoint, now)

    def fault_reply(self, fault: Fault, endpoint: Endpoint, now: float) -> Reply:
        """Build the reply of a fault that replaces the real one (`Fault.replaces_reply`)."""
        if fault.kind is FaultKind.FAILED:
            return self._failed_reply(fault, now)
        if fault.kind is FaultKind.API_ERROR:
            return self._fault_api_error(fault, endpoint)
        if fault.kind is FaultKind.HTTP_ERROR:
            assert fault.status is not None
            page = fault.body if fault.body is not None else _html_error_page(fault.status)
            return Reply(status=fault.status, body=page.encode(), content_type=_HTML_TYPE)
        if fault.kind is FaultKind.EMPTY:
            return Reply(status=200, body=b"")
        raise ValueError(f"a {fault.kind} fault changes how the real reply is sent, not the reply")

    def _failed_reply(self, fault: Fault, now: float) -> Reply:
        code = fault.code
        body: dict[str, Any] = {"failed": code}
        if code == 1:
            body["ts"] = self.newest_ts(now)
        elif code == 2 and fault.error is not None:
            body["error"] = fault.error
        elif code == 4:
            body["min_version"] = fault.min_version if fault.min_version is not None else 0
            body["max_version"] = (
                fault.max_version if fault.max_version is not None else self.max_version
            )
        if code in (2, 3):
            # The server forgot the key (2) or the whole session (3): a client that
            # polls with the old key again gets failed 2.
            for key in self._keys.values():
                key.valid = False
        return Reply(status=200, body=_json(body))

    def _fault_api_error(self, fault: Fault, endpoint: Endpoint) -> Reply:
        assert fault.code is not None
        assert fault.message is not None
        method = endpoint.api_method or "messages.getLongPollServer"
        if fault.code != 14:
            return _api_error(fault.code, fault.message, method)
        assert fault.captcha_sid is not None
        image = fault.captcha_img or f"{self._base_url}/captcha.php?sid={fault.captcha_sid}&s=1"
        return _api_error(
            fault.code, fault.message, method, captcha_sid=fault.captcha_sid, captcha_img=image
        )

    @property
    def _base_url(self) -> str:
        """The fake server's own scheme, host and port: a bare host:port means HTTPS."""
        return self.server_base if "://" in self.server_base else f"https://{self.server_base}"

    # -- messages.getLongPollServer -------------------------------------------

    def call_api(
        self, method: str, params: dict[str, str], now: float, *, client_host: str = ""
    ) -> Reply:
        """Reply to a VK API method call from `client_host` ("" when unknown)."""
        if not params.get("access_token"):
            return _api_error(5, "User authorization failed: no access_token passed.", method)
        if not params.get("v"):
            return _api_error(8, "Invalid request: v (version) is required", method)
        if method == "messages.getLongPollServer":
            if self._start is None:
                self._start = now
            with_pts = params.get("need_pts") == "1"
            credentials = self._credentials(now, with_pts=with_pts, host=client_host)
            return Reply(status=200, body=_json({"response": credentials}))
        if method == "messages.getLongPollHistory" and self._start is not None:
            return self._history(params, now, client_host)
        recorded = self._recorded_api.answer(method, params)
        if recorded is not None:
            return Reply(
                status=recorded.status, body=recorded.body, content_type=recorded.content_type
            )
        account = Account(
            user_id=self.timeline.user_id,
            group_id=self.timeline.group_id,
            server_time=self.server_time(now),
        )
        result = default_result(method, params, account)
        if isinstance(result, ApiFailure):
            return _api_error(result.code, result.message, method)
        if result is not None:
            return Reply(status=200, body=_json({"response": result}))
        return _api_error(3, "Unknown method passed", method)

    def server_time(self, now: float) -> int:
        """Return the Unix time on the server's virtual clock, which runs at `speed`
        from the recorded start's time (`Timeline.clock_origin`).
        """
        if self._start is None:
            return self.timeline.clock_origin
        return self.timeline.clock_origin + math.floor((now - self._start) * self.speed)

    # -- updates added while serving --------------------------------------------

    def push(self, raw: list[Any], now: float, *, mode: int = int(Mode.DEFAULT)) -> int:
        """Add an update that becomes available at `now`, after every update due by then.

        `mode` is the mode the array is written for; polls with fewer bits get
        it gated like a recorded one. Returns the update's `ts`. Raises
        RuntimeError before the first messages.getLongPollServer call, because
        the `ts` that call returns would already count the update, so no
        consumer would ever receive it.
        """
        if self._start is None:
            raise RuntimeError(
                "no consumer has called messages.getLongPollServer yet, so a pushed update "
                "would never reach one; push after the consumer has connected"
            )
        due = (now - self._start) * self.speed
        # _at(due) may round to just after `now`; step down until the update is available.
        while self._at(due) > now:
            due = math.nextafter(due, -math.inf)
        self._updates.insert(self._available(now), TimedUpdate(due=due, raw=raw, mode=mode))
        self._due_index = None
        return self.newest_ts(now)

    def _credentials(self, now: float, *, with_pts: bool, host: str) -> dict[str, Any]:
        """Issue a new key to `host`, with the server, the newest ts and (if asked) pts."""
        key = hashlib.sha1(f"{self.seed}:{len(self._keys)}".encode()).hexdigest()
        self._keys[key] = _Key(issued=now, host=host if self.bind_keys else "")
        result: dict[str, Any] = {
            "key": key,
            "server": f"{self.server_base}{self.server_path}",
            "ts": self.newest_ts(now),
        }
        pts = self._pts(now)
        if with_pts and pts is not None:
            result["pts"] = pts
        return result

    # -- messages.getLongPollHistory ----------------------------------------------

    def _history(self, params: dict[str, str], now: float, client_host: str) -> Reply:
        """Serve the persistent events after `pts`, a page of `events_limit` at a time."""
        method = "messages.getLongPollHistory"
        current = self._pts(now)
        since = _as_int(params.get("pts", ""))
        if since is None:
            return _api_error(
                100, "One of the parameters specified was missing or invalid: pts", method
            )
        if (
            current is None
            or self.timeline.initial_pts is None
            or since < self.timeline.initial_pts
        ):
            return _api_error(907, "Value of ts or pts is too old", method)
        if since > current:
            return _api_error(908, "Value of ts or pts is too new", method)

        limit = max(_as_int(params.get("events_limit", "")) or HISTORY_EVENTS_LIMIT, 1)
        persistent = [
            u.raw for u in self._updates[: self._available(now)] if code_of(u.raw) in PTS_CODES
        ]
        skipped = since - self.timeline.initial_pts
        page = persistent[skipped : skipped + limit]
        new_pts = since + len(page)
        messages = [
            m for m in (message_object(raw, user_id=self.timeline.user_id) for raw in page) if m
        ]
        result: dict[str, Any] = {
            "history": [history_form(raw) for raw in page],
            "messages": {"count": len(messages), "items": messages},
            "profiles": [],
            "groups": [],
            "new_pts": new_pts,
            "from_pts": since,
            "more": int(new_pts < current),
        }
        if params.get("credentials") == "1" and new_pts == current:
            result["credentials"] = self._credentials(now, with_pts=True, host=client_host)
        return Reply(status=200, body=_json({"response": result}))

    # -- a_check ----------------------------------------------------------------

    def poll(
        self, params: dict[str, str], arrived: float, now: float, *, client_host: str = ""
    ) -> Reply | Hold:
        """Reply to (or keep holding) a poll that arrived at `arrived` from `client_host`."""
        version = _as_int(params.get("version", "0"))
        if version is None or version > self.max_version:
            return Reply(
                status=200,
                body=_json({"failed": 4, "min_version": 0, "max_version": self.max_version}),
            )
        key = self._keys.get(params.get("key", ""))
        if key is None or not key.valid or now - key.issued >= self.key_ttl:
            return Reply(status=200, body=_json({"failed": 2}))
        if key.host and client_host and key.host != client_host:
            # VK binds a key to the address that asked for it.
            return Reply(status=200, body=_json({"failed": 2}))
        ts = _as_int(params.get("ts", ""))
        newest = self.newest_ts(now)
        if ts is None or ts > newest or ts < newest - self.event_window:
            return Reply(status=200, body=_json({"failed": 1, "ts": newest}))

        recorded = self._due_reply(ts, now)
        if recorded is not None:
            return recorded
        if ts < newest:
            return self._updates_reply(ts, newest, params, now)

        wait = _as_int(params.get("wait", "")) or 0
        deadline = arrived + min(float(wait), MAX_HOLD)
        if now >= deadline:
            return self._updates_reply(ts, newest, params, now)
        return Hold(until=min(deadline, self._next_due(now)))

    def _updates_reply(self, ts: int, newest: int, params: dict[str, str], now: float) -> Reply:
        """Serve the updates after `ts`, written for the poll's mode.

        Updates that the mode leaves out still count in `ts`, so a reply may
        carry a new `ts` and fewer updates, or none.
        """
        first = max(0, ts - self.timeline.initial_ts)
        last = newest - self.timeline.initial_ts
        # VK's documentation does not say how it reads an invalid mode; it counts as 0 here.
        mode = _as_int(params.get("mode", "")) or 0
        body: dict[str, Any] = {"ts": newest}
        pts = self._pts(now)
        if pts is not None and mode & Mode.PTS:
            body["pts"] = pts
        version = _as_int(params.get("version", "0")) or 0
        if self.timeline.lp_version != RECORDED_VERSION or profile_of(version) == RECORDED_VERSION:
            # NOTE: a recording made with another version than 3 reaches every version as
            # recorded, because only conversions from version 3 are implemented.
            served = [
                gate_update(u.raw, recorded=u.mode, requested=mode)
                for u in self._updates[first:last]
            ]
        else:
            facts = self._version_facts(last)
            served = [
                convert_update(
                    u.raw,
                    facts[first + i],
                    version=version,
                    recorded_mode=u.mode,
                    requested_mode=mode,
                )
                for i, u in enumerate(self._updates[first:last])
            ]
        body["updates"] = [raw for raw in served if raw is not OMITTED]
        return Reply(status=200, body=_json(body))

    def _version_facts(self, count: int) -> list[VersionFacts]:
        """Return the synthesized version facts of the first `count` updates.

        Facts are computed once, in order, and kept. `push` inserts only after
        the available updates, so the updates whose facts exist never move.
        """
        history = self._version_history
        for update in self._updates[len(history.facts) : count]:
            available_at = self.timeline.clock_origin + math.floor(update.due)
            history.observe(update.raw, recorded_mode=update.mode, available_at=available_at)
        return history.facts

    def _due_reply(self, ts: int, now: float) -> Reply | None:
        """Serve the next recorded non-update reply if its time has come.

        Updates recorded before it are served first, as they were in the
        recorded session: a consumer that is behind gets them before the
        failure.
        """
        if self._served_replies >= len(self.timeline.replies):
            return None
        recorded = self.timeline.replies[self._served_replies]
        if self._at(recorded.due) > now:
            return None
        undelivered = self._updates[max(0, ts - self.timeline.initial_ts) : self._available(now)]
        if any(u.due <= recorded.due for u in undelivered):
            return None

        self._served_replies += 1
        if recorded.failed in (2, 3):
            for key in self._keys.values():
                key.valid = False
        if recorded.failed == 1:
            return Reply(status=200, body=_json({"failed": 1, "ts": self.newest_ts(now)}))
        return Reply(
            status=recorded.status, body=recorded.body, content_type=recorded.content_type
        )

    def _next_due(self, now: float) -> float:
        """Return the server time at which the next update or recorded reply becomes due."""
        if self._start is None:
            return float("inf")
        pending: list[float] = []
        available = self._available(now)
        if available < len(self._updates):
            pending.append(self._at(self._updates[available].due))
        if self._served_replies < len(self.timeline.replies):
            pending.append(self._at(self.timeline.replies[self._served_replies].due))
        later = [moment for moment in pending if moment > now]
        return min(later, default=float("inf"))
