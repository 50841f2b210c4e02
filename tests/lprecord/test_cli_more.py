"""Tests of `lprecord check`, `lprecord scrub`, and capture's progress and --scrub, run in-process.

Captures record the embedded demo (no token), which replays a shipped fixture in virtual time.
"""

import json
import re
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixture_facts import CHAT_SESSION, FAILURES_SESSION, FIXTURES, update_arrays

from lprecord import _cli
from lprecord._check import check_fixture
from lprecord._cli import CaptureProgress, main
from lprecord._fixture import Exchange, ExchangeKind, read_fixture
from lprecord._summary import Outcome, exchange_outcome

SHIPPED = sorted(FIXTURES.glob("*.jsonl"))
# The ids the shipped sessions use: users 100001-100003, community 100004, chat 7.
REAL_IDS = {100001, 100002, 100003, 100004, -100002, -100003, -100004, 2000000007}

LOG_LINE = re.compile(r"(\d+\.\d) s: poll (\d+), (.*)")
UPDATES_NEWS = re.compile(r"\+(\d+) updates? \((\d+) total\)")
STATUS_LINE = re.compile(r"elapsed (\d+\.\d) s, polls (\d+), updates (\d+), failures (\d+)")


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRun:
    status: int
    stdout: str
    stderr: str


def run(capsys: pytest.CaptureFixture[str], args: list[str]) -> CommandRun:
    """Run `lprecord ARGS` in this process and collect its exit status and output."""
    status = main(args)
    captured = capsys.readouterr()
    return CommandRun(status=status, stdout=captured.out, stderr=captured.err)


@pytest.fixture(autouse=True)
def no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make captures record the embedded demo whatever the environment holds."""
    monkeypatch.delenv("VK_TOKEN", raising=False)


def demo_of(monkeypatch: pytest.MonkeyPatch, fixture: Path) -> None:
    monkeypatch.setattr(_cli, "demo_fixture_path", lambda: fixture)


def poll_update_counts(path: Path) -> list[int]:
    """The number of updates in each poll reply of a fixture, failed replies as -1."""
    counts = []
    for exchange in read_fixture(path).exchanges:
        if exchange.kind is not ExchangeKind.POLL:
            continue
        reply = exchange.json_body()
        counts.append(-1 if "failed" in reply else len(reply["updates"]))
    return counts


def log_lines(stderr: str) -> list[re.Match[str]]:
    return [match for line in stderr.splitlines() if (match := LOG_LINE.fullmatch(line))]


def integers_in(value: Any) -> set[int]:
    if isinstance(value, bool):
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, str):
        parts = value.replace("_", " ").replace("/nim", " ").split()
        return {int(part) for part in parts if part.lstrip("-").isdigit()}
    if isinstance(value, list):
        return set().union(*(integers_in(item) for item in value))
    if isinstance(value, dict):
        return set().union(*(integers_in(item) for item in value.values()))
    return set()


# -- capture progress ------------------------------------------------------------------------


def test_progress_logs_polls_with_updates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo.jsonl"

    result = run(capsys, ["capture", "-o", str(path)])

    assert result.status == 0, result.stderr
    counts = poll_update_counts(path)
    expected = [number for number, count in enumerate(counts, start=1) if count > 0]
    logged = [int(match[2]) for match in log_lines(result.stderr)]
    assert logged == expected
    assert 0 in counts


def test_progress_log_totals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "demo.jsonl"

    result = run(capsys, ["capture", "-o", str(path)])

    total = 0
    for match in log_lines(result.stderr):
        news = UPDATES_NEWS.fullmatch(match[3])
        assert news is not None, match[0]
        total += int(news[1])
        assert int(news[2]) == total
    assert total == len(update_arrays(path))


def test_progress_log_times_rise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, ["capture", "-o", str(tmp_path / "demo.jsonl")])

    times = [float(match[1]) for match in log_lines(result.stderr)]
    assert times == sorted(times)
    assert times[-1] > 0


def test_progress_plain_has_no_status_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, ["capture", "-o", str(tmp_path / "demo.jsonl")])

    assert "\r" not in result.stderr
    assert "elapsed" not in result.stderr


def test_progress_logs_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_of(monkeypatch, FAILURES_SESSION)
    path = tmp_path / "failures.jsonl"

    result = run(capsys, ["capture", "-o", str(path)])

    assert result.status == 0, result.stderr
    failures = [match[3] for match in log_lines(result.stderr) if "fail" in match[3]]
    assert failures == [
        "failed 2 (1 failure total)",
        "failed 1 (2 failures total)",
        "failed 3 (3 failures total)",
    ]
    counts = poll_update_counts(path)
    failed_polls = [number for number, count in enumerate(counts, start=1) if count == -1]
    logged = [int(match[2]) for match in log_lines(result.stderr) if "fail" in match[3]]
    assert logged == failed_polls


def claim_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the captured standard error claim to be a terminal.

    Call it in the test body: capsys installs its stream only while the test runs.
    """
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)


