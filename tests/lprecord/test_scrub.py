"""Tests of scrubbing: consistent fake ids in every place, peer id ranges, filler text, bodies."""

import base64
import html
import json
from pathlib import Path
from typing import Any

import pytest
from fixture_facts import CHAT_SESSION, FAILURES_SESSION
from hypothesis import given
from hypothesis import strategies as st

from lpcore import CHAT_PEER_LIMIT, CHAT_PEER_OFFSET, Request, RequestKind
from lprecord._fixture import (
    Exchange,
    ExchangeKind,
    Fixture,
    FixtureWriter,
    Header,
    encode_body,
    read_fixture,
    write_fixture,
)
from lprecord._recorder import Recorder
from lprecord._scrub import PLACEHOLDER_PHOTO, Scrubber, scrub_file, scrub_fixture, scrub_text
from lptrio import HttpResponse

SEED = b"scrub-test-seed"
ME = 100001
ALICE = 100002
BOB = 100003
GROUP = 100004
CHAT = 7
CHAT_PEER = CHAT_PEER_OFFSET + CHAT
# A user id from the range VK issues above 2e11.
NEW_USER = 200_000_000_123
REAL_USERS = (ME, ALICE, BOB, NEW_USER)


def to_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def poll(body: bytes | None, **changes: Any) -> Exchange:
    fields: dict[str, Any] = {
        "t": 1.0,
        "elapsed": 0.5,
        "kind": ExchangeKind.POLL,
        "method": "GET",
        "url": f"https://im.vk.com/nim{ME}",
        "params": {"act": "a_check", "key": "<redacted>", "ts": "10"},
        "status": 200,
        "body": body,
    }
    fields.update(changes)
    return Exchange(**fields)


def api_call(method: str, reply: Any, **changes: Any) -> Exchange:
    fields: dict[str, Any] = {
        "t": 0.0,
        "elapsed": 0.1,
        "kind": ExchangeKind.HISTORY if method.endswith("History") else ExchangeKind.API,
        "method": "POST",
        "url": f"https://api.vk.com/method/{method}",
        "params": {"access_token": "<redacted>", "v": "5.199"},
        "status": 200,
        "body": to_json(reply),
    }
    fields.update(changes)
    return Exchange(**fields)


def scrub_updates(updates: list[Any], scrubber: Scrubber | None = None) -> list[Any]:
    scrubber = scrubber or Scrubber(seed=SEED)
    exchange = scrubber.scrub_exchange(poll(to_json({"ts": 11, "updates": updates})))
    result: list[Any] = exchange.json_body()["updates"]
    return result


def make_header(**changes: Any) -> Header:
    fields: dict[str, Any] = {
        "lp_version": 3,
        "mode": 234,
        "wait": 25,
        "api_version": "5.199",
        "user_id": ME,
        "tool": "lprecord 0.1.0",
        "source": "tests",
    }
    fields.update(changes)
    return Header(**fields)


