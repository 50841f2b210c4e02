"""API methods besides the long poll ones: recorded replies, the default set, error 3."""

from typing import Any

import pytest
import trio
from server_helpers import (
    USER_ID,
    Client,
    api_call,
    fixture_of,
    poll_reply,
    server_call,
)

from lprecord import Fixture, Timeline, open_fake_server
from lprecord._timeline import DEFAULT_CLOCK_ORIGIN

GROUP_ID = 100004
FAKE_USER = {"first_name": "Test", "last_name": "User", "can_access_closed": True}
MESSAGE = [4, 1000001, 33, 100002, 1700000000, "hello", {"title": " ... "}, {}, 0]


async def call(fixture: Fixture, method: str, *, after: float = 0.0, **params: str) -> Any:
    """Connect to a server replaying `fixture`, wait `after` s, and call `method`."""
    async with open_fake_server(fixture) as server, Client(server) as client:
        await client.connect()
        await trio.sleep(after)
        return await client.api(method, **params)


def user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, **FAKE_USER, "is_closed": False}


# -- users.get -------------------------------------------------------------------------------


async def test_users_get_returns_account(autojump_clock: trio.abc.Clock) -> None:
    reply = await call(fixture_of(server_call()), "users.get")

    assert reply == {"response": [user(USER_ID)]}


async def test_users_get_returns_requested_ids(autojump_clock: trio.abc.Clock) -> None:
    reply = await call(fixture_of(server_call()), "users.get", user_ids="100002, id100003")

    assert reply == {"response": [user(100002), user(100003)]}


@pytest.mark.parametrize("user_ids", ["durov", "0", "-5", "100002,x"])
async def test_users_get_rejects_unknown_ids(
    autojump_clock: trio.abc.Clock, user_ids: str
) -> None:
    reply = await call(fixture_of(server_call()), "users.get", user_ids=user_ids)

    assert reply["error"]["error_code"] == 113


# -- groups.getById --------------------------------------------------------------------------


async def test_groups_get_returns_recorded_community(autojump_clock: trio.abc.Clock) -> None:
    reply = await call(fixture_of(server_call(group_id=GROUP_ID)), "groups.getById")

    groups = reply["response"]["groups"]
    assert [group["id"] for group in groups] == [GROUP_ID]
    assert reply["response"]["profiles"] == []


async def test_groups_get_returns_requested_ids(autojump_clock: trio.abc.Clock) -> None:
    reply = await call(fixture_of(server_call()), "groups.getById", group_ids="1,club2,public3")

    assert [group["id"] for group in reply["response"]["groups"]] == [1, 2, 3]
    assert reply["response"]["groups"][1]["screen_name"] == "club2"


async def test_groups_get_old_api_version_gets_array(autojump_clock: trio.abc.Clock) -> None:
    reply = await call(fixture_of(server_call()), "groups.getById", group_id="7", v="5.131")

    assert [group["id"] for group in reply["response"]] == [7]


async def test_groups_get_without_community_fails(autojump_clock: trio.abc.Clock) -> None:
    reply = await call(fixture_of(server_call()), "groups.getById")

    assert reply["error"]["error_code"] == 100


async def test_groups_get_rejects_screen_names(autojump_clock: trio.abc.Clock) -> None:
    reply = await call(fixture_of(server_call()), "groups.getById", group_ids="apiclub")

    assert reply["error"]["error_code"] == 100


def test_timeline_reads_community_from_server_call() -> None:
    timeline = Timeline.from_fixture(fixture_of(server_call(group_id=GROUP_ID)))

    assert timeline.group_id == GROUP_ID


# -- utils.getServerTime and the virtual clock -------------------------------------------------


async def test_server_time_starts_at_date_header(autojump_clock: trio.abc.Clock) -> None:
    # 2023-11-14 22:13:20 GMT is Unix time 1700000000; the call took 0.05 s before it.
    dated = server_call(headers=(("date", "Tue, 14 Nov 2023 22:13:20 GMT"),))

    reply = await call(fixture_of(dated), "utils.getServerTime")

    assert reply == {"response": 1700000000}


