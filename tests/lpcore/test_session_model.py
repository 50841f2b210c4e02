"""A stateful test of Session against a sans-IO model of VK's servers.

`ModelServer` plays the long poll server and the two API methods. `ts` is
an event counter and the server keeps the last 256 events for ts-based
polling. Keys expire. `pts` counts the persistent events, which
messages.getLongPollHistory serves in pages of `HISTORY_EVENTS_LIMIT`
(message events reduced to ``[code, message_id, flags, peer_id]``) and
refuses with error 907 below a retained floor. Hypothesis interleaves
server activity, passing time, faults and client steps, and checks what
the consumer received after every step:

* Every event the server produced after the session's first ts arrives
  once and in order, through UpdatesReceived or HistoryRecovered. The
  exceptions are events inside an EventsLost range. A range marked
  `persistent_recovered` excuses only events that are not pts-persistent,
  because history carries every persistent one.
* An EventsLost range starts at the ts the failed poll sent. Without
  recovery it ends at the ts the server handed out: the failed-1 ts, or
  getLongPollServer's after failed 3. After a recovery it ends where
  polling resumes. No event inside it arrives afterwards.
* `session.ts` never moves backwards.
* Every transport failure or unreadable reply schedules a retry with a
  delay > 0, and `next_request` returns a Backoff until then. A Backoff
  never comes without a scheduled retry. An unchanged server never gets
  more than a few requests in one instant with nothing delivered.

Every model event carries its own number in a field that the history
form keeps (the message id, local id, user id or count), so an update is
matched to its event by its array.

The tests at the end replay, each in its shortest form, the faults this
model found in earlier versions of Session.
"""

import dataclasses
import enum
import json
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from lpcore import (
    Backoff,
    EventsLost,
    HistoryRecovered,
    MalformedUpdate,
    Mode,
    Request,
    RequestKind,
    RetryScheduled,
    ServerObtained,
    Session,
    SessionEvent,
    SessionState,
    UnknownUpdate,
    UpdatesReceived,
)

TOKEN = "tok-model-Jq4Wd8"
SERVER = "im.vk.com/nim100001"
FIRST_TS = 1_800_000_000
FIRST_PTS = 500_000
#: The server serves the last this-many events to a ts-based poll.
EVENT_WINDOW = 256
KEY_TTL = 3600.0
#: Far below VK's minimum of 1000, so that recovery takes several pages.
HISTORY_EVENTS_LIMIT = 4
MAX_HOLD = 90

BAD_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
    b"<body><center><h1>502 Bad Gateway</h1></center></body>\r\n</html>\r\n"
)
INTERNAL_API_ERROR = json.dumps(
    {"error": {"error_code": 10, "error_msg": "Internal server error"}}
).encode()
TRUNCATED_POLL_BODY = b'{"ts": 18000'

#: Most requests the session may send in one instant while the server does
#: not change and nothing is delivered. The longest chain that is not a
#: loop: poll (failed 3), getLongPollServer, history (907),
#: getLongPollServer, poll. A poll with nothing to deliver is held, so time
#: passes after it.
MAX_REQUESTS_WITHOUT_PROGRESS = 5


# -- model events -------------------------------------------------------------------------

#: Codes VK keeps permanently; each one advances `pts`.
PERSISTENT_CODES = frozenset({1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 20, 21, 51, 52})
MESSAGE_CODES = frozenset({1, 2, 3, 4, 5})

#: How to build event number `n` of each code the model produces. Each
#: array embeds `n` in a field that its history form keeps.
EVENT_BUILDERS: dict[int, Callable[[int], list[Any]]] = {
    4: lambda n: [4, 1_000_000 + n, 33, 100002, 1_700_000_000 + n, f"m{n}", {}, {}, 0],
    5: lambda n: [5, 1_000_000 + n, 3, 100002, 1_700_000_000 + n, f"e{n}", {"title": ""}, {}, 0],
    2: lambda n: [2, 1_000_000 + n, 128, 100002],
    3: lambda n: [3, 1_000_000 + n, 1, 2_000_000_007],
    6: lambda n: [6, 100002, 1_000_000 + n],
    13: lambda n: [13, 2_000_000_007, 1_000_000 + n],
    52: lambda n: [52, 6, 2_000_000_007, 100_000 + n],
    8: lambda n: [8, -(100_000 + n), 4, 1_700_000_000 + n],
    61: lambda n: [61, 100_000 + n, 1],
    63: lambda n: [63, 2_000_000_007, [100_000 + n], 1, 1_700_000_000 + n],
    80: lambda n: [80, n, 0],
}
EVENT_CODES = sorted(EVENT_BUILDERS)


