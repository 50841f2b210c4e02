"""Tests for Session, driven through scripted exchanges with no I/O.

Each test acts as the transport. It takes the request that `next_request`
returns, replies with a status and body (or reports a transport failure) at a
virtual time, and checks the events and the next request.
"""

import dataclasses
import json
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from session_driving import due_time, fail, retry_of, serve, take_request

from lpcore import (
    DEFAULT_API_VERSION,
    ApiError,
    Backoff,
    BackoffPolicy,
    Checkpoint,
    EventsLost,
    HistoryRecovered,
    LocalProtocolError,
    MessageNew,
    Request,
    RequestKind,
    ServerObtained,
    Session,
    SessionState,
    UpdatesReceived,
    VersionError,
    parse_update,
)

# Distinctive fake secrets, so that a leak shows up as a plain substring.
TOKEN = "tok-Qz7Rf9LmXw"
KEY = "key-Hv3Np8TsYb"
SECOND_KEY = "key-Wd5Gc2JkPe"
SERVER = "im.vk.com/nim100001"

BAD_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
    b"<body><center><h1>502 Bad Gateway</h1></center></body>\r\n</html>\r\n"
)


# -- reply bodies -------------------------------------------------------------------


def server_reply(
    *, ts: int = 1000, pts: int | None = 500000, key: str = KEY, server: str = SERVER
) -> bytes:
    response: dict[str, Any] = {"key": key, "server": server, "ts": ts}
    if pts is not None:
        response["pts"] = pts
    return json.dumps({"response": response}).encode()


def poll_reply(ts: int, updates: list[Any] | None = None, *, pts: int | None = None) -> bytes:
    reply: dict[str, Any] = {"ts": ts, "updates": updates or []}
    if pts is not None:
        reply["pts"] = pts
    return json.dumps(reply).encode()


def history_reply(
    history: list[Any], *, new_pts: int, more: bool = False, ts: int | None = None
) -> bytes:
    response: dict[str, Any] = {
        "history": history,
        "messages": {"count": 0, "items": []},
        "new_pts": new_pts,
        "more": int(more),
    }
    if ts is not None:
        response["credentials"] = {"key": SECOND_KEY, "server": SERVER, "ts": ts, "pts": new_pts}
    return json.dumps({"response": response}).encode()


def failed_reply(code: int, **fields: Any) -> bytes:
    return json.dumps({"failed": code, **fields}).encode()


def api_error(code: int, message: str, **fields: Any) -> bytes:
    return json.dumps({"error": {"error_code": code, "error_msg": message, **fields}}).encode()


def message(message_id: int) -> list[Any]:
    return [4, message_id, 1, 100001, 1700000000, f"text {message_id}", {}, {}]


# -- driving the session --------------------------------------------------------------


def query_of(request: Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query, strict_parsing=True)


def form_of(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.body.decode("ascii"), strict_parsing=True)


def polling_session(*, ts: int = 1000, pts: int | None = 500000, **options: Any) -> Session:
    """Return a session that obtained KEY and SERVER with `ts` and `pts`."""
    session = Session(TOKEN, **options)
    serve(session, server_reply(ts=ts, pts=pts))
    assert session.state is SessionState.POLLING
    return session


# -- getLongPollServer and the first poll --------------------------------------------


def test_first_request_gets_server() -> None:
    request = take_request(Session(TOKEN), 0.0)

    assert request.kind is RequestKind.API
    assert request.method == "POST"
    assert request.url == "https://api.vk.com/method/messages.getLongPollServer"
    assert request.api_method == "messages.getLongPollServer"
    assert ("Content-Type", "application/x-www-form-urlencoded") in request.headers
    assert form_of(request) == {
        "access_token": [TOKEN],
        "v": [DEFAULT_API_VERSION],
        "need_pts": ["1"],
        "lp_version": ["3"],
    }


def test_first_request_carries_group_id() -> None:
    request = take_request(Session(TOKEN, group_id=200001), 0.0)

    assert form_of(request)["group_id"] == ["200001"]


def test_server_reply_emits_server_obtained() -> None:
    session = Session(TOKEN)

    _, events = serve(session, server_reply(ts=1800000000, pts=500000))

    assert events == [ServerObtained(server=SERVER, ts=1800000000, pts=500000, kept_ts=False)]
    assert session.ts == 1800000000
    assert session.pts == 500000
    assert session.has_key


