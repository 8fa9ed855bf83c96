"""Per-epoch checkpoints with resume (atomic write, checksum, config fingerprint).

A checkpoint is only resumed by a run with the same fingerprint (the config sections that
shape the result); after a params edit the stale checkpoint is moved aside and the run starts
over, so a resumed run always ends exactly as an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nasflow.errors import CheckpointError, InputError
from nasflow.io import load_checkpoint, save_checkpoint
from nasflow.loaders import check_state_dict, clip


def fingerprint(sections: dict[str, Any]) -> str:
    blob = json.dumps(sections, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class CheckpointManager:
    def __init__(self, directory: str | Path, name: str, fingerprint: str):
        self.path = Path(directory) / f"{name}.ckpt"
        self.fingerprint = fingerprint

    def load(self, expect: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The checkpoint to resume from, or None (none yet, or one of other params, which is
        moved aside). ``expect`` maps state keys to what they must fit before any tensor is
        loaded: a module (``{"model": model}``: same parameter names and shapes) or a mapping
        of names to tensors / shapes; a checkpoint that does not fit (written by another
        version of the network code) is moved aside too."""
        if not self.path.exists() and not self.path.is_symlink():
            return None
        state = load_checkpoint(self.path)  # raises CheckpointError when corrupt / truncated
        if state.get("fingerprint") != self.fingerprint:
            self._move_aside("was written with other params")
            return None
        epoch = state.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise CheckpointError(f"{self.path}: epoch: missing or not a count ({clip(epoch, 40)}); "
                                  "not a nasflow checkpoint? Delete it to restart")
        for key, ref in (expect or {}).items():
            if key not in state:
                self._move_aside(f"has no {key!r}")
                return None
            try:
                check_state_dict(state[key], ref, self.path, key)
            except InputError as exc:
                self._move_aside(f"does not fit this network ({exc.reason}, {exc.key})")
                return None
        print(f"nasflow: resuming from {self.path} ({epoch + 1} epochs done)", file=sys.stderr)
        return state

    def _move_aside(self, why: str) -> None:
        stale = self.path.with_suffix(".stale")
        try:
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            self.path.replace(stale)
        except OSError as exc:
            raise CheckpointError(f"{self.path}: {why}, and cannot be moved aside to {stale.name} "
                                  f"({exc.strerror}); delete it to restart") from None
        print(f"nasflow: {self.path} {why}; moved to {stale.name}, starting over", file=sys.stderr)

    def save(self, state: dict[str, Any]) -> None:
        save_checkpoint(self.path, {**state, "fingerprint": self.fingerprint})
