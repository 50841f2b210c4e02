"""Tests for fixture format v1: body encoding, reading, writing and error messages."""

import copy
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lprecord import _fixture
from lprecord._fixture import (
    FORMAT_VERSION,
    Exchange,
    ExchangeKind,
    Fixture,
    FixtureError,
    FixtureWriter,
    Header,
    decode_body,
    encode_body,
    exchange_from_json,
    exchange_to_json,
    header_from_json,
    header_to_json,
    read_fixture,
    write_fixture,
)

HEADER_OBJ: dict[str, Any] = {
    "lprecord": 1,
    "tool": "lprecord 0.1.0",
    "lp_version": 3,
    "mode": 234,
    "wait": 25,
    "api_version": "5.199",
    "user_id": 100001,
    "redacted": ["access_token", "key"],
    "scrubbed": False,
    "source": "tests",
}

POLL_OBJ: dict[str, Any] = {
    "t": 0.5,
    "elapsed": 0.031,
    "kind": "poll",
    "request": {
        "method": "GET",
        "url": "https://im.vk.com/nim1",
        "params": {"act": "a_check", "key": "<redacted>", "ts": "1800000000", "wait": "25"},
    },
    "response": {"status": 200, "body": {"json": {"ts": 1800000000, "updates": []}}},
}


def make_header(**changes: Any) -> Header:
    fields: dict[str, Any] = {
        "lp_version": 3,
        "mode": 234,
        "wait": 25,
        "api_version": "5.199",
        "user_id": 100001,
        "tool": "lprecord 0.1.0",
        "source": "tests",
    }
    fields.update(changes)
    return Header(**fields)


def make_exchange(**changes: Any) -> Exchange:
    fields: dict[str, Any] = {
        "t": 1.25,
        "elapsed": 0.5,
        "kind": ExchangeKind.POLL,
        "method": "GET",
        "url": "https://im.vk.com/nim1",
        "params": {"act": "a_check", "key": "<redacted>", "ts": "1800000000"},
        "status": 200,
        "body": b'{"ts":1800000001,"updates":[[6,100002,1000001]]}',
    }
    fields.update(changes)
    return Exchange(**fields)


def sample_exchanges() -> list[Exchange]:
    """Exchanges of every kind, outcome and body encoding."""
    return [
        make_exchange(
            t=0.0,
            elapsed=0.2,
            kind=ExchangeKind.API,
            method="POST",
            url="https://api.vk.com/method/messages.getLongPollServer",
            params={"access_token": "<redacted>", "need_pts": "1", "v": "5.199"},
            body=b'{"response":{"key":"abc","server":"im.vk.com/nim1","ts":"1"}}',
        ),
        make_exchange(t=0.25, body='{"ts":1,"updates":[[4,1,33,2,3,"привет"]]}'.encode()),
        make_exchange(t=0.5, body=b'{"ts":2,"updates":[[4,1,33,2,3,"\\u043f"]]}'),
        make_exchange(t=1.0, body=b'{"url": "https:\\/\\/vk.com"}'),
        make_exchange(t=2.0, status=502, body=b"<html><body>Bad Gateway</body></html>"),
        make_exchange(t=3.0, status=200, body=b""),
        make_exchange(t=4.0, body=b"\x00\xff\xfe binary"),
        make_exchange(
            t=5.0,
            kind=ExchangeKind.HISTORY,
            method="POST",
            url="https://api.vk.com/method/messages.getLongPollHistory",
            params={"ts": "1", "pts": "500012"},
            body=b'{"response":{"history":[],"messages":{"count":0,"items":[]}}}',
        ),
        make_exchange(
            t=35.0,
            elapsed=35.0,
            status=None,
            body=None,
            error_kind="timeout",
            error_detail="timed out after 35.0 s",
        ),
    ]


