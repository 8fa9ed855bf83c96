"""Atomic file output and safe loading.

Every output goes through a temporary file in the same folder and ``os.replace``, so a killed
job leaves either the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from nasflow.errors import CheckpointError, NasflowError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NasflowError(f"{path.parent}: cannot create output folder ({exc.strerror})") from exc
    if not os.access(path.parent, os.W_OK):
        raise NasflowError(f"{path.parent}: output folder is not writable")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give outputs the usual umask-based mode (shared clusters)
        umask = os.umask(0)
        os.umask(umask)
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(obj, sort_keys=False))


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise NasflowError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NasflowError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_CKPT_MAGIC = b"NASFLOW-CKPT-1 "


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Save ``state`` as one self-verifying file: a header with the payload's SHA-256, then the
    ``torch.save`` payload, written by a single atomic rename (a kill at any moment leaves the
    previous checkpoint or the new one, never a mix)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    header = _CKPT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header)
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`; refuse a corrupt or truncated one.

    Uses ``weights_only=True``: a checkpoint holds tensors and plain Python containers only.
    """
    import io

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    data = path.read_bytes()
    header, _, payload = data.partition(b"\n")
    if not header.startswith(_CKPT_MAGIC):
        raise CheckpointError(f"{path}: not a nasflow checkpoint, or corrupt (bad header)")
    if hashlib.sha256(payload).hexdigest().encode() != header[len(_CKPT_MAGIC):]:
        raise CheckpointError(
            f"{path}: checkpoint is truncated or corrupt (SHA-256 mismatch); delete it to restart"
        )
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"{path}: checkpoint cannot be read ({exc})") from exc
