"""Per-epoch checkpoints with resume (atomic write, checksum, config fingerprint).

A checkpoint is only resumed by a run with the same fingerprint (the config sections that
shape the result); after a params edit the stale checkpoint is moved aside and the run starts
over, so a resumed run always ends exactly as an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from nasflow.io import load_checkpoint, save_checkpoint


def fingerprint(sections: dict[str, Any]) -> str:
    blob = json.dumps(sections, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class CheckpointManager:
    def __init__(self, directory: str | Path, name: str, fingerprint: str):
        self.path = Path(directory) / f"{name}.ckpt"
        self.fingerprint = fingerprint

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        state = load_checkpoint(self.path)  # raises CheckpointError when corrupt / truncated
        if state.get("fingerprint") != self.fingerprint:
            stale = self.path.with_suffix(".stale")
            self.path.replace(stale)
            print(f"nasflow: {self.path} was written with other params; moved to {stale.name}, "
                  "starting over", file=sys.stderr)
            return None
        print(f"nasflow: resuming from {self.path} ({state['epoch'] + 1} epochs done)",
              file=sys.stderr)
        return state

    def save(self, state: dict[str, Any]) -> None:
        save_checkpoint(self.path, {**state, "fingerprint": self.fingerprint})