def integers_in(value: Any) -> list[int]:
    """Every integer in a JSON value, including integers written as strings."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        numbers = [part for part in value.replace("_", " ").replace("/nim", " ").split()]
        return [int(part) for part in numbers if part.lstrip("-").isdigit()]
    if isinstance(value, list):
        return [number for item in value for number in integers_in(item)]
    if isinstance(value, dict):
        return [number for item in value.values() for number in integers_in(item)]
    return []


# -- ids -------------------------------------------------------------------------------------


def test_same_user_same_fake() -> None:
    scrubber = Scrubber(seed=SEED)

    assert scrubber.fake_user_id(ALICE) == scrubber.fake_user_id(ALICE)
    assert scrubber.fake_peer_id(ALICE) == scrubber.fake_user_id(ALICE)


def test_fake_differs_from_real() -> None:
    scrubber = Scrubber(seed=SEED)

    assert scrubber.fake_user_id(ALICE) != ALICE
    assert scrubber.fake_chat_id(CHAT) != CHAT
    assert scrubber.fake_group_id(GROUP) != GROUP


def test_fakes_are_one_to_one() -> None:
    scrubber = Scrubber(seed=SEED)
    reals = range(1, 3001)

    fakes = {scrubber.fake_chat_id(real) for real in reals}

    assert len(fakes) == len(reals)


def test_same_seed_same_fakes() -> None:
    first = Scrubber(seed=SEED)
    second = Scrubber(seed=SEED)

    assert first.fake_peer_id(CHAT_PEER) == second.fake_peer_id(CHAT_PEER)
    assert first.fake_peer_id(-GROUP) == second.fake_peer_id(-GROUP)


def test_random_seeds_differ() -> None:
    fakes = {Scrubber().fake_user_id(ALICE) for _ in range(5)}

    assert len(fakes) > 1


def test_repr_hides_mapping() -> None:
    scrubber = Scrubber(seed=SEED)
    fake = scrubber.fake_user_id(ALICE)

    assert str(fake) not in repr(scrubber)
    assert str(ALICE) not in repr(scrubber)
    assert SEED.decode() not in repr(scrubber)


@pytest.mark.parametrize("real", [1, ALICE, 1_999_999_999])
def test_user_stays_below_chat_range(real: int) -> None:
    fake = Scrubber(seed=SEED).fake_peer_id(real)

    assert 0 < fake < CHAT_PEER_OFFSET


@pytest.mark.parametrize("real", [CHAT_PEER_LIMIT, NEW_USER, 5 * CHAT_PEER_LIMIT])
def test_new_user_stays_above_2e11(real: int) -> None:
    scrubber = Scrubber(seed=SEED)

    assert scrubber.fake_peer_id(real) >= CHAT_PEER_LIMIT
    assert scrubber.fake_user_id(real) >= CHAT_PEER_LIMIT


def test_chat_peer_keeps_offset() -> None:
    scrubber = Scrubber(seed=SEED)

    fake = scrubber.fake_peer_id(CHAT_PEER)

    assert CHAT_PEER_OFFSET < fake < CHAT_PEER_LIMIT
    assert fake - CHAT_PEER_OFFSET == scrubber.fake_chat_id(CHAT)


def test_community_stays_negative() -> None:
    scrubber = Scrubber(seed=SEED)

    fake = scrubber.fake_peer_id(-GROUP)

    assert fake < 0
    assert fake == -scrubber.fake_group_id(GROUP)


def test_zero_stays_zero() -> None:
    scrubber = Scrubber(seed=SEED)

    assert scrubber.fake_peer_id(0) == 0
    assert scrubber.fake_user_id(0) == 0
    assert scrubber.fake_chat_id(0) == 0


def test_user_and_chat_maps_separate() -> None:
    # User 7 and chat 7 are different things, so each gets its own fake id.
    scrubber = Scrubber(seed=SEED)

    fake_chat = scrubber.fake_chat_id(CHAT)

    assert scrubber.fake_user_id(CHAT) != fake_chat
    assert scrubber.fake_group_id(CHAT) != fake_chat


# -- update arrays ---------------------------------------------------------------------------


def test_message_event_ids_and_text() -> None:
    scrubber = Scrubber(seed=SEED)
    update = [
        4,
        1000003,
        8193,
        CHAT_PEER,
        1700000020,
        "hi all",
        {"from": str(BOB), "source_mid": f" {ALICE}", "marked_users": [[1, [ME]], [1, "all"]]},
        {
            "attach1_type": "photo",
            "attach1": f"{ALICE}_456239017",
            "fwd": f"{BOB}_5,0_0",
            "geo": f"{ALICE}_1",
            "geo_provider": "4",
        },
        0,
    ]

    [scrubbed] = scrub_updates([update], scrubber)

    assert scrubbed[:3] == [4, 1000003, 8193]
    assert scrubbed[3] == scrubber.fake_peer_id(CHAT_PEER)
    assert scrubbed[4] == 1700000020
    assert scrubbed[5] == "lo rem"
    additional = scrubbed[6]
    assert additional["from"] == str(scrubber.fake_user_id(BOB))
    assert additional["source_mid"] == f" {scrubber.fake_user_id(ALICE)}"
    assert additional["marked_users"] == [[1, [scrubber.fake_user_id(ME)]], [1, "all"]]
    attachments = scrubbed[7]
    assert attachments["attach1"] == f"{scrubber.fake_user_id(ALICE)}_456239017"
    assert attachments["attach1_type"] == "photo"
    assert attachments["fwd"] == f"{scrubber.fake_user_id(BOB)}_5,0_0"
    assert attachments["geo"] == f"{scrubber.fake_user_id(ALICE)}_1"
    assert attachments["geo_provider"] == "4"


def test_community_author_string() -> None:
    scrubber = Scrubber(seed=SEED)
    update = [4, 1, 1, CHAT_PEER, 1, "", {"from": str(-GROUP), "from_admin": str(ALICE)}]

    [scrubbed] = scrub_updates([update], scrubber)

    assert scrubbed[6]["from"] == str(-scrubber.fake_group_id(GROUP))
    assert scrubbed[6]["from_admin"] == str(scrubber.fake_user_id(ALICE))


def test_service_message_texts() -> None:
    additional = {
        "source_act": "chat_title_update",
        "source_text": "New title",
        "source_old_text": "Old title",
        "source_message": "pinned text",
    }
    update = [4, 1, 8193, CHAT_PEER, 1, "", additional, {}, 0]

    [scrubbed] = scrub_updates([update])

    assert scrubbed[6]["source_act"] == "chat_title_update"
    for key in ("source_text", "source_old_text", "source_message"):
        assert scrubbed[6][key] != additional[key]
        assert len(scrubbed[6][key]) == len(additional[key])
        assert scrubbed[6][key].count(" ") == additional[key].count(" ")


def test_edit_attachments_at_index_6() -> None:
    # An edit with 7 elements carries the attachments right after the text.
    scrubber = Scrubber(seed=SEED)
    update = [5, 2, 8193, CHAT_PEER, 1, "edited", {"attach1": f"{BOB}_456239019"}]

    [scrubbed] = scrub_updates([update], scrubber)

    assert scrubbed[6]["attach1"] == f"{scrubber.fake_user_id(BOB)}_456239019"


def test_friend_events_stay_negated() -> None:
    scrubber = Scrubber(seed=SEED)
    updates = [[8, -ALICE, 4, 1700000050], [9, -BOB, 1, 1700000051], [81, -ALICE, 1, 1, -1, 0]]

    scrubbed = scrub_updates(updates, scrubber)

    assert scrubbed[0] == [8, -scrubber.fake_user_id(ALICE), 4, 1700000050]
    assert scrubbed[1] == [9, -scrubber.fake_user_id(BOB), 1, 1700000051]
    assert scrubbed[2][1] == -scrubber.fake_user_id(ALICE)


def test_friend_event_is_no_community() -> None:
    # -ALICE in event 8 is a user: it maps like ALICE, not like community ALICE.
    scrubber = Scrubber(seed=SEED)

    [scrubbed] = scrub_updates([[8, -ALICE, 0, 1]], scrubber)

    assert scrubbed[1] != -scrubber.fake_group_id(ALICE)


def test_chat_ids_match_peer() -> None:
    scrubber = Scrubber(seed=SEED)
    updates = [[51, CHAT, 0], [62, BOB, CHAT], [6, CHAT_PEER, 10]]

    scrubbed = scrub_updates(updates, scrubber)

    fake_chat = scrubber.fake_chat_id(CHAT)
    assert scrubbed[0] == [51, fake_chat, 0]
    assert scrubbed[1] == [62, scrubber.fake_user_id(BOB), fake_chat]
    assert scrubbed[2] == [6, CHAT_PEER_OFFSET + fake_chat, 10]


@pytest.mark.parametrize(("type_id", "maps_info"), [(6, True), (3, True), (1, False), (5, False)])
def test_chat_info_user_ids(type_id: int, maps_info: bool) -> None:
    scrubber = Scrubber(seed=SEED)

    [scrubbed] = scrub_updates([[52, type_id, CHAT_PEER, BOB]], scrubber)

    assert scrubbed[2] == scrubber.fake_peer_id(CHAT_PEER)
    assert scrubbed[3] == (scrubber.fake_user_id(BOB) if maps_info else BOB)


def test_activity_either_order() -> None:
    scrubber = Scrubber(seed=SEED)
    updates = [[63, [ALICE, BOB], CHAT_PEER, 2, 1], [64, CHAT_PEER, [ALICE], 1, 1]]

    scrubbed = scrub_updates(updates, scrubber)

    fake_peer = scrubber.fake_peer_id(CHAT_PEER)
    fake_alice = scrubber.fake_user_id(ALICE)
    assert scrubbed[0] == [63, [fake_alice, scrubber.fake_user_id(BOB)], fake_peer, 2, 1]
    assert scrubbed[1] == [64, fake_peer, [fake_alice], 1, 1]


@pytest.mark.parametrize(
    ("update", "id_positions"),
    [
        ([6, ALICE, 1000001], [1]),
        ([7, -GROUP, 1000001], [1]),
        ([10, -GROUP, 2], [1]),
        ([13, ALICE, 1000002], [1]),
        ([20, ALICE, 16], [1]),
        ([61, ALICE, 1], [1]),
        ([70, ALICE, 555], [1]),
        ([90, 2, ALICE], [2]),
        ([91, 1, CHAT_PEER, BOB, 60, 1700000000], [2, 3]),
        ([504, 3, ALICE, CHAT_PEER], [2, 3]),
    ],
)
def test_id_positions(update: list[Any], id_positions: list[int]) -> None:
    scrubber = Scrubber(seed=SEED)

    [scrubbed] = scrub_updates([update], scrubber)

    for index, value in enumerate(update):
        expected = scrubber.fake_peer_id(value) if index in id_positions else value
        assert scrubbed[index] == expected, index


def test_object_events() -> None:
    scrubber = Scrubber(seed=SEED)
    updates = [
        [114, {"peer_id": CHAT_PEER, "sound": 0, "disabled_until": -1}],
        [119, {"owner_id": -GROUP, "peer_id": ALICE, "event_id": "abc"}],
    ]

    scrubbed = scrub_updates(updates, scrubber)

    assert scrubbed[0][1]["peer_id"] == scrubber.fake_peer_id(CHAT_PEER)
    assert scrubbed[0][1]["disabled_until"] == -1
    assert scrubbed[1][1]["owner_id"] == scrubber.fake_peer_id(-GROUP)
    assert scrubbed[1][1]["peer_id"] == scrubber.fake_user_id(ALICE)
    assert scrubbed[1][1]["event_id"] == "abc"


def test_counters_and_unknown_kept() -> None:
    updates = [[80, 5, 0], [999, ALICE, {"x": ALICE}], [2, 1000002, 128]]

    assert scrub_updates(updates) == updates


def test_malformed_updates_kept() -> None:
    updates: list[Any] = [[], "text", [True, ALICE], [4], [52, [1], CHAT_PEER, BOB]]

    scrubbed = scrub_updates(updates)

    assert scrubbed[:4] == updates[:4]
    assert scrubbed[4][3] == BOB


# -- API replies -----------------------------------------------------------------------------


def test_server_path_maps_user() -> None:
    scrubber = Scrubber(seed=SEED)
    reply = {"response": {"key": "<redacted>", "server": f"im.vk.com/nim{ME}", "ts": 1}}

    scrubbed = scrubber.scrub_exchange(api_call("messages.getLongPollServer", reply))

    fake = scrubber.fake_user_id(ME)
    assert scrubbed.json_body()["response"]["server"] == f"im.vk.com/nim{fake}"
    assert scrubber.scrub_exchange(poll(b"{}")).url == f"https://im.vk.com/nim{fake}"


def test_server_port_untouched() -> None:
    scrubber = Scrubber(seed=SEED)

    scrubbed = scrubber.scrub_exchange(poll(b"{}", url="http://127.0.0.1:50123/nim2468"))

    assert scrubbed.url == f"http://127.0.0.1:50123/nim{scrubber.fake_user_id(2468)}"


def test_error_detail_path() -> None:
    scrubber = Scrubber(seed=SEED)
    failed = poll(
        None,
        status=None,
        error_kind="timeout",
        error_detail=f"no reply from https://im.vk.com/nim{ME} in 35 s",
    )

    scrubbed = scrubber.scrub_exchange(failed)

    assert (
        scrubbed.error_detail
        == f"no reply from https://im.vk.com/nim{scrubber.fake_user_id(ME)} in 35 s"
    )


HISTORY_REPLY: dict[str, Any] = {
    "response": {
        "history": [[4, 1000010, 1, ALICE], [6, ALICE, 1000009], [8, -BOB, 7, 1]],
        "messages": {
            "count": 1,
            "items": [
                {
                    "id": 1000010,
                    "peer_id": ALICE,
                    "from_id": ALICE,
                    "text": "missed message",
                    "fwd_messages": [{"from_id": BOB, "text": "older"}],
                    "action": {"type": "chat_invite_user", "member_id": -GROUP},
                    "attachments": [{"type": "photo", "photo": {"id": 5, "owner_id": ALICE}}],
                }
            ],
        },
        "profiles": [
            {
                "id": ALICE,
                "first_name": "Alice",
                "last_name": "Smith",
                "screen_name": "alice_smith",
                "photo_100": "https://sun.userapi.com/alice.jpg",
                "online": 1,
            }
        ],
        "groups": [{"id": GROUP, "name": "Club", "photo_50": "https://sun.userapi.com/g.jpg"}],
        "conversations": [
            {"peer": {"id": CHAT_PEER, "type": "chat", "local_id": CHAT}},
            {"peer": {"id": ALICE, "type": "user", "local_id": ALICE}},
        ],
        "credentials": {"key": "<redacted>", "server": f"im.vk.com/nim{ME}", "ts": 5},
        "new_pts": 500030,
    }
}


@pytest.fixture
def history() -> tuple[Scrubber, dict[str, Any]]:
    """A scrubbed getLongPollHistory reply and the scrubber that scrubbed it."""
    scrubber = Scrubber(seed=SEED)
    exchange = scrubber.scrub_exchange(api_call("messages.getLongPollHistory", HISTORY_REPLY))
    return scrubber, exchange.json_body()["response"]


def test_history_arrays(history: tuple[Scrubber, dict[str, Any]]) -> None:
    scrubber, response = history
    alice = scrubber.fake_user_id(ALICE)

    assert response["history"] == [
        [4, 1000010, 1, alice],
        [6, alice, 1000009],
        [8, -scrubber.fake_user_id(BOB), 7, 1],
    ]
    assert response["new_pts"] == 500030


def test_history_messages(history: tuple[Scrubber, dict[str, Any]]) -> None:
    scrubber, response = history
    [message] = response["messages"]["items"]

    assert message["id"] == 1000010
    assert message["peer_id"] == scrubber.fake_user_id(ALICE)
    assert message["from_id"] == scrubber.fake_user_id(ALICE)
    assert message["text"] == scrub_text("missed message")
    assert message["fwd_messages"][0]["from_id"] == scrubber.fake_user_id(BOB)
    assert message["fwd_messages"][0]["text"] == scrub_text("older")
    assert message["action"]["member_id"] == -scrubber.fake_group_id(GROUP)
    assert message["attachments"][0]["photo"]["owner_id"] == scrubber.fake_user_id(ALICE)


def test_history_profiles(history: tuple[Scrubber, dict[str, Any]]) -> None:
    scrubber, response = history
    [profile] = response["profiles"]

    assert profile["id"] == scrubber.fake_user_id(ALICE)
    assert profile["first_name"] == scrub_text("Alice")
    assert profile["last_name"] == scrub_text("Smith")
    assert profile["screen_name"] == scrub_text("alice_smith")
    assert profile["photo_100"] == PLACEHOLDER_PHOTO
    assert profile["online"] == 1


def test_history_groups(history: tuple[Scrubber, dict[str, Any]]) -> None:
    scrubber, response = history
    [group] = response["groups"]

    assert group["id"] == scrubber.fake_group_id(GROUP)
    assert group["name"] == scrub_text("Club")
    assert group["photo_50"] == PLACEHOLDER_PHOTO


def test_history_conversations(history: tuple[Scrubber, dict[str, Any]]) -> None:
    scrubber, response = history
    chat, user = (conversation["peer"] for conversation in response["conversations"])

    assert chat["id"] == scrubber.fake_peer_id(CHAT_PEER)
    assert chat["local_id"] == scrubber.fake_chat_id(CHAT)
    assert user["id"] == scrubber.fake_user_id(ALICE)
    assert user["local_id"] == scrubber.fake_user_id(ALICE)


def test_history_credentials(history: tuple[Scrubber, dict[str, Any]]) -> None:
    scrubber, response = history

    assert response["credentials"]["server"] == f"im.vk.com/nim{scrubber.fake_user_id(ME)}"


def test_history_keeps_no_real_id(history: tuple[Scrubber, dict[str, Any]]) -> None:
    _, response = history

    found = set(integers_in(response))

    assert not found & {ME, ALICE, BOB, GROUP, -GROUP, -BOB, CHAT_PEER}


def test_group_id_param_and_echo() -> None:
    scrubber = Scrubber(seed=SEED)
    request_params = [{"key": "method", "value": "x"}, {"key": "group_id", "value": str(GROUP)}]
    reply = {"error": {"error_code": 5, "request_params": request_params}}
    exchange = api_call(
        "messages.getLongPollServer", reply, params={"group_id": str(GROUP), "v": "5.199"}
    )

    scrubbed = scrubber.scrub_exchange(exchange)

    fake = str(scrubber.fake_group_id(GROUP))
    assert scrubbed.params == {"group_id": fake, "v": "5.199"}
    echoed = scrubbed.json_body()["error"]["request_params"]
    assert echoed == [{"key": "method", "value": "x"}, {"key": "group_id", "value": fake}]


# -- text ------------------------------------------------------------------------------------


def test_text_keeps_escaping() -> None:
    text = "1 &lt; 2 &amp;&amp; 3 &gt; 2<br>&quot;ok&quot; &#128512;"

    scrubbed = scrub_text(text)

    assert scrubbed == "0 &lt; 1 &amp;&amp; 2 &gt; 3<br>&quot;mi&quot; &#128512;"


def test_text_keeps_case_and_length() -> None:
    scrubbed = scrub_text("Привет, Мир! hello")

    assert scrubbed == "Loremi, Psu! mdolo"


def test_text_keeps_emoji_and_spaces() -> None:
    assert scrub_text("hi all \U0001f600\n") == "lo rem \U0001f600\n"


def test_typed_entity_stays_text() -> None:
    # A typed "&quot;" arrives as "&amp;quot;": only "&amp;" is an entity, "quot;" is text.
    assert scrub_text("&amp;quot;") == "&amp;lore;"


def vk_escape(text: str) -> str:
    """Escape text as VK does: & < > " as entities, line breaks as <br>."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace('"', "&quot;").replace("\n", "<br>")


