"""Session tests for faults that users of other VK long poll clients ran into.

Each test acts as the transport, as in test_session.py: it takes the request
`next_request` returns and feeds back a reply or a transport failure at a
virtual time. Each docstring states the fault; the test covers the whole kind
of situation behind it. The ids, keys and counters are fake.
"""

import json
from collections.abc import Callable
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from session_driving import due_time as due
from session_driving import fail
from session_driving import retry_of as retry_in
from session_driving import serve as answer
from session_driving import take_request as take

from lpcore import (
    Backoff,
    BackoffPolicy,
    EventsLost,
    HistoryRecovered,
    LocalProtocolError,
    Mode,
    Request,
    RequestKind,
    RetryScheduled,
    ServerObtained,
    Session,
    SessionEvent,
    SessionState,
    UpdatesReceived,
    VersionError,
)

TOKEN = "tok-session-reports-Pc6Ud"
FIRST_KEY = "key-first-Gm8Xa"
SECOND_KEY = "key-second-Tb2Wq"
SERVER = "im.example.test/nim3051"
BAD_GATEWAY = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


# -- reply bodies --------------------------------------------------------------------------


def server_body(*, key: str, ts: int, pts: Any = None, server: str = SERVER) -> bytes:
    """Build a getLongPollServer reply, without the pts field when `pts` is None."""
    response: dict[str, Any] = {"key": key, "server": server, "ts": ts}
    if pts is not None:
        response["pts"] = pts
    return json.dumps({"response": response}).encode()


def poll_body(ts: int, updates: list[Any] | None = None, *, pts: int | None = None) -> bytes:
    reply: dict[str, Any] = {"ts": ts, "updates": updates or []}
    if pts is not None:
        reply["pts"] = pts
    return json.dumps(reply).encode()


def failed_body(code: int, **fields: Any) -> bytes:
    return json.dumps({"failed": code, **fields}).encode()


def api_error_body(code: int, message: str) -> bytes:
    return json.dumps({"error": {"error_code": code, "error_msg": message}}).encode()


def history_body(message_ids: list[int], *, new_pts: int, more: bool) -> bytes:
    """Build a getLongPollHistory page of reduced new-message events and their message objects."""
    response = {
        "history": [[4, message_id, 1, 3051] for message_id in message_ids],
        "messages": {
            "count": len(message_ids),
            "items": [
                {"id": message_id, "peer_id": 3051, "text": f"missed {message_id}"}
                for message_id in message_ids
            ],
        },
        "new_pts": new_pts,
        "more": int(more),
    }
    return json.dumps({"response": response}).encode()


def message(message_id: int) -> list[Any]:
    return [4, message_id, 1, 3051, 1710001000, f"text {message_id}", {}, {}]


# -- driving a session ---------------------------------------------------------------------


def query(request: Request) -> dict[str, str]:
    """Return the URL's query, failing the test when a parameter repeats."""
    pairs = parse_qsl(urlsplit(request.url).query, keep_blank_values=True, strict_parsing=True)
    assert len(pairs) == len(dict(pairs)), pairs
    return dict(pairs)


def polling_session(*, ts: int, pts: int | None, **options: Any) -> Session:
    """Return a session that obtained FIRST_KEY with `ts` and `pts` at t=0."""
    session = Session(TOKEN, **options)
    answer(session, server_body(key=FIRST_KEY, ts=ts, pts=pts))
    assert session.state is SessionState.POLLING
    return session


def delivered(events: list[SessionEvent]) -> list[Any]:
    """Return the raw arrays of every update in `events`, polled or recovered."""
    return [
        update.raw
        for event in events
        if isinstance(event, UpdatesReceived | HistoryRecovered)
        for update in event.updates
    ]


# -- pts is optional -----------------------------------------------------------------------