def write_lines(path: Path, lines: list[Any], *, end: bytes = b"\n") -> Path:
    """Write each item as one line: dicts and lists as JSON, str as text, bytes unchanged."""
    raw = []
    for line in lines:
        if isinstance(line, bytes):
            raw.append(line)
        elif isinstance(line, str):
            raw.append(line.encode())
        else:
            raw.append(json.dumps(line, ensure_ascii=False).encode())
    path.write_bytes(b"\n".join(raw) + end)
    return path


def changed(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    result.update(changes)
    return result


def without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    del result[key]
    return result


def with_body(body: Any) -> dict[str, Any]:
    return changed(POLL_OBJ, response={"status": 200, "body": body})


def with_request(**changes: Any) -> dict[str, Any]:
    return changed(POLL_OBJ, request={**POLL_OBJ["request"], **changes})


# --- body encoding --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a":1}', {"json": {"a": 1}}),
        ('{"a":"é"}'.encode(), {"json": {"a": "é"}}),
        (b'{"a":"\\u00e9"}', {"json_ascii": {"a": "é"}}),
        (b'{"a": 1}', {"text": '{"a": 1}'}),
        (b'{"a":"http:\\/\\/vk.com"}', {"text": '{"a":"http:\\/\\/vk.com"}'}),
        (b'{"a":1,"a":2}', {"text": '{"a":1,"a":2}'}),
        (b"1e5", {"text": "1e5"}),
        (b"NaN", {"text": "NaN"}),
        (b"[1e400]", {"text": "[1e400]"}),
        (b'"\\ud800"', {"text": '"\\ud800"'}),
        (b"<html>502</html>", {"text": "<html>502</html>"}),
        (b"", {"text": ""}),
        (b"null", {"json": None}),
        (b"\xff\xfe", {"base64": "//4="}),
        (b'{"a":"\xed\xa0\x80"}', {"base64": "eyJhIjoi7aCAIn0="}),
    ],
)
def test_encode_body_cases(body: bytes, expected: dict[str, Any]) -> None:
    assert encode_body(body) == expected
    assert decode_body(expected) == body


@pytest.mark.parametrize(("depth", "encoding"), [(100, "json"), (101, "text"), (5000, "text")])
def test_encode_body_nesting_cap(tmp_path: Path, depth: int, encoding: str) -> None:
    body = b"[" * depth + b"]" * depth
    path = tmp_path / "deep.jsonl"

    encoded = encode_body(body)
    write_fixture(path, make_header(), [make_exchange(body=body)])

    assert list(encoded) == [encoding]
    assert decode_body(encoded) == body
    assert read_fixture(path).exchanges[0].body == body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"xml": "<a/>"}, "unknown body encoding 'xml'; expected one of json, json_ascii, text"),
        ({}, "body must have exactly one key"),
        ({"json": 1, "text": "1"}, "body must have exactly one key"),
        (
            {"base64": "not base64!"},
            "body 'base64' is not valid base64: character ' ' at index 3 is not in the base64 "
            "alphabet",
        ),
        ({"base64": "é"}, "body 'base64' is not valid base64: character 'é' at index 0"),
        (
            {"base64": "//4"},
            "body 'base64' is not valid base64: its 3 characters are not whole groups of 4",
        ),
        ({"base64": 5}, "body 'base64' must be a string, got an integer 5"),
        ({"text": ["a"]}, "body 'text' must be a string, got an array"),
        ({"text": "\ud800"}, "body 'text' contains a lone surrogate at character 1"),
        ({"json": "\ud800"}, "body 'json' value cannot be written as UTF-8 JSON"),
        ({"json": float("nan")}, "body 'json' value cannot be written as UTF-8 JSON"),
        ({"json_ascii": [float("inf")]}, "body 'json_ascii' value cannot be written as JSON"),
    ],
)
def test_decode_body_rejects(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        decode_body(body)


def test_decode_body_rejects_non_mapping() -> None:
    with pytest.raises(TypeError, match="body must be an object"):
        decode_body("text")  # type: ignore[arg-type]


def test_decode_json_ascii_keeps_lone_surrogate() -> None:
    assert decode_body({"json_ascii": "\ud800"}) == b'"\\ud800"'


# Characters that stress the encoder: escapes, surrogates, line separators, non-ASCII.
_ANY_CHARACTER = st.characters(exclude_categories=())
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_ANY_CHARACTER, max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(_ANY_CHARACTER, max_size=4), children, max_size=4)
    ),
    max_leaves=16,
)