def test_progress_live_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    claim_terminal(monkeypatch)
    path = tmp_path / "demo.jsonl"

    result = run(capsys, ["capture", "-o", str(path)])

    assert result.status == 0, result.stderr
    statuses = re.findall(r"\r([^\r\n]*)", result.stderr)
    assert len(statuses) > len(poll_update_counts(path))
    last = STATUS_LINE.fullmatch(statuses[-1])
    assert last is not None, statuses[-1]
    assert int(last[2]) == len(poll_update_counts(path))
    assert int(last[3]) == len(update_arrays(path))
    assert int(last[4]) == 0


def test_progress_live_ends_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    claim_terminal(monkeypatch)

    result = run(capsys, ["capture", "-o", str(tmp_path / "demo.jsonl")])

    after_status = result.stderr.rsplit("\r", 1)[1]
    assert after_status.endswith("\n")
    assert after_status.count("\n") == 1


def test_progress_live_time_ticks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # While a poll is held the elapsed time keeps moving with no exchange finishing.
    claim_terminal(monkeypatch)

    result = run(capsys, ["capture", "-o", str(tmp_path / "demo.jsonl")])

    statuses = [STATUS_LINE.fullmatch(line) for line in re.findall(r"\r([^\r\n]*)", result.stderr)]
    first_poll = [match for match in statuses if match is not None and match[2] == "0"]
    assert len({match[1] for match in first_poll}) > 1


def test_progress_live_counts_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    claim_terminal(monkeypatch)
    demo_of(monkeypatch, FAILURES_SESSION)

    result = run(capsys, ["capture", "-o", str(tmp_path / "failures.jsonl")])

    last = STATUS_LINE.fullmatch(result.stderr.rsplit("\r", 1)[1].rstrip("\n"))
    assert last is not None
    assert int(last[4]) == 3
    assert not log_lines(result.stderr)


def make_exchange(kind: ExchangeKind, **changes: Any) -> Exchange:
    fields: dict[str, Any] = {
        "t": 0.5,
        "elapsed": 0.25,
        "kind": kind,
        "method": "GET",
        "url": "https://api.vk.com/method/messages.getLongPollServer",
        "params": {},
        "status": 200,
        "body": b'{"response":{"ts":1}}',
    }
    fields.update(changes)
    return Exchange(**fields)


@pytest.mark.parametrize(
    ("exchange", "expected"),
    [
        (make_exchange(ExchangeKind.API), Outcome()),
        (
            make_exchange(ExchangeKind.API, body=b'{"error":{"error_code":5}}'),
            Outcome(failure="API error 5"),
        ),
        (make_exchange(ExchangeKind.API, status=502), Outcome(failure="HTTP 502")),
        (
            make_exchange(ExchangeKind.POLL, status=None, body=None, error_kind="timeout"),
            Outcome(failure="timeout"),
        ),
        (make_exchange(ExchangeKind.POLL, body=b'{"failed":2}'), Outcome(failure="failed 2")),
        (
            make_exchange(ExchangeKind.POLL, body=b'{"ts":2,"updates":[[80,1,0]]}'),
            Outcome(updates=1),
        ),
        (make_exchange(ExchangeKind.POLL, body=b'{"ts":2,"updates":[]}'), Outcome()),
        (make_exchange(ExchangeKind.POLL, body=b"<html>"), Outcome(failure="unreadable reply")),
        (make_exchange(ExchangeKind.POLL, body=b'{"ts":2}'), Outcome(failure="unreadable reply")),
    ],
)
def test_exchange_outcome_cases(exchange: Exchange, expected: Outcome) -> None:
    assert exchange_outcome(exchange) == expected


