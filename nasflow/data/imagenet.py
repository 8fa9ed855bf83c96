"""ImageNet (ILSVRC-2012) from an ImageFolder tree, with the DARTS transforms.

Expected layout: ``root/imagenet/train/<wnid>/*.JPEG`` and ``root/imagenet/val/<wnid>/*.JPEG`` (the
validation images sorted into class folders). The ``test`` split reads ``val``. Nothing is
downloaded: ImageNet needs a licence from image-net.org.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nasflow.data.registry import DatasetInfo, Split, register_dataset
from nasflow.errors import DataError

if TYPE_CHECKING:
    from nasflow.params import DatasetParams

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class FolderDataset(torch.utils.data.Dataset):
    """Images decoded and transformed on the CPU by DataLoader workers (too large for the device).

    ``train`` selects the DARTS train transforms (RandomResizedCrop 224, flip, ColorJitter) or the
    test ones (Resize 256, CenterCrop 224); loaders pick them with :meth:`subset`.
    """

    def __init__(self, folder: Path, info: DatasetInfo, train: bool):
        from torchvision import datasets

        self.folder, self.info, self.train = Path(folder), info, train
        try:
            self.images = datasets.ImageFolder(str(self.folder))
        except (FileNotFoundError, OSError) as exc:
            raise DataError(f"{self.folder}: no ImageFolder tree of images here ({exc})") from exc
        if len(self.images.classes) != info.num_classes:
            raise DataError(f"{self.folder}: {len(self.images.classes)} class folders, expected "
                            f"{info.num_classes}")
        self.indices = list(range(len(self.images)))
        self.transform = _transforms(info, train)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        path, label = self.images.samples[self.indices[i]]
        try:
            image = self.images.loader(path)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL: truncated, not an image, ...
            raise DataError(f"{path}: cannot read this image ({type(exc).__name__}: {exc}); "
                            "remove or replace it") from None
        return self.transform(image), label

    def subset(self, indices: list[int], train: bool | None = None) -> FolderDataset:
        """These positions of this dataset, optionally with the other transforms."""
        out = copy.copy(self)
        out.indices = [self.indices[i] for i in indices]
        if train is not None and train != self.train:
            out.train, out.transform = train, _transforms(self.info, train)
        return out

    def limited(self, n: int) -> FolderDataset:
        """At most ``n`` images, evenly spaced: the tree is sorted by class, so the first ``n``
        would cover only a class or two."""
        if n >= len(self):
            return self
        return self.subset(torch.linspace(0, len(self) - 1, n).round().long().tolist())


def _transforms(info: DatasetInfo, train: bool):
    from torchvision import transforms

    normalize = transforms.Normalize(info.mean, info.std)
    if train:  # DARTS train_imagenet.py
        return transforms.Compose([
            transforms.RandomResizedCrop(info.image_size), transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2),
            transforms.ToTensor(), normalize])
    return transforms.Compose([transforms.Resize(round(info.image_size * 256 / 224)),
                               transforms.CenterCrop(info.image_size), transforms.ToTensor(), normalize])


@register_dataset("imagenet", num_classes=1000, in_channels=3, image_size=224, mean=MEAN, std=STD)
def load_imagenet(params: DatasetParams, split: Split) -> FolderDataset:
    from nasflow.data.registry import DATASETS

    folder = Path(params.root) / "imagenet" / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise DataError(f"ImageNet {split} images not found: put the ILSVRC-2012 images in ImageFolder "
                        f"layout at {folder}/<wnid>/*.JPEG (one folder per class; validation images "
                        "sorted into class folders too). ImageNet cannot be downloaded automatically.")
    return FolderDataset(folder, DATASETS["imagenet"].info, train=split == "train")