def test_poll_url_carries_server_ts() -> None:
    session = polling_session(ts=1800000000)

    request = take_request(session, 0.0)

    assert request.kind is RequestKind.POLL
    assert request.method == "GET"
    assert request.url.startswith("https://im.vk.com/nim100001?")
    assert query_of(request) == {
        "act": ["a_check"],
        "key": [KEY],
        "ts": ["1800000000"],
        "wait": ["25"],
        "mode": ["234"],
        "version": ["3"],
    }
    assert request.timeout > 25


def test_server_ts_as_string_is_accepted() -> None:
    session = Session(TOKEN)
    body = b'{"response": {"key": "k1", "server": "im.vk.com/nim1", "ts": "1800000000"}}'

    serve(session, body)

    assert session.ts == 1800000000


def test_updates_advance_ts_and_pts() -> None:
    session = polling_session(ts=1000, pts=500000)

    _, events = serve(session, poll_reply(1002, [message(5001), [80, 1, 0]], pts=500002))

    [received] = events
    assert isinstance(received, UpdatesReceived)
    assert received.ts == 1002
    assert received.pts == 500002
    assert [update.code for update in received.updates] == [4, 80]
    assert isinstance(received.updates[0], MessageNew)
    assert received.updates[0].message_id == 5001
    assert session.ts == 1002
    assert session.pts == 500002
    assert query_of(take_request(session, 0.0))["ts"] == ["1002"]


def test_malformed_update_does_not_stop_batch() -> None:
    session = polling_session(ts=1000)

    _, events = serve(session, poll_reply(1003, [[], ["4", 5050], message(5051)]))

    [received] = events
    assert isinstance(received, UpdatesReceived)
    assert [update.code for update in received.updates] == [-1, -1, 4]
    assert session.ts == 1003


def test_absent_pts_new_ts_drops_pts() -> None:
    session = polling_session(ts=1000, pts=500000)

    _, events = serve(session, poll_reply(1001, [message(5002)]))

    # pts 500000 goes with ts 1000: history from it would return 5002 again.
    assert session.pts is None
    [received] = events
    assert isinstance(received, UpdatesReceived)
    assert received.pts is None


def test_absent_pts_same_ts_keeps_pts() -> None:
    session = polling_session(ts=1000, pts=500000)

    serve(session, poll_reply(1000))

    assert session.pts == 500000


def test_server_without_pts_is_not_an_error() -> None:
    session = Session(TOKEN)

    _, events = serve(session, server_reply(ts=1000, pts=None))

    assert events == [ServerObtained(server=SERVER, ts=1000, pts=None, kept_ts=False)]
    assert session.pts is None

    _, events = serve(session, poll_reply(1001))

    assert session.pts is None
    assert [type(event) for event in events] == [UpdatesReceived]

    _, events = serve(session, poll_reply(1002, [message(5003)], pts=9000002))

    assert session.pts == 9000002
    assert session.ts == 1002


# -- failed replies ---------------------------------------------------------------------


def test_failed_1_without_pts_reports_loss() -> None:
    session = polling_session(ts=1000, pts=None)

    _, events = serve(session, failed_reply(1, ts=1300))

    [lost] = events
    assert isinstance(lost, EventsLost)
    assert (lost.failed, lost.from_ts, lost.to_ts, lost.pts) == (1, 1000, 1300, None)
    assert "no pts" in lost.reason
    assert session.ts == 1300
    assert session.has_key
    request = take_request(session, 0.0)
    assert request.kind is RequestKind.POLL
    assert query_of(request)["key"] == [KEY]
    assert query_of(request)["ts"] == ["1300"]


def test_failed_1_with_pts_recovers_from_history() -> None:
    session = polling_session(ts=1000, pts=500000)

    _, events = serve(session, failed_reply(1, ts=1300))

    assert events == []
    assert session.state is SessionState.RECOVERING
    request, events = serve(
        session, history_reply([[4, 1000050, 1, 100002]], new_pts=500001, ts=1301)
    )
    assert request.kind is RequestKind.HISTORY
    assert request.params["pts"] == "500000"
    assert request.params["credentials"] == "1"
    recovered, rest = events
    assert isinstance(recovered, HistoryRecovered)
    assert [update.raw for update in recovered.updates] == [[4, 1000050, 1, 100002]]
    # History keeps no typing or presence events: those in the gap are reported lost.
    assert isinstance(rest, EventsLost)
    assert rest.persistent_recovered
    # The range runs to where polling resumes: the credentials' ts.
    assert (rest.from_ts, rest.to_ts) == (1000, 1301)
    assert all(update.recovered for update in recovered.updates)
    assert (recovered.from_pts, recovered.new_pts) == (500000, 500001)
    assert session.pts == 500001
    # Polling resumes from the credentials' ts, which matches the history's end.
    assert query_of(take_request(session, 0.0))["ts"] == ["1301"]