@given(st.text())
def test_scrub_commutes_with_unescape(text: str) -> None:
    # The event's escaped text and the API's plain text of one message scrub alike.
    escaped = vk_escape(text)

    assert html.unescape(scrub_text(escaped).replace("<br>", "\n")) == scrub_text(text)


@given(st.text())
def test_scrub_keeps_length(text: str) -> None:
    assert len(scrub_text(vk_escape(text))) == len(vk_escape(text))


# -- bodies ----------------------------------------------------------------------------------


UPDATES_BODY: dict[str, Any] = {"ts": 11, "updates": [[6, ALICE, 5]]}


def test_ascii_body_stays_ascii() -> None:
    body = {"ts": 11, "updates": [[4, 1, 1, ALICE, 1, "привет"]]}
    original = json.dumps(body, separators=(",", ":")).encode()

    scrubbed = Scrubber(seed=SEED).scrub_exchange(poll(original))

    assert scrubbed.body is not None
    assert scrubbed.body.isascii()
    assert list(encode_body(scrubbed.body)) in (["json"], ["json_ascii"])


def test_slash_escapes_kept() -> None:
    body = {"ts": 11, "updates": [[4, 1, 1, ALICE, 1, "see https://example.com/"]]}
    original = to_json(body).replace(b"/", b"\\/")

    scrubbed = Scrubber(seed=SEED).scrub_exchange(poll(original))

    assert scrubbed.body is not None
    assert b"\\/" in scrubbed.body
    assert b"://" not in scrubbed.body
    assert str(ALICE).encode() not in scrubbed.body


