"""Reproducible batch loaders with augmentation on the device.

For an :class:`ArrayDataset` the whole uint8 split lives on the device (``device_data``) and each
batch is indexed, cropped, flipped, normalised and cut out there with a few vectorised tensor ops.
The random order and augmentation parameters of an epoch are drawn at its start on the CPU from a
generator seeded with ``(seed, epoch)`` and moved to the device in one copy: batches depend only on
``(seed, epoch, step)``, so a run resumed at an epoch boundary sees exactly the same batches, on any
device, and iteration never waits for the device (no ``.item()``).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from nasflow.data.imagenet import FolderDataset
from nasflow.data.registry import ArrayDataset
from nasflow.params import AugmentParams


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for ``(seed, epoch)`` (nearby pairs give unrelated streams)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


class Loader:
    """Batches ``(x, y)`` of one dataset: ``x`` float32 normalised ``(B, C, H, W)``, ``y`` int64."""

    num_examples: int

    def __init__(self, num_examples: int, batch_size: int, drop_last: bool, seed: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        self.num_examples, self.batch_size = num_examples, batch_size
        self.drop_last, self.seed = drop_last, seed
        self.epoch = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next ``iter()`` replays."""
        self.epoch = int(epoch)

    def __iter__(self):
        raise NotImplementedError


# Columns of the per-epoch augmentation plan.
_OY, _OX, _FLIP, _CY, _CX = range(5)


