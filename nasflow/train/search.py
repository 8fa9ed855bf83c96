"""The architecture-search loop: supernet + method, per-epoch history and checkpoints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasflow.config import RunConfig, resolved
from nasflow.data import dataset_info, load_dataset, make_loader, search_split
from nasflow.methods import build_method
from nasflow.spaces import build_space
from nasflow.train import distributed as dist
from nasflow.train.checkpoint import CheckpointManager, fingerprint
from nasflow.train.loop import EpochMeter
from nasflow.train.runtime import (
    autocast,
    describe_device,
    maybe_compile,
    prepare_model,
    progress,
    rng_state,
    set_rng_state,
    setup_runtime,
)

SEARCH_SECTIONS = ("dataset", "space", "method", "search")


def build_search(config: RunConfig, device: torch.device):
    """Supernet and method, alphas initialised from the search seed."""
    info = dataset_info(config.dataset)
    space = build_space(config.space)
    s = config.search
    method = build_method(config.method, s)
    method.bind_space(space)
    model = space.build_supernet(C=s.init_channels, layers=s.layers, num_classes=info.num_classes,
                                 in_channels=info.in_channels, **method.supernet_options())
    model = prepare_model(model.to(device), config.runtime, device)
    gen = torch.Generator().manual_seed(s.seed)
    method.adapt_search_space(model, space, device, generator=gen)
    maybe_compile(model, config.runtime, method.compile_blocker())
    return info, space, model, method


def op_probability_metrics(method, space) -> dict[str, float]:
    """Mean softmax weight of each op over the edges of each cell type."""
    out = {}
    for cell, probs in method.probabilities().items():
        totals: dict[str, list[float]] = {}
        for e, ops in enumerate(space.edge_ops[cell]):
            for k, op in enumerate(ops):
                totals.setdefault(op, []).append(float(probs[e, k]))
        for op, vals in totals.items():
            out[f"p_{cell}.{op}"] = float(np.mean(vals))
    return out


def run_search(config: RunConfig, checkpoint_dir: Path, tracker=None) -> tuple[dict, dict[str, Any]]:
    """Run (or resume) a search. Returns the supernet state and the search record."""
    s = config.search
    device = setup_runtime(config.runtime, s.seed)
    _rank, world_size = dist.init_from_env(device.type)
    device = dist.local_device(device)
    _info, space, model, method = build_search(config, device)
    dist.broadcast_parameters([*model.parameters(), *method.arch_parameters()])
    if not dist.is_main():
        tracker = None
    train_set = load_dataset(config.dataset, "train")

    if method.bilevel:
        w_idx, a_idx = search_split(len(train_set), s.train_portion)
    else:  # one-level: the whole training set (DropNAS Sec. 5.2)
        w_idx, a_idx = torch.arange(len(train_set)), None
    loader_args = {"batch_size": s.batch_size, "device": device, "augment": s.augment, "shuffle": True,
                       "drop_last": True, "channels_last": config.runtime.channels_last,
                       "device_data": config.runtime.device_data}
    train_loader = make_loader(train_set, w_idx, seed=s.seed, **loader_args)
    val_loader = make_loader(train_set, a_idx, seed=s.seed + 1, **loader_args) if method.bilevel else None
    if len(train_loader) == 0 or (val_loader is not None and len(val_loader) == 0):
        from nasflow.errors import NasflowError
        raise NasflowError(f"search.batch_size: {s.batch_size} is larger than the search split "
                           f"({len(w_idx)} images); lower it or use more data")

    ckpt = CheckpointManager(checkpoint_dir, "search",
                             fingerprint({k: resolved(config)[k] for k in SEARCH_SECTIONS}))
    history: list[dict[str, Any]] = []
    start_epoch, wall = 0, 0.0
    state = ckpt.load(expect={"model": model})
    if state is not None:
        model.load_state_dict(state["model"])
        method.load_state_dict(state["method"])
        history, start_epoch, wall = state["history"], state["epoch"] + 1, state["wall_time_s"]
        set_rng_state(state["rng"])

    steps = len(train_loader) if s.steps_per_epoch is None else min(len(train_loader), s.steps_per_epoch)
    epochs = progress(range(start_epoch, s.epochs), total=s.epochs - start_epoch,
                      desc=f"search {config.method.name}", enabled=config.runtime.progress,
                      leave=True)
    for epoch in epochs:
        t0 = time.perf_counter()
        model.train()
        method.new_epoch(epoch)
        train_loader.set_epoch(epoch)
        val_iter = None
        if val_loader is not None:
            val_loader.set_epoch(epoch)
            val_iter = iter(val_loader)  # one iterator per epoch (DARTS rebuilt it every step)
        meter = EpochMeter(device)
        bar = progress(train_loader, total=steps, desc=f"epoch {epoch + 1}/{s.epochs}",
                       enabled=config.runtime.progress)
        for step, (x, y) in enumerate(bar):
            if step >= steps:
                break
            val_batch = None
            if val_iter is not None:
                try:
                    val_batch = next(val_iter)
                except StopIteration:
                    val_iter = iter(val_loader)
                    val_batch = next(val_iter)
                val_batch = dist.shard(val_batch, s.batch_size)
            x, y = dist.shard((x, y), s.batch_size)
            with autocast(config.runtime, device):
                out = method.step((x, y), val_batch)
            meter.update(out["loss"], out["logits"], y)
        meter.reduce()
        meter.check_finite(f"search epoch {epoch}")
        dist.assert_consistent(method.arch_parameters(), f"alphas after epoch {epoch}")
        lr = method.lr()
        method.end_epoch()
        loss, acc = meter.result()
        epoch_time = time.perf_counter() - t0
        wall += epoch_time
        probs = method.probabilities()
        grad_means = method.pop_alpha_grad_means()
        record = {
            "epoch": epoch, "train_loss": loss, "train_acc": acc, "lr": lr,
            "epoch_time_s": epoch_time, "images_per_s": meter.count / max(epoch_time, 1e-9),
            **{f"alpha_entropy_{c}": v for c, v in method.alpha_entropy().items()},
            "genotype": method.genotype(config.derive).model_dump(mode="json"),
            "probabilities": {c: p.round(6).tolist() for c, p in probs.items()},
            "alpha_grad_abs": {c: g.round(8).tolist() for c, g in grad_means.items()},
        }
        history.append(record)
        if tracker is not None:
            scalars = {k: v for k, v in record.items() if isinstance(v, float)}
            tracker.log_metrics({**scalars, **op_probability_metrics(method, space)}, step=epoch)
        if dist.is_main():
            ckpt.save({"model": model.state_dict(), "method": method.state_dict(), "epoch": epoch,
                       "history": history, "wall_time_s": wall, "rng": rng_state()})

    genotype = method.genotype(config.derive)
    # the trained supernet, for the co-adaptation / stand-alone accuracy analyses
    from nasflow.loaders import MADE_FOR, made_for

    supernet = {"model": model.state_dict(),
                "alphas": {c: a.detach().cpu() for c, a in method.alphas.items()},
                "made_for": made_for(config, MADE_FOR["search"])}
    return supernet, {
        "stage": "search",
        "dataset": config.dataset.name,
        "method": config.method.name,
        "seed": s.seed,
        # what the record was made for: consumers check it against their params before use
        "space": space.name,
        "space_params": config.space.model_dump(mode="json"),
        "cell_types": list(space.cell_types),
        "alpha_shape": [space.n_edges, space.width],
        "supernet_size": {"layers": s.layers, "init_channels": s.init_channels},
        "genotype": genotype.model_dump(mode="json"),
        "alphas": {c: np.asarray(a).tolist() for c, a in method.arch_values().items()},
        "probabilities": {c: p.tolist() for c, p in method.probabilities().items()},
        "edge_ops": space.edge_ops,
        "epochs": s.epochs,
        "steps_per_epoch": steps,
        "wall_time_s": wall,
        "device": describe_device(device),
        "world_size": world_size,
        "supernet": "supernet.pt",
        "history": history,
    }


def check_search_record(record: Any, space, source: str,
                        expected: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The architecture values of a search record, after checking that it was made for
    ``space``: the shared record checks (:func:`nasflow.loaders.check_search_record`: JSON
    shape, ``made_for`` vs ``expected``, the op lists, finite alphas), then the space's name and
    the alpha shape; one error naming ``source`` and the mismatch otherwise."""
    from nasflow.errors import NasflowError
    from nasflow.loaders import check_search_record as check_record

    made_for = record.get("space", "darts") if isinstance(record, dict) else None
    if made_for is not None and made_for != space.name:  # before the op lists: the clearer cause
        raise NasflowError(f"{source}: space: the record was made for space {made_for!r}, "
                           f"params say space.name: {space.name}")
    check_record(record, source, expected, edge_ops=space.edge_ops)
    arch: dict[str, np.ndarray] = {}
    for cell in space.cell_types:
        values = np.asarray(record["alphas"][cell], dtype=np.float64)
        if values.shape != (space.n_edges, space.width):
            raise NasflowError(
                f"{source}: alphas.{cell}: shape {list(values.shape)} but the space in params "
                f"has {space.n_edges} edges x {space.width} ops (nodes={space.nodes})")
        arch[cell] = values
    for key, rows in record["alphas"].items():  # method-specific values (e.g. beta.<cell>)
        if key not in arch:
            arch[key] = np.asarray(rows, dtype=np.float64)
    return arch


def derive_from_record(config: RunConfig, record: Any, source: str):
    """``nasflow derive``: the genotype the configured method reads off a search record (its
    ``readout``, then the space's selection rule), without building the supernet."""
    space = build_space(config.space)
    method = build_method(config.method, config.search)
    method.bind_space(space)
    from nasflow.loaders import MADE_FOR, made_for

    arch = check_search_record(record, space, source, made_for(config, MADE_FOR["derive"]))
    return method.genotype(config.derive, arch=arch)
