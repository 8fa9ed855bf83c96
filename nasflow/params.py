"""Pydantic models for every stage's params section (``extra="forbid"``, ranges checked).

A run's config is the composition of a dataset file, a method file and a profile file (see
:mod:`nasflow.config`); each stage reads only its own section, as in DVC's get-started layout.
Method-specific params live next to each method (``nasflow.methods.*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    """Base of every params model: unknown keys are errors, values are validated on assignment,
    NaN and infinity are refused as numbers (a NaN passes no range check meaningfully)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False,
                              allow_inf_nan=False)


class RelationError(ValueError):
    """Two or more fields that are valid alone but not together. ``keys`` are relative to the
    model that raises it (``("w_lr_min", "w_lr")`` in ``search``); the config loader prefixes
    the section and names the files that set them."""

    def __init__(self, keys: tuple[str, ...], message: str):
        self.keys = tuple(keys)
        super().__init__(message)


def _lr_floor(model: BaseModel, floor: str, lr: str, section: str) -> None:
    lo, hi = getattr(model, floor), getattr(model, lr)
    if lo > hi:
        raise RelationError((floor, lr), f"{section}.{floor} = {lo} is above {section}.{lr} = {hi}: "
                            f"the cosine schedule would raise the learning rate; set {floor} <= {lr}")


class AugmentParams(StrictModel):
    """Training-time augmentation, applied on the device (see ``nasflow.data``)."""

    crop_padding: int = Field(4, ge=0, le=64, description="random crop after zero padding (0: off)")
    flip: bool = Field(True, description="random horizontal flip")
    cutout: int = Field(0, ge=0, le=256, description="cutout square side in pixels (0: off)")


class DatasetParams(StrictModel):
    """Which data, where it lives, and how the search split is cut."""

    name: str = Field(description="registered dataset: digits, fashion_mnist, cifar10, ... "
                                  "(checked against nasflow.data's registry at config load)")
    root: Path = Field(Path("data"), description="folder holding (or receiving) the files")
    download: bool = Field(True, description="try torchvision's checksummed download if missing")
    archive: Path | None = Field(None, description="a user-supplied archive to extract instead")
    limit_train: int | None = Field(None, ge=10, description="use only the first N train images")
    limit_test: int | None = Field(None, ge=10, description="use only the first N test images")

    @field_validator("root", "archive")
    @classmethod
    def _inside_project(cls, value: Path | None) -> Path | None:
        # Relative paths may not climb out of the project; absolute paths are the user's choice.
        if value is not None and not value.is_absolute() and ".." in value.parts:
            raise ValueError(f"{value} escapes the project folder ('..' is not allowed)")
        return value


class SearchParams(StrictModel):
    """Supernet training shared by every method (DARTS Sec. 3 / DropNAS Sec. 4 protocol)."""

    epochs: int = Field(50, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    layers: int = Field(8, ge=3, le=64, description="cells; reductions at 1/3 and 2/3 of depth")
    init_channels: int = Field(16, ge=1, le=1024)
    train_portion: float = Field(
        0.5, gt=0.0, le=1.0, description="bilevel methods: share of train set for w, rest for alpha"
    )
    w_lr: float = Field(0.025, gt=0, le=10)
    w_lr_min: float = Field(0.001, ge=0, le=10)
    w_momentum: float = Field(0.9, ge=0, lt=1)
    w_weight_decay: float = Field(3e-4, ge=0, le=1)
    w_grad_clip: float = Field(5.0, gt=0)
    alpha_lr: float = Field(3e-4, gt=0, le=10)
    alpha_betas: tuple[float, float] = (0.5, 0.999)
    alpha_weight_decay: float = Field(1e-3, ge=0, le=1)
    alpha_init_std: float = Field(1e-3, ge=0, le=10)
    augment: AugmentParams = AugmentParams(crop_padding=4, flip=True, cutout=0)
    steps_per_epoch: int | None = Field(None, ge=1, description="cap steps/epoch (smoke runs)")
    seed: int = Field(2, ge=0, le=2**31 - 1)

    @field_validator("alpha_betas")
    @classmethod
    def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in value):
            raise ValueError("Adam betas must lie in [0, 1)")
        return value

    @model_validator(mode="after")
    def _relations(self) -> SearchParams:
        _lr_floor(self, "w_lr_min", "w_lr", "search")
        return self