def history_form(raw: list[Any]) -> list[Any]:
    """Return an event as getLongPollHistory lists it: message events keep three fields."""
    return raw[:4] if raw[0] in MESSAGE_CODES else raw


def array_key(raw: Any) -> str:
    return json.dumps(raw, sort_keys=True)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelEvent:
    """An event the server produced: its ts, its array, and its pts when persistent."""

    ts: int
    raw: list[Any]
    pts: int | None

    @property
    def persistent(self) -> bool:
        return self.pts is not None


# -- the server ---------------------------------------------------------------------------


class ModelServer:
    """A model of the long poll server and the two API methods. It serves one request at a time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.events: list[ModelEvent] = []
        self.persistent: list[ModelEvent] = []
        self.pts = FIRST_PTS
        #: getLongPollHistory returns error 907 for a pts below this.
        self.history_floor = FIRST_PTS
        #: Issued keys and when each expires.
        self.keys: dict[str, float] = {}
        self.issued_keys = 0
        #: The next poll gets failed 3.
        self.lose_user_info = False
        self.by_array: dict[str, ModelEvent] = {}
        self.by_history_form: dict[str, ModelEvent] = {}

    @property
    def newest_ts(self) -> int:
        return FIRST_TS + len(self.events)

    def add_event(self, code: int) -> None:
        ts = self.newest_ts + 1
        raw = EVENT_BUILDERS[code](ts - FIRST_TS)
        pts = None
        if code in PERSISTENT_CODES:
            self.pts += 1
            pts = self.pts
        event = ModelEvent(ts=ts, raw=raw, pts=pts)
        self.events.append(event)
        self.by_array[array_key(raw)] = event
        if event.persistent:
            self.persistent.append(event)
            self.by_history_form[array_key(history_form(raw))] = event

    def event_at(self, ts: int) -> ModelEvent:
        return self.events[ts - FIRST_TS - 1]

    def issue_key(self) -> str:
        self.issued_keys += 1
        key = f"{self.issued_keys:040x}"
        self.keys[key] = self.now + KEY_TTL
        return key

    def expire_keys(self) -> None:
        self.keys = dict.fromkeys(self.keys, self.now)

    def answer(self, request: Request, *, with_pts: bool = True) -> bytes:
        """Return the reply body for `request`. A poll with no events is held first."""
        if request.kind is RequestKind.POLL:
            reply = self.answer_poll(request.params)
        elif request.kind is RequestKind.HISTORY:
            assert request.api_method == "messages.getLongPollHistory"
            reply = self.answer_history(request.params)
        else:
            assert request.api_method == "messages.getLongPollServer"
            reply = self.answer_server(with_pts=with_pts)
        return json.dumps(reply).encode()

    def answer_server(self, *, with_pts: bool) -> dict[str, Any]:
        response: dict[str, Any] = {"key": self.issue_key(), "server": SERVER}
        response["ts"] = self.newest_ts
        # VK has been seen to omit pts even with need_pts=1.
        if with_pts:
            response["pts"] = self.pts
        return {"response": response}

    def answer_poll(self, params: Mapping[str, str]) -> dict[str, Any]:
        if self.lose_user_info:
            self.lose_user_info = False
            self.keys.clear()
            return {"failed": 3}
        if self.keys.get(params["key"], self.now) <= self.now:
            return {"failed": 2}
        ts = int(params["ts"])
        if not self.newest_ts - EVENT_WINDOW <= ts <= self.newest_ts:
            return {"failed": 1, "ts": self.newest_ts}

        pending = self.events[ts - FIRST_TS :]
        if not pending:
            # The server keeps the poll open for `wait` seconds, then replies with no updates.
            self.now += min(int(params["wait"]), MAX_HOLD)
        reply: dict[str, Any] = {"ts": self.newest_ts, "updates": [e.raw for e in pending]}
        if int(params["mode"]) & Mode.PTS:
            reply["pts"] = self.pts
        return reply

    def answer_history(self, params: Mapping[str, str]) -> dict[str, Any]:
        assert params["credentials"] == "1"
        pts = int(params["pts"])
        if pts < self.history_floor:
            return api_error(907, "Value of ts or pts is too old")
        if pts > self.pts:
            return api_error(908, "Value of ts or pts is too new")

        after = self.persistent[pts - FIRST_PTS :]
        page, more = after[:HISTORY_EVENTS_LIMIT], len(after) > HISTORY_EVENTS_LIMIT
        new_pts = page[-1].pts if more and page[-1].pts is not None else self.pts
        items = [message_item(e.raw) for e in page if e.raw[0] in (4, 5)]
        response = {
            "history": [history_form(e.raw) for e in page],
            "messages": {"count": len(items), "items": items},
            "new_pts": new_pts,
            "from_pts": pts,
            "more": int(more),
            "credentials": {
                "key": self.issue_key(),
                "server": SERVER,
                "ts": self.newest_ts,
                "pts": self.pts,
            },
        }
        return {"response": response}


def api_error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"error_code": code, "error_msg": message}}


def message_item(raw: list[Any]) -> dict[str, Any]:
    return {"id": raw[1], "peer_id": raw[3], "date": raw[4], "text": raw[5], "out": 0}


# -- what a client step meets ---------------------------------------------------------------


class Outcome(enum.IntEnum):
    """What becomes of one request. Shrinking goes to ANSWER, the first value."""

    ANSWER = 0
    #: getLongPollServer replies without `pts`. Other requests get normal replies.
    ANSWER_WITHOUT_PTS = 1
    CONNECTION_RESET = 2
    #: HTTP 502 with an HTML page.
    BAD_GATEWAY = 3
    #: API error 10 for API requests, a truncated body for polls.
    INTERNAL_ERROR = 4


FAULTS = frozenset({Outcome.CONNECTION_RESET, Outcome.BAD_GATEWAY, Outcome.INTERNAL_ERROR})

#: Normal replies are the common case: six draws in ten.
OUTCOME_OF_DRAW = (
    *[Outcome.ANSWER] * 6,
    Outcome.ANSWER_WITHOUT_PTS,
    Outcome.CONNECTION_RESET,
    Outcome.BAD_GATEWAY,
    Outcome.INTERNAL_ERROR,
)
outcomes = st.integers(min_value=0, max_value=len(OUTCOME_OF_DRAW) - 1).map(
    OUTCOME_OF_DRAW.__getitem__
)


class SessionModel(RuleBasedStateMachine):
    """Session against ModelServer, with the consumer's checks after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.server = ModelServer()
        self.session = Session(TOKEN)

        # What the consumer received. Ranges exclude their start and include their end.
        self.start_ts: int | None = None
        self.delivered: list[int] = []
        self.delivered_ts: set[int] = set()
        #: EventsLost ranges whose every event may be missing.
        self.lost_ranges: list[tuple[int, int]] = []
        #: EventsLost ranges marked persistent_recovered: only events that are
        #: not persistent may be missing.
        self.recovered_ranges: list[tuple[int, int]] = []
        #: No event at or below this ts may arrive: the end of the last EventsLost.
        self.lost_up_to = 0
        #: Events up to this ts passed the completeness check.
        self.checked_up_to = FIRST_TS

        # An open loss, from a failed 1 or 3 until the EventsLost that closes it.
        #: The ts sent by the poll that got failed 1 or 3.
        self.gap_from: int | None = None
        #: Where the loss ends: the failed-1 ts, or getLongPollServer's ts after failed 3.
        self.gap_to: int | None = None

        self.last_ts: int | None = None
        self.retry_due: float | None = None
        self.requests_without_progress = 0
        self.last_request_at: float | None = None

    # -- rules -------------------------------------------------------------------------------

    @initialize(seed=st.integers(min_value=0, max_value=2**32 - 1))
    def start(self, seed: int) -> None:
        self.session = Session(TOKEN, seed=seed)

    @rule(codes=st.lists(st.sampled_from(EVENT_CODES), min_size=1, max_size=5))
    def server_adds_events(self, codes: list[int]) -> None:
        for code in codes:
            self.server.add_event(code)
        self.server_changed()

    @rule(
        extra=st.integers(min_value=1, max_value=40),
        density=st.integers(min_value=0, max_value=EVENT_WINDOW),
    )
    def server_burst_overflows_window(self, extra: int, density: int) -> None:
        """Add more events than the window keeps; `density` sets how many are new messages.

        Density 0, where shrinking goes, makes one message and typing events after it.
        """
        stride = EVENT_WINDOW + extra - density
        for index in range(EVENT_WINDOW + extra):
            self.server.add_event(4 if index % stride == 0 else 61)
        self.server_changed()

    @rule(seconds=st.integers(min_value=1, max_value=5000))
    def time_passes(self, seconds: int) -> None:
        self.server.now += seconds

    @rule()
    def key_expires(self) -> None:
        self.server.expire_keys()
        self.server_changed()

    @rule()
    def server_loses_user_info(self) -> None:
        """Make the next poll get ``{"failed": 3}`` and invalidate every key."""
        self.server.lose_user_info = True
        self.server_changed()

    @rule()
    def server_drops_history(self) -> None:
        """Forget the persistent history so far: older pts get error 907."""
        self.server.history_floor = self.server.pts
        self.server_changed()

    @rule(
        steps=st.lists(
            st.tuples(st.lists(st.sampled_from(EVENT_CODES), max_size=3), outcomes),
            min_size=1,
            max_size=3,
        )
    )
    def client_steps(self, steps: list[tuple[list[int], Outcome]]) -> None:
        """Take client steps, each after the server adds the events of its codes (often none)."""
        for codes, outcome in steps:
            if codes:
                self.server_adds_events(codes)
            self.client_step(outcome)
            self.check_consumer_view()

    @rule(seed=st.integers(min_value=0, max_value=2**32 - 1))
    def consumer_restarts(self, seed: int) -> None:
        """Replace the session with a new one resumed from its checkpoint, as after a crash."""
        if self.session.ts is None:
            return
        checkpoint = self.session.checkpoint()
        if checkpoint.loss_from_ts is None:
            # The new session has no record of a loss: it polls from the checkpoint's
            # ts and meets whatever the server has for that ts.
            self.close_gap()
        else:
            assert checkpoint.loss_from_ts == self.gap_from, checkpoint
        self.session = Session(TOKEN, seed=seed, resume=checkpoint)
        self.retry_due = None
        self.requests_without_progress = 0

    def server_changed(self) -> None:
        self.requests_without_progress = 0

    # -- one client step ---------------------------------------------------------------------

    def client_step(self, outcome: Outcome) -> None:
        now = self.server.now
        action = self.session.next_request(now)
        if isinstance(action, Backoff):
            assert self.retry_due is not None, f"{action!r} with no retry scheduled"
            assert now < self.retry_due
            assert action.until == self.retry_due
            # The client sleeps until the deadline.
            self.server.now = action.until
            return
        assert self.retry_due is None or now >= self.retry_due
        self.retry_due = None
        self.count_request(now)

        events = self.exchange(action, outcome)
        if outcome in FAULTS:
            assert [type(event) for event in events] == [RetryScheduled], events
        for event in events:
            self.take(event, action)

    def count_request(self, now: float) -> None:
        if now != self.last_request_at:
            self.requests_without_progress = 0
        self.last_request_at = now
        self.requests_without_progress += 1
        assert self.requests_without_progress <= MAX_REQUESTS_WITHOUT_PROGRESS, (
            f"{self.requests_without_progress} requests at t={now} with nothing delivered "
            "and no change on the server"
        )

    def exchange(self, request: Request, outcome: Outcome) -> list[SessionEvent]:
        """Reply to `request` from the model (or fail it) and return the session's events."""
        now = self.server.now
        if outcome is Outcome.CONNECTION_RESET:
            return self.session.receive_failure(request, "connection reset", now)
        if outcome is Outcome.BAD_GATEWAY:
            return self.session.receive_response(request, 502, BAD_GATEWAY_PAGE, now)
        if outcome is Outcome.INTERNAL_ERROR:
            body = TRUNCATED_POLL_BODY if request.kind is RequestKind.POLL else INTERNAL_API_ERROR
            return self.session.receive_response(request, 200, body, now)

        body = self.server.answer(request, with_pts=outcome is Outcome.ANSWER)
        self.open_gap(request, json.loads(body))
        return self.session.receive_response(request, 200, body, self.server.now)

    def open_gap(self, request: Request, reply: dict[str, Any]) -> None:
        """Remember the range a failed 1 or 3 opens, to compare with what the session reports."""
        if request.kind is RequestKind.POLL and reply.get("failed") in (1, 3):
            assert self.gap_from is None, "a poll went out while a loss was unresolved"
            self.gap_from = int(request.params["ts"])
            self.gap_to = reply.get("ts")

    # -- what the consumer receives ---------------------------------------------------------

    def take(self, event: SessionEvent, request: Request) -> None:
        if isinstance(event, UpdatesReceived):
            self.take_updates(event)
        elif isinstance(event, HistoryRecovered):
            self.take_history(event, request)
        elif isinstance(event, EventsLost):
            self.take_loss(event)
        elif isinstance(event, ServerObtained):
            assert event.ts == self.session.ts
            if not event.kept_ts and self.gap_from is not None:
                # After failed 3, or when history vanished after some pages,
                # the loss reaches getLongPollServer's ts.
                self.gap_to = event.ts
            if self.start_ts is None:
                self.start_ts = self.checked_up_to = event.ts
        else:
            assert event.delay > 0, event
            self.retry_due = self.server.now + event.delay

    def take_updates(self, received: UpdatesReceived) -> None:
        assert received.ts == self.session.ts
        for update in received.updates:
            assert not isinstance(update, MalformedUpdate | UnknownUpdate), update
            assert not update.recovered
            self.deliver(self.server.by_array.get(array_key(update.raw)), update.raw)
        self.requests_without_progress = 0

    def take_history(self, recovered: HistoryRecovered, request: Request) -> None:
        assert recovered.from_pts == int(request.params["pts"])
        for update in recovered.updates:
            assert update.recovered
            event = self.server.by_history_form.get(array_key(update.raw))
            self.deliver(event, update.raw)
        message_ids = [update.raw[1] for update in recovered.updates if update.code in (4, 5)]
        assert [item["id"] for item in recovered.messages] == message_ids
        self.requests_without_progress = 0

    def deliver(self, event: ModelEvent | None, raw: Any) -> None:
        assert event is not None, f"delivered {raw!r}, which the server never produced"
        if self.delivered:
            assert event.ts > self.delivered[-1], (
                f"event ts={event.ts} {event.raw!r} delivered after ts={self.delivered[-1]}: "
                "a duplicate or out of order"
            )
        assert event.ts > self.lost_up_to, (
            f"event ts={event.ts} delivered after EventsLost reported it lost "
            f"(up to ts={self.lost_up_to})"
        )
        self.delivered.append(event.ts)
        self.delivered_ts.add(event.ts)

    def take_loss(self, lost: EventsLost) -> None:
        assert self.gap_from is not None, f"{lost!r} without a failed 1 or 3"
        assert self.gap_to is not None
        assert lost.from_ts == self.gap_from, lost
        if lost.persistent_recovered:
            self.take_recovery_end(lost, self.gap_to)
        else:
            self.take_unrecovered_loss(lost, self.gap_to)
        self.lost_up_to = max(self.lost_up_to, lost.to_ts)
        self.close_gap()

    def take_recovery_end(self, lost: EventsLost, gap_to: int) -> None:
        """Take the EventsLost that ends a recovery: only non-persistent events are gone."""
        assert self.session.state is SessionState.POLLING
        # Polling resumes from the credentials' ts, so the loss reaches it.
        assert self.session.ts is not None
        assert gap_to <= lost.to_ts == self.session.ts, lost
        self.recovered_ranges.append((lost.from_ts, lost.to_ts))

    def take_unrecovered_loss(self, lost: EventsLost, gap_to: int) -> None:
        assert lost.to_ts == gap_to, lost
        self.lost_ranges.append((lost.from_ts, lost.to_ts))

    def close_gap(self) -> None:
        self.gap_from = self.gap_to = None

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def check_consumer_view(self) -> None:
        self.check_ts_monotonic()
        self.check_completeness()

    def check_ts_monotonic(self) -> None:
        ts = self.session.ts
        if ts is None:
            return
        assert self.last_ts is None or ts >= self.last_ts, f"ts went from {self.last_ts} to {ts}"
        self.last_ts = ts

    def check_completeness(self) -> None:
        """Check that every event up to the session's position arrived or is excused."""
        if self.start_ts is None or self.session.ts is None:
            return
        # During an open loss only the events before it must have arrived.
        horizon = self.session.ts if self.gap_from is None else self.gap_from
        for ts in range(self.checked_up_to + 1, horizon + 1):
            if ts in self.delivered_ts:
                continue
            event = self.server.event_at(ts)
            assert self.excused(event), (
                f"event ts={ts} {event.raw!r} (persistent: {event.persistent}) was never "
                f"delivered; session ts={self.session.ts}, lost ranges {self.lost_ranges}, "
                f"recovered ranges {self.recovered_ranges}"
            )
        self.checked_up_to = max(self.checked_up_to, horizon)

    def excused(self, event: ModelEvent) -> bool:
        """Whether an event may be missing: reported lost, or beyond what history can return."""
        if in_ranges(event.ts, self.lost_ranges):
            return True
        if event.persistent:
            return False
        return in_ranges(event.ts, self.recovered_ranges)


