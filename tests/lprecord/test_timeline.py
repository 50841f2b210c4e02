"""Sans-IO tests of the replay engine: timelines built from in-memory fixtures, no sockets."""

import json
import re
from typing import Any

import pytest

from lprecord._fixture import Exchange, ExchangeKind, Fixture, Header
from lprecord._timeline import Hold, ReplayEngine, Reply, Timeline

USER_ID = 3517
FIRST_TS = 64000
FIRST_PTS = 2100
SERVER_BASE = "127.0.0.1:9443"
#: The capture time of the recorded messages.getLongPollServer call; due times count from it.
RECORDED_START = 3.0
#: The engine's clock when the fake server receives its first API call.
START = 200.0

MESSAGE = [4, 7701, 1, 2000000005, 1700002000, "are we on?", {}, {}]
TYPING = [63, 2000000005, [3518], 1, 1700002001]
READ = [7, 2000000005, 7701]
HTML_502 = b"<html><body><h1>502</h1>upstream timed out</body></html>\n"


def to_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def server_exchange(*, ts: int = FIRST_TS, pts: int = FIRST_PTS) -> Exchange:
    """Build a recorded successful messages.getLongPollServer call."""
    result = {"key": "<redacted>", "server": f"lp.example.test/nim{USER_ID}", "ts": ts, "pts": pts}
    return Exchange(
        t=RECORDED_START,
        elapsed=0.125,
        kind=ExchangeKind.API,
        method="POST",
        url="https://api.example.test/method/messages.getLongPollServer",
        params={"access_token": "<redacted>", "v": "5.199", "need_pts": "1", "lp_version": "3"},
        status=200,
        body=to_json({"response": result}),
    )


def poll_exchange(
    *, due: float, body: bytes, status: int = 200, headers: tuple[tuple[str, str], ...] = ()
) -> Exchange:
    """Build a recorded poll that was sent at the recorded start and completed `due` s later."""
    return Exchange(
        t=RECORDED_START,
        elapsed=due,
        kind=ExchangeKind.POLL,
        method="GET",
        url=f"https://lp.example.test/nim{USER_ID}",
        params={"act": "a_check", "key": "<redacted>", "ts": str(FIRST_TS), "wait": "25"},
        status=status,
        headers=headers,
        body=body,
    )


def updates_exchange(*, due: float, ts: int, updates: list[Any]) -> Exchange:
    return poll_exchange(due=due, body=to_json({"ts": ts, "updates": updates}))


def fixture_of(*exchanges: Exchange) -> Fixture:
    header = Header(lp_version=3, mode=234, wait=25, api_version="5.199", user_id=USER_ID)
    return Fixture(header=header, exchanges=exchanges)


def api_params(**changes: str) -> dict[str, str]:
    params = {"access_token": "client-token-31f0", "v": "5.199", "lp_version": "3"}
    params.update(changes)
    return params


def poll_params(
    key: str, ts: int, *, wait: int = 25, mode: int = 2, version: int = 3
) -> dict[str, str]:
    return {
        "act": "a_check",
        "key": key,
        "ts": str(ts),
        "wait": str(wait),
        "mode": str(mode),
        "version": str(version),
    }


def json_of(decision: Reply | Hold) -> Any:
    assert isinstance(decision, Reply), decision
    return json.loads(decision.body)


def new_engine(fixture: Fixture, **options: Any) -> ReplayEngine:
    return ReplayEngine(Timeline.from_fixture(fixture), server_base=SERVER_BASE, **options)


def start_engine(fixture: Fixture, **options: Any) -> tuple[ReplayEngine, str]:
    """Create an engine, obtain a long poll server from it at START, and return it and the key."""
    engine = new_engine(fixture, **options)
    reply = engine.call_api("messages.getLongPollServer", api_params(), START)
    key: str = json_of(reply)["response"]["key"]
    return engine, key


# -- messages.getLongPollServer --------------------------------------------------------------


def test_server_key_is_40_hex_digits() -> None:
    _engine, key = start_engine(fixture_of(server_exchange()))

    assert re.fullmatch(r"[0-9a-f]{40}", key), key


