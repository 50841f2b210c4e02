"""Tests of the pytest plugin's record modes, its options and their precedence.

Every recording here is made from a local fake server, never from VK: the
autouse `no_vk_token` fixture removes VK_TOKEN, and a test that sets a
token also passes --lprecord-api-url (or the ini option) with a loopback URL.
"""

import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fixture_facts import CHAT_SESSION, FAILURES_SESSION, update_arrays

import lpcore
from lprecord import Timeline, pytest_plugin, read_fixture, run_fake_server_in_thread

pytest_plugins = ["pytester"]

TOKEN = "fake-token-for-local-recording-7d3a90c1"
FIXTURE_NAME = "recorded.jsonl"

# A test that replays the marked file with lp_server; {marker} is the marker's arguments.
INNER_TEST = """
import pytest

@pytest.mark.lp_fixture({marker})
def test_replay(lp_server, lp_fixture_path):
    assert lp_server.fixture.path == lp_fixture_path
"""


@pytest.fixture(autouse=True)
def no_vk_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's real token from reaching the plugin runs below."""
    monkeypatch.delenv("VK_TOKEN", raising=False)


@pytest.fixture
def with_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set a fake VK_TOKEN; only local servers ever see it."""
    monkeypatch.setenv("VK_TOKEN", TOKEN)


@pytest.fixture
def record_target() -> Iterator[str]:
    """The API URL of a plain-HTTP fake server replaying the chat session at speed 1000."""
    with run_fake_server_in_thread(CHAT_SESSION, speed=1000) as server:
        yield server.api_url


@dataclass
class Tripwire:
    """A loopback HTTP server that replies VK's API error 5 to every request and logs its path."""

    api_url: str
    paths: list[str] = field(default_factory=list)


@pytest.fixture
def tripwire() -> Iterator[Tripwire]:
    """A Tripwire that runs for the duration of the test."""
    body = json.dumps(
        {"error": {"error_code": 5, "error_msg": "User authorization failed: invalid token."}}
    ).encode()
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Tripwire(api_url=f"http://127.0.0.1:{server.server_port}/method", paths=paths)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def write_inner_test(pytester: pytest.Pytester, marker: str = repr(FIXTURE_NAME)) -> None:
    pytester.makepyfile(INNER_TEST.format(marker=marker))


def recorded_arrays(path: Path) -> list[object]:
    return [update.raw for update in Timeline.from_fixture(read_fixture(path)).updates]


def copy_failures_session(pytester: pytest.Pytester) -> Path:
    """Put the 10-update failures session where the inner test's marker points."""
    target = pytester.path / FIXTURE_NAME
    shutil.copyfile(FAILURES_SESSION, target)
    return target


# -- options and markers -------------------------------------------------------------


def test_options_in_lprecord_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")

    result.stdout.fnmatch_lines(
        [
            "VK long poll fixtures (lprecord):",
            "*--lprecord-mode={none,once,new,all}*",
            "*--lprecord-fixture-dir=DIR*",
            "*--lprecord-api-url=URL*",
            "*--lprecord-record-duration=SECONDS*",
        ]
    )


def test_ini_options_listed(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")

    result.stdout.fnmatch_lines(
        [
            "*lprecord_mode (string):*",
            "*lprecord_fixture_dir (string):*",
            "*lprecord_api_url (string):*",
            "*lprecord_record_duration (string):*",
        ]
    )
    assert "record mode: none, once, new or all" in result.stdout.str()


def test_marker_lists_record_arguments(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")

    result.stdout.fnmatch_lines(["@pytest.mark.lp_fixture(path, *record_mode=None*"])


def test_default_record_url_is_vk() -> None:
    assert pytest_plugin.VK_API_URL == lpcore.DEFAULT_API_URL


def test_report_header_shows_settings(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlprecord_fixture_dir = data\n")
    write_inner_test(pytester)

    result = pytester.runpytest("--lprecord-mode=once")

    data = pytester.path / "data"
    result.stdout.fnmatch_lines(
        [f"lprecord: record mode once, fixture dir {data}, VK_TOKEN not set, so *replayed"]
    )


def test_invalid_ini_mode_is_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlprecord_mode = sometimes\n")

    result = pytester.runpytest()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*invalid record mode 'sometimes' in *lprecord_mode ini option; choose one of none*"]
    )


def test_invalid_duration_is_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--lprecord-record-duration=-5")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid record duration '-5'*positive number of seconds*"])


