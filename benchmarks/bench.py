"""nasflow speed and memory benchmarks (issue: fast core).

Each case runs in a fresh subprocess (so peak memory is the case's own), warms up, then
reports the median of timed steps as images/s plus peak memory (RSS on CPU,
``torch.cuda.max_memory_allocated`` on GPU). Every speed-up is a runtime switch; each case is
timed with all switches off ("plain": eager fp32, NCHW) and with the chosen switches on, in the
same run on the same machine, and the ratio is recorded.

Inputs are random tensors of the dataset's shape: these measure compute, not accuracy, and
are not presented as data. The data-pipeline case uses the real embedded datasets.

    python benchmarks/bench.py --suite cpu --out benchmarks/results/cpu.json
    python benchmarks/bench.py --suite gpu --out benchmarks/results/gpu-h100.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (kind, settings). Paper configs: DARTS 8 cells C=16 batch 64; DropNAS 14 cells
# C=16 batch 96; retrain 20 cells C=36 batch 96 / 192. The CPU suite runs DARTS 1st order at
# the paper batch and shrinks the batch of the others, whose step would not fit in this
# machine's memory or minutes (recorded in the output).
SUITES = {
    "cpu": [
        ("search", {"method": "darts", "order": 1, "layers": 5, "C": 8, "batch": 16, "label": "small"}),
        ("search", {"method": "dropnas", "layers": 5, "C": 8, "batch": 16, "label": "small"}),
        ("search", {"method": "darts", "order": 1, "layers": 8, "C": 16, "batch": 64, "label": "paper"}),
        ("search", {"method": "darts", "order": 1, "layers": 8, "C": 16, "batch": 32,
                    "label": "paper cells, batch 32"}),
        ("search", {"method": "darts", "order": 2, "layers": 8, "C": 16, "batch": 16,
                    "label": "paper cells, batch 16"}),
        ("search", {"method": "dropnas", "layers": 14, "C": 16, "batch": 32,
                    "label": "paper cells, batch 32"}),
        ("retrain", {"layers": 20, "C": 36, "batch": 96, "label": "paper"}),
        ("retrain", {"layers": 20, "C": 36, "batch": 192, "label": "paper"}),
        ("data", {"dataset": "fashion_mnist", "batch": 96, "label": "real data, augment on"}),
        ("data", {"dataset": "cifar_shape", "batch": 96, "label": "32x32x3 uint8, augment on"}),
    ],
    # a seconds-long run of every kind of case: the test suite checks the script with it
    "tiny": [
        ("search", {"method": "darts", "order": 1, "layers": 3, "C": 4, "batch": 8, "label": "tiny"}),
        ("search", {"method": "dropnas", "layers": 3, "C": 4, "batch": 8, "label": "tiny"}),
        ("retrain", {"layers": 3, "C": 8, "batch": 8, "label": "tiny"}),
        ("data", {"dataset": "digits", "batch": 32, "label": "real data, augment on"}),
    ],
    "gpu": [
        ("search", {"method": "darts", "order": 1, "layers": 8, "C": 16, "batch": 64, "label": "paper"}),
        ("search", {"method": "darts", "order": 2, "layers": 8, "C": 16, "batch": 64, "label": "paper"}),
        ("search", {"method": "dropnas", "layers": 14, "C": 16, "batch": 96, "label": "paper"}),
        ("search", {"method": "dropnas", "layers": 5, "C": 8, "batch": 16, "label": "small"}),
        ("retrain", {"layers": 20, "C": 36, "batch": 96, "label": "paper"}),
        ("retrain", {"layers": 20, "C": 36, "batch": 192, "label": "paper"}),
        ("data", {"dataset": "cifar_shape", "batch": 96, "label": "32x32x3 uint8, augment on"}),
    ],
}

PLAIN = {"channels_last": False, "amp": "off", "compile": False, "device_data": False,
         "dilated_conv": "native", "share_relu": False, "phase_subsample": False, "fused_mixing": False,
         "malloc_tuning": False}
_DEFAULTS = {"channels_last": True, "amp": "off", "compile": False, "device_data": True,
             "dilated_conv": "auto", "share_relu": True, "phase_subsample": True, "fused_mixing": True,
             "malloc_tuning": True}
FAST = {"cpu": dict(_DEFAULTS), "tiny": dict(_DEFAULTS), "gpu": dict(_DEFAULTS, amp="bf16")}


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn, warmup: int, steps: int, device) -> list[float]:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def run_case(kind: str, cfg: dict, switches: dict, warmup: int, steps: int) -> dict:
    import torch

    from nasflow.params import RuntimeParams
    from nasflow.train.runtime import (
        autocast,
        maybe_compile,
        prepare_model,
        select_device,
        tune_host_allocator,
    )

    if kind == "data" and switches.get("reference"):
        return _reference_data_case(cfg)
    runtime = RuntimeParams(**switches)
    device = select_device(runtime)
    if runtime.malloc_tuning and device.type == "cpu":
        tune_host_allocator()
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if runtime.channels_last else torch.contiguous_format

    if kind == "data":
        return _data_case(cfg, runtime, device, warmup, steps)

    B = cfg["batch"]
    x = torch.randn(B, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (B,), device=device)
    if kind == "search":
        from nasflow.methods import build_method
        from nasflow.methods.base import METHODS
        from nasflow.params import SearchParams
        from nasflow.spaces import space_by_name

        space = space_by_name(cfg.get("space", "darts"))
        search = SearchParams(layers=cfg["layers"], init_channels=cfg["C"], batch_size=B, epochs=50)
        mp = {"order": cfg["order"]} if cfg["method"] == "darts" else {}
        method = build_method(METHODS[cfg["method"]].Params(**mp), search)
        method.bind_space(space)
        supernet = space.build_supernet(C=cfg["C"], layers=cfg["layers"], num_classes=10,
                                        in_channels=3, **method.supernet_options())
        model = prepare_model(supernet.to(device), runtime, device)
        method.adapt_search_space(model, space, device)
        maybe_compile(model, runtime, method.compile_blocker())

        def step():
            with autocast(runtime, device):
                method.step((x, y), (x, y))
    else:
        import torch.nn.functional as F

        from nasflow.genotype import PUBLISHED
        from nasflow.nets import build_network

        model = build_network("cifar", PUBLISHED["DARTS_V2"], C=cfg["C"], layers=cfg["layers"],
                              num_classes=10, auxiliary=True, in_channels=3)
        model = prepare_model(model.to(device), runtime, device)
        model.drop_path_prob = 0.2
        model.train()
        opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
        maybe_compile(model, runtime)
        net = model

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast(runtime, device):
                logits, aux = net(x)
                loss = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0, foreach=True)
            opt.step()

    times = _timed(step, warmup, steps, device)
    med = statistics.median(times)
    return {"median_step_s": med, "images_per_s": B / med, "step_times_s": times,
            "peak_memory_mb": _peak_memory_mb(device), "batch": B}


def _data_source(cfg):
    import torch

    from nasflow.data import ArrayDataset, dataset_info, load_dataset
    from nasflow.params import DatasetParams

    if cfg["dataset"] == "cifar_shape":
        info = dataset_info(DatasetParams(name="cifar10"))
        g = torch.Generator().manual_seed(0)
        return ArrayDataset(images=torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g),
                            labels=torch.randint(0, 10, (50_000,), generator=g), info=info)
    return load_dataset(DatasetParams(name=cfg["dataset"]), "train")


def _reference_data_case(cfg) -> dict:
    """The reference codes' input pipeline (DARTS / DropNAS ``train_search.py``): per-image PIL
    transforms (pad-4 random crop, flip, to-tensor, normalise, cutout 16) in a ``DataLoader``
    with one worker per core, on the same images."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import transforms as T

    ds = _data_source(cfg)
    images = ds.images.permute(0, 2, 3, 1).squeeze(-1).numpy()  # PIL wants HWC / HW uint8
    size = ds.info.image_size

    def cutout(img: torch.Tensor, length: int = 16) -> torch.Tensor:  # DARTS utils.Cutout
        h, w = img.shape[1:]
        cy, cx = np.random.randint(h), np.random.randint(w)
        mask = np.ones((h, w), np.float32)
        mask[max(cy - length // 2, 0):min(cy + length // 2, h),
             max(cx - length // 2, 0):min(cx + length // 2, w)] = 0.0
        return img * torch.from_numpy(mask).expand_as(img)

    tf = T.Compose([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(ds.info.mean, ds.info.std), T.Lambda(cutout)])

    class PerImage(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return tf(Image.fromarray(images[i])), int(ds.labels[i])

    workers = os.cpu_count() or 1
    loader = torch.utils.data.DataLoader(PerImage(), batch_size=cfg["batch"], shuffle=True,
                                         drop_last=True, num_workers=workers)
    it = iter(loader)
    n_batches = min(len(loader) - 1, 200)
    for _ in range(5):
        next(it)
    t0 = time.perf_counter()
    for _ in range(n_batches - 5):
        next(it)
    dt = time.perf_counter() - t0
    n = (n_batches - 5) * cfg["batch"]
    return {"images_per_s": n / dt, "batches": n_batches - 5, "batch": cfg["batch"],
            "workers": workers, "peak_memory_mb": _peak_memory_mb(torch.device("cpu"))}


def _data_case(cfg, runtime, device, warmup, steps) -> dict:
    import torch

    from nasflow.data import make_loader
    from nasflow.params import AugmentParams

    ds = _data_source(cfg)
    loader = make_loader(ds, None, batch_size=cfg["batch"], device=device,
                         augment=AugmentParams(crop_padding=4, flip=True, cutout=16), shuffle=True,
                         drop_last=True, seed=0, channels_last=runtime.channels_last,
                         device_data=runtime.device_data)
    loader.set_epoch(0)
    it = iter(loader)
    n_batches = min(len(loader) - 1, 200)
    for _ in range(5):
        next(it)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n_batches - 5):
        _x, _ = next(it)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    n = (n_batches - 5) * cfg["batch"]
    return {"images_per_s": n / dt, "batches": n_batches - 5, "batch": cfg["batch"],
            "peak_memory_mb": _peak_memory_mb(device)}


def _run_in_subprocess(kind: str, cfg: dict, switches: dict, args) -> dict:
    spec = json.dumps({"kind": kind, "cfg": cfg, "switches": switches})
    steps = args.steps if kind != "data" else 1
    proc = subprocess.run([sys.executable, __file__, "--case", spec, "--warmup", str(args.warmup),
                           "--steps", str(steps)], capture_output=True, text=True, cwd=ROOT)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(line[0][7:])


def _summarise(runs: list[dict]) -> dict:
    """One run: its result. Several (``--repeats``): the median images/s over the runs, the
    largest peak memory, and every run kept under ``runs``."""
    if len(runs) == 1 or any("error" in r for r in runs):
        bad = [r for r in runs if "error" in r]
        return bad[0] if bad else runs[0]
    out = {"images_per_s": statistics.median(r["images_per_s"] for r in runs),
           "peak_memory_mb": max(r["peak_memory_mb"] for r in runs),
           "batch": runs[0]["batch"], "repeats": len(runs), "runs": runs}
    if "median_step_s" in runs[0]:
        out["median_step_s"] = out["batch"] / out["images_per_s"]
    return out


def machine_info() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "platform": platform.platform(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}  # AVX2 / AVX512 kernels
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="JSON results file")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs per variant, alternating plain / fast; the median is reported")
    ap.add_argument("--only", default=None, help="run cases whose kind or settings contain this text")
    ap.add_argument("--fast", action="append", default=[], metavar="SWITCH=VALUE",
                    help="override a switch of the fast variant (e.g. compile=true); recorded")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: child process
    args = ap.parse_args()

    if args.case:
        spec = json.loads(args.case)
        res = run_case(spec["kind"], spec["cfg"], spec["switches"], args.warmup, args.steps)
        print("RESULT " + json.dumps(res))
        return

    fast = dict(FAST[args.suite])
    for item in args.fast:
        key, _, value = item.partition("=")
        if key not in fast:
            ap.error(f"--fast {item}: unknown switch {key!r}; known: {', '.join(fast)}")
        fast[key] = {"true": True, "false": False}.get(value.lower(), value)
    results = []
    for kind, cfg in SUITES[args.suite]:
        if args.only and args.only not in json.dumps({"kind": kind, **cfg}):
            continue
        row = {"kind": kind, **cfg}
        variants = [("plain", PLAIN), ("fast", fast)]
        if kind == "data":  # and the reference codes' per-image PIL pipeline
            variants.append(("reference", {"reference": True}))
        runs: dict[str, list[dict]] = {v: [] for v, _ in variants}
        for _ in range(args.repeats):  # variants alternate, so drift hits all of them alike
            for variant, switches in variants:
                runs[variant].append(_run_in_subprocess(kind, cfg, switches, args))
        for variant, switches in variants:
            row[variant] = {**_summarise(runs[variant]), "switches": switches}
        if "images_per_s" in row["plain"] and "images_per_s" in row["fast"]:
            row["speedup"] = row["fast"]["images_per_s"] / row["plain"]["images_per_s"]
        if "images_per_s" in row.get("reference", {}) and "images_per_s" in row["fast"]:
            row["speedup_vs_reference"] = row["fast"]["images_per_s"] / row["reference"]["images_per_s"]
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in dict(variants)}) + " "
              + " ".join(f"{v}={row[v].get('images_per_s', row[v].get('error'))}" for v, _ in variants),
              flush=True)
    record = {"suite": args.suite, "date": time.strftime("%Y-%m-%d"), "machine": machine_info(),
              "method": f"median of {args.steps} timed steps after {args.warmup} warm-up, "
                        "one subprocess per case"
                        + (f"; median over {args.repeats} alternating runs per variant"
                           if args.repeats > 1 else ""),
              "results": results}
    if args.out:
        from nasflow.io import write_json

        write_json(args.out, record)


if __name__ == "__main__":
    main()
