"""Atomic per-epoch training checkpoints, loadable with ``torch.load(weights_only=True)``.

A checkpoint is written to a temporary file in the same directory and renamed over the previous
one, so a kill at any moment leaves either the old or the new checkpoint, never half of one.
It carries a fingerprint of the run (configuration and dataset) so a resume never continues a
different run's weights.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "ckpt.pt"
>>> save_checkpoint(path, {"epoch": 3, "fingerprint": "f"})
>>> load_checkpoint(path, "f")["epoch"]
3
>>> load_checkpoint(path.with_name("none.pt"), "f") is None
True
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from headwater.trainers.errors import CheckpointError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Replace the checkpoint at ``path`` with ``state`` atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".ckpt-")
        with os.fdopen(handle, "wb") as sink:
            torch.save(state, sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise CheckpointError(f"cannot write checkpoint {path}: {error}") from None


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if there is one; refuses one of a different run."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({error}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        found = state.get("fingerprint") if isinstance(state, dict) else None
        raise CheckpointError(
            f"checkpoint {path} belongs to another run (fingerprint {found!r}, this run "
            f"{fingerprint!r}); use another checkpoint directory or delete it"
        )
    return state