def test_invalid_marker_mode_is_usage_error(pytester: pytest.Pytester) -> None:
    copy_failures_session(pytester)
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_mode='always'")

    result = pytester.runpytest()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*invalid record mode 'always' in @pytest.mark.lp_fixture*"])


def test_invalid_record_updates_is_usage_error(pytester: pytest.Pytester) -> None:
    copy_failures_session(pytester)
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_updates=0")

    result = pytester.runpytest()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*invalid record_updates=0 in @pytest.mark.lp_fixture*"])


# -- without a token -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["none", "once", "new", "all"])
def test_without_token_every_mode_replays(
    pytester: pytest.Pytester, tripwire: Tripwire, mode: str
) -> None:
    target = copy_failures_session(pytester)
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_updates=100")

    result = pytester.runpytest(
        f"--lprecord-mode={mode}", f"--lprecord-api-url={tripwire.api_url}"
    )

    result.assert_outcomes(passed=1)
    assert target.read_bytes() == FAILURES_SESSION.read_bytes()
    assert tripwire.paths == []


def test_missing_file_without_token_is_error(
    pytester: pytest.Pytester, tripwire: Tripwire
) -> None:
    write_inner_test(pytester)

    result = pytester.runpytest("--lprecord-mode=once", f"--lprecord-api-url={tripwire.api_url}")

    result.assert_outcomes(errors=1)
    missing = pytester.path / FIXTURE_NAME
    result.stdout.fnmatch_lines(
        [
            f"lprecord fixture file {missing} not found (record mode once). To record it, "
            "set VK_TOKEN to a user access token and rerun with --lprecord-mode=once, "
            f"or run `lprecord capture -o {missing}`."
        ]
    )
    assert not missing.exists()
    assert tripwire.paths == []


# -- with a token, recording from a local fake server --------------------------------


@pytest.mark.usefixtures("with_token")
def test_none_mode_does_not_record(pytester: pytest.Pytester, tripwire: Tripwire) -> None:
    write_inner_test(pytester)

    result = pytester.runpytest("--lprecord-mode=none", f"--lprecord-api-url={tripwire.api_url}")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*not found (record mode none)*rerun with --lprecord-mode=once*"])
    assert tripwire.paths == []


@pytest.mark.usefixtures("with_token")
def test_once_records_missing_file(pytester: pytest.Pytester, record_target: str) -> None:
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_updates=40")

    result = pytester.runpytest("--lprecord-mode=once", f"--lprecord-api-url={record_target}")

    result.assert_outcomes(passed=1)
    target = pytester.path / FIXTURE_NAME
    assert recorded_arrays(target) == update_arrays(CHAT_SESSION)
    assert read_fixture(target).header.source == (
        f"pytest --lprecord-mode=once from {record_target}"
    )
    assert TOKEN not in target.read_text()
    result.stdout.fnmatch_lines([f"recorded {target} (40 updates)"])


@pytest.mark.usefixtures("with_token")
def test_once_keeps_existing_file(pytester: pytest.Pytester, tripwire: Tripwire) -> None:
    target = copy_failures_session(pytester)
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_updates=100")

    result = pytester.runpytest("--lprecord-mode=once", f"--lprecord-api-url={tripwire.api_url}")

    result.assert_outcomes(passed=1)
    assert target.read_bytes() == FAILURES_SESSION.read_bytes()
    assert tripwire.paths == []