def test_spaced_json_kept_spaced() -> None:
    original = json.dumps(UPDATES_BODY).encode()

    scrubbed = Scrubber(seed=SEED).scrub_exchange(poll(original))

    assert scrubbed.body is not None
    assert b", " in scrubbed.body
    assert json.loads(scrubbed.body)["updates"][0][1] != ALICE


def test_unchanged_body_kept_exact() -> None:
    original = b'{"ts":  11, "updates": []}'

    scrubbed = Scrubber(seed=SEED).scrub_exchange(poll(original))

    assert scrubbed.body == original
    assert "scrub_skipped" not in scrubbed.extra


@pytest.mark.parametrize(
    "body", [b"<html><body>502 Bad Gateway for 100002</body></html>", b"\xff\xfe binary"]
)
def test_non_json_body_skipped(body: bytes) -> None:
    scrubbed = Scrubber(seed=SEED).scrub_exchange(poll(body, status=502))

    assert scrubbed.body == body
    assert scrubbed.extra["scrub_skipped"] is True


def test_empty_body_not_skipped() -> None:
    scrubbed = Scrubber(seed=SEED).scrub_exchange(poll(b""))

    assert scrubbed.body == b""
    assert "scrub_skipped" not in scrubbed.extra


def test_stale_skip_mark_dropped() -> None:
    exchange = poll(to_json(UPDATES_BODY), extra={"scrub_skipped": True, "note": "kept"})

    scrubbed = Scrubber(seed=SEED).scrub_exchange(exchange)

    assert dict(scrubbed.extra) == {"note": "kept"}