def augment_batch(x: torch.Tensor, plan: torch.Tensor | None, augment: AugmentParams | None,
                  scale: torch.Tensor, shift: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> normalised float32, with crop/flip/cutout given by ``plan``.

    ``plan`` is int64 ``(B, 5)``: crop offsets into the padded image, flip flag and cutout centre.
    Crop and flip are one gather from the zero-padded batch (torchvision's RandomCrop then
    RandomHorizontalFlip); cutout zeroes ``[c - L//2, c + L//2)`` clipped at the borders after
    normalisation, as in DARTS' ``Cutout``.
    """
    B, C, H, W = x.shape
    pad = augment.crop_padding if augment is not None else 0
    flip = augment is not None and augment.flip
    if plan is not None and (pad or flip):
        Hp, Wp = H + 2 * pad, W + 2 * pad
        if pad:
            padded = x.new_zeros(B, C, Hp, Wp)
            padded[:, :, pad:pad + H, pad:pad + W] = x
        else:
            padded = x
        ar_h = torch.arange(H, device=x.device)
        ar_w = torch.arange(W, device=x.device)
        rows = plan[:, _OY, None] + ar_h if pad else ar_h.expand(B, H)  # (B, H)
        cols = torch.where(plan[:, _FLIP, None].bool(), W - 1 - ar_w, ar_w) if flip else ar_w.expand(B, W)
        if pad:
            cols = plan[:, _OX, None] + cols  # (B, W)
        flat = (rows[:, :, None] * Wp + cols[:, None, :]).view(B, 1, H * W).expand(B, C, H * W)
        x = padded.reshape(B, C, Hp * Wp).gather(2, flat).view(B, C, H, W)
    out = x.float().mul_(scale).sub_(shift)
    if plan is not None and augment is not None and augment.cutout > 0:
        half = augment.cutout // 2
        ar_h = torch.arange(H, device=x.device)
        ar_w = torch.arange(W, device=x.device)
        cy, cx = plan[:, _CY, None], plan[:, _CX, None]
        in_rows = (ar_h >= cy - half) & (ar_h < cy + half)  # (B, H); clipping is implicit
        in_cols = (ar_w >= cx - half) & (ar_w < cx + half)
        out.masked_fill_(in_rows[:, None, :, None] & in_cols[:, None, None, :], 0.0)
    if channels_last:  # last: on the CPU the NCHW ops above are ~2x faster than their NHWC forms
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class TensorLoader(Loader):
    """Loader over an :class:`ArrayDataset`; see the module docstring."""

    def __init__(self, ds: ArrayDataset, indices: torch.Tensor | None, *, batch_size: int,
                 device: torch.device, augment: AugmentParams | None, shuffle: bool, drop_last: bool,
                 seed: int, channels_last: bool, device_data: bool):
        indices = _check_indices(indices, len(ds))
        super().__init__(len(indices), batch_size, drop_last, seed)
        self.device, self.augment, self.shuffle, self.channels_last = device, augment, shuffle, channels_last
        self.on_device = device_data or device.type == "cpu"
        self.images, self.labels = ds.to_device(device) if self.on_device else (ds.images, ds.labels)
        data_device = self.images.device
        self.indices = indices.to(data_device)
        std = torch.tensor(ds.info.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        mean = torch.tensor(ds.info.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std), mean / std
        self.augmenting = augment is not None and (augment.crop_padding > 0 or augment.flip
                                                   or augment.cutout > 0)

    def _plan(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This epoch's example order (on the data's device) and augmentation plan (on ``device``)."""
        n = self.num_examples
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = self.indices
        if self.shuffle:
            order = self.indices[_to(torch.randperm(n, generator=g), self.indices.device)]
        if not self.augmenting:
            return order, None
        _, H, W = self.images.shape[1:]
        pad = self.augment.crop_padding
        plan = torch.zeros(n, 5, dtype=torch.int64)
        if pad:
            plan[:, _OY] = torch.randint(0, 2 * pad + 1, (n,), generator=g)
            plan[:, _OX] = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        if self.augment.flip:
            plan[:, _FLIP] = torch.randint(0, 2, (n,), generator=g)
        if self.augment.cutout:
            plan[:, _CY] = torch.randint(0, H, (n,), generator=g)
            plan[:, _CX] = torch.randint(0, W, (n,), generator=g)
        return order, _to(plan, self.device)

    def __iter__(self):
        order, plan = self._plan()
        for step in range(len(self)):
            sl = slice(step * self.batch_size, min((step + 1) * self.batch_size, self.num_examples))
            idx = order[sl]
            x, y = self.images[idx], self.labels[idx]
            if not self.on_device:
                x, y = _to(x, self.device), _to(y, self.device)
            x = augment_batch(x, None if plan is None else plan[sl], self.augment, self.scale,
                              self.shift, self.channels_last)
            yield x, y


class FolderLoader(Loader):
    """Loader over a :class:`FolderDataset`: a standard DataLoader with CPU workers.

    ``augment`` only selects the train transforms (given) or the test transforms (``None``); the
    shuffle order and the workers' seeds come from a generator reseeded from ``(seed, epoch)``.
    """

    def __init__(self, ds: FolderDataset, indices: torch.Tensor | None, *, batch_size: int,
                 device: torch.device, augment: AugmentParams | None, shuffle: bool, drop_last: bool,
                 seed: int, channels_last: bool):
        indices = _check_indices(indices, len(ds))
        super().__init__(len(indices), batch_size, drop_last, seed)
        self.device, self.channels_last = device, channels_last
        subset = ds.subset(indices.tolist(), train=augment is not None)
        self.generator = torch.Generator()
        # Non-persistent workers: each epoch's workers are seeded afresh from the generator, so an
        # epoch's augmentation does not depend on the epochs before it (resumable).
        self.dataloader = torch.utils.data.DataLoader(
            subset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
            num_workers=min(4, os.cpu_count() or 1), pin_memory=device.type == "cuda",
            generator=self.generator)

    def __iter__(self):
        self.generator.manual_seed(epoch_seed(self.seed, self.epoch))
        for x, y in self.dataloader:
            x = _to(x, self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, _to(y, self.device)


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        if t.device.type == "cpu":
            t = t.pin_memory()
        return t.to(device, non_blocking=True)
    return t.to(device)


def _check_indices(indices: torch.Tensor | None, n: int) -> torch.Tensor:
    if indices is None:
        return torch.arange(n)
    indices = torch.as_tensor(indices).cpu()
    if indices.dim() != 1 or indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"indices must be a 1-d integer tensor, got {indices.dtype} {tuple(indices.shape)}")
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n):
        raise ValueError(f"indices must lie in [0, {n}) for this dataset")
    return indices.long()


def make_loader(ds: ArrayDataset | FolderDataset, indices: torch.Tensor | None, *, batch_size: int,
                device: torch.device, augment: AugmentParams | None, shuffle: bool, drop_last: bool,
                seed: int, channels_last: bool = False, device_data: bool = True) -> Loader:
    """A reproducible loader over ``ds[indices]`` (all of ``ds`` if ``indices`` is None)."""
    device = torch.device(device)
    if isinstance(ds, FolderDataset):
        return FolderLoader(ds, indices, batch_size=batch_size, device=device, augment=augment,
                            shuffle=shuffle, drop_last=drop_last, seed=seed, channels_last=channels_last)
    if isinstance(ds, ArrayDataset):
        return TensorLoader(ds, indices, batch_size=batch_size, device=device, augment=augment,
                            shuffle=shuffle, drop_last=drop_last, seed=seed, channels_last=channels_last,
                            device_data=device_data)
    raise TypeError(f"make_loader needs an ArrayDataset or FolderDataset, not {type(ds).__name__}")
