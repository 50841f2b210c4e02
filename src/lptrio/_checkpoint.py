"""Checkpoint files: where a consumer resumes after a restart.

The file holds one JSON object, ``{"ts": ..., "pts": ..., "skip": ...}``.
It is replaced atomically (written to a temporary file in the same
folder, synced, then renamed over the old one), so a crash leaves either
the old checkpoint or the new one, never a torn file.
"""

import json
import os
from pathlib import Path

from lpcore import Checkpoint


class CheckpointError(Exception):
    """A checkpoint file exists but cannot be read."""


def read_checkpoint(path: Path) -> Checkpoint | None:
    """Return the checkpoint saved at `path`, or None when there is no file yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        checkpoint = Checkpoint(ts=data["ts"], pts=data.get("pts"), skip=data.get("skip", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"checkpoint file {path} is unreadable ({error!r}); fix or delete it to start "
            "from the server's current ts"
        ) from None
    if type(checkpoint.ts) is not int or type(checkpoint.skip) is not int:
        raise CheckpointError(f"checkpoint file {path} needs an integer ts and skip; got {text!r}")
    return checkpoint


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the checkpoint at `path` atomically."""
    data = {"ts": checkpoint.ts, "pts": checkpoint.pts, "skip": checkpoint.skip}
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(data, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
