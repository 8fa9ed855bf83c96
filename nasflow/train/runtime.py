"""Seeds, determinism, device choice, precision and per-epoch checkpoint state."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import random
import sys
from typing import Any

import numpy as np
import torch

from nasflow.errors import NasflowError
from nasflow.params import RuntimeParams


def select_device(runtime: RuntimeParams) -> torch.device:
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise NasflowError("runtime.device: 'cuda' requested but no CUDA device is available")
    if runtime.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(runtime.device)


def setup_runtime(runtime: RuntimeParams, seed: int) -> torch.device:
    """Seed every RNG and apply the deterministic switch. Returns the device."""
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    seed_everything(seed)
    if runtime.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        _use_deterministic_algorithms(compiling=runtime.compile)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.backends.cudnn.benchmark = True
    device = select_device(runtime)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if runtime.malloc_tuning and device.type == "cpu":
        tune_host_allocator()
    return device


# glibc mallopt(3) parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
_allocator_tuned = False


def tune_host_allocator() -> bool:
    """``runtime.malloc_tuning``: stop glibc from handing each step's activations back to the
    OS. By default, blocks over 128 KiB-32 MiB are mmapped and unmapped on free, and the heap
    top is trimmed, so every step page-faults its activations in again (measured on a DARTS
    retraining step at batch 96: a quarter of the step in the kernel, the step 1.25x slower).
    Raising the mmap threshold to its maximum and not trimming keeps the memory for reuse;
    peak RSS does not grow (the next step reuses the freed blocks instead of mapping new
    ones). Once per process; returns whether it applied (glibc only)."""
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
              and libc.mallopt(_M_TOP_PAD, 64 << 20) == 1)
    except (OSError, AttributeError):
        return False
    _allocator_tuned = ok
    return ok


def _use_deterministic_algorithms(compiling: bool) -> None:
    """``torch.use_deterministic_algorithms(True)``, minus its one side effect we do not need
    without ``torch.compile``: it imports ``torch._inductor.config`` (sympy, mpmath: ~2 s per
    process, paid by every pipeline job) only to set Inductor's own deterministic flag."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if compiling or setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=False)
    else:
        setter(True, warn_only=False)


def prepare_model(model: torch.nn.Module, runtime: RuntimeParams,
                  device: torch.device) -> torch.nn.Module:
    """Apply the model-side speed switches: memory format, the dilated-conv rewrite, ReLU
    sharing, phase subsampling and fused mixing (supernets)."""
    from nasflow.spaces.ops import (
        set_dilated_rewrite,
        set_fused_mixing,
        set_phase_subsample,
        set_share_relu,
    )

    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    rewrite = runtime.dilated_conv == "rewrite" or (runtime.dilated_conv == "auto"
                                                    and device.type == "cpu")
    set_dilated_rewrite(model, rewrite)
    set_share_relu(model, runtime.share_relu)
    set_phase_subsample(model, runtime.phase_subsample)
    set_fused_mixing(model, runtime.fused_mixing)
    return model


def maybe_compile(model: torch.nn.Module, runtime: RuntimeParams, blocker: str | None = None) -> bool:
    """``runtime.compile``: compile the module's forward in place (``nn.Module.compile``, so
    parameter names, state dicts and optimizers are untouched). Returns whether it did."""
    if not runtime.compile:
        return False
    if blocker:
        print(f"nasflow: runtime.compile: not compiling, {blocker}", file=sys.stderr)
        return False
    model.compile()
    return True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(runtime: RuntimeParams, device: torch.device):
    """Mixed precision context: bf16 (GPU, or CPU with bf16 units) or fp16 (GPU)."""
    if runtime.amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if runtime.amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": _np_state(), "python": _py_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np.asarray(np_state["keys"], dtype=np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _np_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _py_state() -> tuple:
    version, internal, gauss = random.getstate()
    return (version, list(internal), gauss)


def progress(iterable, *, total: int | None = None, desc: str, enabled: bool, leave: bool = False):
    """A tqdm bar on stderr (epochs, steps, ETA) when enabled and useful."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=leave, file=sys.stderr,
                dynamic_ncols=True, mininterval=1.0)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads)"
