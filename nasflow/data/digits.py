"""scikit-learn's 8x8 handwritten digits: the embedded dataset that always works offline.

1797 real images with values 0..16, stored as uint8 ``round(v * 255 / 16)``. The train/test split is
fixed: ``train_test_split(test_size=0.25, stratify=labels, random_state=0)`` gives 1347 train and
450 test images with the class proportions of the whole set. Mean/std are those of the train split.

Importing scikit-learn costs ~3 s, more than a smoke-profile stage's own work, and every
pipeline job is a fresh process: the split is computed once per scikit-learn version and kept
as a plain ``.npz`` (no pickle) in ``$XDG_CACHE_HOME/nasflow`` (``~/.cache/nasflow``); an
unreadable or mismatched cache file is recomputed.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nasflow.data.registry import Split, register_dataset

if TYPE_CHECKING:
    from nasflow.params import DatasetParams

TEST_SIZE = 0.25
SPLIT_SEED = 0


_SHAPES = {"x_train": (1347, 1, 8, 8), "y_train": (1347,), "x_test": (450, 1, 8, 8),
           "y_test": (450,)}


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    version = importlib.metadata.version("scikit-learn")
    return Path(root) / "nasflow" / f"digits-split-sklearn{version}-seed{SPLIT_SEED}.npz"


def digits_split() -> dict[Split, tuple[np.ndarray, np.ndarray]]:
    """The fixed split as ``{split: (uint8 images (N, 1, 8, 8), int64 labels)}``."""
    cache = _cache_file()
    try:
        with np.load(cache, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in _SHAPES}
        if all(arrays[k].shape == shape for k, shape in _SHAPES.items()):
            return {"train": (arrays["x_train"], arrays["y_train"]),
                    "test": (arrays["x_test"], arrays["y_test"])}
    except Exception:
        pass
    split = _compute_split()
    from nasflow.errors import NasflowError
    from nasflow.io import atomic_path

    try:
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, x_train=split["train"][0], y_train=split["train"][1],
                     x_test=split["test"][0], y_test=split["test"][1])
    except (OSError, NasflowError):
        pass  # a read-only cache folder only costs the next job the 3 s again
    return split


def _compute_split() -> dict[Split, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=TEST_SIZE,
                                              random_state=SPLIT_SEED, stratify=labels)
    return {"train": (x_tr, y_tr), "test": (x_te, y_te)}


@register_dataset("digits", num_classes=10, in_channels=1, image_size=8,
                  mean=(0.3052753395344775,), std=(0.3758436739167523,))
def load_digits_split(params: DatasetParams, split: Split):
    return digits_split()[split]
