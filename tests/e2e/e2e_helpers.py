"""Helpers shared by the whole-system tests."""

from pathlib import Path

from lprecord import Timeline, read_fixture

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def recorded_updates(path: Path) -> list[object]:
    """Return every update array a fixture's poll replies carry, in order."""
    return [update.raw for update in Timeline.from_fixture(read_fixture(path)).updates]