@st.composite
def json_looking_bytes(draw: st.DrawFn) -> bytes:
    """JSON text as different encoders write it: compact or spaced, escaped or raw."""
    value = draw(_JSON_VALUES)
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (",", ": ")]))
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), separators=separators)
    if draw(st.booleans()):
        text = text.replace("/", "\\/")
    return text.encode("utf-8", errors="surrogatepass")


# Fragments that mostly form almost-JSON: brackets, escapes, numbers, invalid UTF-8.
_TOKEN_SOUP = st.lists(
    st.sampled_from(
        [
            *(b"{", b"}", b"[", b"]", b'"', b'"a"', b":", b",", b" ", b"1", b"-0", b"1e5"),
            *(b"1.0", b"null", b"NaN", b"\\u00e9", b"\\ud83d", b"\\/", b"\xff", b"\n"),
            "é".encode(),
        ]
    ),
    max_size=24,
).map(b"".join)

_ANY_BODY = st.binary() | json_looking_bytes() | _TOKEN_SOUP


@given(_ANY_BODY)
def test_decode_encode_round_trip(body: bytes) -> None:
    assert decode_body(encode_body(body)) == body


@given(_ANY_BODY)
def test_body_round_trip_through_line(body: bytes) -> None:
    exchange = make_exchange(body=body)
    line = json.dumps(exchange_to_json(exchange), ensure_ascii=False).encode("utf-8")

    read_back = exchange_from_json(json.loads(line))

    assert read_back.body == body