def test_failed_1_with_string_ts() -> None:
    session = polling_session(ts=1000)

    serve(session, failed_reply(1, ts="1400"))

    assert session.ts == 1400


def test_failed_2_refreshes_key_and_keeps_ts() -> None:
    session = polling_session(ts=1000, pts=500000)
    serve(session, poll_reply(1000, pts=500000))

    _, events = serve(session, failed_reply(2, error="fake error text"))

    assert events == []
    assert not session.has_key
    request, events = serve(session, server_reply(ts=1005, pts=500005, key=SECOND_KEY))
    assert request.kind is RequestKind.API
    assert events == [ServerObtained(server=SERVER, ts=1000, pts=500000, kept_ts=True)]
    assert session.ts == 1000

    request = take_request(session, 0.0)
    assert query_of(request)["key"] == [SECOND_KEY]
    assert query_of(request)["ts"] == ["1000"]
    updates = [message(message_id) for message_id in range(6171, 6176)]
    events = session.receive_response(request, 200, poll_reply(1005, updates), 0.0)

    [received] = events
    assert isinstance(received, UpdatesReceived)
    assert [update.raw for update in received.updates] == updates
    assert session.ts == 1005


def test_failed_3_takes_new_ts_and_recovers() -> None:
    session = polling_session(ts=1000, pts=500000)

    _, events = serve(session, failed_reply(3))

    assert events == []
    assert not session.has_key
    request, events = serve(session, server_reply(ts=2000, pts=500040, key=SECOND_KEY))
    assert request.kind is RequestKind.API
    assert events == [ServerObtained(server=SERVER, ts=2000, pts=500000, kept_ts=False)]
    assert session.ts == 2000
    assert session.state is SessionState.RECOVERING
    request, events = serve(session, history_reply([], new_pts=500040))
    assert request.params["pts"] == "500000"
    assert request.params["ts"] == "1000"
    assert session.pts == 500040
    assert query_of(take_request(session, 0.0))["ts"] == ["2000"]


def test_history_gone_polls_without_pts() -> None:
    session = polling_session(ts=1000, pts=500000)
    serve(session, failed_reply(1, ts=1300))

    _, events = serve(session, api_error(907, "Value of ts or pts is too old"))

    [lost] = events
    assert isinstance(lost, EventsLost)
    assert (lost.from_ts, lost.to_ts) == (1000, 1300)
    assert "907" in lost.reason
    # failed 1 leaves the key valid, so polling goes on from 1300 at once;
    # its reply brings the pts that goes with that ts.
    request, _ = serve(session, poll_reply(1301, [message(5002)], pts=500031))
    assert request.kind is RequestKind.POLL
    assert query_of(request)["ts"] == ["1300"]
    assert session.pts == 500031


def test_history_pages_through_more() -> None:
    session = polling_session(ts=1000, pts=500000)
    serve(session, failed_reply(1, ts=1300))

    _, first = serve(session, history_reply([[6, 100002, 1000001]], new_pts=500001, more=True))
    request, second = serve(session, history_reply([[7, 100002, 1000001]], new_pts=500002))

    assert request.params["pts"] == "500001"
    assert [type(event) for event in first + second] == [
        HistoryRecovered,
        HistoryRecovered,
        EventsLost,
    ]
    assert session.state is SessionState.POLLING
    assert session.pts == 500002


def test_failed_4_raises_version_error_and_stops() -> None:
    session = polling_session(version=3)

    with pytest.raises(VersionError) as caught:
        serve(session, failed_reply(4, min_version=0, max_version=19))

    assert caught.value.version == 3
    assert caught.value.min_version == 0
    assert caught.value.max_version == 19
    assert session.state is SessionState.STOPPED
    with pytest.raises(LocalProtocolError):
        session.next_request(1.0)