def test_missing_pts_is_not_an_error() -> None:
    """getLongPollServer and polls may omit pts even when asked, and clients raised KeyError."""
    session = Session(TOKEN)

    request, events = answer(session, server_body(key=FIRST_KEY, ts=5100))

    assert request.params["need_pts"] == "1"
    assert events == [ServerObtained(server=SERVER, ts=5100, pts=None, kept_ts=False)]
    _, events = answer(session, poll_body(5101))
    assert events == [UpdatesReceived(updates=(), ts=5101, pts=None)]
    assert session.pts is None

    _, events = answer(session, poll_body(5102, [message(8101)], pts=7700002))

    assert delivered(events) == [message(8101)]
    assert session.pts == 7700002
    # A loss from now on is recovered from the stored pts.
    _, events = answer(session, failed_body(1, ts=5140))
    assert events == []
    history = take(session, 0.0)
    assert history.kind is RequestKind.HISTORY
    assert history.params["pts"] == "7700002"


@pytest.mark.parametrize("code", [1, 3])
def test_loss_without_pts_is_reported(code: int) -> None:
    """A loss with no pts known is reported as EventsLost with its ts range, never raised."""
    session = polling_session(ts=5100, pts=None)

    _, events = answer(session, failed_body(code, ts=5140))
    if code == 3:
        assert events == []
        _, events = answer(session, server_body(key=SECOND_KEY, ts=5140, pts=7700040))

    lost = [event for event in events if isinstance(event, EventsLost)]
    assert len(lost) == 1
    assert (lost[0].failed, lost[0].from_ts, lost[0].to_ts, lost[0].pts) == (
        code,
        5100,
        5140,
        None,
    )
    poll = take(session, 0.0)
    assert poll.kind is RequestKind.POLL
    assert query(poll)["ts"] == "5140"


@pytest.mark.parametrize(
    ("pts", "expected"),
    [("n/a", None), ([], None), (1.5, None), (True, None), ({}, None), ("7700001", 7700001)],
    ids=["text", "array", "float", "boolean", "object", "decimal-string"],
)
def test_unreadable_server_pts_reads_as_none(pts: Any, expected: int | None) -> None:
    """A getLongPollServer pts that is not a number leaves pts unknown instead of failing."""
    session = Session(TOKEN)

    _, events = answer(session, server_body(key=FIRST_KEY, ts=5200, pts=pts))

    assert events == [ServerObtained(server=SERVER, ts=5200, pts=expected, kept_ts=False)]
    assert session.state is SessionState.POLLING


# -- refreshing the key keeps ts -----------------------------------------------------------


def expire_by_failed_2(session: Session) -> float:
    _, events = answer(session, failed_body(2))
    assert events == []
    return 0.0


def expire_by_failed_2_with_text(session: Session) -> float:
    _, events = answer(session, failed_body(2, error="key has expired"))
    assert events == []
    return 0.0


def expire_by_three_resets(session: Session) -> float:
    now = 0.0
    for _ in range(3):
        fail(session, now, "connection reset by peer")
        now = due(session, now)
    return now


def expire_by_three_bad_gateways(session: Session) -> float:
    now = 0.0
    for _ in range(3):
        answer(session, BAD_GATEWAY, now, status=502)
        now = due(session, now)
    return now


def expire_then_refresh_errors(session: Session) -> float:
    expire_by_failed_2(session)
    now = 0.0
    for code, text in ((10, "Internal server error"), (6, "Too many requests per second")):
        answer(session, api_error_body(code, text), now)
        now = due(session, now)
    return now


REFRESH_TRIGGERS: dict[str, Callable[[Session], float]] = {
    "failed-2": expire_by_failed_2,
    "failed-2-with-error-text": expire_by_failed_2_with_text,
    "three-resets": expire_by_three_resets,
    "three-502s": expire_by_three_bad_gateways,
    "failed-2-then-api-errors": expire_then_refresh_errors,
}


@pytest.mark.parametrize("trigger", REFRESH_TRIGGERS.values(), ids=REFRESH_TRIGGERS.keys())
def test_key_refresh_keeps_ts(trigger: Callable[[Session], float]) -> None:
    """A new key keeps the old ts, where clients that took the server's new ts skipped events."""
    session = polling_session(ts=6400, pts=7800000)
    # A poll with the key succeeds first, so the key is known to work.
    answer(session, poll_body(6400, pts=7800000))
    now = trigger(session)

    request, events = answer(session, server_body(key=SECOND_KEY, ts=6405, pts=7800005), now)

    assert request.kind is RequestKind.API
    assert events == [ServerObtained(server=SERVER, ts=6400, pts=7800000, kept_ts=True)]
    poll = take(session, now)
    assert query(poll)["key"] == SECOND_KEY
    assert query(poll)["ts"] == "6400"
    missed = [message(message_id) for message_id in range(8201, 8206)]
    events = session.receive_response(poll, 200, poll_body(6405, missed, pts=7800005), now)
    assert delivered(events) == missed
    assert session.ts == 6405
    assert take(session, now).kind is RequestKind.POLL


