"""Checkpoint files: round trips, atomic replacement, and clear errors for bad files."""

from pathlib import Path

import pytest

from lpcore import Checkpoint
from lptrio._checkpoint import CheckpointError, read_checkpoint, write_checkpoint


@pytest.mark.parametrize(
    "checkpoint",
    [
        Checkpoint(ts=1800000040),
        Checkpoint(ts=1800000040, pts=500040, skip=3),
        Checkpoint(ts=1800000300, pts=500012, skip=2, loss_from_ts=1800000040, loss_failed=1),
    ],
)
def test_checkpoint_file_round_trips(tmp_path: Path, checkpoint: Checkpoint) -> None:
    path = tmp_path / "state.json"

    write_checkpoint(path, checkpoint)

    assert read_checkpoint(path) == checkpoint
    assert [entry.name for entry in tmp_path.iterdir()] == ["state.json"]


def test_missing_checkpoint_file_is_none(tmp_path: Path) -> None:
    assert read_checkpoint(tmp_path / "absent.json") is None


def test_rewrite_replaces_the_old_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_checkpoint(path, Checkpoint(ts=1, pts=2))

    write_checkpoint(path, Checkpoint(ts=3, pts=4, skip=1))

    assert read_checkpoint(path) == Checkpoint(ts=3, pts=4, skip=1)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('{"ts": 1800000040, "pts": 5', "unreadable"),
        ("[1800000040]", "unreadable"),
        ('{"pts": 500040}', "unreadable"),
        ('{"ts": "1800000040"}', "integer ts and skip"),
        ('{"ts": 1800000040, "pts": "500040"}', "integers or null"),
        ('{"ts": 1800000040, "loss_from_ts": 17.5}', "integers or null"),
    ],
)
def test_bad_checkpoint_file_names_path_and_fix(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)

    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)

    assert str(path) in str(caught.value)
    assert complaint in str(caught.value)