@pytest.mark.usefixtures("with_token")
def test_all_records_existing_file(pytester: pytest.Pytester, record_target: str) -> None:
    target = copy_failures_session(pytester)
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_updates=40")

    result = pytester.runpytest("--lprecord-mode=all", f"--lprecord-api-url={record_target}")

    result.assert_outcomes(passed=1)
    assert recorded_arrays(target) == update_arrays(CHAT_SESSION)


@pytest.mark.usefixtures("with_token")
def test_all_records_each_file_once_per_run(pytester: pytest.Pytester, record_target: str) -> None:
    copy_failures_session(pytester)
    pytester.makepyfile(
        f"""
        import pytest

        pytestmark = pytest.mark.lp_fixture({FIXTURE_NAME!r}, record_updates=40)

        def test_first(lp_server):
            pass

        def test_second(lp_server):
            pass
        """
    )

    result = pytester.runpytest("--lprecord-mode=all", f"--lprecord-api-url={record_target}")

    result.assert_outcomes(passed=2)
    assert len([line for line in result.outlines if line.startswith("recorded ")]) == 1
    assert recorded_arrays(pytester.path / FIXTURE_NAME) == update_arrays(CHAT_SESSION)


@pytest.mark.usefixtures("with_token")
def test_failed_recording_keeps_old_file(pytester: pytest.Pytester, tripwire: Tripwire) -> None:
    target = copy_failures_session(pytester)
    write_inner_test(pytester)

    result = pytester.runpytest("--lprecord-mode=all", f"--lprecord-api-url={tripwire.api_url}")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*lprecord: recording {target} from {tripwire.api_url} failed*"])
    assert tripwire.paths == ["/method/messages.getLongPollServer"]
    assert target.read_bytes() == FAILURES_SESSION.read_bytes()
    assert list(pytester.path.glob("*.partial")) == []


@pytest.mark.usefixtures("with_token")
def test_new_keeps_complete_file(pytester: pytest.Pytester, tripwire: Tripwire) -> None:
    target = copy_failures_session(pytester)
    write_inner_test(pytester)

    result = pytester.runpytest("--lprecord-mode=new", f"--lprecord-api-url={tripwire.api_url}")

    result.assert_outcomes(passed=1)
    assert target.read_bytes() == FAILURES_SESSION.read_bytes()
    assert tripwire.paths == []


@pytest.mark.usefixtures("with_token")
def test_new_records_file_with_too_few_updates(
    pytester: pytest.Pytester, record_target: str
) -> None:
    target = copy_failures_session(pytester)
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_updates=40")

    result = pytester.runpytest("--lprecord-mode=new", f"--lprecord-api-url={record_target}")

    result.assert_outcomes(passed=1)
    assert recorded_arrays(target) == update_arrays(CHAT_SESSION)


@pytest.mark.usefixtures("with_token")
def test_new_records_truncated_file(pytester: pytest.Pytester, record_target: str) -> None:
    target = pytester.path / FIXTURE_NAME
    # Cut the last exchange line in half, as a killed capture can leave it.
    target.write_bytes(FAILURES_SESSION.read_bytes().rstrip(b"\n")[:-40])
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_updates=40")

    result = pytester.runpytest("--lprecord-mode=new", f"--lprecord-api-url={record_target}")

    result.assert_outcomes(passed=1)
    assert recorded_arrays(target) == update_arrays(CHAT_SESSION)
    result.stdout.fnmatch_lines(["*its last line is cut off*"])


@pytest.mark.usefixtures("with_token")
def test_new_records_file_without_session(pytester: pytest.Pytester, record_target: str) -> None:
    target = pytester.path / FIXTURE_NAME
    target.write_bytes(FAILURES_SESSION.read_bytes().splitlines(keepends=True)[0])
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_updates=40")

    result = pytester.runpytest("--lprecord-mode=new", f"--lprecord-api-url={record_target}")

    result.assert_outcomes(passed=1)
    assert recorded_arrays(target) == update_arrays(CHAT_SESSION)