def test_unknown_failed_backs_off_to_new_session() -> None:
    # Without a pts the lost events cannot be fetched, so the new session
    # goes straight to polling.
    session = polling_session(ts=600, pts=None)

    _, events = serve(session, failed_reply(5), now=10.0)

    retry = retry_of(events)
    assert retry.delay > 0
    assert retry.attempt == 1
    assert not session.has_key
    assert session.state is SessionState.NEED_SERVER
    until = due_time(session, 10.0)
    assert until == 10.0 + retry.delay
    request, events = serve(session, server_reply(ts=700), now=until)
    assert request.kind is RequestKind.API
    assert session.ts == 700
    assert take_request(session, until).kind is RequestKind.POLL


def test_repeated_unknown_failed_never_spins() -> None:
    session = polling_session(ts=600, pts=None)
    now = 0.0
    request_times: list[float] = []

    for _ in range(5):
        request_times.append(now)
        serve(session, failed_reply(5), now=now)
        now = due_time(session, now)
        serve(session, server_reply(ts=600, pts=None), now=now)

    assert all(later - earlier >= 1.0 for earlier, later in pairwise(request_times))


# -- transport failures and backoff -------------------------------------------------------


def test_transport_failure_keeps_ts_and_key() -> None:
    session = polling_session(ts=100)

    _, events = fail(session, now=5.0)

    retry = retry_of(events)
    assert retry.reason == "connection reset"
    assert session.ts == 100
    assert session.has_key
    assert isinstance(session.next_request(5.0), Backoff)

    request = take_request(session, 5.0 + retry.delay)
    assert request.kind is RequestKind.POLL
    assert query_of(request)["key"] == [KEY]
    assert query_of(request)["ts"] == ["100"]
    updates = [message(6281), message(6282), message(6283)]
    events = session.receive_response(request, 200, poll_reply(103, updates), 5.0 + retry.delay)
    [received] = events
    assert isinstance(received, UpdatesReceived)
    assert [update.raw for update in received.updates] == updates
    assert session.ts == 103


def test_backoff_holds_until_deadline() -> None:
    session = polling_session()

    _, events = fail(session, now=5.0)
    until = 5.0 + retry_of(events).delay

    backoff = session.next_request(until - 0.001)
    assert isinstance(backoff, Backoff)
    assert backoff.until == until
    assert backoff.reason == "connection reset"
    assert isinstance(session.next_request(until), Request)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (502, BAD_GATEWAY_PAGE),
        (200, BAD_GATEWAY_PAGE),
        (500, b'{"ts": 1001, "updates": []}'),
        (200, b'{"ts": 1001, "upd'),
        (200, b"{}"),
        (200, b'{"failed": 1}'),
    ],
    ids=["502-html", "200-html", "500-json", "truncated", "empty-object", "failed-1-no-ts"],
)
def test_unreadable_poll_reply_retries_same_ts(status: int, body: bytes) -> None:
    session = polling_session(ts=1000)

    _, events = serve(session, body, status=status)

    retry_of(events)
    assert session.ts == 1000
    request = take_request(session, due_time(session, 0.0))
    assert request.kind is RequestKind.POLL
    assert query_of(request)["ts"] == ["1000"]


def test_three_failed_polls_refresh_key_keep_ts() -> None:
    session = polling_session(ts=1000)
    now = 0.0

    for _ in range(3):
        request, _ = fail(session, now)
        assert request.kind is RequestKind.POLL
        now = due_time(session, now)

    request, events = serve(session, server_reply(ts=1900, key=SECOND_KEY), now=now)
    assert request.kind is RequestKind.API
    assert events == [ServerObtained(server=SERVER, ts=1000, pts=500000, kept_ts=True)]
    assert query_of(take_request(session, now))["ts"] == ["1000"]


def test_failure_delays_are_capped_and_reset() -> None:
    policy = BackoffPolicy(initial=0.2, maximum=45.0)
    session = polling_session(ts=11, backoff=policy)
    now = 0.0
    delays: list[float] = []
    request_times: list[float] = []

    for _ in range(24):
        request_times.append(now)
        _, events = fail(session, now, "connection refused")
        delays.append(retry_of(events).delay)
        now = due_time(session, now)
        assert session.ts == 11

    assert 0.2 <= delays[0] <= 0.2 * (1 + policy.jitter)
    assert all(earlier <= later for earlier, later in pairwise(delays))
    assert max(delays) == 45.0
    assert delays[-1] == 45.0
    assert all(later - earlier >= 0.2 for earlier, later in pairwise(request_times))

    serve(session, server_reply(ts=500), now=now)
    serve(session, poll_reply(12), now=now)
    _, events = fail(session, now, "connection refused")

    assert 0.2 <= retry_of(events).delay <= 0.2 * (1 + policy.jitter)
    assert retry_of(events).attempt == 1


