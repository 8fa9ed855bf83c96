"""Fashion-MNIST from IDX files (gzipped or not), parsed with numpy.

Looked up in ``root/fashion_mnist/``, then Debian's ``dataset-fashion-mnist`` package folder, then
downloaded with torchvision's checksummed ``download_url`` if ``dataset.download``. Local files are
not checked against the upstream MD5s: Debian recompresses the ``.gz`` files, so their MD5s differ
while the content is the same; the IDX headers and sizes are validated instead.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nasflow.data.archives import download
from nasflow.data.registry import Split, register_dataset
from nasflow.errors import DataError

if TYPE_CHECKING:
    from nasflow.params import DatasetParams

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_UINT8 = 0x08


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions (magic ``00 00 08 ndim``)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read, the file is corrupt or truncated ({exc})") from exc
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes((0, 0, IDX_UINT8, ndim)):
        raise DataError(f"{path}: not an IDX file of {ndim}-d unsigned bytes "
                        f"(magic {raw[:4].hex() or 'missing'}, expected 000008{ndim:02x})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} = {int(np.prod(dims))} bytes of data, "
                        f"the file holds {len(raw) - header}; it is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _download(folder: Path, split: Split) -> tuple[Path, Path]:
    from torchvision.datasets import FashionMNIST

    md5s = dict(FashionMNIST.resources)
    paths = []
    for stem in FILES[split]:
        name = stem + ".gz"
        errors = []
        for mirror in FashionMNIST.mirrors:
            try:
                paths.append(download(mirror + name, folder, name, md5s[name]))
                break
            except DataError as exc:
                errors.append(str(exc))
        else:
            wanted = ", ".join(s + ".gz" for s in FILES[split])
            raise DataError(f"Fashion-MNIST {split} files not found in {folder}/ or {DEBIAN_DIR}/ "
                            f"and the download failed ({'; '.join(errors)}). Install Debian's "
                            f"dataset-fashion-mnist package or put {wanted} into {folder}/")
    return paths[0], paths[1]


def locate(params: DatasetParams, split: Split) -> tuple[Path, Path]:
    own = Path(params.root) / "fashion_mnist"
    for folder in (own, DEBIAN_DIR):
        images, labels = (_find(folder, stem) for stem in FILES[split])
        if images is not None and labels is not None:
            return images, labels
    if not params.download:
        raise DataError(f"Fashion-MNIST {split} files not found: put "
                        f"{', '.join(s + '.gz' for s in FILES[split])} into {own}/ or install Debian's "
                        f"dataset-fashion-mnist package ({DEBIAN_DIR}/); downloading is off "
                        "(dataset.download: false)")
    return _download(own, split)


@register_dataset("fashion_mnist", num_classes=10, in_channels=1, image_size=28,
                  mean=(0.2860405969887955,), std=(0.35302424451492254,))
def load_fashion_mnist(params: DatasetParams, split: Split):
    images_path, labels_path = locate(params, split)
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1:]}, expected 28x28")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images "
                        f"in {images_path.name}")
    if labels.size and labels.max() >= 10:
        raise DataError(f"{labels_path}: label {labels.max()} outside 0..9")
    return images[:, None], labels.astype(np.int64)
