"""Checkpoint files: where a consumer resumes after a restart.

The file holds one JSON object, ``{"ts": ..., "pts": ..., "skip": ...}``,
with ``"loss_from_ts"`` and ``"loss_failed"`` as well while lost events
are being recovered from history.
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
        checkpoint = Checkpoint(
            ts=data["ts"],
            pts=data.get("pts"),
            skip=data.get("skip", 0),
            loss_from_ts=data.get("loss_from_ts"),
            loss_failed=data.get("loss_failed"),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"checkpoint file {path} is unreadable ({error!r}); fix or delete it to start "
            "from the server's current ts"
        ) from None
    if type(checkpoint.ts) is not int or type(checkpoint.skip) is not int:
        raise CheckpointError(f"checkpoint file {path} needs an integer ts and skip; got {text!r}")
    optional = (checkpoint.pts, checkpoint.loss_from_ts, checkpoint.loss_failed)
    if any(value is not None and type(value) is not int for value in optional):
        raise CheckpointError(
            f"checkpoint file {path} needs pts, loss_from_ts and loss_failed to be integers "
            f"or null; got {text!r}"
        )
    return checkpoint


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the checkpoint at `path` atomically."""
    data: dict[str, int | None] = {
        "ts": checkpoint.ts,
        "pts": checkpoint.pts,
        "skip": checkpoint.skip,
    }
    if checkpoint.loss_from_ts is not None:
        data["loss_from_ts"] = checkpoint.loss_from_ts
        data["loss_failed"] = checkpoint.loss_failed
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(data, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