def test_progress_logs_api_failure(capsys: pytest.CaptureFixture[str]) -> None:
    progress = CaptureProgress(live=False)

    progress.record(make_exchange(ExchangeKind.API, status=502, body=b"<html>502</html>"))
    progress.record(make_exchange(ExchangeKind.API))

    assert capsys.readouterr().err == (
        "0.8 s: messages.getLongPollServer, HTTP 502 (1 failure total)\n"
    )
    assert (progress.polls, progress.updates, progress.failures) == (0, 0, 1)


def test_updates_limit_stops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "demo.jsonl"

    result = run(capsys, ["capture", "-o", str(path), "--updates", "3"])

    assert result.status == 0, result.stderr
    captured = len(update_arrays(path))
    assert 3 <= captured < len(update_arrays(CHAT_SESSION))
    assert f"arrays identical to the first {captured} replayed" in result.stdout


# -- capture --scrub -------------------------------------------------------------------------


@pytest.fixture
def scrubbed_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[CommandRun, Path]:
    """One `lprecord capture -o PATH --scrub` run of the demo."""
    path = tmp_path / "scrubbed.jsonl"
    return run(capsys, ["capture", "-o", str(path), "--scrub"]), path


def test_capture_scrub_exits_0(scrubbed_capture: tuple[CommandRun, Path]) -> None:
    result, _ = scrubbed_capture

    assert result.status == 0, result.stderr
    assert "arrays identical" in result.stdout
    assert "scrubbed:    ids and text replaced in every exchange" in result.stdout


def test_capture_scrub_header(scrubbed_capture: tuple[CommandRun, Path]) -> None:
    _, path = scrubbed_capture

    header = read_fixture(path).header

    assert header.scrubbed is True
    assert header.user_id is not None
    assert header.user_id != 100001


def test_capture_scrub_hides_ids(scrubbed_capture: tuple[CommandRun, Path]) -> None:
    _, path = scrubbed_capture

    for exchange in read_fixture(path).exchanges:
        assert not integers_in(exchange.json_body()) & REAL_IDS, exchange.t
        assert "/nim100001" not in exchange.url


def test_capture_scrub_keeps_shape(scrubbed_capture: tuple[CommandRun, Path]) -> None:
    _, path = scrubbed_capture

    captured = update_arrays(path)
    original = update_arrays(CHAT_SESSION)

    assert [update[0] for update in captured] == [update[0] for update in original]
    assert captured != original


def test_capture_scrub_passes_check(scrubbed_capture: tuple[CommandRun, Path]) -> None:
    _, path = scrubbed_capture

    assert check_fixture(path).ok


# -- check -----------------------------------------------------------------------------------


def test_check_shipped_fixtures(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, ["check", *map(str, SHIPPED)])

    assert result.status == 0
    assert result.stdout.splitlines() == [
        f"{path}: OK, {len(read_fixture(path).exchanges)} exchanges, no secrets found"
        for path in SHIPPED
    ]
    assert result.stderr == ""


def edited_copy(tmp_path: Path, name: str, edit: Callable[[list[str]], None]) -> Path:
    """Write a copy of the chat session, its lines changed in place by `edit`, as `name`."""
    lines = CHAT_SESSION.read_text("utf-8").splitlines()
    edit(lines)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def leaky_copy(tmp_path: Path) -> Path:
    """A copy of the chat session whose second exchange has the real key in params.key."""

    def leak_key(lines: list[str]) -> None:
        poll = json.loads(lines[2])
        poll["request"]["params"]["key"] = "6f1e0c9a4b7d2e8f3a5c1b9d7e2f4a6c8b0d3e5f"
        lines[2] = json.dumps(poll, ensure_ascii=False)

    return edited_copy(tmp_path, "leaky.jsonl", leak_key)


def test_check_finding_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leaky = leaky_copy(tmp_path)

    result = run(capsys, ["check", str(leaky), str(CHAT_SESSION)])

    assert result.status == 1
    assert result.stdout.splitlines() == [
        f"{leaky}:3: unredacted secret in params.key",
        f"{CHAT_SESSION}: OK, 12 exchanges, no secrets found",
    ]


