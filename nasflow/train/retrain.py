"""Retraining a derived cell from scratch (DARTS Sec. 3.2 / DropNAS Sec. 5.2 recipes) and
evaluating it: top-1/top-5 error, parameters (DARTS convention), MACs, wall time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nasflow.config import RunConfig, resolved
from nasflow.data import dataset_info, load_dataset, make_loader
from nasflow.errors import NasflowError
from nasflow.genotype import Genotype
from nasflow.io import load_weights, save_checkpoint
from nasflow.loaders import MADE_FOR, made_for
from nasflow.metrics import count_macs, count_parameters_m
from nasflow.spaces import build_space, genotype_from_json
from nasflow.train import distributed as dist
from nasflow.train.checkpoint import CheckpointManager, fingerprint
from nasflow.train.loop import EpochMeter, evaluate_model
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

RETRAIN_SECTIONS = ("dataset", "retrain")


def build_retrain_network(config: RunConfig, genotype: Any, device: torch.device):
    info = dataset_info(config.dataset)
    r = config.retrain
    model = build_space(config.space).build_network(genotype, r, num_classes=info.num_classes,
                                                    in_channels=info.in_channels)
    model = prepare_model(model.to(device), config.runtime, device)
    maybe_compile(model, config.runtime)
    return info, model


def _logits(model, x):
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


def run_retrain(config: RunConfig, genotype: Genotype, out_dir: Path, checkpoint_dir: Path,
                tracker=None) -> dict[str, Any]:
    r = config.retrain
    device = setup_runtime(config.runtime, r.seed)
    _rank, world_size = dist.init_from_env(device.type)
    device = dist.local_device(device)
    _info, model = build_retrain_network(config, genotype, device)
    net = model
    if world_size > 1:  # standard DDP: gradient all-reduce overlapped with backward
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if not dist.is_main():
        tracker = None
    train_set = load_dataset(config.dataset, "train")
    test_set = load_dataset(config.dataset, "test")
    common = {"device": device, "channels_last": config.runtime.channels_last,
                  "device_data": config.runtime.device_data}
    train_loader = make_loader(train_set, None, batch_size=r.batch_size, augment=r.augment,
                               shuffle=True, drop_last=True, seed=r.seed, **common)
    test_loader = make_loader(test_set, None, batch_size=config.evaluate.batch_size, augment=None,
                              shuffle=False, drop_last=False, seed=0, **common)
    if len(train_loader) == 0:
        raise NasflowError(f"retrain.batch_size: {r.batch_size} is larger than the training set")
    optimizer = torch.optim.SGD(model.parameters(), r.lr, momentum=r.momentum,
                                weight_decay=r.weight_decay, nesterov=r.nesterov)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, r.epochs, eta_min=r.lr_min)

    fp_sections = {k: resolved(config)[k] for k in RETRAIN_SECTIONS}
    fp_sections["genotype"] = genotype.model_dump(mode="json")
    ckpt = CheckpointManager(checkpoint_dir, "retrain", fingerprint(fp_sections))
    history: list[dict[str, Any]] = []
    start_epoch, wall = 0, 0.0
    state = ckpt.load(expect={"model": model})
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start_epoch, wall = state["history"], state["epoch"] + 1, state["wall_time_s"]
        set_rng_state(state["rng"])

    steps = len(train_loader) if r.steps_per_epoch is None else min(len(train_loader), r.steps_per_epoch)
    params = list(model.parameters())
    for epoch in progress(range(start_epoch, r.epochs), total=r.epochs - start_epoch,
                          desc="retrain", enabled=config.runtime.progress, leave=True):
        t0 = time.perf_counter()
        model.train()
        model.drop_path_prob = r.drop_path_prob * epoch / r.epochs  # linear ramp (DARTS)
        train_loader.set_epoch(epoch)
        meter = EpochMeter(device)
        for step, (x, y) in enumerate(progress(train_loader, total=steps, desc=f"epoch {epoch + 1}",
                                               enabled=config.runtime.progress)):
            if step >= steps:
                break
            x, y = dist.shard((x, y), r.batch_size)
            optimizer.zero_grad(set_to_none=True)
            with autocast(config.runtime, device):
                logits, logits_aux = net(x)
                loss = F.cross_entropy(logits, y, label_smoothing=r.label_smoothing)
                if logits_aux is not None:
                    loss = loss + r.auxiliary_weight * F.cross_entropy(
                        logits_aux, y, label_smoothing=r.label_smoothing)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, r.grad_clip, foreach=True)
            optimizer.step()
            meter.update(loss, logits, y)
        meter.reduce()
        meter.check_finite(f"retrain epoch {epoch}")
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        train_loss, train_acc = meter.result()
        epoch_time = time.perf_counter() - t0
        wall += epoch_time
        record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "lr": lr,
                  "drop_path_prob": model.drop_path_prob, "epoch_time_s": epoch_time,
                  "images_per_s": meter.count / max(epoch_time, 1e-9)}
        if (epoch + 1) % r.eval_every == 0 or epoch + 1 == r.epochs:
            model.eval()
            with autocast(config.runtime, device):
                ev = evaluate_model(lambda x: _logits(model, x), test_loader, device)
            record.update(test_loss=ev["loss"], test_acc=ev["top1_acc"], test_top5_acc=ev["top5_acc"])
        history.append(record)
        if tracker is not None:
            tracker.log_metrics({k: v for k, v in record.items() if isinstance(v, float)}, step=epoch)
        if dist.is_main():
            ckpt.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history,
                       "wall_time_s": wall, "rng": rng_state()})

    tested = [h for h in history if "test_acc" in h]
    best = max(tested, key=lambda h: h["test_acc"]) if tested else None
    model_path = out_dir / "model.pt"
    if dist.is_main():
        save_checkpoint(model_path, {"model": model.state_dict(),
                                     "genotype": genotype.model_dump(mode="json"),
                                     "made_for": made_for(config, MADE_FOR["retrain"])})
    return {
        "stage": "retrain",
        "dataset": config.dataset.name,
        "seed": r.seed,
        "genotype": genotype.model_dump(mode="json"),
        "params_m": count_parameters_m(model),
        "final_test_acc": tested[-1]["test_acc"] if tested else None,
        "best_test_acc": best["test_acc"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "epochs": r.epochs,
        "steps_per_epoch": steps,
        "wall_time_s": wall,
        "device": describe_device(device),
        "world_size": world_size,
        "weights": str(model_path),
        "history": history,
    }


def run_evaluate(config: RunConfig, genotype: Genotype, weights: Path,
                 retrain_record: dict[str, Any] | None = None) -> dict[str, Any]:
    device = setup_runtime(config.runtime, 0)
    info, model = build_retrain_network(config, genotype, device)
    def same_genotype(state) -> None:
        try:
            same = genotype_from_json(state.get("genotype"), str(weights)) == genotype
        except NasflowError:
            same = False
        if not same:
            raise NasflowError(f"{weights}: these weights were trained for a different genotype")

    state = load_weights(weights, model, key="model",
                         expected=made_for(config, MADE_FOR["retrain"]),
                         hint="retrain.layers / retrain.init_channels / retrain.auxiliary",
                         map_location=device, check=same_genotype)
    model.load_state_dict(state["model"])
    model.eval()
    test_set = load_dataset(config.dataset, "test")
    loader = make_loader(test_set, None, batch_size=config.evaluate.batch_size, augment=None,
                         shuffle=False, drop_last=False, seed=0, device=device,
                         channels_last=config.runtime.channels_last,
                         device_data=config.runtime.device_data)
    t0 = time.perf_counter()
    with autocast(config.runtime, device):
        ev = evaluate_model(lambda x: _logits(model, x), loader, device)
    wall = time.perf_counter() - t0
    shape = (1, info.in_channels, info.image_size, info.image_size)
    result = {
        "stage": "evaluate",
        "dataset": config.dataset.name,
        "test_images": ev["n"],
        "top1_err": 100.0 * (1 - ev["top1_acc"]),
        "top5_err": 100.0 * (1 - ev["top5_acc"]),
        "test_loss": ev["loss"],
        "params_m": count_parameters_m(model),
        "params_convention": "DARTS: parameters without the auxiliary head / 1e6",
        "macs_m": count_macs(model.cpu(), shape) / 1e6,
        "eval_wall_time_s": wall,
        "device": describe_device(device),
        "report": config.evaluate.report,
    }
    if config.evaluate.report == "best" and retrain_record and retrain_record.get("best_test_acc"):
        # DropNAS reports the best test accuracy over retraining epochs (selection on test).
        result["top1_err_best_epoch"] = 100.0 * (1 - retrain_record["best_test_acc"])
        result["best_epoch"] = retrain_record["best_epoch"]
    return result