def test_server_string_has_no_scheme() -> None:
    engine = new_engine(fixture_of(server_exchange()))

    reply = engine.call_api("messages.getLongPollServer", api_params(), START)

    assert json_of(reply)["response"]["server"] == f"127.0.0.1:9443/nim{USER_ID}"


def test_server_ts_is_recorded_ts() -> None:
    engine = new_engine(fixture_of(server_exchange()))

    reply = engine.call_api("messages.getLongPollServer", api_params(), START)

    assert json_of(reply)["response"]["ts"] == FIRST_TS


def test_server_pts_with_need_pts() -> None:
    engine = new_engine(fixture_of(server_exchange()))

    reply = engine.call_api("messages.getLongPollServer", api_params(need_pts="1"), START)

    assert json_of(reply)["response"]["pts"] == FIRST_PTS


def test_server_no_pts_without_need_pts() -> None:
    engine = new_engine(fixture_of(server_exchange()))

    reply = engine.call_api("messages.getLongPollServer", api_params(), START)

    assert "pts" not in json_of(reply)["response"]


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        pytest.param(
            "messages.getLongPollServer",
            {"v": "5.199", "lp_version": "3"},
            5,
            id="no-access-token",
        ),
        pytest.param(
            "messages.getLongPollServer",
            {"access_token": "client-token-31f0", "lp_version": "3"},
            8,
            id="no-v",
        ),
        pytest.param("messages.send", api_params(), 3, id="other-method"),
    ],
)
def test_api_error_codes(method: str, params: dict[str, str], code: int) -> None:
    engine = new_engine(fixture_of(server_exchange()))

    body = json_of(engine.call_api(method, params, START))

    assert "response" not in body
    assert body["error"]["error_code"] == code


# -- keys and versions -----------------------------------------------------------------------


def test_unknown_key_gives_bare_failed_2() -> None:
    engine, _key = start_engine(fixture_of(server_exchange()))

    decision = engine.poll(poll_params("0" * 40, FIRST_TS), START, START)

    assert json_of(decision) == {"failed": 2}


def test_key_before_ttl_is_accepted() -> None:
    engine, key = start_engine(fixture_of(server_exchange()), key_ttl=60.0)

    decision = engine.poll(poll_params(key, FIRST_TS), START + 59.5, START + 59.5)

    assert isinstance(decision, Hold)


def test_key_past_ttl_gives_failed_2() -> None:
    engine, key = start_engine(fixture_of(server_exchange()), key_ttl=60.0)

    decision = engine.poll(poll_params(key, FIRST_TS), START + 60.5, START + 60.5)

    assert json_of(decision) == {"failed": 2}


def test_version_above_max_gives_failed_4() -> None:
    engine, key = start_engine(fixture_of(server_exchange()))

    decision = engine.poll(poll_params(key, FIRST_TS, version=20), START, START)

    assert json_of(decision) == {"failed": 4, "min_version": 0, "max_version": 19}


def test_max_version_is_accepted() -> None:
    engine, key = start_engine(fixture_of(server_exchange()))

    decision = engine.poll(poll_params(key, FIRST_TS, version=19), START, START)

    assert isinstance(decision, Hold)


# -- the ts window ---------------------------------------------------------------------------

COUNTERS = [[80, count, 0] for count in range(300)]
NEWEST = FIRST_TS + len(COUNTERS)


def window_engine() -> tuple[ReplayEngine, str]:
    """Start an engine whose 300 recorded events are all available at START."""
    fixture = fixture_of(server_exchange(), updates_exchange(due=0.0, ts=NEWEST, updates=COUNTERS))
    return start_engine(fixture)


def test_ts_at_window_edge_gets_last_256() -> None:
    engine, key = window_engine()

    decision = engine.poll(poll_params(key, NEWEST - 256), START, START)

    assert json_of(decision) == {"ts": NEWEST, "updates": COUNTERS[-256:]}


@pytest.mark.parametrize("ts", [NEWEST - 257, NEWEST + 1], ids=["too-old", "future"])
def test_ts_outside_window_gives_failed_1(ts: int) -> None:
    engine, key = window_engine()

    body = json_of(engine.poll(poll_params(key, ts), START, START))

    assert body == {"failed": 1, "ts": NEWEST}
    assert type(body["ts"]) is int