def test_content_length_follows_body() -> None:
    original = to_json(UPDATES_BODY)
    headers = (("content-type", "application/json"), ("content-length", str(len(original))))

    scrubbed = Scrubber(seed=SEED).scrub_exchange(poll(original, headers=headers))

    assert scrubbed.body is not None
    assert len(scrubbed.body) != len(original)
    assert scrubbed.headers == (
        ("content-type", "application/json"),
        ("content-length", str(len(scrubbed.body))),
    )


# -- fixtures --------------------------------------------------------------------------------


def test_header_scrubbed() -> None:
    scrubber = Scrubber(seed=SEED)

    header = scrubber.scrub_header(make_header())

    assert header.scrubbed is True
    assert header.user_id == scrubber.fake_user_id(ME)
    assert header.source == "tests"


def test_header_without_user() -> None:
    header = Scrubber(seed=SEED).scrub_header(make_header(user_id=None))

    assert header.user_id is None
    assert header.scrubbed is True


@pytest.fixture
def scrubbed_chat() -> tuple[Fixture, Fixture]:
    """The shipped chat session and its scrubbed copy."""
    fixture = read_fixture(CHAT_SESSION)
    return fixture, scrub_fixture(fixture, Scrubber(seed=SEED))


def test_fixture_keeps_no_real_id(scrubbed_chat: tuple[Fixture, Fixture]) -> None:
    _, scrubbed = scrubbed_chat
    real = {ME, ALICE, BOB, GROUP, -GROUP, -ALICE, -BOB, CHAT_PEER}

    for exchange in scrubbed.exchanges:
        assert not set(integers_in(exchange.json_body())) & real, exchange.t
        assert str(ME) not in exchange.url


