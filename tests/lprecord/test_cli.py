"""Tests of the `lprecord` command: `main` in-process, and `replay` as a child process."""

import contextlib
import io
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio
from fixture_facts import (
    CHAT_SESSION,
    FAILURES_SESSION,
    count_recorded,
    receive_updates,
    update_arrays,
)

from lprecord._cli import DEMO_TOKEN, build_parser, main, run_show

# Real seconds to wait for a `replay` child process to print its URL, serve or exit.
PROCESS_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRun:
    status: int
    stdout: str
    stderr: str


def run_main(args: list[str]) -> CommandRun:
    """Run `lprecord ARGS` in this process and collect its exit status and output."""
    with (
        contextlib.redirect_stdout(io.StringIO()) as out,
        contextlib.redirect_stderr(io.StringIO()) as err,
    ):
        status = main(args)
    return CommandRun(status=status, stdout=out.getvalue(), stderr=err.getvalue())


# -- capture ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoCapture:
    run: CommandRun
    path: Path


@pytest.fixture(scope="module")
def demo_capture(tmp_path_factory: pytest.TempPathFactory) -> DemoCapture:
    """One `lprecord capture -o PATH` run with no token and no --api-url."""
    path = tmp_path_factory.mktemp("demo") / "demo.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("VK_TOKEN", raising=False)
        run = run_main(["capture", "-o", str(path)])
    return DemoCapture(run=run, path=path)


def test_demo_capture_exits_0(demo_capture: DemoCapture) -> None:
    assert demo_capture.run.status == 0, demo_capture.run.stderr


def test_demo_capture_explains_demo(demo_capture: DemoCapture) -> None:
    assert "--token" in demo_capture.run.stderr
    assert "VK_TOKEN" in demo_capture.run.stderr
    assert "demo" in demo_capture.run.stderr


def test_demo_capture_prints_summary(demo_capture: DemoCapture) -> None:
    stdout = demo_capture.run.stdout

    assert f"wrote {demo_capture.path}" in stdout
    assert re.search(r"^updates:\s+\d+ ", stdout, re.MULTILINE), stdout
    assert re.search(r"^ts range:\s+\d+ \.\. \d+$", stdout, re.MULTILINE), stdout


def test_demo_capture_reports_identical(demo_capture: DemoCapture) -> None:
    assert "arrays identical" in demo_capture.run.stdout


def test_demo_fixture_has_30_updates(demo_capture: DemoCapture) -> None:
    assert len(update_arrays(demo_capture.path)) >= 30


def test_demo_fixture_matches_shipped_session(demo_capture: DemoCapture) -> None:
    assert update_arrays(demo_capture.path) == update_arrays(CHAT_SESSION)


def test_demo_fixture_hides_token(demo_capture: DemoCapture) -> None:
    assert DEMO_TOKEN not in demo_capture.path.read_text("utf-8")


def test_capture_refuses_existing_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VK_TOKEN", raising=False)
    path = tmp_path / "taken.jsonl"
    path.write_bytes(b"an earlier capture\n")

    run = run_main(["capture", "-o", str(path)])

    assert run.status == 2
    assert str(path) in run.stderr
    assert "--force" in run.stderr
    assert path.read_bytes() == b"an earlier capture\n"


# -- show ------------------------------------------------------------------------------------


def test_show_exits_0() -> None:
    assert main(["show", str(FAILURES_SESSION)]) == 0


def test_show_prints_counts() -> None:
    expected = count_recorded(FAILURES_SESSION)

    # run_show with its own stream, because main() makes show print to the sys.stdout of
    # import time (see the next test).
    out = io.StringIO()
    run_show(build_parser().parse_args(["show", str(FAILURES_SESSION)]), out)

    stdout = out.getvalue()
    assert f" {expected.polls} polls" in stdout
    assert re.search(rf"^updates:\s+{expected.updates} ", stdout, re.MULTILINE), stdout
    ts_range = f"{min(expected.ts_values)} .. {max(expected.ts_values)}"
    assert re.search(rf"^ts range:\s+{ts_range}$", stdout, re.MULTILINE), stdout
    for code, count in expected.failed.items():
        assert f"failed {code}: {count}" in stdout


def test_show_words_counts_and_flags() -> None:
    out = io.StringIO()
    run_show(build_parser().parse_args(["show", str(CHAT_SESSION)]), out)

    stdout = out.getvalue()
    assert "(1 API call, 11 polls, " in stdout
    assert "; scrubbed: no\n" in stdout


def test_show_follows_redirected_stdout() -> None:
    run = run_main(["show", str(CHAT_SESSION)])

    assert "ts range:" in run.stdout


def test_show_corrupt_fixture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = CHAT_SESSION.read_text("utf-8").splitlines()
    lines[2] = lines[2].removesuffix("}")
    path = tmp_path / "cut.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")

    status = main(["show", str(path)])

    stderr = capsys.readouterr().err
    assert status == 2
    assert f"{path}:3:" in stderr
    assert "not valid JSON" in stderr


