"""Checksums, safe archive extraction and checksummed downloads for dataset files."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from nasflow.errors import DataError
from nasflow.io import sha256_file

# What a truncated or non-archive file raises while being read.
READ_ERRORS = (tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error, OSError)
SOURCE_MARKER = ".nasflow-source"
EXTRACT_LOCK_S = 3600.0  # another job extracting the same archive: wait at most this long


def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def top_level_folder(archive: Path) -> str | None:
    """Top-level folder of the first member (cheap: reads only the first header)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            member = tar.next()
    except READ_ERRORS as exc:
        raise DataError(f"{archive}: not a readable tar archive, corrupt or truncated ({exc})") from exc
    if member is None:
        return None
    parts = [p for p in member.name.split("/") if p not in ("", ".")]
    return parts[0] if parts else None


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    # Parallel pipeline jobs may extract the same archive; one does it, the others reuse it.
    # The lock file is removed on release (nasflow.io.locked_file): no stray file in the folder.
    from nasflow.io import locked_file

    stack = contextlib.ExitStack()
    try:
        stack.enter_context(locked_file(folder / ".extract.lock", timeout=EXTRACT_LOCK_S))
    except (OSError, TimeoutError) as exc:
        raise DataError(f"{folder}: cannot lock the dataset folder for extraction ({exc})") from exc
    with stack:
        yield


def extract_once(archive: Path, dest: Path, folders: tuple[str, ...]) -> Path:
    """Extract ``archive`` into ``dest`` unless already done; return the dataset folder in it.

    ``folders`` are the top-level folder names a valid archive holds (one is enough). Members are
    extracted with tarfile's ``data`` filter into a temporary folder, so a path-traversal member is
    refused before anything lands in ``dest``; the result is renamed into place and tagged with
    the archive's SHA-256, so a later run with the same archive skips the extraction.
    """
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{dest}: cannot create the dataset folder ({exc.strerror})") from exc
    if not hasattr(tarfile, "data_filter"):  # added in Python 3.11.4
        raise DataError(f"{archive}: safe extraction needs Python >= 3.11.4 (tarfile's data filter)")
    digest = sha256_file(archive)
    with _lock(dest):
        for name in folders:
            marker = dest / name / SOURCE_MARKER
            if marker.is_file() and marker.read_bytes().decode("ascii", "replace").strip() == digest:
                return dest / name
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
        try:
            try:
                with tarfile.open(archive, "r:*") as tar:
                    tar.extractall(tmp, filter="data")
            except tarfile.FilterError as exc:
                member = exc.tarinfo.name if exc.tarinfo is not None else "?"
                raise DataError(f"{archive}: refusing unsafe archive member {member!r} ({exc})") from exc
            except READ_ERRORS as exc:
                raise DataError(f"{archive}: cannot extract, the archive is corrupt or truncated "
                                f"({exc}); expected a .tar.gz with {' or '.join(folders)}/") from exc
            found = next((n for n in folders if (tmp / n).is_dir()), None)
            if found is None:
                got = sorted(p.name for p in tmp.iterdir())
                raise DataError(f"{archive}: expected a folder {' or '.join(folders)}/ in the archive, "
                                f"found {got or 'nothing'}")
            (tmp / found / SOURCE_MARKER).write_text(digest + "\n")
            target = dest / found
            if target.exists():  # an older extraction from another archive: replace it
                old = Path(tempfile.mkdtemp(prefix=".old-", dir=dest))
                os.replace(target, old / found)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp / found, target)
            return target
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def download(url: str, folder: Path, filename: str, md5: str) -> Path:
    """Download with torchvision's checksummed ``download_url`` into ``folder / filename``.

    The file is fetched into a temporary folder first so an interrupted or corrupt download never
    sits under the final name. Raises :class:`DataError` (message only) on any failure.
    """
    import torchvision.datasets.utils as tvu  # looked up at call time so tests can stub it

    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the download folder ({exc.strerror})") from exc
    try:
        try:
            tvu.download_url(url, str(tmp), filename, md5)
        except Exception as exc:  # network errors come in many types; the message is what matters
            raise DataError(f"download of {url} failed: {type(exc).__name__}: {exc}") from exc
        got = md5_file(tmp / filename)
        if got != md5:
            raise DataError(f"download of {url}: md5 {got}, expected {md5}")
        os.replace(tmp / filename, folder / filename)
        return folder / filename
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not any(folder.iterdir()):  # leave no empty folder behind a failed download
            folder.rmdir()