def test_fixture_same_shape(scrubbed_chat: tuple[Fixture, Fixture]) -> None:
    original, scrubbed = scrubbed_chat

    assert len(scrubbed.exchanges) == len(original.exchanges)
    for before, after in zip(original.exchanges, scrubbed.exchanges, strict=True):
        assert (after.t, after.elapsed, after.kind, after.status) == (
            before.t,
            before.elapsed,
            before.kind,
            before.status,
        )
        before_reply, after_reply = before.json_body(), after.json_body()
        assert after_reply.get("ts") == before_reply.get("ts")
        assert len(after_reply.get("updates", [])) == len(before_reply.get("updates", []))


def test_fixture_user_id_everywhere(scrubbed_chat: tuple[Fixture, Fixture]) -> None:
    _, scrubbed = scrubbed_chat
    fake = scrubbed.header.user_id
    server = scrubbed.exchanges[0].json_body()["response"]["server"]

    assert fake is not None
    assert server == f"im.vk.com/nim{fake}"
    assert scrubbed.exchanges[1].url == f"https://im.vk.com/nim{fake}"


def test_fixture_header_lists_none(scrubbed_chat: tuple[Fixture, Fixture]) -> None:
    _, scrubbed = scrubbed_chat

    assert scrubbed.header.scrubbed is True
    assert dict(scrubbed.header.extra) == {"scrub_skipped": []}