def test_resumed_session_keeps_saved_ts() -> None:
    """A session resumed from a saved ts keeps it when it gets its first key."""
    session = Session(TOKEN, ts=6400, pts=7800000)

    _, events = answer(session, server_body(key=FIRST_KEY, ts=6405, pts=7800005))

    assert events == [ServerObtained(server=SERVER, ts=6400, pts=7800000, kept_ts=True)]
    missed = [message(message_id) for message_id in range(8211, 8216)]
    poll, events = answer(session, poll_body(6405, missed, pts=7800005))
    assert query(poll)["ts"] == "6400"
    assert delivered(events) == missed


# -- failed 3 and history recovery ---------------------------------------------------------


@pytest.mark.parametrize("pages", [1, 2, 3])
def test_failed_3_recovers_every_history_page(pages: int) -> None:
    """failed 3 takes a new key and ts and pages through getLongPollHistory while 'more' is set."""
    session = polling_session(ts=4200, pts=6100000)
    _, events = answer(session, failed_body(3))
    assert events == []
    assert not session.has_key

    request, events = answer(session, server_body(key=SECOND_KEY, ts=4350, pts=6100090))

    assert request.kind is RequestKind.API
    assert events == [ServerObtained(server=SERVER, ts=4350, pts=6100000, kept_ts=False)]
    all_events: list[SessionEvent] = []
    expected_ids: list[int] = []
    from_pts = 6100000
    for page in range(pages):
        ids = [8801 + 10 * page, 8802 + 10 * page]
        expected_ids += ids
        new_pts = 6100090 if page == pages - 1 else from_pts + 30
        body = history_body(ids, new_pts=new_pts, more=page < pages - 1)
        request, events = answer(session, body)
        assert request.kind is RequestKind.HISTORY
        assert request.params["pts"] == str(from_pts)
        assert request.params["ts"] == "4200"
        all_events += events
        from_pts = new_pts

    recovered = [event for event in all_events if isinstance(event, HistoryRecovered)]
    assert len(recovered) == pages
    updates = [update for event in recovered for update in event.updates]
    assert [update.raw[1] for update in updates] == expected_ids
    assert all(update.recovered for update in updates)
    assert [item["id"] for event in recovered for item in event.messages] == expected_ids
    [lost] = [event for event in all_events if isinstance(event, EventsLost)]
    assert lost.persistent_recovered
    assert (lost.failed, lost.from_ts, lost.to_ts) == (3, 4200, 4350)
    assert session.pts == 6100090
    poll = take(session, 0.0)
    assert poll.kind is RequestKind.POLL
    assert query(poll)["key"] == SECOND_KEY
    assert query(poll)["ts"] == "4350"


def test_failed_3_without_pts_skips_history() -> None:
    """With no pts, failed 3 reports the lost ts range instead of calling getLongPollHistory."""
    session = polling_session(ts=4200, pts=None)
    answer(session, failed_body(3))

    _, events = answer(session, server_body(key=SECOND_KEY, ts=4350, pts=6100090))

    lost = [event for event in events if isinstance(event, EventsLost)]
    assert [(event.failed, event.from_ts, event.to_ts) for event in lost] == [(3, 4200, 4350)]
    assert not lost[0].persistent_recovered
    poll = take(session, 0.0)
    assert poll.kind is RequestKind.POLL
    assert query(poll)["ts"] == "4350"


# -- failed 4 and undocumented failed codes ------------------------------------------------


@pytest.mark.parametrize("version", [25, 20, 99])
def test_failed_4_stops_at_first_reply(version: int) -> None:
    """failed 4 raises VersionError at once, version unchanged, where vk_api re-polled forever."""
    session = Session(TOKEN, version=version)
    server_request, _ = answer(session, server_body(key=FIRST_KEY, ts=640))
    poll = take(session, 0.0)

    with pytest.raises(VersionError) as caught:
        session.receive_response(poll, 200, failed_body(4, min_version=0, max_version=19), 0.0)

    assert server_request.params["lp_version"] == str(version)
    assert query(poll)["version"] == str(version)
    error = caught.value
    assert (error.version, error.min_version, error.max_version) == (version, 0, 19)
    assert session.state is SessionState.STOPPED
    with pytest.raises(LocalProtocolError):
        session.next_request(3600.0)


