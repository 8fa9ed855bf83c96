"""CIFAR-10 / CIFAR-100 from the official archives (binary or python format).

Sources, first found wins:

1. ``dataset.archive`` (a user-supplied archive, extracted into ``root/<name>/``);
2. already-extracted folders in ``root/<name>/`` (``cifar-10-batches-bin/``, ``cifar-10-batches-py/``,
   ``cifar-100-binary/``, ``cifar-100-python/``);
3. the official archives in ``root/<name>/`` (``cifar-10-binary.tar.gz``, ``cifar-10-python.tar.gz``, ...);
4. torchvision's checksummed download of the python archive, if ``dataset.download``.

The binary format is raw bytes and parsed with numpy. The python format is pickles, so its batches
are only unpickled after a checksum against the official files matched: the archive's MD5 before
extraction, and every batch file's MD5 (torchvision's list) before reading.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nasflow.data.archives import download, extract_once, md5_file, top_level_folder
from nasflow.data.registry import Split, register_dataset
from nasflow.errors import DataError

if TYPE_CHECKING:
    from nasflow.params import DatasetParams

URL_BASE = "https://www.cs.toronto.edu/~kriz/"


@dataclass(frozen=True)
class CifarSpec:
    name: str
    title: str
    bin_archive: str
    bin_folder: str
    bin_files: dict[str, tuple[str, ...]]
    label_bytes: int  # CIFAR-100 records start with (coarse, fine); the fine label is the last
    py_archive: str
    py_folder: str
    py_md5: str
    py_label_key: str
    tv_class: str  # torchvision class holding the per-file md5 list

    @property
    def py_url(self) -> str:
        return URL_BASE + self.py_archive

    @property
    def bin_url(self) -> str:
        return URL_BASE + self.bin_archive


CIFAR10 = CifarSpec(
    "cifar10", "CIFAR-10", "cifar-10-binary.tar.gz", "cifar-10-batches-bin",
    {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}, 1,
    "cifar-10-python.tar.gz", "cifar-10-batches-py", "c58f30108f718f92721af3b95e74349a", "labels",
    "CIFAR10")
CIFAR100 = CifarSpec(
    "cifar100", "CIFAR-100", "cifar-100-binary.tar.gz", "cifar-100-binary",
    {"train": ("train.bin",), "test": ("test.bin",)}, 2,
    "cifar-100-python.tar.gz", "cifar-100-python", "eb9058c3a382ffc7106e4002c42a8d85", "fine_labels",
    "CIFAR100")

RECORD_PIXELS = 3 * 32 * 32


def read_binary_batch(path: Path, label_bytes: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One binary-format file: records of ``label_bytes`` label bytes + 3072 pixel bytes."""
    record = label_bytes + RECORD_PIXELS
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    if raw.size == 0 or raw.size % record:
        raise DataError(f"{path}: {raw.size} bytes is not a whole number of {record}-byte CIFAR "
                        "records; the file is truncated or not a CIFAR binary batch")
    rows = raw.reshape(-1, record)
    labels = rows[:, label_bytes - 1].astype(np.int64)
    if labels.max() >= num_classes:
        raise DataError(f"{path}: label {labels.max()} outside 0..{num_classes - 1}; "
                        "is this the right CIFAR variant?")
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), labels


def _official_py_md5s(spec: CifarSpec) -> dict[str, str]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.tv_class)
    return dict((*cls.train_list, *cls.test_list))


def read_python_batch(path: Path, expected_md5: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One python-format batch, unpickled only after its MD5 matched the official file's."""
    if not path.is_file():
        raise DataError(f"{path}: missing from the extracted CIFAR folder")
    got = md5_file(path)
    if got != expected_md5:
        raise DataError(f"{path}: md5 {got} does not match the official file's {expected_md5}; "
                        "refusing to unpickle it (delete the folder and extract the official archive)")
    with open(path, "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data, np.asarray(entry[label_key], dtype=np.int64)


def _read_folder(folder: Path, spec: CifarSpec, split: Split, num_classes: int):
    if folder.name == spec.bin_folder:
        files = [folder / f for f in spec.bin_files[split]]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise DataError(f"{folder}: incomplete CIFAR folder, missing {', '.join(missing)}; "
                            "delete it and extract the official archive again")
        parts = [read_binary_batch(f, spec.label_bytes, num_classes) for f in files]
    else:
        md5s = _official_py_md5s(spec)
        names = [n for n in md5s if ("test" in n) == (split == "test")]
        parts = [read_python_batch(folder / n, md5s[n], spec.py_label_key) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels


def _check_python_archive(archive: Path, spec: CifarSpec) -> None:
    got = md5_file(archive)
    if got != spec.py_md5:
        raise DataError(f"{archive}: md5 {got} does not match the official {spec.py_archive} "
                        f"({spec.py_md5}); refusing to unpickle its batches. Download it again from "
                        f"{spec.py_url}, or use the binary archive {spec.bin_url}")


def _missing_message(spec: CifarSpec, folder: Path, reason: str) -> str:
    return (f"{spec.title} not found. Put the official archive {spec.py_archive} "
            f"(from {spec.py_url}, md5 {spec.py_md5}) or {spec.bin_archive} (from {spec.bin_url}) "
            f"into the folder {folder}/, or set dataset.archive in the params to the archive's path. "
            f"{reason}")


def locate(params: DatasetParams, spec: CifarSpec) -> Path:
    """The extracted folder to read, obtaining it from the first source that has the data."""
    dest = Path(params.root) / spec.name
    folders = (spec.bin_folder, spec.py_folder)
    if params.archive is not None:
        archive = Path(params.archive)
        if not archive.is_file():
            raise DataError(f"dataset.archive: {archive} not found")
        if top_level_folder(archive) == spec.py_folder:
            _check_python_archive(archive, spec)
        return extract_once(archive, dest, folders)
    for name in folders:
        if (dest / name).is_dir():
            return dest / name
    if (dest / spec.bin_archive).is_file():
        return extract_once(dest / spec.bin_archive, dest, folders)
    if (dest / spec.py_archive).is_file():
        _check_python_archive(dest / spec.py_archive, spec)
        return extract_once(dest / spec.py_archive, dest, folders)
    if not params.download:
        raise DataError(_missing_message(spec, dest, "Downloading is off (dataset.download: false)."))
    try:
        archive = download(spec.py_url, dest, spec.py_archive, spec.py_md5)
    except DataError as exc:
        raise DataError(_missing_message(spec, dest, f"The download failed ({exc}).")) from None
    return extract_once(archive, dest, folders)


def _loader(spec: CifarSpec, num_classes: int):
    def load(params: DatasetParams, split: Split):
        return _read_folder(locate(params, spec), spec, split, num_classes)

    return load


register_dataset("cifar10", num_classes=10, in_channels=3, image_size=32,
                 mean=(0.49139968, 0.48215827, 0.44653124),
                 std=(0.24703233, 0.24348505, 0.26158768))(_loader(CIFAR10, 10))
register_dataset("cifar100", num_classes=100, in_channels=3, image_size=32,
                 mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762))(_loader(CIFAR100, 100))
