"""scikit-learn's 8x8 handwritten digits: the embedded dataset that always works offline.

1797 real images with values 0..16, stored as uint8 ``round(v * 255 / 16)``. The train/test split is
fixed: ``train_test_split(test_size=0.25, stratify=labels, random_state=0)`` gives 1347 train and
450 test images with the class proportions of the whole set. Mean/std are those of the train split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nasflow.data.registry import Split, register_dataset

if TYPE_CHECKING:
    from nasflow.params import DatasetParams

TEST_SIZE = 0.25
SPLIT_SEED = 0


def digits_split() -> dict[Split, tuple[np.ndarray, np.ndarray]]:
    """The fixed split as ``{split: (uint8 images (N, 1, 8, 8), int64 labels)}``."""
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