def test_show_into_closed_pipe_is_quiet() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "lprecord", "show", str(CHAT_SESSION)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Closed before the interpreter has started, so every write fails with EPIPE.
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=PROCESS_TIMEOUT)

    assert process.returncode == 0
    assert stderr == ""


# -- replay ----------------------------------------------------------------------------------


def test_replay_ca_out_needs_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pem = tmp_path / "ca.pem"

    status = main(["replay", str(CHAT_SESSION), "--ca-out", str(pem)])

    assert status == 2
    assert "--tls" in capsys.readouterr().err
    assert not pem.exists()


def test_replay_ca_out_in_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = tmp_path / "no-such-directory" / "ca.pem"

    status = main(["replay", str(CHAT_SESSION), "--tls", "--port", "0", "--ca-out", str(pem)])

    stderr = capsys.readouterr().err
    assert status == 2
    assert f"cannot write the CA certificate to {pem}: No such file or directory" in stderr
    assert "[Errno" not in stderr


def test_replay_port_in_use_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        status = main(["replay", str(CHAT_SESSION), "--port", str(port)])

    stderr = capsys.readouterr().err
    assert status == 2
    assert f"cannot listen on 127.0.0.1 port {port}: it is already in use" in stderr
    assert "--port 0" in stderr


def test_replay_host_not_local_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    # 192.0.2.1 belongs to TEST-NET-1, a block reserved for documentation, and is no
    # address of this machine, so the bind fails locally and nothing goes out.
    status = main(["replay", str(CHAT_SESSION), "--host", "192.0.2.1", "--port", "0"])

    stderr = capsys.readouterr().err
    assert status == 2
    assert "cannot listen on --host '192.0.2.1': " in stderr
    assert "such as 127.0.0.1 or ::1" in stderr


def test_missing_fixture_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.jsonl"

    for command in ("show", "replay"):
        status = main([command, str(missing)])

        stderr = capsys.readouterr().err
        assert status == 2
        assert stderr == f"lprecord: error: {missing}: No such file or directory\n"


def restore_default_sigint() -> None:
    # A child inherits an ignored SIGINT (as from a shell's `&`) and would not stop on it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def replay_process(fixture: Path, pem: Path, *options: str) -> Iterator["subprocess.Popen[str]"]:
    """Run `lprecord replay` over TLS at speed 1000; kill it on the way out if still running."""
    command = [sys.executable, "-m", "lprecord", "replay", str(fixture)]
    command += ["--tls", "--ca-out", str(pem), "--speed", "1000", "--port", "0", *options]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=restore_default_sigint,
    )
    with process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def first_stdout_line(process: "subprocess.Popen[str]") -> str:
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], PROCESS_TIMEOUT)
    assert readable, f"replay printed nothing within {PROCESS_TIMEOUT} s"
    return process.stdout.readline().rstrip("\n")


def test_replay_serves_every_update(tmp_path: Path) -> None:
    expected = update_arrays(CHAT_SESSION)
    pem = tmp_path / "ca.pem"

    with replay_process(CHAT_SESSION, pem) as process:
        api_url = first_stdout_line(process)
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+/method", api_url), api_url
        consumer = partial(
            receive_updates, api_url, len(expected), timeout=PROCESS_TIMEOUT, cafile=str(pem)
        )
        received = trio.run(consumer)

    assert received == expected


def test_replay_exits_0_on_sigint(tmp_path: Path) -> None:
    with replay_process(CHAT_SESSION, tmp_path / "ca.pem") as process:
        first_stdout_line(process)

        process.send_signal(signal.SIGINT)

        assert process.wait(timeout=PROCESS_TIMEOUT) == 0


@pytest.mark.parametrize(
    "stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["sigint", "sigterm", "sighup"]
)
def test_replay_reports_faults_never_fired(tmp_path: Path, stop: signal.Signals) -> None:
    scenario = tmp_path / "faults.json"
    scenario.write_text(
        '{"faults": [{"at_step": 1000, "fault": "failed", "code": 2},'
        ' {"at_time": 5000, "on": "getLongPollHistory", "fault": "http_error", "status": 503}]}'
    )
    with replay_process(CHAT_SESSION, tmp_path / "ca.pem", "--faults", str(scenario)) as process:
        first_stdout_line(process)

        process.send_signal(stop)
        _, stderr = process.communicate(timeout=PROCESS_TIMEOUT)

    assert process.returncode == 0
    assert "lprecord: 2 scheduled faults never fired:" in stderr
    assert "lprecord:   failed (code=2) on poll from request 1000" in stderr
    assert "lprecord:   http_error (status=503) on getLongPollHistory from 5000 s" in stderr


def test_demo_capture_in_other_mode_checks_gated_arrays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without mode 8 the replay leaves out event 114, and without 128 random_id.
    path = tmp_path / "mode2.jsonl"

    status = main(["capture", "-o", str(path), "--mode", "2"])

    assert status == 0
    assert "39 updates captured, 39 replayed; arrays identical" in capsys.readouterr().out