async def test_server_time_runs_at_replay_speed(autojump_clock: trio.abc.Clock) -> None:
    dated = server_call(headers=(("date", "Tue, 14 Nov 2023 22:13:20 GMT"),))
    async with open_fake_server(fixture_of(dated), speed=2.0) as server, Client(server) as client:
        await client.connect()
        await trio.sleep(30.0)
        reply = await client.api("utils.getServerTime")
        local = server.server_time()

    assert reply == {"response": 1700000060}
    assert local == 1700000060


def test_clock_origin_from_first_message() -> None:
    fixture = fixture_of(server_call(), poll_reply(done=3.5, updates=[MESSAGE]))

    assert Timeline.from_fixture(fixture).clock_origin == 1700000000 - 3


def test_clock_origin_default_without_clues() -> None:
    fixture = fixture_of(server_call(), poll_reply(done=3.5, updates=[[80, 1, 0]]))

    assert Timeline.from_fixture(fixture).clock_origin == DEFAULT_CLOCK_ORIGIN


# -- recorded methods and unknown methods ----------------------------------------------------

FIRST_REPLY = {"response": {"count": 1, "items": [{"id": 1000001, "text": "first"}]}}
SECOND_REPLY = {"response": {"count": 1, "items": [{"id": 1000002, "text": "second"}]}}
RECORDED_USER = {"response": [{"id": USER_ID, "first_name": "Recorded", "last_name": "Name"}]}


def recorded_calls_fixture() -> Fixture:
    return fixture_of(
        server_call(),
        api_call("messages.getById", {"message_ids": "1000001"}, FIRST_REPLY),
        api_call("messages.getById", {"message_ids": "1000002"}, SECOND_REPLY),
        api_call("users.get", {}, RECORDED_USER),
        api_call(
            "messages.send", {"peer_id": "100002", "random_id": "<redacted>"}, {"response": 9}
        ),
    )


async def test_recorded_call_with_same_params(autojump_clock: trio.abc.Clock) -> None:
    reply = await call(recorded_calls_fixture(), "messages.getById", message_ids="1000002")

    assert reply == SECOND_REPLY


async def test_recorded_calls_in_order_without_match(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(recorded_calls_fixture()) as server, Client(server) as client:
        await client.connect()
        replies = [await client.api("messages.getById", message_ids="5") for _ in range(3)]

    assert replies == [FIRST_REPLY, SECOND_REPLY, SECOND_REPLY]


async def test_recorded_redacted_param_matches_any(autojump_clock: trio.abc.Clock) -> None:
    reply = await call(recorded_calls_fixture(), "messages.send", peer_id="100002", random_id="42")

    assert reply == {"response": 9}


async def test_recorded_reply_beats_default(autojump_clock: trio.abc.Clock) -> None:
    reply = await call(recorded_calls_fixture(), "users.get")

    assert reply == RECORDED_USER


async def test_unknown_method_gets_error_3(autojump_clock: trio.abc.Clock) -> None:
    reply = await call(fixture_of(server_call()), "wall.get")

    assert reply["error"]["error_code"] == 3
    assert reply["error"]["error_msg"] == "Unknown method passed"


async def test_default_method_needs_token(autojump_clock: trio.abc.Clock) -> None:
    async with open_fake_server(fixture_of(server_call())) as server, Client(server) as client:
        reply = await client.api("users.get", access_token="")

    assert reply["error"]["error_code"] == 5


def test_recorded_long_poll_calls_not_served_as_methods() -> None:
    timeline = Timeline.from_fixture(recorded_calls_fixture())

    assert [call.method for call in timeline.api_calls] == [
        "messages.getById",
        "messages.getById",
        "users.get",
        "messages.send",
    ]