def test_fixture_lists_skipped_lines() -> None:
    fixture = Fixture(
        header=make_header(),
        exchanges=(
            poll(to_json(UPDATES_BODY)),
            poll(b"<html>502</html>", status=502),
            poll(to_json(UPDATES_BODY)),
            poll(base64.b64decode("//4="), status=200),
        ),
    )

    scrubbed = scrub_fixture(fixture, Scrubber(seed=SEED))

    assert scrubbed.header.extra["scrub_skipped"] == [3, 5]


def test_file_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "scrubbed.jsonl"

    written = scrub_file(FAILURES_SESSION, target, scrubber=Scrubber(seed=SEED))

    read_back = read_fixture(target)
    assert read_back.header == written.header
    assert read_back.exchanges == written.exchanges


def test_file_rejects_same_path(tmp_path: Path) -> None:
    source = tmp_path / "session.jsonl"
    source.write_bytes(CHAT_SESSION.read_bytes())

    with pytest.raises(ValueError, match="is the input file"):
        scrub_file(source, tmp_path / "." / "session.jsonl", overwrite=True)

    assert source.read_bytes() == CHAT_SESSION.read_bytes()


def test_file_rejects_existing_target(tmp_path: Path) -> None:
    target = tmp_path / "taken.jsonl"
    target.write_bytes(b"earlier\n")

    with pytest.raises(FileExistsError):
        scrub_file(CHAT_SESSION, target)

    assert target.read_bytes() == b"earlier\n"


