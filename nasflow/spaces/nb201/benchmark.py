"""Offline look-ups of NAS-Bench-201 cells in a user-supplied benchmark file (nothing is ever
downloaded).

Readable layouts (D-X-Y/NAS-Bench-201 ``nas_201_api``, D-X-Y/NATS-Bench ``nats_bench``):

* NAS-Bench-201 ``NAS-Bench-201-v1_0-e61699.pth`` / ``v1_1-096897.pth``: a ``torch.save``
  dict ``{"meta_archs": [cell string per index], "arch2infos": {index: {"less": ArchResults,
  "full": ArchResults}}, "evaluated_indexes": ...}``; ``full`` holds the 200-epoch runs
  (``hp="200"``), ``less`` the 12-epoch ones.
* NATS-Bench topology ``NATS-tss-v1_0-3ffb9.pickle.pbz2``: the same dict as a bz2-compressed
  pickle, ``arch2infos[index]`` keyed by ``hp`` (``"12"``, ``"200"``); or its archive folder
  (``NATS-tss-v1_0-3ffb9-simple``): ``meta.pickle.pbz2`` with ``meta_archs`` and one
  ``{index:06d}.pickle.pbz2`` per cell holding that cell's ``{hp: ArchResults}``.

An ``ArchResults`` state is ``{"arch_str", "dataset_seed": {dataset: [seeds]}, "all_results":
{(dataset, seed): ResultsCount state}}``, a ``ResultsCount`` state holds ``epochs`` and
``eval_acc1es`` keyed ``"<eval set>@<epoch>"`` (accuracies in percent).

**Which numbers** (the API's ``get_more_info(index, dataset, hp="200", is_random=False)``, the
numbers the NB201 / NATS-Bench papers report): after the last epoch, averaged over the
benchmark's seeds (trials); test accuracy of ``cifar10`` (trained on train + valid) on
``ori-test``, of ``cifar100`` and ``ImageNet16-120`` on ``x-test``; validation accuracy of
``cifar10-valid`` (trained on train only) on ``x-valid``, of the other two on ``x-valid``.

**Loading safely**: a ``.pth`` file is read with ``torch.load(weights_only=True)`` (numpy
scalars allowed), a pickle with an unpickler that admits only plain containers and numpy
scalars. The released files are plain dicts and lists (plus trained weights as tensors in the
``.pth`` files), which these loaders read; a file that needs any other class is refused with
its name, unless the user passes ``trust_pickle`` (``nasflow lookup --trust-pickle``), which
loads it with plain pickle and so runs whatever code the file names: only for files from a
source you trust. The NB201 ``.pth`` files hold every trained network's weights: loading one
takes several GB of memory (a ``torch.save`` zip file is memory-mapped).
"""

from __future__ import annotations

import bz2
import math
import os
import pickle
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasflow.errors import NasflowError
from nasflow.spaces.nb201.genotype import Nb201Genotype

PICKLE_EXT = ".pickle.pbz2"
HP = "200"
#: dataset -> (benchmark dataset, eval set) of the reported test and validation accuracies
TEST_SETS = {"cifar10": ("cifar10", "ori-test"), "cifar100": ("cifar100", "x-test"),
             "ImageNet16-120": ("ImageNet16-120", "x-test")}
VALID_SETS = {"cifar10": ("cifar10-valid", "x-valid"), "cifar100": ("cifar100", "x-valid"),
              "ImageNet16-120": ("ImageNet16-120", "x-valid")}
_HP_ALIASES = {"200": ("200", "full", 200), "12": ("12", "less", 12)}


class BenchmarkError(NasflowError):
    """The benchmark file is missing, unreadable or not of a known layout."""