def in_ranges(ts: int, ranges: list[tuple[int, int]]) -> bool:
    return any(start < ts <= end for start, end in ranges)


#: Half the loaded profile's examples (tests/conftest.py): 50 examples of 50
#: steps under ci, about 5 s, and 1000 of 100 steps under long.
MODEL_SETTINGS = settings(deadline=None, max_examples=max(settings().max_examples // 2, 5))


def test_session_against_model() -> None:
    run_state_machine_as_test(SessionModel, settings=MODEL_SETTINGS)


# -- the model server on its own ------------------------------------------------------------


def poll_params(key: str, ts: int) -> dict[str, str]:
    return {"key": key, "ts": str(ts), "wait": "25", "mode": str(int(Mode.DEFAULT))}


def test_model_poll_outside_window_gets_failed_1() -> None:
    server = ModelServer()
    for _ in range(EVENT_WINDOW + 1):
        server.add_event(61)

    reply = server.answer_poll(poll_params(server.issue_key(), FIRST_TS))

    assert reply == {"failed": 1, "ts": FIRST_TS + EVENT_WINDOW + 1}


def test_model_poll_returns_events_after_ts() -> None:
    server = ModelServer()
    for code in (4, 61, 6):
        server.add_event(code)

    reply = server.answer_poll(poll_params(server.issue_key(), FIRST_TS + 1))

    assert reply["ts"] == FIRST_TS + 3
    assert reply["pts"] == FIRST_PTS + 2
    assert [raw[0] for raw in reply["updates"]] == [61, 6]


def test_model_expired_key_gets_failed_2() -> None:
    server = ModelServer()
    key = server.issue_key()
    server.now += KEY_TTL

    assert server.answer_poll(poll_params(key, FIRST_TS)) == {"failed": 2}


def test_model_history_pages_reduced_events() -> None:
    server = ModelServer()
    for _ in range(HISTORY_EVENTS_LIMIT + 1):
        server.add_event(4)
        server.add_event(61)
    params = {"pts": str(FIRST_PTS), "credentials": "1"}

    first = server.answer_history(params)["response"]
    last = server.answer_history({**params, "pts": str(first["new_pts"])})["response"]

    assert first["more"] == 1
    assert first["new_pts"] == FIRST_PTS + HISTORY_EVENTS_LIMIT
    assert first["history"][0] == [4, 1_000_001, 33, 100002]
    assert last["more"] == 0
    assert last["new_pts"] == server.pts
    assert last["credentials"]["ts"] == server.newest_ts


def test_model_history_below_floor_gets_907() -> None:
    server = ModelServer()
    server.add_event(4)
    server.history_floor = server.pts

    reply = server.answer_history({"pts": str(FIRST_PTS), "credentials": "1"})

    assert reply["error"]["error_code"] == 907


# -- known Session bugs, each reduced to the shortest exchange ---------------------------


def serve(session: Session, reply: dict[str, Any], now: float = 0.0) -> list[SessionEvent]:
    """Pass `reply` as the JSON body of the response to the request due at `now`."""
    request = session.next_request(now)
    assert isinstance(request, Request)
    return session.receive_response(request, 200, json.dumps(reply).encode(), now)


def server_response(*, ts: int, pts: int) -> dict[str, Any]:
    return {"response": {"key": "k" * 40, "server": SERVER, "ts": ts, "pts": pts}}


def test_kept_ts_ignores_newer_server_pts() -> None:
    session = Session(TOKEN)
    serve(session, server_response(ts=1000, pts=500000))
    serve(session, {"failed": 1, "ts": 1300})
    [lost] = serve(session, api_error(907, "Value of ts or pts is too old"))
    assert isinstance(lost, EventsLost)
    assert session.pts is None
    # The key expires before a poll in mode 32 gives the pts of ts 1300.
    serve(session, {"failed": 2})
    # This pts belongs to ts 1600, not to the kept ts 1300.
    [obtained] = serve(session, server_response(ts=1600, pts=500040), now=60.0)
    assert obtained == ServerObtained(server=SERVER, ts=1300, pts=None, kept_ts=True)

    # The window moves on before any poll succeeds.
    events = serve(session, {"failed": 1, "ts": 1900}, now=60.0)

    # History from pts 500040 could not return the persistent events between
    # ts 1300 and 1600, so the session reports the loss instead.
    assert [type(event) for event in events] == [EventsLost]


def test_history_gone_after_page_restarts() -> None:
    session = Session(TOKEN)
    serve(session, server_response(ts=1000, pts=500000))
    serve(session, {"failed": 1, "ts": 1300})
    # The first page ends with message 1000350, which the server produced at
    # ts 1350, after its failed-1 reply.
    page = {
        "history": [[4, 1000299, 1, 100002], [4, 1000350, 1, 100002]],
        "messages": {"count": 0, "items": []},
        "new_pts": 500002,
        "more": 1,
        "credentials": {"key": "c" * 40, "server": SERVER, "ts": 1350, "pts": 500002},
    }
    serve(session, {"response": page})
    assert serve(session, api_error(907, "Value of ts or pts is too old")) == []
    [obtained, lost] = serve(session, server_response(ts=1400, pts=500010))

    # Polling from a ts before 1350 would deliver message 1000350 a second
    # time; the session starts over at getLongPollServer's ts instead.
    assert obtained == ServerObtained(server=SERVER, ts=1400, pts=500010, kept_ts=False)
    assert isinstance(lost, EventsLost)
    assert (lost.from_ts, lost.to_ts, lost.persistent_recovered) == (1000, 1400, False)
    request = session.next_request(0.0)
    assert isinstance(request, Request)
    assert request.params["ts"] == "1400"


def test_poll_without_pts_forgets_the_lagging_pts() -> None:
    session = Session(TOKEN, mode=Mode.DEFAULT & ~Mode.PTS)
    serve(session, server_response(ts=1000, pts=500000))
    serve(session, {"ts": 1002, "updates": [[4, 1000001, 1, 100002], [61, 100002, 1]]})
    assert session.pts is None

    # History from pts 500000 would return message 1000001 a second time.
    events = serve(session, {"failed": 1, "ts": 1300})

    assert [type(event) for event in events] == [EventsLost]


def test_recovery_loss_range_reaches_resumed_ts() -> None:
    session = Session(TOKEN)
    serve(session, server_response(ts=1000, pts=500000))
    serve(session, {"failed": 1, "ts": 1300})
    # A typing event arrives at ts 1301 during recovery. History does not keep
    # it, and the credentials send polling on from ts 1301.
    page = {
        "history": [],
        "messages": {"count": 0, "items": []},
        "new_pts": 500000,
        "more": 0,
        "credentials": {"key": "c" * 40, "server": SERVER, "ts": 1301, "pts": 500000},
    }

    events = serve(session, {"response": page})

    lost = events[-1]
    assert isinstance(lost, EventsLost)
    assert lost.persistent_recovered
    assert session.ts == 1301
    assert lost.to_ts == 1301