def test_same_seed_gives_same_delays() -> None:
    assert failure_delays(seed=7) == failure_delays(seed=7)


def test_different_seeds_give_different_delays() -> None:
    assert failure_delays(seed=7) != failure_delays(seed=8)


def failure_delays(*, seed: int) -> list[float]:
    session = polling_session(seed=seed)
    now = 0.0
    delays: list[float] = []
    for _ in range(5):
        _, events = fail(session, now)
        delays.append(retry_of(events).delay)
        now = due_time(session, now)
    return delays


# -- API errors from getLongPollServer ------------------------------------------------------


def test_invalid_token_error_stops_session() -> None:
    session = Session(TOKEN)

    with pytest.raises(ApiError) as caught:
        serve(session, api_error(5, "User authorization failed: invalid access_token (4)."))

    assert caught.value.code == 5
    assert caught.value.method == "messages.getLongPollServer"
    assert session.state is SessionState.STOPPED
    with pytest.raises(LocalProtocolError):
        session.next_request(1.0)


@pytest.mark.parametrize(
    ("code", "min_delay"),
    [(6, 1.0), (10, 1.0), (29, 60.0)],
)
def test_transient_api_error_backs_off(code: int, min_delay: float) -> None:
    session = Session(TOKEN)

    _, events = serve(session, api_error(code, "fake error text"), now=3.0)

    retry = retry_of(events)
    assert retry.delay >= min_delay
    assert due_time(session, 3.0) == 3.0 + retry.delay
    assert session.state is SessionState.NEED_SERVER


def test_transient_api_errors_never_spin() -> None:
    session = Session(TOKEN)
    now = 0.0
    request_times: list[float] = []

    for code in (6, 10, 6, 10, 6, 10, 6, 10):
        request_times.append(now)
        serve(session, api_error(code, "fake error text"), now=now)
        now = due_time(session, now)

    assert all(later - earlier >= 1.0 for earlier, later in pairwise(request_times))
    request, _ = serve(session, server_reply(ts=1010), now=now)
    assert request.kind is RequestKind.API
    assert session.state is SessionState.POLLING


def test_delay_after_rate_limit_does_not_shrink() -> None:
    session = polling_session(ts=1000)
    serve(session, poll_reply(1000))
    serve(session, failed_reply(2))
    now = 0.0
    delays: list[float] = []

    for code, text in ((29, "Rate limit reached"), (6, "Too many"), (10, "Internal")):
        _, events = serve(session, api_error(code, text), now=now)
        delays.append(retry_of(events).delay)
        now = due_time(session, now)

    assert all(earlier <= later for earlier, later in pairwise(delays))


def test_failed_2_after_fresh_key_backs_off() -> None:
    session = polling_session(ts=1000)
    serve(session, poll_reply(1000))
    # A key that served a poll is refreshed at once when it expires.
    assert serve(session, failed_reply(2))[1] == []
    serve(session, server_reply(ts=1010, key=SECOND_KEY))
    now = 0.0
    delays: list[float] = []
    request_times: list[float] = []

    for attempt in range(4):
        request_times.append(now)
        _, events = serve(session, failed_reply(2), now=now)
        delays.append(retry_of(events).delay)
        now = due_time(session, now)
        serve(session, server_reply(ts=1011 + attempt), now=now)
        assert session.ts == 1000

    assert all(delay > 0 for delay in delays)
    assert all(earlier <= later for earlier, later in pairwise(delays))
    assert all(later - earlier >= 1.0 for earlier, later in pairwise(request_times))


def test_captcha_error_carries_challenge() -> None:
    session = Session(TOKEN)
    body = (
        b'{"error": {"error_code": 14, "error_msg": "Captcha needed", "captcha_sid":'
        b' "100000000001", "captcha_img": "https:\\/\\/api.vk.com\\/captcha.php?sid=100000000001'
        b'&s=1"}}'
    )

    with pytest.raises(ApiError) as caught:
        serve(session, body)

    assert caught.value.code == 14
    assert caught.value.captcha_sid == "100000000001"
    assert caught.value.captcha_img == "https://api.vk.com/captcha.php?sid=100000000001&s=1"
    assert session.state is SessionState.STOPPED


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (502, BAD_GATEWAY_PAGE),
        (200, BAD_GATEWAY_PAGE),
        (200, b'{"response": {"server": "im.vk.com/nim1", "ts": 1000}}'),
        (200, b'{"response": {"key": "k1", "server": "im.vk.com/nim1"}}'),
        (200, b'{"something": 1}'),
    ],
    ids=["502-html", "200-html", "no-key", "no-ts", "no-response"],
)
def test_unreadable_server_reply_retries(status: int, body: bytes) -> None:
    session = Session(TOKEN)

    _, events = serve(session, body, now=2.0, status=status)

    retry_of(events)
    assert not session.has_key
    request = take_request(session, due_time(session, 2.0))
    assert request.kind is RequestKind.API