# ---- loading ---------------------------------------------------------------------------------
_SAFE_PICKLE_GLOBALS = {
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "dict"), ("builtins", "list"),
    ("builtins", "tuple"), ("builtins", "float"), ("builtins", "int"), ("builtins", "complex"),
    ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _DataUnpickler(pickle.Unpickler):
    """Admits only plain containers and numpy scalars (and numpy dtype classes)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_PICKLE_GLOBALS or (
                module in ("numpy.dtypes", "numpy") and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def _unsafe_global(exc: Exception) -> str:
    text = str(exc)
    marker = "Unsupported global: GLOBAL "
    if marker in text:
        return text.split(marker, 1)[1].split()[0]
    return _first_line(exc)


def _first_line(exc: Exception) -> str:
    """The informative line of an error (torch's weights-only errors: the unpickler's reason)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _refuse(path: Path, what: str) -> BenchmarkError:
    return BenchmarkError(f"{path}: the file needs {what} to be unpickled, which can run code; "
                          "if you trust its source, rerun with --trust-pickle")


def _numpy_safe_globals() -> list[Any]:
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def _load_torch(path: Path, trust_pickle: bool) -> Any:
    import torch

    mmap = zipfile.is_zipfile(path)
    if trust_pickle:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise _refuse(path, _unsafe_global(exc)) from None
        raise BenchmarkError(f"{path}: not a readable NAS-Bench-201 / NATS-Bench file (torch's "
                             f"weights-only loader: {_first_line(exc)}; a benchmark file from a "
                             "source you trust can be read with --trust-pickle)") from None


def _load_pickle(path: Path, trust_pickle: bool) -> Any:
    with open(path, "rb") as fh:
        head = fh.read(3)
    opener = bz2.open if head == b"BZh" else open
    with opener(path, "rb") as fh:
        if trust_pickle:
            return pickle.load(fh)
        try:
            return _DataUnpickler(fh).load()
        except pickle.UnpicklingError as exc:
            raise _refuse(path, str(exc)) from None


def _load_file(path: Path, trust_pickle: bool) -> Any:
    try:
        if path.name.endswith((".pbz2", ".pickle", ".pkl")):
            return _load_pickle(path, trust_pickle)
        return _load_torch(path, trust_pickle)
    except BenchmarkError:
        raise
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as exc:
        raise BenchmarkError(f"{path}: not a readable NAS-Bench-201 / NATS-Bench file "
                             f"({_first_line(exc)})") from None


# ---- the benchmark -----------------------------------------------------------------------------
@dataclass
class ArchRecord:
    """The numbers of one cell at one ``hp``: per dataset, the accuracies averaged over seeds."""

    arch: str
    index: int
    hp: str
    test: dict[str, float | None] = field(default_factory=dict)
    valid: dict[str, float | None] = field(default_factory=dict)
    seeds: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.arch, "index": self.index, "hp": self.hp,
                "test_accuracy": self.test, "valid_accuracy": self.valid, "seeds": self.seeds}


