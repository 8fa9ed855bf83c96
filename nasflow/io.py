"""Atomic file output and safe loading.

Every output goes through a temporary file in the same folder and ``os.replace``, so a killed
job leaves either the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from nasflow.errors import CheckpointError, InputError, NasflowError


def _owner() -> str:
    """``<host>-<pid>``: which process a temporary output belongs to."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def temp_prefix(path: str | os.PathLike) -> str:
    """Prefix of the temporary files / folders that build ``path`` (``.<name>.<host>-<pid>.``)."""
    return f".{Path(path).name}.{_owner()}."


def remove_stale_temps(path: str | os.PathLike) -> None:
    """Remove the temporary files / folders of ``path`` left by killed nasflow processes of
    this host (their pid no longer runs); those of live processes are left alone."""
    path = Path(path)
    host = _owner().rsplit("-", 1)[0]
    head = f".{path.name}.{host}-"
    try:
        entries = list(path.parent.iterdir()) if path.parent.is_dir() else []
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(head) and name.endswith(".tmp")):
            continue
        pid_text = name[len(head):].split(".", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def make_parent(path: str | os.PathLike) -> list[Path]:
    """Create the folders above ``path`` that are missing (a clear error if they cannot be);
    returns the ones created, top first (for :func:`remove_empty`)."""
    path = Path(path)
    missing = []
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise NasflowError(f"{path}: {parent} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NasflowError(f"{path.parent}: cannot create output folder ({exc.strerror})") from exc
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise NasflowError(f"{path.parent}: output folder is not writable")
    return missing[::-1]


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) where they are empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    An existing folder at ``path`` is refused before anything is written; temporaries that
    killed processes left for ``path`` are removed."""
    path = Path(path)
    if path.is_dir():
        raise NasflowError(f"{path}: is a folder; a file is written here (remove it, or choose "
                           "another output path)")
    created = make_parent(path)
    remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        remove_empty(created)
        raise NasflowError(f"{path.parent}: cannot write there ({exc.strerror})") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give outputs the usual umask-based mode (shared clusters)
        umask = os.umask(0)
        os.umask(umask)
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~umask)
        try:
            os.replace(tmp_path, path)
        except IsADirectoryError:
            raise NasflowError(f"{path}: is a folder; a file is written here (remove it, or "
                               "choose another output path)") from None
        created = []
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        remove_empty(created)


@contextlib.contextmanager
def locked_file(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive lock on ``path`` that deletes the file when released.

    Deleting a lock file is only safe with a check after locking: a waiter may lock the
    inode of a file that its holder has just unlinked. So after ``flock`` the holder checks
    that ``path`` is still the inode it locked, and retries otherwise; the file is unlinked
    while still locked. Where ``fcntl`` is missing (Windows), ``filelock`` is used instead."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        from filelock import FileLock

        with FileLock(str(path)).acquire(timeout=timeout):
            yield
        return
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"lock {path} still held after {timeout:.0f} s") from None
                    time.sleep(0.05)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if not same:  # unlinked by its last holder while we waited: lock the new one
                continue
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    path.unlink()
            return
        finally:
            os.close(fd)  # releases the lock


def write_json(path: str | os.PathLike, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    text = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """A JSON file through the checked loader (:func:`nasflow.loaders.load_json`): UTF-8,
    syntax, unique keys; every failure names the file."""
    from nasflow.loaders import load_json

    return load_json(path, what)


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

    from nasflow.loaders import read_bytes

    path = Path(path)
    try:
        data = read_bytes(path, "checkpoint")
    except NasflowError as exc:
        raise CheckpointError(str(exc)) from None
    header, _, payload = data.partition(b"\n")
    if not header.startswith(_CKPT_MAGIC):
        raise CheckpointError(f"{path}: not a nasflow checkpoint, or corrupt (bad header)")
    if hashlib.sha256(payload).hexdigest().encode() != header[len(_CKPT_MAGIC):]:
        raise CheckpointError(
            f"{path}: checkpoint is truncated or corrupt (SHA-256 mismatch); delete it to restart"
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as exc:
        from nasflow.loaders import clip

        raise CheckpointError(f"{path}: checkpoint cannot be read ({clip(exc, 200)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not the mapping a nasflow "
                              "checkpoint holds")
    return state


def load_weights(path: str | os.PathLike, model: Any, *, key: str = "model",
                 expected: Mapping[str, Any] | None = None, hint: str = "",
                 map_location: Any = "cpu",
                 check: Callable[[Mapping[str, Any]], None] | None = None) -> dict:
    """Load a checkpoint file (:func:`nasflow.io.load_checkpoint`: checksum, ``weights_only``)
    holding ``{key: state_dict, "made_for": ..., ...}``, check its ``made_for`` against
    ``expected``, run ``check`` on it (e.g. the genotype it was trained for: the clearer cause
    of mismatching tensors), then check its tensors against ``model``; return the loaded dict."""
    from nasflow.loaders import check_made_for, check_state_dict

    state = load_checkpoint(path, map_location=map_location)
    if not isinstance(state, Mapping):
        raise InputError(path, f"a checkpoint holds a mapping, not {type(state).__name__}")
    check_made_for(state.get("made_for"), expected, path, "this file")
    if key not in state:
        raise InputError(path, "missing; not a file nasflow wrote?", key=key)
    if check is not None:
        check(state)
    check_state_dict(state[key], model, path, key, hint)
    return dict(state)