@pytest.mark.parametrize("in_poll", [True, False], ids=["poll", "server"])
def test_huge_integer_in_reply_retries(in_poll: bool) -> None:
    huge_number = b"1" + b"0" * 5000
    if in_poll:
        session = polling_session()
        body = b'{"ts": ' + huge_number + b', "updates": []}'
    else:
        session = Session(TOKEN)
        body = b'{"response": {"key": "k1", "server": "s", "ts": ' + huge_number + b"}}"

    _, events = serve(session, body)

    retry_of(events)


# -- secrets ------------------------------------------------------------------------------


def assert_no_secret(text: str) -> None:
    assert TOKEN not in text
    assert KEY not in text


def test_reprs_never_show_token_or_key() -> None:
    session = Session(TOKEN)
    assert_no_secret(repr(session))

    server_request, events = serve(session, server_reply())
    assert_no_secret(repr(server_request))
    assert_no_secret(str(server_request))
    assert_no_secret(repr(events))
    assert_no_secret(repr(session))

    poll_request = take_request(session, 0.0)
    assert KEY in poll_request.url
    assert_no_secret(repr(poll_request))
    assert_no_secret(repr(session))


def test_error_messages_never_show_token_or_key() -> None:
    session = polling_session()
    messages: list[str] = []

    request = take_request(session, 0.0)
    with pytest.raises(LocalProtocolError) as in_flight:
        session.next_request(0.0)
    messages.append(str(in_flight.value))
    with pytest.raises(LocalProtocolError) as foreign:
        session.receive_failure(take_request(Session(TOKEN), 0.0), "reset", 0.0)
    messages.append(str(foreign.value))

    events = session.receive_response(request, 502, BAD_GATEWAY_PAGE, 0.0)
    messages.append(retry_of(events).reason)
    backoff = session.next_request(0.0)
    assert isinstance(backoff, Backoff)
    messages.append(backoff.reason)

    with pytest.raises(VersionError) as version_error:
        serve(session, failed_reply(4, min_version=0, max_version=19), now=backoff.until)
    messages.append(str(version_error.value))
    with pytest.raises(LocalProtocolError) as stopped:
        session.next_request(backoff.until)
    messages.append(str(stopped.value))

    for text in messages:
        assert_no_secret(text)


def test_api_error_message_never_shows_token() -> None:
    session = Session(TOKEN)

    with pytest.raises(ApiError) as caught:
        serve(session, api_error(5, "User authorization failed: invalid access_token (4)."))

    assert_no_secret(str(caught.value))
    assert_no_secret(repr(caught.value))


def test_truncated_server_reply_hides_key() -> None:
    session = Session(TOKEN)
    body = server_reply()[:-10]

    _, events = serve(session, body, now=0.0)

    assert_no_secret(retry_of(events).reason)


# -- misuse ---------------------------------------------------------------------------------


def test_foreign_request_is_rejected() -> None:
    session = Session(TOKEN)
    other = take_request(Session(TOKEN), 0.0)
    request = take_request(session, 0.0)

    with pytest.raises(LocalProtocolError):
        session.receive_response(other, 200, server_reply(), 0.0)

    events = session.receive_response(request, 200, server_reply(), 0.0)
    assert [type(event) for event in events] == [ServerObtained]


def test_request_answered_twice_is_rejected() -> None:
    session = Session(TOKEN)
    request, _ = serve(session, server_reply())

    with pytest.raises(LocalProtocolError):
        session.receive_response(request, 200, server_reply(), 0.0)


def test_next_request_while_in_flight_is_rejected() -> None:
    session = Session(TOKEN)
    take_request(session, 0.0)

    with pytest.raises(LocalProtocolError):
        session.next_request(0.0)


def test_empty_token_is_rejected() -> None:
    with pytest.raises(LocalProtocolError):
        Session("")


@pytest.mark.parametrize("wait", [-1, 91])
def test_wait_out_of_range_is_rejected(wait: int) -> None:
    with pytest.raises(LocalProtocolError):
        Session(TOKEN, wait=wait)


