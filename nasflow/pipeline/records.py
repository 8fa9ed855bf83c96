"""Run records: one seed's final record from the stage outputs, per-epoch curves, and the
aggregate over seeds (mean +- *population* std, ``ddof=0``, as DropNAS reports, plus the best
seed; the record names which std and which selection it holds)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STD_KIND = "population (ddof=0), as DropNAS reports mean +- std over seeds"


def read_record(path: str | Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from nasflow.io import read_json

    return read_json(path)


def _gpu_days(wall_s: float | None, device: str | None) -> float | None:
    if wall_s is None or not device or not str(device).startswith("cuda"):
        return None
    return wall_s / 86400.0


def _cost(record: dict[str, Any]) -> dict[str, Any]:
    wall = record.get("wall_time_s")
    return {"wall_time_s": wall, "device": record.get("device"),
            "gpu_days": _gpu_days(wall, record.get("device")),
            "epochs": record.get("epochs"), "steps_per_epoch": record.get("steps_per_epoch")}


def collect_result(*, search: str | Path, genotype: str | Path, retrain: str | Path,
                   evaluation: str | Path, parent: str | Path | None = None,
                   search_config: str | Path | None = None,
                   retrain_config: str | Path | None = None,
                   profile: str, dataset: str, method: str, seed: int) -> dict[str, Any]:
    """One seed's final record (``results/<profile>/<dataset>_<method>/s<seed>.json``).

    ``test_error.top1`` is what ``evaluate.report`` asks for: the final epoch's weights
    (``final``) or the best epoch over retraining (``best``, DropNAS' convention, which
    selects on the test set). Both numbers are kept, named.
    """
    s, g, r, e = read_record(search), read_record(genotype), read_record(retrain), read_record(evaluation)
    par = read_record(parent) or {}
    report = e.get("report", "final")
    best_acc = r.get("best_test_acc")
    best_err = None if best_acc is None else 100.0 * (1.0 - best_acc)
    final_err = e.get("top1_err")
    top1 = best_err if report == "best" and best_err is not None else final_err
    return {
        "kind": "seed",
        "profile": profile,
        "dataset": dataset,
        "search_dataset": s.get("dataset", dataset),
        "method": method,
        "seed": seed,
        "seeds": {"search": s.get("seed"), "retrain": r.get("seed")},
        "test_error": {
            "top1": top1,
            "top5": e.get("top5_err"),
            "selection": report,
            "final_epoch_top1": final_err,
            "best_epoch_top1": best_err,
            "best_epoch": r.get("best_epoch"),
            "note": "best_epoch_top1 selects the epoch on the test set (DropNAS' convention)",
        },
        "params_m": e.get("params_m", r.get("params_m")),
        "params_convention": e.get("params_convention"),
        "macs_m": e.get("macs_m"),
        "flops_note": "macs_m = multiply-accumulates (what NAS papers call FLOPs), millions",
        "test_images": e.get("test_images"),
        "search_cost": _cost(s),
        "retrain_cost": _cost(r),
        "eval_cost": {"wall_time_s": e.get("eval_wall_time_s"), "device": e.get("device")},
        "genotype": g,
        "mlflow": {"parent_run_id": par.get("run_id"), "search_run_id": s.get("mlflow_run_id"),
                   "retrain_run_id": r.get("mlflow_run_id"),
                   "evaluate_run_id": e.get("mlflow_run_id")},
        "resolved_params": {"search": read_record(search_config), "retrain": read_record(retrain_config)},
        "files": {"search": str(search), "genotype": str(genotype), "retrain": str(retrain),
                  "evaluate": str(evaluation), "weights": r.get("weights")},
    }


def write_curves(record_search: dict[str, Any], record_retrain: dict[str, Any],
                 search_csv: str | Path, retrain_csv: str | Path) -> None:
    """Per-epoch curves as CSV (DVC plots): search train loss/acc, retrain loss/acc/test acc."""
    from nasflow.io import write_text

    def table(history: list[dict[str, Any]], cols: Sequence[str]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["epoch", *cols])
        for h in history:
            w.writerow([h.get("epoch"), *(h.get(c, "") if h.get(c) is not None else ""
                                          for c in cols)])
        return buf.getvalue()

    write_text(search_csv, table(record_search.get("history", []),
                                 ["train_loss", "train_acc", "lr"]))
    write_text(retrain_csv, table(record_retrain.get("history", []),
                                  ["train_loss", "train_acc", "test_acc", "lr"]))


def _stats(values: Sequence[float | None]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "values": []}
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))  # population (ddof=0)
    return {"mean": mean, "std": std, "min": min(vals), "max": max(vals), "n": len(vals),
            "values": vals}


def _differences(configs: list[dict[str, Any] | None], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between resolved configs."""
    configs = [c for c in configs if c is not None]
    if len(configs) < 2:
        return []
    out = []
    for key in sorted({k for c in configs for k in c}):
        vals = [c.get(key) for c in configs]
        if all(isinstance(v, dict) for v in vals):
            out += _differences(vals, f"{prefix}{key}.")
        elif any(v != vals[0] for v in vals):
            out.append(f"{prefix}{key}")
    return out