@pytest.mark.parametrize("code", [0, 5, 9, 100])
def test_unknown_failed_code_backs_off(code: int) -> None:
    """An undocumented failed code retries with growing delays, where clients spun in a loop."""
    session = polling_session(ts=640, pts=None)
    now = 0.0
    delays: list[float] = []
    poll_times: list[float] = []
    server_times: list[float] = []
    lost: list[EventsLost] = []

    for _ in range(5):
        poll_times.append(now)
        _, events = answer(session, failed_body(code), now)
        retry = retry_in(events)
        assert str(code) in retry.reason
        delays.append(retry.delay)
        now = due(session, now)
        server_times.append(now)
        _, events = answer(session, server_body(key=SECOND_KEY, ts=640), now)
        lost += [event for event in events if isinstance(event, EventsLost)]

    _, events = answer(session, poll_body(641, [message(8301)]), now)

    assert delivered(events) == [message(8301)]
    assert session.ts == 641
    assert delays[0] >= 0.5
    assert all(earlier <= later <= 60.0 for earlier, later in pairwise(delays))
    assert all(later - earlier >= 1.0 for earlier, later in pairwise(poll_times))
    assert all(later - earlier >= 1.0 for earlier, later in pairwise(server_times))
    assert [event.failed for event in lost] == [code] * 5


# -- transient failures retry the same request ---------------------------------------------


def at_poll() -> Session:
    return polling_session(ts=9100, pts=7900000)


def at_refresh() -> Session:
    session = at_poll()
    answer(session, failed_body(2))
    return session


def at_history() -> Session:
    session = at_poll()
    answer(session, failed_body(1, ts=9130))
    return session


def finish_history(session: Session, now: float) -> list[SessionEvent]:
    """Reply to the history request after the resent one with the last page."""
    _, events = answer(session, history_body([8402], new_pts=7900002, more=False), now)
    return events


def finish_nothing(session: Session, now: float) -> list[SessionEvent]:
    return []


FAILING_REQUESTS: dict[
    str, tuple[Callable[[], Session], Callable[[Session, float], list[SessionEvent]], str]
] = {
    "poll": (at_poll, finish_nothing, "9100"),
    "key-refresh": (at_refresh, finish_nothing, "9100"),
    "history": (at_history, finish_history, "9130"),
}