@given(_JSON_VALUES)
def test_encode_body_prefers_json(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form, so this value cannot arrive unescaped.
        return

    assert encode_body(body) == {"json": value}


# --- header and exchange objects ----------------------------------------------------------


def test_header_from_json_defaults() -> None:
    minimal = {"lprecord": 1, "lp_version": 3, "mode": 2, "wait": 25, "api_version": "5.199"}

    header = header_from_json(minimal)

    assert header.user_id is None
    assert header.redacted == ()
    assert header.scrubbed is False
    assert header.tool == ""
    assert header.source == ""
    assert header.extra == {}


def test_header_to_json_order() -> None:
    header = make_header(extra={"capture_host": "ci"})

    obj = header_to_json(header)

    assert list(obj) == [*HEADER_OBJ, "capture_host"]
    assert obj["lprecord"] == FORMAT_VERSION


def test_header_rejects_extra_shadowing_field() -> None:
    with pytest.raises(ValueError, match=r"extra fields \['mode'\] of the header clash"):
        make_header(extra={"mode": 2})


def test_exchange_to_json_order() -> None:
    obj = exchange_to_json(make_exchange(extra={"note": "x"}))

    assert list(obj) == ["t", "elapsed", "kind", "request", "response", "note"]
    assert list(obj["request"]) == ["method", "url", "params"]
    assert obj["response"] == {
        "status": 200,
        "body": {"json": {"ts": 1800000001, "updates": [[6, 100002, 1000001]]}},
    }


def test_exchange_to_json_error() -> None:
    exchange = make_exchange(status=None, body=None, error_kind="reset")

    obj = exchange_to_json(exchange)

    assert "response" not in obj
    assert obj["error"] == {"kind": "reset", "detail": ""}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"error_kind": "timeout"}, "an exchange has either a response or an error, not both"),
        ({"status": None, "body": None}, "an exchange needs a response"),
        ({"status": None}, "a response needs both status and body"),
        ({"body": None}, "a response needs both status and body"),
        ({"status": 42}, "status 42 is not an HTTP status code"),
        ({"t": -1.0}, "t must be a finite, non-negative number"),
        ({"elapsed": float("nan")}, "elapsed must be a finite, non-negative number"),
        ({"url": "https://im.vk.com/nim1?act=a_check"}, "contains a query"),
        ({"error_detail": "x"}, "error_detail is set but the exchange has no error_kind"),
        ({"error_extra": {"x": 1}}, "error_extra is set but the exchange has no error"),
        ({"extra": {"kind": "api"}}, r"extra fields \['kind'\] of the exchange clash"),
        ({"request_extra": {"url": "/"}}, r"extra fields \['url'\] of the request clash"),
        (
            {"status": None, "body": None, "error_kind": ""},
            "error_kind must not be empty",
        ),
        (
            {"status": None, "body": None, "error_kind": "reset", "response_extra": {"x": 1}},
            "response_extra is set but the exchange has no response",
        ),
    ],
)
def test_exchange_rejects_misuse(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_exchange(**changes)


def test_exchange_rejects_plain_string_kind() -> None:
    with pytest.raises(TypeError, match="kind must be an ExchangeKind"):
        make_exchange(kind="poll")


def test_json_body() -> None:
    assert make_exchange(body=b'{"ts": 5}').json_body() == {"ts": 5}
    assert make_exchange(body=b"<html></html>").json_body() is None
    assert make_exchange(body=b"\xff").json_body() is None
    assert make_exchange(body=b"[NaN]").json_body() is None
    assert make_exchange(status=None, body=None, error_kind="reset").json_body() is None


# --- reading and writing files -------------------------------------------------------------


def test_round_trip_through_file(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    header = make_header(scrubbed=True, redacted=("access_token", "key", "sign"))
    exchanges = sample_exchanges()

    write_fixture(path, header, exchanges)
    fixture = read_fixture(path)

    assert fixture == Fixture(header=header, exchanges=tuple(exchanges), path=path)


def test_written_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    exchange = make_exchange(
        t=0.0, elapsed=0.031, params={"ts": "1"}, body='{"text":"é"}'.encode()
    )

    write_fixture(path, make_header(), [exchange])

    assert path.read_text("utf-8") == (
        '{"lprecord": 1, "tool": "lprecord 0.1.0", "lp_version": 3, "mode": 234, '
        '"wait": 25, "api_version": "5.199", "user_id": 100001, '
        '"redacted": ["access_token", "key"], "scrubbed": false, "source": "tests"}\n'
        '{"t": 0.0, "elapsed": 0.031, "kind": "poll", "request": {"method": "GET", '
        '"url": "https://im.vk.com/nim1", "params": {"ts": "1"}}, '
        '"response": {"status": 200, "body": {"json": {"text": "é"}}}}\n'
    )


def test_unknown_fields_kept_on_rewrite(tmp_path: Path) -> None:
    header = changed(HEADER_OBJ, capture_host="ci-7", flags=[1, 2])
    exchange = changed(
        POLL_OBJ,
        note="first poll",
        request={**POLL_OBJ["request"], "headers": [["User-Agent", "x"]]},
        response={**POLL_OBJ["response"], "reason": "OK"},
    )
    error = changed(
        without(POLL_OBJ, "response"),
        error={"kind": "timeout", "detail": "no answer", "attempt": 2},
    )
    source = write_lines(tmp_path / "in.jsonl", [header, exchange, error])
    target = tmp_path / "out.jsonl"

    fixture = read_fixture(source)
    write_fixture(target, fixture.header, fixture.exchanges)

    assert fixture.header.extra == {"capture_host": "ci-7", "flags": [1, 2]}
    assert fixture.exchanges[0].extra == {"note": "first poll"}
    assert fixture.exchanges[0].request_extra == {"headers": [["User-Agent", "x"]]}
    assert fixture.exchanges[0].response_extra == {"reason": "OK"}
    assert fixture.exchanges[1].error_extra == {"attempt": 2}
    rewritten = [json.loads(line) for line in target.read_text("utf-8").splitlines()]
    assert rewritten == [header, exchange, error]


def test_writer_rejects_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    path.write_text("keep me")

    with pytest.raises(FileExistsError):
        FixtureWriter.create(path, make_header())

    assert path.read_text() == "keep me"


def test_writer_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    path.write_text("old")

    with FixtureWriter.create(path, make_header(), overwrite=True):
        pass

    assert read_fixture(path).exchanges == ()


def test_writer_flushes_each_line(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    exchanges = sample_exchanges()

    with FixtureWriter.create(path, make_header()) as writer:
        assert read_fixture(path).exchanges == ()
        for count, exchange in enumerate(exchanges, start=1):
            writer.append(exchange)
            assert read_fixture(path).exchanges == tuple(exchanges[:count])

    assert writer.closed


@pytest.mark.parametrize(("sync", "expected_calls"), [(True, 3), (False, 0)])
def test_writer_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: bool, expected_calls: int
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)

    with FixtureWriter.create(tmp_path / "s.jsonl", make_header(), sync=sync) as writer:
        writer.append(make_exchange())
        writer.append(make_exchange())

    assert len(calls) == expected_calls


def test_writer_rejects_append_after_close(tmp_path: Path) -> None:
    writer = FixtureWriter.create(tmp_path / "s.jsonl", make_header())
    writer.close()
    writer.close()

    with pytest.raises(ValueError, match="the writer is closed"):
        writer.append(make_exchange())


class _FailingFile(io.BytesIO):
    """A file whose writes fail with OSError after the first `good_writes`."""

    def __init__(self, good_writes: int) -> None:
        super().__init__()
        self.good_writes = good_writes

    def write(self, data: Any, /) -> int:
        if self.good_writes == 0:
            super().write(bytes(data)[:5])
            raise OSError(28, "No space left on device")
        self.good_writes -= 1
        return super().write(data)


def test_writer_stops_after_failed_write() -> None:
    file = _FailingFile(good_writes=1)
    writer = FixtureWriter(file)
    writer.append(make_exchange())

    with pytest.raises(OSError, match="No space left"):
        writer.append(make_exchange())
    with pytest.raises(ValueError, match="an earlier write failed"):
        writer.append(make_exchange())


def test_writer_checks_line_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.jsonl"
    with FixtureWriter.create(path, make_header()) as writer:
        size = path.stat().st_size
        monkeypatch.setattr(_fixture, "MAX_LINE_SIZE", 200)

        with pytest.raises(ValueError, match="over the 200 bytes that read_fixture accepts"):
            writer.append(make_exchange(body=b"x" * 300))
        with pytest.raises(ValueError, match="lone surrogate"):
            writer.append(make_exchange(params={"q": "\ud800"}))
        writer.append(make_exchange(params={}, body=b""))

    assert path.stat().st_size > size
    assert len(read_fixture(path).exchanges) == 1


# --- corrupt files ---------------------------------------------------------------------------


CORRUPT_CASES: list[tuple[str, list[Any], int, str]] = [
    (
        "invalid JSON on line 3",
        [HEADER_OBJ, POLL_OBJ, '{"t": 1.0 "elapsed": 2}'],
        3,
        "line is not valid JSON: Expecting ',' delimiter: column 11",
    ),
    ("array line", [HEADER_OBJ, [1, 2]], 2, "line is an array, not an object"),
    ("string line", [HEADER_OBJ, '"poll"'], 2, "line is a string, not an object"),
    ("missing header", [POLL_OBJ, POLL_OBJ], 1, "missing header: the line has no 'lprecord'"),
    (
        "newer version",
        [changed(HEADER_OBJ, lprecord=2), POLL_OBJ],
        1,
        "format version 2 is newer than this lprecord supports (1); upgrade lprecord",
    ),
    (
        "version 0",
        [changed(HEADER_OBJ, lprecord=0)],
        1,
        "format version 0 is not valid; versions start at 1",
    ),
    (
        "version as string",
        [changed(HEADER_OBJ, lprecord="1")],
        1,
        'format version must be an integer, got a string "1"',
    ),
    (
        "version as boolean",
        [changed(HEADER_OBJ, lprecord=True)],
        1,
        "format version must be an integer, got a boolean true",
    ),
    (
        "header field type",
        [changed(HEADER_OBJ, mode="234")],
        1,
        "header field 'mode' must be an integer, got a string \"234\"",
    ),
    (
        "header missing field",
        [without(HEADER_OBJ, "api_version")],
        1,
        "header is missing 'api_version'",
    ),
    (
        "redacted not strings",
        [changed(HEADER_OBJ, redacted=[1])],
        1,
        "header field 'redacted' must be an array of strings",
    ),
    (
        "unknown body encoding",
        [HEADER_OBJ, POLL_OBJ, with_body({"xml": "<a/>"})],
        3,
        "unknown body encoding 'xml'; expected one of json, json_ascii, text, base64",
    ),
    ("missing t", [HEADER_OBJ, without(POLL_OBJ, "t")], 2, "exchange is missing 't'"),
    ("missing kind", [HEADER_OBJ, without(POLL_OBJ, "kind")], 2, "exchange is missing 'kind'"),
    (
        "t as string",
        [HEADER_OBJ, changed(POLL_OBJ, t="0.5")],
        2,
        "exchange field 't' must be a number, got a string \"0.5\"",
    ),
    (
        "t infinite",
        [HEADER_OBJ, json.dumps(POLL_OBJ).replace('"t": 0.5', '"t": 1e400')],
        2,
        "t must be a finite, non-negative number of seconds, got inf",
    ),
    (
        "elapsed infinite",
        [HEADER_OBJ, json.dumps(POLL_OBJ).replace('"elapsed": 0.031', '"elapsed": 1e400')],
        2,
        "elapsed must be a finite, non-negative number of seconds, got inf",
    ),
    (
        "bad base64",
        [HEADER_OBJ, with_body({"base64": "not base64!"})],
        2,
        "body 'base64' is not valid base64",
    ),
    (
        "second header",
        [HEADER_OBJ, POLL_OBJ, HEADER_OBJ],
        3,
        "line is a second header, but a fixture has one header, on line 1",
    ),
    (
        "response and error",
        [HEADER_OBJ, changed(POLL_OBJ, error={"kind": "timeout"})],
        2,
        "exchange has both 'response' and 'error'",
    ),
    (
        "no outcome",
        [HEADER_OBJ, without(POLL_OBJ, "response")],
        2,
        "exchange is missing 'response' (or 'error' for a transport error)",
    ),
    (
        "error without kind",
        [HEADER_OBJ, changed(without(POLL_OBJ, "response"), error={"detail": "x"})],
        2,
        "error is missing 'kind'",
    ),
    (
        "unknown kind",
        [HEADER_OBJ, changed(POLL_OBJ, kind="upload")],
        2,
        "unknown exchange kind 'upload'; expected one of api, poll, history",
    ),
    (
        "url with query",
        [HEADER_OBJ, with_request(url="https://im.vk.com/nim1?act=a_check")],
        2,
        "contains a query; put its parameters in params instead",
    ),
    (
        "param not string",
        [HEADER_OBJ, with_request(params={"wait": 25})],
        2,
        "request param 'wait' must be a string as sent on the wire, got an integer 25",
    ),
    (
        "status out of range",
        [HEADER_OBJ, changed(POLL_OBJ, response={"status": 42, "body": {"text": ""}})],
        2,
        "status 42 is not an HTTP status code",
    ),
    (
        "body two encodings",
        [HEADER_OBJ, with_body({"text": "a", "base64": "YQ=="})],
        2,
        "body must have exactly one key",
    ),
    (
        "negative t",
        [HEADER_OBJ, changed(POLL_OBJ, t=-0.5)],
        2,
        "t must be a finite, non-negative number of seconds, got -0.5",
    ),
    ("blank line", [HEADER_OBJ, "", POLL_OBJ], 2, "line is blank"),
    (
        "duplicate key",
        [HEADER_OBJ, '{"t": 1, "t": 2}'],
        2,
        "line is not valid JSON: duplicate key 't'",
    ),
    ("NaN", [HEADER_OBJ, '{"t": NaN}'], 2, "line is not valid JSON: NaN is not valid JSON"),
    (
        "invalid UTF-8",
        [HEADER_OBJ, b'{"t": "\xff"}'],
        2,
        "line is not valid UTF-8 at byte 8",
    ),
    ("deep nesting", [HEADER_OBJ, "[" * 100_000 + "]" * 100_000], 2, "line nests too deeply"),
]


@pytest.mark.parametrize(
    ("lines", "line", "reason"),
    [pytest.param(lines, line, reason, id=name) for name, lines, line, reason in CORRUPT_CASES],
)
def test_corrupt_fixture(tmp_path: Path, lines: list[Any], line: int, reason: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", lines)

    with pytest.raises(FixtureError) as caught:
        read_fixture(path)

    assert caught.value.path == path
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert reason in caught.value.reason


def test_invalid_json_message(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.jsonl", [HEADER_OBJ, POLL_OBJ, '{"t": 1.0 "elapsed": 2}'])

    with pytest.raises(FixtureError) as caught:
        read_fixture(path)

    assert str(caught.value) == (
        f"{path}:3: line is not valid JSON: Expecting ',' delimiter: column 11"
    )


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")

    with pytest.raises(FixtureError) as caught:
        read_fixture(path)

    assert caught.value.line is None
    assert str(caught.value) == (f"{path}: file is empty; a fixture starts with a header line")


def test_file_size_limit(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "big.jsonl", [HEADER_OBJ, POLL_OBJ])
    size = path.stat().st_size

    assert len(read_fixture(path, max_file_size=size).exchanges) == 1
    with pytest.raises(FixtureError) as caught:
        read_fixture(path, max_file_size=size - 1)

    assert caught.value.line is None
    assert f"file is over the {size - 1} bytes limit" in str(caught.value)
    assert "pass a larger max_file_size" in str(caught.value)


def test_line_size_limit(tmp_path: Path) -> None:
    long_poll = with_body({"text": "x" * 1000})
    path = write_lines(tmp_path / "long.jsonl", [HEADER_OBJ, POLL_OBJ, long_poll])

    with pytest.raises(FixtureError) as caught:
        read_fixture(path, max_line_size=1000)

    assert caught.value.line == 3
    assert "line is over the 1000 bytes limit for one line" in caught.value.reason


def test_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_fixture(tmp_path / "absent.jsonl")


def test_line_separator_inside_string(tmp_path: Path) -> None:
    # U+2028 and U+0085 are line breaks for str.splitlines() but ordinary characters in JSON.
    path = tmp_path / "s.jsonl"
    body = '{"text":"a\u2028b\x85c"}'.encode()

    write_fixture(path, make_header(), [make_exchange(body=body)])

    assert read_fixture(path).exchanges[0].body == body


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_fixture(path, make_header(), sample_exchanges())
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))

    assert read_fixture(path).exchanges == tuple(sample_exchanges())


# --- truncated tail ----------------------------------------------------------------------------


def test_truncated_tail_is_error(tmp_path: Path) -> None:
    partial = json.dumps(POLL_OBJ)[:40]
    path = write_lines(tmp_path / "cut.jsonl", [HEADER_OBJ, POLL_OBJ, POLL_OBJ, partial], end=b"")

    with pytest.raises(FixtureError) as caught:
        read_fixture(path)

    assert caught.value.line == 4
    assert "line is cut off" in caught.value.reason
    assert "allow_truncated_tail=True" in caught.value.reason


def test_truncated_tail_dropped(tmp_path: Path) -> None:
    partial = json.dumps(POLL_OBJ)[:40]
    path = write_lines(tmp_path / "cut.jsonl", [HEADER_OBJ, POLL_OBJ, POLL_OBJ, partial], end=b"")

    fixture = read_fixture(path, allow_truncated_tail=True)

    assert len(fixture.exchanges) == 2
    assert fixture.truncated


def test_complete_tail_without_newline(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", [HEADER_OBJ, POLL_OBJ, POLL_OBJ], end=b"")

    fixture = read_fixture(path, allow_truncated_tail=True)

    assert len(fixture.exchanges) == 2
    assert not fixture.truncated


def test_truncated_header(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", [json.dumps(HEADER_OBJ)[:30]], end=b"")

    with pytest.raises(FixtureError) as caught:
        read_fixture(path, allow_truncated_tail=True)

    assert caught.value.line == 1
    assert "the header line is cut off" in caught.value.reason


def test_cut_at_every_byte(tmp_path: Path) -> None:
    """A capture killed at any byte keeps every exchange whose line was written whole."""
    whole = tmp_path / "whole.jsonl"
    exchanges = sample_exchanges()[:4]
    write_fixture(whole, make_header(), exchanges)
    data = whole.read_bytes()
    header_end = data.index(b"\n") + 1
    cut = tmp_path / "cut.jsonl"

    for size in range(header_end, len(data) + 1):
        cut.write_bytes(data[:size])
        complete_lines = data[:size].count(b"\n") - 1

        fixture = read_fixture(cut, allow_truncated_tail=True)

        # A cut just before a newline leaves a whole JSON line, which is kept.
        exchanges_kept = len(fixture.exchanges)
        assert exchanges_kept in (complete_lines, complete_lines + 1), size
        assert fixture.exchanges == tuple(exchanges[:exchanges_kept]), size


# --- format versions ---------------------------------------------------------------------


def _rename_poll_kind(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("kind") == "longpoll":
        obj["kind"] = "poll"
    return obj


def _note_migration(obj: dict[str, Any]) -> dict[str, Any]:
    obj["source"] = "migrated from 1"
    return obj


def test_migration_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    migration = _fixture._Migration(header=_note_migration, exchange=_rename_poll_kind)
    monkeypatch.setattr(_fixture, "FORMAT_VERSION", 2)
    monkeypatch.setattr(_fixture, "_MIGRATIONS", {1: migration})
    path = write_lines(tmp_path / "v1.jsonl", [HEADER_OBJ, changed(POLL_OBJ, kind="longpoll")])

    fixture = read_fixture(path)

    assert fixture.header.source == "migrated from 1"
    assert fixture.exchanges[0].kind is ExchangeKind.POLL


def test_migration_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    migration = _fixture._Migration(header=_note_migration, exchange=_rename_poll_kind)
    monkeypatch.setattr(_fixture, "FORMAT_VERSION", 3)
    monkeypatch.setattr(_fixture, "_MIGRATIONS", {1: migration})
    path = write_lines(tmp_path / "v1.jsonl", [HEADER_OBJ])

    with pytest.raises(FixtureError) as caught:
        read_fixture(path)

    assert caught.value.line == 1
    assert "has no migration from version 2" in caught.value.reason


def test_header_from_json_needs_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fixture, "FORMAT_VERSION", 2)

    with pytest.raises(ValueError, match="format version 1 must be migrated first"):
        header_from_json(HEADER_OBJ)


def test_no_migrations_yet() -> None:
    assert FORMAT_VERSION == 1
    assert _fixture._MIGRATIONS == {}


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: FixtureError(Path("f.jsonl"), 7, "bad"), "f.jsonl:7: bad"),
        (lambda: FixtureError(Path("f.jsonl"), None, "bad"), "f.jsonl: bad"),
        (lambda: FixtureError(None, None, "bad"), "bad"),
    ],
)
def test_fixture_error_str(make: Callable[[], FixtureError], expected: str) -> None:
    assert str(make()) == expected


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "got null"), (True, "got a boolean true"), ("x", 'got a string "x"')],
    ids=["null", "boolean", "string"],
)
def test_decode_body_names_json_value(value: Any, shown: str) -> None:
    with pytest.raises(TypeError) as caught:
        decode_body(value)

    assert str(caught.value).endswith(shown)