def aggregate(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean +- population std over seeds of every number in the per-seed records, plus the
    best seed (lowest ``test_error.top1``). The record says which std and which selection."""
    if not records:
        raise ValueError("aggregate: no per-seed records")
    recs = sorted(records, key=lambda r: r["seed"])
    first = recs[0]
    for key in ("profile", "dataset", "method"):
        vals = {r[key] for r in recs}
        if len(vals) > 1:
            raise ValueError(f"aggregate: records mix {key}s: {sorted(vals)}")
    selections = {r["test_error"]["selection"] for r in recs}
    if len(selections) > 1:
        raise ValueError(f"aggregate: records mix test-error selections {sorted(selections)}")
    top1 = [r["test_error"]["top1"] for r in recs]
    scored = [r for r in recs if r["test_error"]["top1"] is not None]
    best = min(scored, key=lambda r: (r["test_error"]["top1"], r["seed"])) if scored else None
    sc = [r["search_cost"] for r in recs]
    rc = [r["retrain_cost"] for r in recs]
    return {
        "kind": "aggregate",
        "profile": first["profile"],
        "dataset": first["dataset"],
        "search_dataset": first.get("search_dataset", first["dataset"]),
        "method": first["method"],
        "seeds": [r["seed"] for r in recs],
        "n_seeds": len(recs),
        "std": STD_KIND,
        "test_error": {
            "selection": first["test_error"]["selection"],
            "top1": _stats(top1),
            "top5": _stats([r["test_error"]["top5"] for r in recs]),
            "final_epoch_top1": _stats([r["test_error"]["final_epoch_top1"] for r in recs]),
            "best_epoch_top1": _stats([r["test_error"]["best_epoch_top1"] for r in recs]),
        },
        "best_seed": None if best is None else {
            "seed": best["seed"], "top1": best["test_error"]["top1"],
            "top5": best["test_error"]["top5"], "params_m": best["params_m"],
            "genotype": best["genotype"], "mlflow": best["mlflow"]},
        "params_m": _stats([r["params_m"] for r in recs]),
        "params_convention": first.get("params_convention"),
        "macs_m": _stats([r["macs_m"] for r in recs]),
        "flops_note": first.get("flops_note"),
        "search_cost": {"wall_time_s": _stats([c["wall_time_s"] for c in sc]),
                        "gpu_days": _stats([c["gpu_days"] for c in sc]),
                        "devices": sorted({str(c["device"]) for c in sc})},
        "retrain_cost": {"wall_time_s": _stats([c["wall_time_s"] for c in rc]),
                         "gpu_days": _stats([c["gpu_days"] for c in rc]),
                         "devices": sorted({str(c["device"]) for c in rc})},
        "genotypes": {str(r["seed"]): r["genotype"] for r in recs},
        "mlflow": {str(r["seed"]): r["mlflow"] for r in recs},
        "resolved_params": first["resolved_params"],
        "resolved_params_differ_in": sorted(
            set(_differences([r["resolved_params"]["search"] for r in recs]))
            | set(_differences([r["resolved_params"]["retrain"] for r in recs]))),
        "per_seed": [r.get("path") for r in recs if r.get("path")],
    }


def summary_metrics(agg: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of an aggregate worth comparing across experiments (DVC metrics)."""
    te, best = agg["test_error"], agg["best_seed"] or {}
    return {
        "n_seeds": agg["n_seeds"],
        "top1_err_mean": te["top1"]["mean"],
        "top1_err_std": te["top1"]["std"],
        "top1_err_best": best.get("top1"),
        "top5_err_mean": te["top5"]["mean"],
        "best_epoch_top1_err_mean": te["best_epoch_top1"]["mean"],
        "params_m_mean": agg["params_m"]["mean"],
        "macs_m_mean": agg["macs_m"]["mean"],
        "search_wall_time_s_mean": agg["search_cost"]["wall_time_s"]["mean"],
        "retrain_wall_time_s_mean": agg["retrain_cost"]["wall_time_s"]["mean"],
        "search_gpu_days_mean": agg["search_cost"]["gpu_days"]["mean"],
    }


def write_record(path: str | Path, obj: Any) -> None:
    from nasflow.io import write_json

    write_json(path, obj)