class Nb201Benchmark:
    """A loaded benchmark: the cell strings by index and each cell's results."""

    def __init__(self, meta_archs: list[str], arch2infos: dict[int, Any], source: str,
                 archive_dir: Path | None = None, trust_pickle: bool = False):
        self.meta_archs = list(meta_archs)
        self.index = {arch: i for i, arch in enumerate(self.meta_archs)}
        self.arch2infos = arch2infos
        self.source = source
        self.archive_dir = archive_dir
        self.trust_pickle = trust_pickle

    @classmethod
    def load(cls, path: str | os.PathLike, trust_pickle: bool = False) -> Nb201Benchmark:
        """Read a benchmark file or NATS-Bench archive folder (see the module docstring)."""
        p = Path(path)
        if p.is_dir():
            meta_path = p / f"meta{PICKLE_EXT}"
            if not meta_path.is_file():
                raise BenchmarkError(f"{p}: a NATS-Bench archive folder needs meta{PICKLE_EXT}")
            meta = _load_file(meta_path, trust_pickle)
            archs = meta.get("meta_archs") if isinstance(meta, dict) else None
            if not isinstance(archs, list):
                raise BenchmarkError(f"{meta_path}: meta_archs: missing (not a NATS-Bench archive?)")
            return cls(archs, {}, str(p), archive_dir=p, trust_pickle=trust_pickle)
        if not p.exists():
            raise BenchmarkError(f"{p}: no such benchmark file (NAS-Bench-201 / NATS-Bench "
                                 "topology files are not downloaded by nasflow; pass the path of "
                                 "one you have)")
        if not p.is_file():
            raise BenchmarkError(f"{p}: not a file or NATS-Bench archive folder")
        data = _load_file(p, trust_pickle)
        if not isinstance(data, dict):
            raise BenchmarkError(f"{p}: holds a {type(data).__name__}, not a NAS-Bench-201 dict")
        for key in ("meta_archs", "arch2infos"):
            if key not in data:
                raise BenchmarkError(f"{p}: {key}: missing (not a NAS-Bench-201 / NATS-Bench "
                                     "topology file?)")
        if not isinstance(data["meta_archs"], list | tuple) or not isinstance(data["arch2infos"], dict):
            raise BenchmarkError(f"{p}: meta_archs / arch2infos are not a list and a dict")
        return cls(list(data["meta_archs"]), data["arch2infos"], str(p), trust_pickle=trust_pickle)

    def __len__(self) -> int:
        return len(self.meta_archs)

    def _infos(self, index: int) -> Any:
        if index in self.arch2infos:
            return self.arch2infos[index]
        if self.archive_dir is not None:
            for name in (f"{index:06d}{PICKLE_EXT}", f"{index}{PICKLE_EXT}"):
                f = self.archive_dir / name
                if f.is_file():
                    self.arch2infos[index] = _load_file(f, self.trust_pickle)
                    return self.arch2infos[index]
        return None

    def lookup(self, genotype: Nb201Genotype, hp: str = HP) -> ArchRecord:
        """The cell's accuracies at ``hp`` (see the module docstring for which)."""
        arch = genotype.arch
        if arch not in self.index:
            raise BenchmarkError(f"{self.source}: cell {arch} is not in this benchmark "
                                 f"({len(self)} cells)")
        idx = self.index[arch]
        infos = self._infos(idx)
        if infos is None:
            raise BenchmarkError(f"{self.source}: cell {arch} (index {idx}) has no results in "
                                 "this benchmark")
        results = next((infos[k] for k in _HP_ALIASES.get(hp, (hp,))
                        if isinstance(infos, dict) and k in infos), None)
        if not isinstance(results, dict):
            has = ", ".join(map(str, infos)) if isinstance(infos, dict) else "none"
            raise BenchmarkError(f"{self.source}: cell {arch} (index {idx}) has no hp={hp} "
                                 f"results (has: {has})")
        stored = results.get("arch_str")
        if isinstance(stored, str) and stored != arch:
            raise BenchmarkError(f"{self.source}: index {idx}: meta_archs says {arch}, its "
                                 f"results say {stored} (a corrupt or mixed file)")
        record = ArchRecord(arch=arch, index=idx, hp=hp)
        for name, (dataset, eval_set) in TEST_SETS.items():
            record.test[name], record.seeds[name] = _mean_accuracy(results, dataset, eval_set)
        for name, (dataset, eval_set) in VALID_SETS.items():
            record.valid[name], _ = _mean_accuracy(results, dataset, eval_set)
        if all(v is None for v in record.test.values()):
            raise BenchmarkError(f"{self.source}: cell {arch} (index {idx}): no test accuracy "
                                 f"at hp={hp} on {', '.join(TEST_SETS)}")
        return record