def test_scrub_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"

    scrub_file(CHAT_SESSION, first, scrubber=Scrubber(seed=SEED))
    scrub_file(CHAT_SESSION, second, scrubber=Scrubber(seed=SEED))

    assert first.read_bytes() == second.read_bytes()


def test_written_file_holds_no_seed(tmp_path: Path) -> None:
    target = tmp_path / "scrubbed.jsonl"

    scrub_file(CHAT_SESSION, target, scrubber=Scrubber(seed=SEED))

    text = target.read_text("utf-8")
    assert SEED.decode() not in text
    assert SEED.hex() not in text
    header = json.loads(text.splitlines()[0])
    assert set(header) - set(json.loads(CHAT_SESSION.read_text("utf-8").splitlines()[0])) == {
        "scrub_skipped"
    }


# -- recorder --------------------------------------------------------------------------------


def poll_request(ts: int) -> Request:
    return Request(
        kind=RequestKind.POLL,
        method="GET",
        url=f"https://im.vk.com/nim{ME}?act=a_check&key=k&ts={ts}",
        params={"act": "a_check", "key": "k", "ts": str(ts)},
        timeout=35.0,
    )


def record_polls(path: Path, *, scrub: bool | Scrubber, replies: list[Any]) -> list[Exchange]:
    """Record one poll per reply with a Recorder; return what on_record saw."""
    seen: list[Exchange] = []
    with FixtureWriter.create(path, make_header()) as writer:
        recorder = Recorder(writer, token="t", start=0.0, scrub=scrub, on_record=seen.append)
        for number, reply in enumerate(replies):
            response = HttpResponse(status=200, headers=(), body=to_json(reply))
            recorder.exchange(
                poll_request(number),
                started=number,
                finished=number + 0.5,
                response=response,
                error=None,
            )
    return seen


def test_recorder_scrubs_consistently(tmp_path: Path) -> None:
    scrubber = Scrubber(seed=SEED)
    replies = [{"ts": 1, "updates": [[6, ALICE, 1]]}, {"ts": 2, "updates": [[61, ALICE, 1]]}]

    record_polls(tmp_path / "capture.jsonl", scrub=scrubber, replies=replies)

    exchanges = read_fixture(tmp_path / "capture.jsonl").exchanges
    fake = scrubber.fake_user_id(ALICE)
    assert exchanges[0].json_body()["updates"] == [[6, fake, 1]]
    assert exchanges[1].json_body()["updates"] == [[61, fake, 1]]
    assert exchanges[0].url == f"https://im.vk.com/nim{scrubber.fake_user_id(ME)}"


def test_recorder_scrub_true(tmp_path: Path) -> None:
    replies = [{"ts": 1, "updates": [[6, ALICE, 1]]}, {"ts": 2, "updates": [[7, ALICE, 1]]}]

    record_polls(tmp_path / "capture.jsonl", scrub=True, replies=replies)

    first, second = (
        e.json_body()["updates"][0] for e in read_fixture(tmp_path / "capture.jsonl").exchanges
    )
    assert first[1] != ALICE
    assert first[1] == second[1]


def test_recorder_unscrubbed_by_default(tmp_path: Path) -> None:
    replies = [{"ts": 1, "updates": [[6, ALICE, 1]]}]

    record_polls(tmp_path / "capture.jsonl", scrub=False, replies=replies)

    [exchange] = read_fixture(tmp_path / "capture.jsonl").exchanges
    assert exchange.json_body()["updates"] == [[6, ALICE, 1]]


def test_recorder_reports_written(tmp_path: Path) -> None:
    replies = [{"ts": 1, "updates": [[6, ALICE, 1]]}, {"ts": 2, "updates": []}]

    seen = record_polls(tmp_path / "capture.jsonl", scrub=Scrubber(seed=SEED), replies=replies)

    assert tuple(seen) == read_fixture(tmp_path / "capture.jsonl").exchanges


def test_write_scrubbed_fixture(tmp_path: Path) -> None:
    # A scrubbed fixture written with write_fixture reads back whole.
    fixture = scrub_fixture(read_fixture(CHAT_SESSION), Scrubber(seed=SEED))

    write_fixture(tmp_path / "out.jsonl", fixture.header, fixture.exchanges)

    assert read_fixture(tmp_path / "out.jsonl").exchanges == fixture.exchanges
