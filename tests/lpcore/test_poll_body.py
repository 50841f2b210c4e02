"""Tests for parse_poll_body, build_poll_url and Mode."""

from urllib.parse import parse_qs, urlsplit

import pytest

from lpcore import (
    MAX_WAIT,
    Failed,
    LocalProtocolError,
    Mode,
    PollResult,
    RemoteProtocolError,
    build_poll_url,
    parse_poll_body,
)

SERVER = "im.vk.com/nim100001"

BAD_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    + b"<!-- padding to make the page longer than the part an error keeps -->\r\n" * 6
    + b"</body>\r\n</html>\r\n"
)


def short_id(body: bytes) -> str:
    """Name a parametrized body by its first bytes, so long bodies give short test ids."""
    return repr(body[:40])


# -- parse_poll_body: replies it accepts -------------------------------------------


def test_success_with_updates() -> None:
    result = parse_poll_body(b'{"ts": 1800000101, "updates": [[80, 2, 0], [61, 100002, 1]]}')

    assert result == PollResult(ts=1800000101, updates=([80, 2, 0], [61, 100002, 1]))


def test_success_with_pts() -> None:
    result = parse_poll_body(b'{"ts": 1800000102, "pts": 500020, "updates": []}')

    assert result == PollResult(ts=1800000102, updates=(), pts=500020)


def test_success_keeps_invalid_updates_raw() -> None:
    result = parse_poll_body(b'{"ts": 1800000103, "updates": [[], null, {"type": "x"}, 7]}')

    assert isinstance(result, PollResult)
    assert result.updates == ([], None, {"type": "x"}, 7)


def test_success_with_string_ts() -> None:
    result = parse_poll_body(b'{"ts": "1800000104", "pts": "500021", "updates": []}')

    assert result == PollResult(ts=1800000104, updates=(), pts=500021)


def test_success_ignores_extra_keys() -> None:
    body = b'{"ts": 1800000105, "updates": [], "unexpected": true, "meta": {"a": [1]}}'

    assert parse_poll_body(body) == PollResult(ts=1800000105, updates=())


@pytest.mark.parametrize(
    ("body", "failed"),
    [
        (b'{"failed": 1, "ts": 1800000300}', Failed(code=1, ts=1800000300)),
        (b'{"failed": 1, "ts": "1800000400"}', Failed(code=1, ts=1800000400)),
        (b'{"failed": 2}', Failed(code=2)),
        (b'{"failed": 2, "error": "fake error text"}', Failed(code=2, error="fake error text")),
        (b'{"failed": 2, "error": 17}', Failed(code=2)),
        (b'{"failed": 3}', Failed(code=3)),
        (
            b'{"failed": 4, "min_version": 0, "max_version": 19}',
            Failed(code=4, min_version=0, max_version=19),
        ),
        (b'{"failed": 7}', Failed(code=7)),
        (
            b'{"failed": 1, "ts": 1800000500, "updates": [[80, 1, 0]]}',
            Failed(code=1, ts=1800000500),
        ),
    ],
    ids=["1", "1-string-ts", "2", "2-error-text", "2-error-not-text", "3", "4", "7", "1-updates"],
)
def test_failed_reply(body: bytes, failed: Failed) -> None:
    assert parse_poll_body(body) == failed


# -- parse_poll_body: replies it rejects -------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"  \r\n",
        BAD_GATEWAY_PAGE,
        b'{"ts": 1800000106, "upd',
        b'{"ts": 1800000106, "updates": [],}',
        b'{"ts": 1800000106, "updates": [[4, 1, 1],]}',
        b"[1800000106, []]",
        b'"ok"',
        b"null",
        b"{}",
        b'{"ts": 1800000106}',
        b'{"updates": []}',
        b'{"ts": 1800000106, "updates": {}}',
        b'{"ts": 1800000106, "updates": null}',
        b'{"ts": true, "updates": []}',
        b'{"ts": 1800000106.5, "updates": []}',
        b'{"ts": "soon", "updates": []}',
        b'{"ts": 1800000106, "pts": [1], "updates": []}',
        b'{"failed": "2"}',
        b'{"failed": 2.0}',
        b'{"failed": true}',
        b'{"failed": null}',
        b'{"failed": 1, "ts": "later"}',
        b'{"failed": 4, "min_version": "zero"}',
        b"\xff\xfe\x00garbage",
        b"[" * 100_000,
    ],
    ids=short_id,
)
def test_invalid_body_raises_remote_error(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_poll_body(body)

    assert caught.value.body == body[:200]
    assert caught.value.reason


def test_remote_error_truncates_long_body() -> None:
    assert len(BAD_GATEWAY_PAGE) > 200

    with pytest.raises(RemoteProtocolError) as caught:
        parse_poll_body(BAD_GATEWAY_PAGE)

    assert caught.value.body == BAD_GATEWAY_PAGE[:200]
    assert str(caught.value).endswith("...")
    assert "502 Bad Gateway" in str(caught.value)


def test_remote_error_shows_short_body_whole() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_poll_body(b"{}")

    assert caught.value.body == b"{}"
    assert "b'{}'" in str(caught.value)
    assert not str(caught.value).endswith("...")


@pytest.mark.parametrize(
    "body",
    [
        b'{"ts": "--5", "updates": []}',
        b'{"ts": 1800000107, "pts": "--500022", "updates": []}',
        b'{"failed": 1, "ts": "--1800000600"}',
    ],
    ids=short_id,
)
def test_double_minus_counter_raises_remote_error(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_poll_body(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"ts": 1' + b"0" * 5000 + b', "updates": []}',
        b'{"ts": 1800000108, "updates": [[80, 1' + b"0" * 5000 + b", 0]]}",
        b'{"ts": "1' + b"0" * 5000 + b'", "updates": []}',
    ],
    ids=["ts-number", "number-in-update", "ts-string"],
)
def test_huge_integer_raises_remote_error(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_poll_body(body)


# -- build_poll_url ---------------------------------------------------------------


def build(server: str = SERVER, *, key: str = "0123abcd", ts: int = 1800000000) -> str:
    return build_poll_url(server, key=key, ts=ts, wait=25, mode=Mode.DEFAULT, version=3)


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)