def test_ts_before_recorded_start_gets_every_update() -> None:
    fixture = fixture_of(
        server_exchange(), updates_exchange(due=0.0, ts=FIRST_TS + 10, updates=COUNTERS[:10])
    )
    engine, key = start_engine(fixture)

    # FIRST_TS - 5 lies inside the 256-event window, and every recorded event is newer.
    body = json_of(engine.poll(poll_params(key, FIRST_TS - 5), START, START))

    assert body["updates"] == COUNTERS[:10]


# -- holding polls ---------------------------------------------------------------------------


def later_updates_fixture() -> Fixture:
    """Build a fixture whose three updates become available 5 s after the start."""
    return fixture_of(
        server_exchange(),
        updates_exchange(due=5.0, ts=FIRST_TS + 3, updates=[MESSAGE, TYPING, READ]),
    )


def test_poll_holds_until_updates_due() -> None:
    engine, key = start_engine(later_updates_fixture())

    decision = engine.poll(poll_params(key, FIRST_TS), START, START)

    assert decision == Hold(until=START + 5.0)


def test_held_poll_gets_updates_when_due() -> None:
    engine, key = start_engine(later_updates_fixture())

    decision = engine.poll(poll_params(key, FIRST_TS), START, START + 5.0)

    assert json_of(decision) == {"ts": FIRST_TS + 3, "updates": [MESSAGE, TYPING, READ]}


def test_reply_has_pts_with_mode_32() -> None:
    engine, key = start_engine(later_updates_fixture())

    decision = engine.poll(poll_params(key, FIRST_TS, mode=2 | 32), START, START + 5.0)

    # MESSAGE (4) and READ (7) are persistent events, TYPING (63) is not.
    assert json_of(decision)["pts"] == FIRST_PTS + 2


def test_reply_has_no_pts_without_mode_32() -> None:
    engine, key = start_engine(later_updates_fixture())

    decision = engine.poll(poll_params(key, FIRST_TS, mode=2 | 8 | 64 | 128), START, START + 5.0)

    assert "pts" not in json_of(decision)


def test_speed_2_halves_hold() -> None:
    engine, key = start_engine(later_updates_fixture(), speed=2.0)

    decision = engine.poll(poll_params(key, FIRST_TS), START, START)

    assert decision == Hold(until=START + 2.5)


def test_speed_2_serves_updates_at_half_time() -> None:
    engine, key = start_engine(later_updates_fixture(), speed=2.0)

    decision = engine.poll(poll_params(key, FIRST_TS), START, START + 2.5)

    assert json_of(decision)["updates"] == [MESSAGE, TYPING, READ]


def test_hold_ends_at_wait() -> None:
    engine, key = start_engine(fixture_of(server_exchange()))

    decision = engine.poll(poll_params(key, FIRST_TS, wait=25), START, START)

    assert decision == Hold(until=START + 25.0)


def test_hold_end_gives_empty_updates() -> None:
    engine, key = start_engine(fixture_of(server_exchange()))

    decision = engine.poll(poll_params(key, FIRST_TS, wait=25), START, START + 25.0)

    assert json_of(decision) == {"ts": FIRST_TS, "updates": []}


def test_hold_is_capped_at_90_s() -> None:
    engine, key = start_engine(fixture_of(server_exchange()))

    decision = engine.poll(poll_params(key, FIRST_TS, wait=120), START, START)

    assert decision == Hold(until=START + 90.0)


# -- recorded replies that are not updates ---------------------------------------------------


def failure_fixture() -> Fixture:
    """Build a fixture with two updates at 2 s, then a recorded failed 3 at 3 s."""
    return fixture_of(
        server_exchange(),
        updates_exchange(due=2.0, ts=FIRST_TS + 2, updates=[MESSAGE, TYPING]),
        poll_exchange(due=3.0, body=to_json({"failed": 3})),
    )


def test_recorded_failure_comes_after_earlier_updates() -> None:
    engine, key = start_engine(failure_fixture())

    # Both the updates and the failure are due; the consumer still polls from the first ts.
    first = engine.poll(poll_params(key, FIRST_TS), START + 10.0, START + 10.0)
    second = engine.poll(poll_params(key, FIRST_TS + 2), START + 10.0, START + 10.0)

    assert json_of(first) == {"ts": FIRST_TS + 2, "updates": [MESSAGE, TYPING]}
    assert json_of(second) == {"failed": 3}