FAILURES: dict[str, Callable[[Session, Request, float], list[SessionEvent]]] = {
    "reset": lambda session, request, now: session.receive_failure(request, "reset", now),
    "timeout": lambda session, request, now: session.receive_failure(request, "timed out", now),
    "http-503": lambda session, request, now: session.receive_response(
        request, 503, b"<html>503</html>", now
    ),
    "cut-body": lambda session, request, now: session.receive_response(
        request, 200, b'{"ts": 91', now
    ),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
@pytest.mark.parametrize(
    ("setup", "finish", "poll_ts"), FAILING_REQUESTS.values(), ids=FAILING_REQUESTS.keys()
)
def test_transient_failure_resends_same_request(
    setup: Callable[[], Session],
    finish: Callable[[Session, float], list[SessionEvent]],
    poll_ts: str,
    failure: Callable[[Session, Request, float], list[SessionEvent]],
) -> None:
    """A reset, timeout or bad reply resends the same request, where vkbottle lost the ts."""
    session = setup()
    first = take(session, 10.0)

    retry = retry_in(failure(session, first, 10.0))

    assert retry.delay > 0
    assert due(session, 10.0) == 10.0 + retry.delay
    now = 10.0 + retry.delay
    second = take(session, now)
    assert (second.kind, second.method, second.url) == (first.kind, first.method, first.url)
    assert second.params == first.params
    assert second.body == first.body
    events = session.receive_response(second, 200, _reply_for(second), now) + finish(session, now)
    assert not any(isinstance(event, RetryScheduled) for event in events)

    poll, events = answer(session, poll_body(9160, [message(8411), message(8412)]), now)
    assert query(poll)["ts"] == poll_ts
    assert delivered(events) == [message(8411), message(8412)]
    assert session.ts == 9160


def _reply_for(request: Request) -> bytes:
    """Return a successful reply to the resent `request` of the test above."""
    if request.kind is RequestKind.POLL:
        return poll_body(9100)
    if request.kind is RequestKind.API:
        return server_body(key=SECOND_KEY, ts=9150, pts=7900050)
    return history_body([8401], new_pts=7900001, more=True)


# -- the poll URL --------------------------------------------------------------------------


def test_poll_url_has_each_parameter_once() -> None:
    """Each poll URL has every parameter once and the key encoded once, where ts piled up."""
    mode = Mode.ATTACHMENTS | Mode.EXTENDED | Mode.PTS | Mode.FRIEND_EXTRA | Mode.RANDOM_ID
    session = Session(TOKEN, mode=mode | Mode.PTS, wait=25)
    keys = ["p+q=/7&w%", "z=&+/9?#"]
    answer(session, server_body(key=keys[0], ts=1720000000, server="im.example.test/lp/nim404"))
    polls: list[Request] = []

    for ts in (1720000000, 1720000001, 1720000002):
        request, _ = answer(session, poll_body(ts + 1))
        polls.append(request)
    answer(session, failed_body(2))
    answer(session, server_body(key=keys[1], ts=1720000050, server="im.example.test/lp/nim404"))
    polls.append(take(session, 0.0))

    expected_ts = ["1720000000", "1720000001", "1720000002", "1720000003"]
    expected_keys = [keys[0], keys[0], keys[0], keys[1]]
    for request, poll_ts, key in zip(polls, expected_ts, expected_keys, strict=True):
        parts = urlsplit(request.url)
        assert (parts.scheme, parts.netloc, parts.path) == (
            "https",
            "im.example.test",
            "/lp/nim404",
        )
        assert request.url.count("?") == 1
        assert query(request) == {
            "act": "a_check",
            "key": key,
            "ts": poll_ts,
            "wait": "25",
            "mode": "234",
            "version": "3",
        }
        assert dict(request.params) == query(request)
    assert "key=p%2Bq%3D%2F7%26w%25&" in polls[0].url
    assert len({len(request.url) for request in polls[:3]}) == 1


# -- backoff on getLongPollServer errors and rejected keys ---------------------------------


def test_refresh_errors_back_off_by_class() -> None:
    """Refresh errors 29, 6 and 10 back off without shrinking, where clients hit the rate limit."""
    session = polling_session(ts=7300, pts=None)
    answer(session, poll_body(7300))
    now = 3600.0
    answer(session, failed_body(2), now)
    server_times: list[float] = []
    delays: list[float] = []

    for code, text in ((29, "Rate limit reached"), (6, "Too many requests"), (10, "Internal")):
        server_times.append(now)
        _, events = answer(session, api_error_body(code, text), now)
        delays.append(retry_in(events).delay)
        now = due(session, now)
    for attempt in range(4):
        server_times.append(now)
        answer(session, server_body(key=f"{SECOND_KEY}-{attempt}", ts=7400 + attempt), now)
        poll, events = answer(session, failed_body(2), now)
        assert query(poll)["ts"] == "7300"
        delays.append(retry_in(events).delay)
        now = due(session, now)

    assert delays[0] >= 60.0
    assert all(earlier <= later for earlier, later in pairwise(delays))
    assert all(later - earlier >= 1.0 for earlier, later in pairwise(server_times))
    assert session.ts == 7300


@pytest.mark.parametrize(("code", "floor"), [(6, 1.0), (10, 1.0), (29, 60.0)])
def test_refresh_error_delay_has_floor(code: int, floor: float) -> None:
    """A streak of one refresh error waits at least its floor and then doubles up to the cap."""
    session = Session(TOKEN)
    now = 0.0
    delays: list[float] = []

    for _ in range(8):
        _, events = answer(session, api_error_body(code, "fake error text"), now)
        delays.append(retry_in(events).delay)
        now = due(session, now)

    assert delays[0] >= floor
    for earlier, later in pairwise(delays):
        assert later >= min(1.5 * earlier, 60.0)


def test_first_rejected_key_waits_before_next() -> None:
    """No two getLongPollServer calls come within a second, even when the first key is rejected."""
    session = Session(TOKEN)
    now = 0.0
    server_times: list[float] = []

    for attempt in range(4):
        action = session.next_request(now)
        if isinstance(action, Backoff):
            now = action.until
            action = take(session, now)
        assert action.kind is RequestKind.API
        server_times.append(now)
        session.receive_response(
            action, 200, server_body(key=f"{FIRST_KEY}-{attempt}", ts=7500), now
        )
        answer(session, failed_body(2), now)

    assert all(later - earlier >= 1.0 for earlier, later in pairwise(server_times)), server_times


def test_rejected_fresh_keys_name_likely_cause() -> None:
    """Keys rejected right after issue must give a diagnostic that hints at an IP or proxy."""
    session = polling_session(ts=7600, pts=None)
    answer(session, poll_body(7600))
    now = 0.0
    reasons: list[str] = []

    for attempt in range(5):
        _, events = answer(session, failed_body(2), now)
        reasons += [event.reason for event in events if isinstance(event, RetryScheduled)]
        if events:
            now = due(session, now)
        answer(session, server_body(key=f"{SECOND_KEY}-{attempt}", ts=7650), now)

    assert len(reasons) >= 3
    assert any("IP" in reason or "proxy" in reason for reason in reasons), reasons


# -- bounded backoff -----------------------------------------------------------------------


@settings(database=None, derandomize=True, max_examples=200)
@given(
    initial=st.floats(min_value=0.01, max_value=10.0),
    spread=st.floats(min_value=1.0, max_value=1000.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_delays_rise_to_cap(
    initial: float, spread: float, jitter: float, seed: int
) -> None:
    """Delays start at initial, never shrink and stop at the cap, where vkbottle's kept growing."""
    policy = BackoffPolicy(initial=initial, maximum=initial * spread, jitter=jitter)

    delays = [policy.delay(attempt, seed=seed) for attempt in range(1, 80)]

    assert initial <= delays[0] <= initial * (1 + jitter)
    assert all(earlier <= later for earlier, later in pairwise(delays))
    assert all(delay <= policy.maximum for delay in delays)
    assert delays[-1] == policy.maximum
    assert policy.delay(10**9, seed=seed) == policy.maximum


def fail_poll_or_api(session: Session, now: float, number: int) -> list[SessionEvent]:
    """Fail the request due at `now` in one of the ways a poll or an API call fails."""
    request = take(session, now)
    if number % 4 == 0:
        return session.receive_failure(request, "connection refused", now)
    if number % 4 == 1:
        return session.receive_response(request, 502, BAD_GATEWAY, now)
    if number % 4 == 2:
        return session.receive_response(request, 200, b"", now)
    if request.kind is RequestKind.API:
        return session.receive_response(request, 200, api_error_body(10, "Internal"), now)
    return session.receive_response(request, 200, b'{"ts": 99', now)


def test_mixed_failures_back_off_with_bounds() -> None:
    """Every kind of failure backs off within bounds, and the delay resets after a success."""
    policy = BackoffPolicy(initial=0.2, maximum=30.0)
    session = polling_session(ts=9900, pts=None, backoff=policy)
    now = 0.0
    delays: list[float] = []
    request_times: list[float] = []

    for number in range(40):
        request_times.append(now)
        delays.append(retry_in(fail_poll_or_api(session, now, number)).delay)
        now = due(session, now)
        assert session.ts == 9900

    assert 0.2 <= delays[0] <= 0.2 * (1 + policy.jitter)
    assert all(earlier <= later for earlier, later in pairwise(delays))
    assert delays[-1] == 30.0
    assert all(later - earlier >= 0.2 for earlier, later in pairwise(request_times))

    request = take(session, now)
    if request.kind is RequestKind.API:
        session.receive_response(request, 200, server_body(key=SECOND_KEY, ts=9950), now)
        request = take(session, now)
    assert query(request)["ts"] == "9900"
    session.receive_response(request, 200, poll_body(9901), now)
    retry = retry_in(fail_poll_or_api(session, now, 0))
    assert retry.attempt == 1
    assert 0.2 <= retry.delay <= 0.2 * (1 + policy.jitter)
