"""Tests of `check_fixture`: schema errors and values that look like tokens or keys."""

import json
from pathlib import Path
from typing import Any

import pytest
from fixture_facts import FIXTURES

from lprecord._check import check_fixture, find_secret
from lprecord._fixture import Exchange, ExchangeKind, Header, write_fixture

KEY = "6f1e0c9a4b7d2e8f3a5c1b9d7e2f4a6c8b0d3e5f"
VK1_TOKEN = "vk1.a.Qm7Zt2Lw9Xc4Vb8Nn1Pp5Rr3"
# The 85-character form of older VK tokens, letters and digits mixed.
OLD_TOKEN = ("a1b2c3d4e5" * 9)[:85]
SHIPPED = sorted(FIXTURES.glob("*.jsonl"))


def make_header(**changes: Any) -> Header:
    fields: dict[str, Any] = {
        "lp_version": 3,
        "mode": 234,
        "wait": 25,
        "api_version": "5.199",
        "tool": "lprecord 0.1.0",
        "source": "tests",
    }
    fields.update(changes)
    return Header(**fields)


def make_poll(**changes: Any) -> Exchange:
    fields: dict[str, Any] = {
        "t": 1.0,
        "elapsed": 0.5,
        "kind": ExchangeKind.POLL,
        "method": "GET",
        "url": "https://im.vk.com/nim100001",
        "params": {"act": "a_check", "key": "<redacted>", "ts": "10"},
        "status": 200,
        "body": b'{"ts":11,"updates":[]}',
    }
    fields.update(changes)
    return Exchange(**fields)


def write(path: Path, *exchanges: Exchange, header: Header | None = None) -> Path:
    write_fixture(path, header or make_header(), exchanges)
    return path


def messages(path: Path) -> list[str]:
    return [str(finding) for finding in check_fixture(path).findings]


def updates_body(text: str) -> bytes:
    return json.dumps({"ts": 11, "updates": [[4, 1, 1, 100002, 1, text]]}).encode()


# -- shipped and clean files -----------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_fixture_passes(path: Path) -> None:
    report = check_fixture(path)

    assert report.findings == ()
    assert report.ok


def test_shipped_fixtures_found() -> None:
    assert len(SHIPPED) >= 3


def test_clean_file_counts_exchanges(tmp_path: Path) -> None:
    report = check_fixture(write(tmp_path / "clean.jsonl", make_poll(), make_poll(t=2.0)))

    assert report.ok
    assert report.exchanges == 2


# -- findings --------------------------------------------------------------------------------


def test_unredacted_key_param(tmp_path: Path) -> None:
    path = write(tmp_path / "f.jsonl", make_poll(), make_poll(params={"key": "abc+with=sig"}))

    assert messages(path) == [f"{path}:3: unredacted secret in params.key"]


def test_unredacted_token_param(tmp_path: Path) -> None:
    path = write(tmp_path / "f.jsonl", make_poll(params={"access_token": "short"}))

    assert messages(path) == [f"{path}:2: unredacted secret in params.access_token"]


def test_empty_secret_param_allowed(tmp_path: Path) -> None:
    path = write(tmp_path / "f.jsonl", make_poll(params={"access_token": "", "key": ""}))

    assert messages(path) == []


def test_key_in_param_reported_once(tmp_path: Path) -> None:
    path = write(tmp_path / "f.jsonl", make_poll(params={"key": KEY}))

    assert messages(path) == [f"{path}:2: unredacted secret in params.key"]


def test_key_like_in_other_param(tmp_path: Path) -> None:
    path = write(tmp_path / "f.jsonl", make_poll(params={"ts": "10", "sig": KEY}))

    assert messages(path) == [f"{path}:2: key-like value in params.sig"]


def test_key_like_in_update_text(tmp_path: Path) -> None:
    path = write(tmp_path / "f.jsonl", make_poll(body=updates_body(f"my key is {KEY}!")))

    assert messages(path) == [f"{path}:2: key-like value in body.updates[0][5]"]


def test_server_reply_key(tmp_path: Path) -> None:
    reply = {"response": {"key": "not-redacted", "server": "im.vk.com/nim1", "ts": 1}}
    exchange = make_poll(
        kind=ExchangeKind.API,
        url="https://api.vk.com/method/messages.getLongPollServer",
        params={"access_token": "<redacted>"},
        body=json.dumps(reply).encode(),
    )
    path = write(tmp_path / "f.jsonl", exchange)

    assert messages(path) == [f"{path}:2: unredacted secret in body.response.key"]