@pytest.mark.usefixtures("with_token")
def test_new_reports_corrupt_file(pytester: pytest.Pytester, tripwire: Tripwire) -> None:
    lines = FAILURES_SESSION.read_bytes().splitlines(keepends=True)
    corrupt = b"".join([*lines[:2], b"{not json\n", *lines[2:]])
    target = pytester.path / FIXTURE_NAME
    target.write_bytes(corrupt)
    write_inner_test(pytester)

    result = pytester.runpytest("--lprecord-mode=new", f"--lprecord-api-url={tripwire.api_url}")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{target}:3: line is not valid JSON*"])
    assert target.read_bytes() == corrupt
    assert tripwire.paths == []


@pytest.mark.usefixtures("with_token")
def test_lp_trio_server_records_outside_loop(
    pytester: pytest.Pytester, record_target: str
) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.lp_fixture({FIXTURE_NAME!r}, record_updates=40)
        async def test_replay(lp_trio_server, autojump_clock):
            assert len(lp_trio_server.timeline.updates) == 40
        """
    )

    result = pytester.runpytest("--lprecord-mode=once", f"--lprecord-api-url={record_target}")

    result.assert_outcomes(passed=1)


# -- precedence: marker keyword arguments > command line > ini file > defaults -------


@pytest.mark.usefixtures("with_token")
def test_marker_mode_beats_command_line(pytester: pytest.Pytester, record_target: str) -> None:
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_mode='once', record_updates=40")

    result = pytester.runpytest("--lprecord-mode=none", f"--lprecord-api-url={record_target}")

    result.assert_outcomes(passed=1)
    assert recorded_arrays(pytester.path / FIXTURE_NAME) == update_arrays(CHAT_SESSION)


@pytest.mark.usefixtures("with_token")
def test_command_line_mode_beats_ini(pytester: pytest.Pytester, tripwire: Tripwire) -> None:
    pytester.makeini("[pytest]\nlprecord_mode = all\n")
    target = copy_failures_session(pytester)
    write_inner_test(pytester)

    result = pytester.runpytest("--lprecord-mode=once", f"--lprecord-api-url={tripwire.api_url}")

    result.assert_outcomes(passed=1)
    assert target.read_bytes() == FAILURES_SESSION.read_bytes()
    assert tripwire.paths == []


@pytest.mark.usefixtures("with_token")
def test_ini_mode_beats_default(pytester: pytest.Pytester, record_target: str) -> None:
    pytester.makeini(f"[pytest]\nlprecord_mode = all\nlprecord_api_url = {record_target}\n")
    target = copy_failures_session(pytester)
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_updates=40")

    result = pytester.runpytest()

    result.assert_outcomes(passed=1)
    assert recorded_arrays(target) == update_arrays(CHAT_SESSION)


@pytest.mark.usefixtures("with_token")
def test_default_mode_is_none(pytester: pytest.Pytester, tripwire: Tripwire) -> None:
    write_inner_test(pytester)

    result = pytester.runpytest(f"--lprecord-api-url={tripwire.api_url}")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*not found (record mode none)*"])
    assert tripwire.paths == []


@pytest.mark.usefixtures("with_token")
def test_command_line_api_url_beats_ini(
    pytester: pytest.Pytester, record_target: str, tripwire: Tripwire
) -> None:
    pytester.makeini(f"[pytest]\nlprecord_api_url = {tripwire.api_url}\n")
    write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_updates=40")

    result = pytester.runpytest("--lprecord-mode=once", f"--lprecord-api-url={record_target}")

    result.assert_outcomes(passed=1)
    assert tripwire.paths == []


@pytest.mark.usefixtures("with_token")
def test_marker_duration_beats_command_line(pytester: pytest.Pytester) -> None:
    # At speed 1 the chat session's first poll reply completes 1.6 s after
    # the start, so a 0.3 s recording ends with no update.
    with run_fake_server_in_thread(CHAT_SESSION) as slow_target:
        write_inner_test(pytester, f"{FIXTURE_NAME!r}, record_duration=0.3")
        result = pytester.runpytest(
            "--lprecord-mode=once",
            "--lprecord-record-duration=600",
            f"--lprecord-api-url={slow_target.api_url}",
        )

    result.assert_outcomes(passed=1)
    assert recorded_arrays(pytester.path / FIXTURE_NAME) == []
    result.stdout.fnmatch_lines(["*recorded * (0 updates)"])


def fixture_dir_test(pytester: pytest.Pytester, marker_path: Path, expected: Path) -> None:
    expected.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FAILURES_SESSION, expected)
    pytester.makepyfile(
        f"""
        import pytest
        from pathlib import Path

        @pytest.mark.lp_fixture({str(marker_path)!r})
        def test_path(lp_fixture_path):
            assert lp_fixture_path == Path({str(expected)!r})
        """
    )


def test_fixture_dir_default_is_rootdir(pytester: pytest.Pytester) -> None:
    fixture_dir_test(pytester, Path("sub/x.jsonl"), pytester.path / "sub" / "x.jsonl")

    pytester.runpytest().assert_outcomes(passed=1)


def test_ini_fixture_dir_beats_default(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlprecord_fixture_dir = data\n")
    fixture_dir_test(pytester, Path("x.jsonl"), pytester.path / "data" / "x.jsonl")

    pytester.runpytest().assert_outcomes(passed=1)


def test_command_line_fixture_dir_beats_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlprecord_fixture_dir = data\n")
    fixture_dir_test(pytester, Path("x.jsonl"), pytester.path / "other" / "x.jsonl")

    pytester.runpytest("--lprecord-fixture-dir=other").assert_outcomes(passed=1)


def test_absolute_marker_path_beats_fixture_dir(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlprecord_fixture_dir = data\n")
    absolute = pytester.path / "elsewhere" / "x.jsonl"
    fixture_dir_test(pytester, absolute, absolute)

    pytester.runpytest("--lprecord-fixture-dir=other").assert_outcomes(passed=1)


# -- import cost ------------------------------------------------------------------------


def test_plugin_import_is_lazy() -> None:
    code = (
        "import sys, lprecord.pytest_plugin; "
        "print(sorted(m for m in ('trio', 'trustme', 'h11', 'lpcore') if m in sys.modules))"
    )

    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    assert output.strip() == "[]"


def closed_port_url() -> str:
    """An API URL on 127.0.0.1 whose port nothing listens on, so every connect is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/method"


@pytest.mark.usefixtures("with_token")
def test_recording_without_session_keeps_old_file(pytester: pytest.Pytester) -> None:
    target = copy_failures_session(pytester)
    write_inner_test(pytester)
    api_url = closed_port_url()

    result = pytester.runpytest(
        "--lprecord-mode=all", f"--lprecord-api-url={api_url}", "--lprecord-record-duration=1"
    )

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*lprecord: recording {target} from {api_url} got no long poll session*old file is kept"]
    )
    assert target.read_bytes() == FAILURES_SESSION.read_bytes()
    assert list(pytester.path.glob("*.partial")) == []


@pytest.mark.usefixtures("with_token")
def test_record_url_without_scheme_is_error(pytester: pytest.Pytester) -> None:
    target = copy_failures_session(pytester)
    write_inner_test(pytester)

    result = pytester.runpytest("--lprecord-mode=all", "--lprecord-api-url=ftp://127.0.0.1:1/m")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*invalid --lprecord-api-url: api_url 'ftp://127.0.0.1:1/m' must start with https://*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert target.read_bytes() == FAILURES_SESSION.read_bytes()