# -- resuming -----------------------------------------------------------------------------


def test_resume_keeps_saved_ts_and_pts() -> None:
    session = Session(TOKEN, ts=777, pts=55)

    _, events = serve(session, server_reply(ts=900, pts=70))

    assert events == [ServerObtained(server=SERVER, ts=777, pts=55, kept_ts=True)]
    assert session.ts == 777
    assert session.pts == 55
    assert query_of(take_request(session, 0.0))["ts"] == ["777"]


def test_checkpoint_before_ts_is_rejected() -> None:
    with pytest.raises(LocalProtocolError):
        Session(TOKEN).checkpoint()


def test_checkpoint_returns_ts_and_pts() -> None:
    session = polling_session(ts=1000, pts=500000)
    serve(session, poll_reply(1002, [message(5090)], pts=500002))

    assert session.checkpoint() == Checkpoint(ts=1002, pts=500002)


def test_checkpoint_resumes_after_delivered_updates() -> None:
    first = polling_session(ts=1000, pts=500000)
    serve(first, poll_reply(1004, [message(5091)], pts=500004))
    saved = first.checkpoint()

    second = Session(TOKEN, ts=saved.ts, pts=saved.pts)
    serve(second, server_reply(ts=1050, pts=500050))

    assert query_of(take_request(second, 0.0))["ts"] == ["1004"]
    assert second.pts == 500004


# -- resuming inside a batch -------------------------------------------------------------


def test_resume_skips_updates_handled_before_restart() -> None:
    session = Session(TOKEN, ts=1000, pts=500000, skip=2)
    serve(session, server_reply(ts=1300))

    _, events = serve(session, poll_reply(1004, [message(1), message(2), message(3), message(4)]))

    [received] = events
    assert isinstance(received, UpdatesReceived)
    assert [update.raw for update in received.updates] == [message(3), message(4)]


def test_resume_skip_spans_short_batches() -> None:
    session = Session(TOKEN, ts=1000, skip=3)
    serve(session, server_reply(ts=1300))

    _, first = serve(session, poll_reply(1002, [message(1), message(2)]))
    _, second = serve(session, poll_reply(1004, [message(3), message(4)]))

    assert [
        u.raw for e in first + second if isinstance(e, UpdatesReceived) for u in e.updates
    ] == [message(4)]


# -- resuming inside a recovery ----------------------------------------------------------


def recovering_session() -> Session:
    """Return a session that took the first history page of a failed-1 loss from ts 1000."""
    session = polling_session(ts=1000, pts=500000)
    serve(session, failed_reply(1, ts=1300))
    page = [[4, 5101, 1, 100002], [4, 5102, 1, 100002]]
    serve(session, history_reply(page, new_pts=500002, more=True))
    return session


def test_checkpoint_inside_recovery_keeps_the_loss() -> None:
    session = recovering_session()

    assert session.checkpoint() == Checkpoint(
        ts=1300, pts=500002, skip=0, loss_from_ts=1000, loss_failed=1
    )


def test_resume_inside_recovery_goes_on_with_history() -> None:
    saved = recovering_session().checkpoint()
    resumed = Session(TOKEN, resume=saved)

    _, obtained = serve(resumed, server_reply(ts=1400, pts=500060))
    request, events = serve(
        resumed, history_reply([[4, 5103, 1, 100002]], new_pts=500003, ts=1310)
    )

    assert obtained == [ServerObtained(server=SERVER, ts=1300, pts=500002, kept_ts=True)]
    assert request.params["pts"] == "500002"
    recovered, lost = events
    assert isinstance(recovered, HistoryRecovered)
    assert [update.raw for update in recovered.updates] == [[4, 5103, 1, 100002]]
    assert isinstance(lost, EventsLost)
    assert (lost.failed, lost.from_ts, lost.to_ts) == (1, 1000, 1310)
    assert lost.persistent_recovered
    assert query_of(take_request(resumed, 0.0))["ts"] == ["1310"]


