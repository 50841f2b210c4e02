"""Helpers shared by the whole-system tests."""

import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lprecord import Timeline, read_fixture

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def recorded_updates(path: Path) -> list[object]:
    """Return every update array a fixture's poll replies carry, in order."""
    return [update.raw for update in Timeline.from_fixture(read_fixture(path)).updates]


@contextmanager
def replay_server(
    fixture: Path, workdir: Path, *, speed: float, timeout: float
) -> Iterator[tuple[str, Path]]:
    """Run `lprecord replay --tls` in a child process; yield its API URL and CA file.

    Fails the test when the server prints no URL within `timeout` seconds,
    with the server's stderr (kept in `workdir`) in the message.
    """
    ca = workdir / "ca.pem"
    log = workdir / "replay.log"
    command = [sys.executable, "-m", "lprecord", "replay", str(fixture), "--tls"]
    command += ["--ca-out", str(ca), "--port", "0", "--speed", str(speed)]
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    # Leaving `process` closes its stdout and waits for it to exit.
    with process:
        try:
            assert process.stdout is not None
            readable, _, _ = select.select([process.stdout], [], [], timeout)
            api_url = process.stdout.readline().strip() if readable else ""
            assert api_url, f"lprecord replay printed no URL within {timeout} s: {log.read_text()}"
            yield api_url, ca
        finally:
            process.kill()