class DeriveParams(StrictModel):
    """Reading a discrete cell off the alphas (DARTS Sec. 2.4)."""

    rank_by: Literal["softmax", "alpha"] = Field(
        "softmax",
        description="rank edges by softmax weight (DARTS paper/code, DropNAS paper) or by raw "
        "alpha (DropNAS released code)",
    )
    edges_per_node: int = Field(2, ge=1, le=8)


class RetrainParams(StrictModel):
    """Training the derived cell from scratch (DARTS Sec. 3.2 recipe by default)."""

    network: Literal["cifar", "imagenet"] = "cifar"
    layers: int = Field(20, ge=3, le=64)
    init_channels: int = Field(36, ge=1, le=1024)
    epochs: int = Field(600, ge=1, le=10_000)
    batch_size: int = Field(96, ge=1, le=65_536)
    lr: float = Field(0.025, gt=0, le=10)
    lr_min: float = Field(0.0, ge=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = Field(False, description="Nesterov momentum (NAS-Bench-201's protocol); "
                           "needs momentum > 0")
    weight_decay: float = Field(3e-4, ge=0, le=1)
    grad_clip: float = Field(5.0, gt=0)
    auxiliary: bool = True
    auxiliary_weight: float = Field(0.4, ge=0, le=10)
    drop_path_prob: float = Field(0.2, ge=0, lt=1, description="ramped linearly from 0")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: AugmentParams = AugmentParams(crop_padding=4, flip=True, cutout=16)
    steps_per_epoch: int | None = Field(None, ge=1, description="cap steps/epoch (smoke runs)")
    eval_every: int = Field(1, ge=1, description="test-set evaluation every N epochs")
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _relations(self) -> RetrainParams:
        _lr_floor(self, "lr_min", "lr", "retrain")
        if self.nesterov and self.momentum == 0:
            raise RelationError(("nesterov", "momentum"), "retrain.nesterov needs "
                                "retrain.momentum > 0 (Nesterov momentum without momentum)")
        return self


class EvaluateParams(StrictModel):
    batch_size: int = Field(256, ge=1, le=65_536)
    report: Literal["final", "best"] = Field(
        "final",
        description="final: the last epoch's weights (honest); best: best test accuracy over "
        "retraining epochs, as the DropNAS paper reports (selects on the test set)",
    )


class RuntimeParams(StrictModel):
    """Where and how fast to run. Every speed-up is a switch (benchmarks measure each)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = Field(False, description="torch deterministic algorithms, no cudnn autotune")
    threads: int | None = Field(None, ge=1, le=1024, description="CPU threads (default: all)")
    channels_last: bool = Field(True, description="NHWC memory format (pays on CPU and GPU)")
    amp: Literal["off", "bf16", "fp16"] = Field("off", description="mixed precision autocast")
    compile: bool = Field(False, description="torch.compile the network's forward (pays on GPUs; "
                          "on the CPU compiling a supernet takes longer than it saves). Skipped "
                          "where the graph changes every step (DropNAS masks, DARTS 2nd order)")
    device_data: bool = Field(True, description="keep the dataset on the device as uint8")
    dilated_conv: Literal["auto", "native", "rewrite"] = Field(
        "auto",
        description="dil_conv ops: 'rewrite' computes them as exact undilated convs (subsampled "
        "input or zero-inserted kernel), 'native' uses PyTorch's dilated conv; 'auto': rewrite on "
        "the CPU (its dilated backward is slow), native on CUDA (cuDNN handles dilation)",
    )
    share_relu: bool = Field(
        True,
        description="compute each tensor's ReLU once for all the ops that read it (DARTS' ops "
        "each apply their own): the same values, fewer activations kept for backward",
    )
    phase_subsample: bool = Field(
        True,
        description="ops that read every 2nd pixel (FactorizedReduce, stride-2 dil_conv with the "
        "rewrite) take it through one op whose backward writes the input gradient once; "
        "slicing zero-fills a full-size gradient per sliced dimension. Same values",
    )
    fused_mixing: bool = Field(
        True,
        description="supernet: each node's weighted sum over its edges' ops is one chain of "
        "in-place multiply-adds instead of a product and a sum tensor per op. Same values up "
        "to rounding",
    )
    malloc_tuning: bool = Field(
        True,
        description="CPU, glibc: malloc keeps freed activation memory for the next step "
        "(mallopt) instead of returning it to the OS and page-faulting it back in every step",
    )
    progress: bool = Field(True, description="progress bars on stderr")


class TrackingParams(StrictModel):
    enabled: bool = True
    experiment: str = Field("nasflow", min_length=1, max_length=200)