def test_resume_inside_recovered_page_skips_handled_updates() -> None:
    saved = dataclasses.replace(recovering_session().checkpoint(), pts=500000, skip=1)
    resumed = Session(TOKEN, resume=saved)
    serve(resumed, server_reply(ts=1400, pts=500060))
    page = [[4, 5101, 1, 100002], [4, 5102, 1, 100002]]
    items = [{"id": 5101, "text": "first"}, {"id": 5102, "text": "second"}]
    body = json.loads(history_reply(page, new_pts=500002, more=True))
    body["response"]["messages"] = {"count": 2, "items": items}

    _, events = serve(resumed, json.dumps(body).encode())

    [recovered] = events
    assert isinstance(recovered, HistoryRecovered)
    assert [update.raw for update in recovered.updates] == [[4, 5102, 1, 100002]]
    assert recovered.messages == ({"id": 5102, "text": "second"},)


def test_history_gone_after_resume_restarts() -> None:
    # Pages taken before the restart may have delivered events after ts
    # 1300, so polling must not go back there.
    resumed = Session(TOKEN, resume=recovering_session().checkpoint())
    serve(resumed, server_reply(ts=1400, pts=500060))

    assert serve(resumed, api_error(907, "Value of ts or pts is too old"))[1] == []
    _, events = serve(resumed, server_reply(ts=1500, pts=500090))

    lost = events[-1]
    assert isinstance(lost, EventsLost)
    assert (lost.from_ts, lost.to_ts, lost.persistent_recovered) == (1000, 1500, False)
    assert query_of(take_request(resumed, 0.0))["ts"] == ["1500"]


def test_resume_with_both_checkpoint_and_ts_is_misuse() -> None:
    with pytest.raises(LocalProtocolError, match="not both"):
        Session(TOKEN, ts=1000, resume=Checkpoint(ts=1000))


def test_skip_without_ts_is_misuse() -> None:
    with pytest.raises(LocalProtocolError, match="skip=1 needs the ts"):
        Session(TOKEN, skip=1)


def test_session_decodes_poll_bodies_with_the_given_loads() -> None:
    decoded: list[bytes] = []

    def loads(body: bytes) -> Any:
        decoded.append(body)
        return json.loads(body)

    session = Session(TOKEN, loads=loads)
    serve(session, server_reply(ts=1000, pts=500000))
    body = poll_reply(1001, [message(5002)], pts=500001)

    _, events = serve(session, body)

    # API replies are few and go through json; every poll body goes through loads.
    assert decoded == [body]
    [received] = events
    assert isinstance(received, UpdatesReceived)
    assert [update.code for update in received.updates] == [4]


@pytest.mark.parametrize(
    ("server", "url"),
    [
        ("im.vk.com/nim100001", "https://im.vk.com/nim100001"),
        ("https://im.vk.com/nim100001", "https://im.vk.com/nim100001"),
        ("http://im.vk.com/nim100001", "https://im.vk.com/nim100001"),
        ("HTTP://im.vk.com/nim100001", "https://im.vk.com/nim100001"),
    ],
)
def test_https_session_never_polls_in_clear(server: str, url: str) -> None:
    session = polling_session()
    serve(session, failed_reply(2))
    serve(session, server_reply(server=server), now=60.0)

    request = take_request(session, 60.0)

    assert request.base_url == url


def test_plain_http_api_may_poll_plain_http() -> None:
    # A local test server on plain HTTP names its poll server with http://.
    session = Session(TOKEN, api_url="http://127.0.0.1:8080/method")
    serve(session, server_reply(server="http://127.0.0.1:8080/nim1"))

    assert take_request(session, 0.0).base_url == "http://127.0.0.1:8080/nim1"


def test_abandoned_request_is_handed_out_again() -> None:
    session = polling_session(ts=1000)
    request = take_request(session, 0.0)

    session.abandon(request)

    again = take_request(session, 0.0)
    assert again == request
    assert session.ts == 1000


def test_checkpoint_advanced_counts_kept_events_into_pts() -> None:
    start = Checkpoint(ts=1000, pts=500000, skip=1)
    # A message (kept), a typing event (not kept), a read event (kept).
    handled = [parse_update(message(6301)), parse_update([61, 100002, 1]), parse_update([6, 3, 9])]

    assert start.advanced(handled) == Checkpoint(ts=1000, pts=500002, skip=4)
    assert Checkpoint(ts=1000).advanced(handled) == Checkpoint(ts=1000, skip=3)


def test_checkpoint_advanced_in_recovery_counts_only_skip() -> None:
    # During a recovery skip counts history events, which pts already orders.
    start = Checkpoint(ts=1300, pts=500002, loss_from_ts=1000, loss_failed=1)

    advanced = start.advanced([parse_update(message(6302))])

    assert advanced == Checkpoint(ts=1300, pts=500002, skip=1, loss_from_ts=1000, loss_failed=1)