def test_check_schema_error_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def cut_line(lines: list[str]) -> None:
        lines[3] = lines[3].removesuffix("}")

    path = edited_copy(tmp_path, "cut.jsonl", cut_line)

    result = run(capsys, ["check", str(path)])

    assert result.status == 1
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{path}:4: line is not valid JSON")


def test_check_flags_exchanges_out_of_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def swap_lines(lines: list[str]) -> None:
        lines[3], lines[4] = lines[4], lines[3]

    path = edited_copy(tmp_path, "moved.jsonl", swap_lines)

    result = run(capsys, ["check", str(path)])

    assert result.status == 1
    [finding] = result.stdout.splitlines()
    assert finding.startswith(f"{path}:5: exchange ends at ")
    assert "before the one on line 4" in finding
    assert re.search(r"ends at \d+(\.\d*[1-9])? s, before", finding), finding


def test_check_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    absent = tmp_path / "absent.jsonl"

    result = run(capsys, ["check", str(absent), str(leaky_copy(tmp_path))])

    assert result.status == 2
    assert result.stderr == f"lprecord: error: cannot read {absent}: No such file or directory\n"
    assert "unredacted secret in params.key" in result.stdout


def test_check_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["check"])

    assert caught.value.code == 2
    assert "FIXTURE" in capsys.readouterr().err


# -- scrub -----------------------------------------------------------------------------------


def test_scrub_writes_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "shared.jsonl"

    result = run(capsys, ["scrub", str(CHAT_SESSION), str(target)])

    assert result.status == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"wrote {target}",
        "scrubbed:    ids and text replaced in every exchange",
    ]
    scrubbed = read_fixture(target)
    assert scrubbed.header.scrubbed is True
    assert scrubbed.header.extra["scrub_skipped"] == []
    for exchange in scrubbed.exchanges:
        assert not integers_in(exchange.json_body()) & REAL_IDS, exchange.t


def test_scrub_lists_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = CHAT_SESSION.read_text("utf-8").splitlines()
    poll = json.loads(lines[4])
    poll["response"] = {"status": 502, "body": {"text": "<html>502 for 100002</html>"}}
    lines[4] = json.dumps(poll)
    source = tmp_path / "with_html.jsonl"
    source.write_text("\n".join(lines) + "\n", "utf-8")
    target = tmp_path / "shared.jsonl"

    result = run(capsys, ["scrub", str(source), str(target)])

    assert result.status == 0, result.stderr
    assert "on lines 5" in result.stdout
    scrubbed = read_fixture(target)
    assert scrubbed.header.extra["scrub_skipped"] == [5]
    assert scrubbed.exchanges[3].body == b"<html>502 for 100002</html>"


def test_scrub_rejects_same_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "session.jsonl"
    source.write_bytes(CHAT_SESSION.read_bytes())

    result = run(capsys, ["scrub", str(source), str(tmp_path / "." / "session.jsonl"), "--force"])

    assert result.status == 2
    assert "is the input file" in result.stderr
    assert source.read_bytes() == CHAT_SESSION.read_bytes()


def test_scrub_rejects_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "taken.jsonl"
    target.write_bytes(b"earlier\n")

    result = run(capsys, ["scrub", str(CHAT_SESSION), str(target)])

    assert result.status == 2
    assert f"{target} exists; pass --force" in result.stderr
    assert target.read_bytes() == b"earlier\n"


def test_scrub_force_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "taken.jsonl"
    target.write_bytes(b"earlier\n")

    result = run(capsys, ["scrub", str(CHAT_SESSION), str(target), "--force"])

    assert result.status == 0, result.stderr
    assert read_fixture(target).header.scrubbed is True