def test_recorded_failure_served_once() -> None:
    engine, key = start_engine(failure_fixture())
    engine.poll(poll_params(key, FIRST_TS), START + 10.0, START + 10.0)
    engine.poll(poll_params(key, FIRST_TS + 2), START + 10.0, START + 10.0)

    reply = engine.call_api("messages.getLongPollServer", api_params(), START + 10.0)
    fresh_key = json_of(reply)["response"]["key"]
    decision = engine.poll(poll_params(fresh_key, FIRST_TS + 2), START + 10.0, START + 10.0)

    assert isinstance(decision, Hold)


def html_502_fixture() -> Fixture:
    return fixture_of(
        server_exchange(),
        poll_exchange(
            due=1.0,
            status=502,
            headers=(("content-type", "text/html; charset=utf-8"), ("server", "nginx")),
            body=HTML_502,
        ),
    )


def test_recorded_502_served_verbatim() -> None:
    engine, key = start_engine(html_502_fixture())

    decision = engine.poll(poll_params(key, FIRST_TS), START, START + 1.0)

    assert isinstance(decision, Reply)
    assert decision.status == 502
    assert decision.body == HTML_502


def test_recorded_502_keeps_content_type() -> None:
    engine, key = start_engine(html_502_fixture())

    decision = engine.poll(poll_params(key, FIRST_TS), START, START + 1.0)

    assert isinstance(decision, Reply)
    assert decision.content_type == "text/html; charset=utf-8"


# -- building a timeline ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "exchanges",
    [
        pytest.param(
            (updates_exchange(due=1.0, ts=FIRST_TS + 1, updates=[MESSAGE]),), id="polls-only"
        ),
        pytest.param(
            (
                Exchange(
                    t=0.0,
                    elapsed=0.125,
                    kind=ExchangeKind.API,
                    method="POST",
                    url="https://api.example.test/method/messages.getLongPollServer",
                    params={"access_token": "<redacted>", "v": "5.199"},
                    status=200,
                    body=to_json({"error": {"error_code": 5, "error_msg": "invalid token"}}),
                ),
            ),
            id="api-error-only",
        ),
    ],
)
def test_fixture_without_server_is_rejected(exchanges: tuple[Exchange, ...]) -> None:
    with pytest.raises(ValueError, match=r"no successful messages\.getLongPollServer reply"):
        Timeline.from_fixture(fixture_of(*exchanges))


def out_of_order_fixture() -> Fixture:
    """Build a fixture whose second recorded poll completed before its first one."""
    return fixture_of(
        server_exchange(),
        updates_exchange(due=5.0, ts=FIRST_TS + 1, updates=[MESSAGE]),
        updates_exchange(due=3.0, ts=FIRST_TS + 2, updates=[READ]),
        updates_exchange(due=8.0, ts=FIRST_TS + 3, updates=[TYPING]),
    )


@pytest.mark.parametrize(
    ("elapsed", "expected_ts"),
    [
        (2.0, FIRST_TS),
        (4.0, FIRST_TS),
        (5.0, FIRST_TS + 2),
        (7.0, FIRST_TS + 2),
        (8.0, FIRST_TS + 3),
    ],
)
def test_out_of_order_updates_wait_for_earlier(elapsed: float, expected_ts: int) -> None:
    # An update counts as available only once every update recorded before it is.
    engine, _key = start_engine(out_of_order_fixture())

    assert engine.newest_ts(START + elapsed) == expected_ts


def test_pts_counts_pushed_update() -> None:
    engine, key = start_engine(later_updates_fixture())
    before = json_of(engine.poll(poll_params(key, FIRST_TS, mode=32), START, START + 5.0))

    engine.push(READ, START + 6.0)
    after = json_of(engine.poll(poll_params(key, FIRST_TS + 3, mode=32), START, START + 6.0))

    assert before["pts"] == FIRST_PTS + 2
    assert after["pts"] == FIRST_PTS + 3
    assert after["ts"] == FIRST_TS + 4