def test_url_adds_missing_scheme() -> None:
    url = build("im.vk.com/nim100001")

    assert url.startswith("https://im.vk.com/nim100001?")


@pytest.mark.parametrize(
    "server",
    ["https://im.vk.com/nim100001", "http://127.0.0.1:8080/nim100001"],
)
def test_url_keeps_existing_scheme(server: str) -> None:
    url = build(server)

    assert url.startswith(server + "?")
    assert url.count("://") == 1


def test_url_keeps_uppercase_scheme() -> None:
    url = build("HTTPS://im.vk.com/nim100001")

    assert url.count("://") == 1


@pytest.mark.parametrize(
    ("server", "path"),
    [
        ("im.vk.com/nim100001", "/nim100001"),
        ("https://im.vk.com/nim100001", "/nim100001"),
        ("127.0.0.1:8080/lp/nim7", "/lp/nim7"),
    ],
)
def test_url_keeps_path(server: str, path: str) -> None:
    assert urlsplit(build(server)).path == path


def test_url_has_each_parameter_once() -> None:
    query = query_of(build(ts=1800000009))

    assert query == {
        "act": ["a_check"],
        "key": ["0123abcd"],
        "ts": ["1800000009"],
        "wait": ["25"],
        "mode": ["234"],
        "version": ["3"],
    }


def test_url_for_successive_ts_has_one_ts() -> None:
    urls = [build(ts=ts) for ts in (1800000000, 1800000001, 1800000002)]

    assert [query_of(url)["ts"] for url in urls] == [
        ["1800000000"],
        ["1800000001"],
        ["1800000002"],
    ]
    assert len({len(url) for url in urls}) == 1


def test_url_encodes_key_once() -> None:
    key = "Ab+c=/d&e==%"

    url = build(key=key)

    assert "key=Ab%2Bc%3D%2Fd%26e%3D%3D%25&" in url
    assert query_of(url)["key"] == [key]


@pytest.mark.parametrize("wait", [-1, MAX_WAIT + 1, 1000])
def test_url_rejects_wait_out_of_range(wait: int) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        build_poll_url(SERVER, key="k", ts=1, wait=wait, mode=Mode.DEFAULT, version=3)

    assert f"wait={wait}" in str(caught.value)


@pytest.mark.parametrize("wait", [0, 25, MAX_WAIT])
def test_url_accepts_wait_in_range(wait: int) -> None:
    url = build_poll_url(SERVER, key="k", ts=1, wait=wait, mode=Mode.DEFAULT, version=3)

    assert query_of(url)["wait"] == [str(wait)]


def test_max_wait_is_90_seconds() -> None:
    assert MAX_WAIT == 90


@pytest.mark.parametrize("server", ["", "im.vk.com/nim100001?act=a_check"])
def test_url_rejects_bad_server(server: str) -> None:
    with pytest.raises(LocalProtocolError):
        build(server)


# -- Mode -------------------------------------------------------------------------


def test_mode_default_is_234() -> None:
    assert int(Mode.DEFAULT) == 234


def test_mode_bits_combine_with_or() -> None:
    combined = Mode.ATTACHMENTS | Mode.EXTENDED | Mode.PTS | Mode.FRIEND_EXTRA | Mode.RANDOM_ID

    assert combined == Mode.DEFAULT
    assert Mode.PTS | Mode.PTS == 32
    assert Mode.DEFAULT | Mode.PTS == 234


def test_mode_in_url_is_decimal_mask() -> None:
    url = build_poll_url(
        SERVER, key="k", ts=1, wait=25, mode=Mode.ATTACHMENTS | Mode.RANDOM_ID, version=3
    )

    assert query_of(url)["mode"] == ["130"]


def test_mode_keeps_unknown_bit_in_url() -> None:
    url = build_poll_url(SERVER, key="k", ts=1, wait=25, mode=Mode(1024) | Mode.DEFAULT, version=3)

    assert query_of(url)["mode"] == ["1258"]