def test_scrub_invalid_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "blank.jsonl"
    source.write_bytes(b"")
    target = tmp_path / "out.jsonl"

    result = run(capsys, ["scrub", str(source), str(target)])

    assert result.status == 2
    assert f"{source}: file is empty" in result.stderr
    assert not target.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", str(CHAT_SESSION), "--speed", "0"], "greater than 0"),
        (["replay", str(CHAT_SESSION), "--speed", "nan"], "finite"),
        (["replay", str(CHAT_SESSION), "--port", "70000"], "0 to 65535"),
        (["capture", "-o", "unused.jsonl", "--wait", "0"], "1 to 90"),
        (["capture", "-o", "unused.jsonl", "--mode", "-5"], "out of range"),
        (
            ["capture", "-o", "unused.jsonl", "--mode", "235"],
            "235 sets flag 1, which VK does not document; "
            "use a sum of the flags 2, 8, 32, 64, 128, such as 234",
        ),
        (["capture", "-o", "unused.jsonl", "--mode", "7"], "7 sets flags 1 and 4, which VK"),
        (["capture", "-o", "unused.jsonl", "--mode", "4095"], "sets 7 flags from 1 to 2048,"),
        (["capture", "-o", "unused.jsonl", "--mode", "2_3_4"], "'2_3_4' is not a whole number"),
        (["capture", "-o", "unused.jsonl", "--mode", "\u0662"], "is not a whole number"),
        (["replay", str(CHAT_SESSION), "--bogus"], "lprecord replay: error: unrecognized"),
        (["replay", str(CHAT_SESSION), "--host", "[::1]"], "pass an IPv6 address without them"),
        (["replay", str(CHAT_SESSION), "--host", "127.0.0.1:80"], "pass the port with --port"),
        (["replay", str(CHAT_SESSION), "--host", ""], "the host is empty"),
        (["capture", "-o", "unused.jsonl", "--duration", "-1"], "greater than 0"),
        (["capture", "-o", "unused.jsonl", "--updates", "0"], "0 is out of range; use 1 or more"),
    ],
)
def test_out_of_range_options_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)

    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_replay_of_fixture_without_session_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header_only = tmp_path / "header_only.jsonl"
    first_line = CHAT_SESSION.read_text().splitlines()[0]
    header_only.write_text(first_line + "\n")

    status = main(["replay", str(header_only)])

    error = capsys.readouterr().err
    assert status == 2
    assert str(header_only) in error
    assert "no session to replay" in error


def test_capture_bad_api_url_keeps_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "keep.jsonl"
    shutil.copyfile(CHAT_SESSION, output)

    arguments = ["capture", "-o", str(output), "--token", "t", "--force"]
    result = run(capsys, [*arguments, "--api-url", "ftp://127.0.0.1:1/m"])

    assert result.status == 2
    assert (
        "invalid --api-url: api_url 'ftp://127.0.0.1:1/m' must start with https://"
        in result.stderr
    )
    assert output.read_bytes() == CHAT_SESSION.read_bytes()


def test_capture_without_session_keeps_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "keep.jsonl"
    shutil.copyfile(CHAT_SESSION, output)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        api_url = f"http://127.0.0.1:{probe.getsockname()[1]}/method"

    arguments = ["capture", "-o", str(output), "--token", "t", "--api-url", api_url]
    result = run(capsys, [*arguments, "--force", "--duration", "1"])

    assert result.status == 1
    assert "no long poll session was recorded" in result.stderr
    assert f"{output} is kept" in result.stderr
    assert output.read_bytes() == CHAT_SESSION.read_bytes()
    partial = tmp_path / "keep.jsonl.partial"
    assert read_fixture(partial).exchanges


def test_capture_creates_output_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "fixtures" / "chat_session.jsonl"

    result = run(capsys, ["capture", "-o", str(output)])

    assert result.status == 0
    assert read_fixture(output).exchanges


def test_capture_into_directory_is_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, ["capture", "-o", str(tmp_path)])

    assert result.status == 2
    assert result.stderr == f"lprecord: error: {tmp_path} is a directory; pass a file name to -o\n"


@pytest.mark.parametrize(
    ("api_url", "reason"),
    [
        ("", "must start with https:// or http://"),
        ("http:///method", "has no host"),
        ("http://127.0.0.1:99999/method", "is invalid: Port out of range"),
        ("HTTP://127.0.0.1:8080/method", "must start with https:// or http://"),
    ],
    ids=["empty", "no-host", "bad-port", "upper-case"],
)
def test_capture_invalid_api_url_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api_url: str, reason: str
) -> None:
    output = tmp_path / "new.jsonl"

    result = run(capsys, ["capture", "-o", str(output), "--token", "t", "--api-url", api_url])

    assert result.status == 2
    assert result.stderr.startswith("lprecord: error: invalid --api-url: ")
    assert reason in result.stderr
    assert not output.exists()