def test_history_credentials_key(tmp_path: Path) -> None:
    reply = {"response": {"history": [], "credentials": {"key": KEY, "ts": 1}}}
    exchange = make_poll(kind=ExchangeKind.HISTORY, body=json.dumps(reply).encode())
    path = write(tmp_path / "f.jsonl", exchange)

    assert messages(path) == [f"{path}:2: unredacted secret in body.response.credentials.key"]


def test_other_key_field_allowed(tmp_path: Path) -> None:
    # An API error echoes request parameters as {"key": NAME, "value": VALUE} pairs.
    reply = {"error": {"error_code": 5, "request_params": [{"key": "method", "value": "x"}]}}
    path = write(tmp_path / "f.jsonl", make_poll(body=json.dumps(reply).encode()))

    assert messages(path) == []


def test_vk1_token_in_header_field(tmp_path: Path) -> None:
    path = write(tmp_path / "f.jsonl", make_poll(headers=(("x-echo", f"Bearer {VK1_TOKEN}"),)))

    assert messages(path) == [f"{path}:2: token-like value in headers.x-echo"]


def test_old_token_in_text_body(tmp_path: Path) -> None:
    body = f"<html>token={OLD_TOKEN}</html>".encode()
    path = write(tmp_path / "f.jsonl", make_poll(status=502, body=body))

    assert messages(path) == [f"{path}:2: token-like value in body"]


def test_key_in_binary_body(tmp_path: Path) -> None:
    body = b"\xff\xfe" + KEY.encode() + b"\x00"
    path = write(tmp_path / "f.jsonl", make_poll(body=body))

    assert messages(path) == [f"{path}:2: key-like value in body"]


def test_secret_in_header_line(tmp_path: Path) -> None:
    path = write(tmp_path / "f.jsonl", header=make_header(source=f"captured with {VK1_TOKEN}"))

    assert messages(path) == [f"{path}:1: token-like value in header.source"]


def test_secret_in_error_detail(tmp_path: Path) -> None:
    failed = make_poll(status=None, body=None, error_kind="reset", error_detail=f"key {KEY}")
    path = write(tmp_path / "f.jsonl", failed)

    assert messages(path) == [f"{path}:2: key-like value in error.detail"]


def test_secret_in_unknown_field(tmp_path: Path) -> None:
    exchange = make_poll(extra={"note": {"tokens": ["x", VK1_TOKEN]}})
    path = write(tmp_path / "f.jsonl", exchange)

    assert messages(path) == [f"{path}:2: token-like value in note.tokens[1]"]


def test_findings_in_line_order(tmp_path: Path) -> None:
    path = write(
        tmp_path / "f.jsonl",
        make_poll(params={"key": KEY}),
        make_poll(),
        make_poll(body=updates_body(KEY), headers=(("x-echo", VK1_TOKEN),)),
    )

    assert messages(path) == [
        f"{path}:2: unredacted secret in params.key",
        f"{path}:4: token-like value in headers.x-echo",
        f"{path}:4: key-like value in body.updates[0][5]",
    ]


@pytest.mark.parametrize(
    "value",
    [
        KEY[:-1],
        KEY + "a",
        "0123456789abcdef" * 4,
        "a" * 120,
        "1" * 120,
        "vk1.b.something",
        "vk1.a.",
        ("a1b2c3d4e5" * 9)[:84],
        "<redacted>",
    ],
)
def test_not_secret(value: str) -> None:
    assert find_secret("body.text", value) is None


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (KEY, "key-like"),
        (KEY.upper(), "key-like"),
        (f"x={KEY}&y", "key-like"),
        (VK1_TOKEN, "token-like"),
        (f"access_token={VK1_TOKEN}", "token-like"),
        (OLD_TOKEN, "token-like"),
        (OLD_TOKEN + "_-xyz", "token-like"),
    ],
)
def test_secret_shapes(value: str, kind: str) -> None:
    assert find_secret("body.text", value) == f"{kind} value in body.text"


# -- schema errors ---------------------------------------------------------------------------


def test_schema_error_with_line(tmp_path: Path) -> None:
    path = write(tmp_path / "f.jsonl", make_poll(), make_poll())
    lines = path.read_text("utf-8").splitlines()
    lines[2] = lines[2].replace('"kind": "poll"', '"kind": "longpoll"')
    path.write_text("\n".join(lines) + "\n", "utf-8")

    report = check_fixture(path)

    [finding] = report.findings
    assert finding.line == 3
    assert "unknown exchange kind 'longpoll'" in finding.message
    assert str(finding).startswith(f"{path}:3: ")
    assert report.exchanges is None
    assert not report.ok


def test_empty_file_finding(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")

    [finding] = check_fixture(path).findings

    assert finding.line is None
    assert str(finding) == f"{path}: file is empty; a fixture starts with a header line"


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        check_fixture(tmp_path / "absent.jsonl")