def _mean_accuracy(results: dict, dataset: str, eval_set: str) -> tuple[float | None, list[int]]:
    """Mean over seeds of the last epoch's accuracy on ``eval_set`` (None if absent)."""
    seeds = (results.get("dataset_seed") or {}).get(dataset)
    runs = results.get("all_results") or {}
    if not seeds:
        return None, []
    accs = []
    for seed in seeds:
        run = runs.get((dataset, seed))
        if not isinstance(run, dict):
            return None, []
        epochs = run.get("epochs")
        acc = (run.get("eval_acc1es") or {}).get(f"{eval_set}@{int(epochs) - 1}") if epochs else None
        if acc is None:
            return None, []
        accs.append(float(acc))
    mean = math.fsum(accs) / len(accs)
    return mean, [int(s) for s in seeds]


# ---- the command line (``nasflow lookup``) ----------------------------------------------------
def resolve_cell(ref: str) -> Nb201Genotype:
    """``--genotype``: an NB201 cell string, a published name, or a genotype JSON / a search or
    result record embedding one (of space ``nb201``)."""
    from pydantic import ValidationError

    from nasflow.spaces import resolve_genotype

    if ref.strip().startswith("|"):
        try:
            return Nb201Genotype(arch=ref.strip())
        except ValidationError as exc:
            msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise NasflowError(f"--genotype: not an NB201 cell: {msg}") from None
    genotype = resolve_genotype(ref)
    if not isinstance(genotype, Nb201Genotype):
        raise NasflowError(f"{ref}: a {getattr(genotype, 'space', 'darts')!r} genotype; the "
                           "benchmark holds NAS-Bench-201 cells (space nb201)")
    return genotype


def format_record(record: ArchRecord, source: str) -> str:
    """The look-up as text: one line per dataset."""
    def pct(v: float | None) -> str:
        return "   n/a" if v is None else f"{v:6.2f}"

    lines = [f"{record.arch}  index {record.index} in {source}, {record.hp} epochs, "
             "accuracy (%) averaged over the benchmark's seeds"]
    for name in TEST_SETS:
        n = len(record.seeds.get(name, []))
        lines.append(f"  {name:<15} test {pct(record.test.get(name))}   valid "
                     f"{pct(record.valid.get(name))}   ({n} seed{'s' if n != 1 else ''})")
    return "\n".join(lines)


# ---- fixtures: the layout, for tests and examples ----------------------------------------------
def results_count_state(dataset: str, seed: int, accs: dict[str, float], epochs: int = 200,
                        arch: str = "") -> dict[str, Any]:
    """A ``ResultsCount`` state with the released fields (final-epoch accuracies only)."""
    last = epochs - 1
    return {
        "name": dataset, "net_state_dict": None, "train_acc1es": {last: 99.0},
        "train_acc5es": None, "train_losses": {last: 0.01}, "train_times": None,
        "arch_config": {"name": "infer.tiny", "channel": 16, "num_cells": 5, "arch_str": arch,
                        "class_num": 10},
        "params": 0.0, "flop": 0.0, "seed": seed, "epochs": epochs, "latency": None,
        "eval_names": sorted(accs), "eval_acc1es": {f"{k}@{last}": v for k, v in accs.items()},
        "eval_times": {}, "eval_losses": {f"{k}@{last}": 0.5 for k in accs},
    }


def arch_results_state(index: int, arch: str,
                       runs: dict[tuple[str, int], dict[str, float]],
                       epochs: int = 200) -> dict[str, Any]:
    """An ``ArchResults`` state: ``runs[(dataset, seed)] = {eval set: accuracy}``."""
    dataset_seed: dict[str, list[int]] = defaultdict(list)
    for dataset, seed in runs:
        dataset_seed[dataset].append(seed)
    return {"arch_index": index, "arch_str": arch,
            "all_results": {key: results_count_state(key[0], key[1], accs, epochs, arch)
                            for key, accs in runs.items()},
            "dataset_seed": {k: sorted(v) for k, v in dataset_seed.items()},
            "clear_net_done": True}


__all__ = ["HP", "TEST_SETS", "VALID_SETS", "ArchRecord", "BenchmarkError", "Nb201Benchmark",
           "arch_results_state", "format_record", "resolve_cell", "results_count_state"]
