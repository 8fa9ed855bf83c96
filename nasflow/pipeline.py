"""The pipeline layer: Snakemake's config model, params composition, result records, tables.

Snakemake (``Snakefile``, ``workflow/rules/*.smk``) and DVC (``dvc.yaml``) only wire files
together; everything they need beyond the ``nasflow`` CLI lives here, so both tools build the
same stages from the same code:

- :class:`PipelineConfig`: the model of ``workflow/config.yaml`` (+ ``--config`` overrides);
  its JSON schema (``workflow/schemas/pipeline.schema.json``) is generated, never hand-written,
  and the Snakefile validates ``config`` against it.
- :func:`params_files`: the params files of one run, in composition order.
- :func:`collect_result`: one seed's final record from search / genotype / retrain / eval /
  MLflow run ids / resolved params; :func:`aggregate`: mean +- *population* std over seeds
  (``ddof=0``, as DropNAS reports) plus the best seed; :func:`markdown_table`.

This module imports no torch: Snakemake imports it on every invocation (dry runs, lint).
Command line: ``python -m nasflow.pipeline {schema,params-files,check-params,collect,aggregate,table}``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

STAGE_RULES = ("track_parent", "search", "derive", "retrain", "evaluate")
REPORT_RULES = ("collect", "aggregate", "table")
#: rules with resources set per profile (workflow/config.yaml -> resources)
RESOURCE_RULES = ("search", "retrain", "evaluate")
STD_KIND = "population (ddof=0), as DropNAS reports mean +- std over seeds"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


# ---- the pipeline config --------------------------------------------------------------------
def _seed_from_text(value: Any) -> Any:
    # `snakemake --config 'seeds=[0,1]'` parses list items as strings
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


Seed = Annotated[
    int,
    BeforeValidator(_seed_from_text),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0},
                              {"type": "string", "pattern": "^[0-9]+$"}]}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProfileSettings(_Strict):
    """Per-profile pipeline settings (the run params are in ``params/profiles/<name>.yaml``).

    Only ``seeds`` lives here, so that ``dvc.yaml`` can unpack the mapping into
    ``--seeds 0 1 ...`` (DVC's dict unpacking in ``cmd``).
    """

    seeds: list[Seed] = Field(min_length=1, description="search+retrain seeds of every result")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if any(s < 0 for s in value) or len(set(value)) != len(value):
            raise ValueError("seeds must be distinct non-negative integers")
        return value


class RuleResources(_Strict):
    """Scheduler resources of one rule (Snakemake ``threads`` / ``resources``, SLURM)."""

    threads: int = Field(1, ge=1, le=1024, description="also passed as runtime.threads")
    gpu: int = Field(0, ge=0, le=64, description="GPUs (SLURM executor: --gpus)")
    mem_mb: int = Field(4000, ge=100)
    runtime: int = Field(60, ge=1, description="wall-clock limit in minutes")


class GridSpec(_Strict):
    """A 2-D table of method variants (e.g. DropNAS' drop-rate grid): methods[i][j] is the
    variant of row value rows[i] and column value cols[j]."""

    row_param: str
    col_param: str
    rows: list[str] = Field(min_length=1)
    cols: list[str] = Field(min_length=1)
    methods: list[list[str]] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> GridSpec:
        if len(self.methods) != len(self.rows) or any(len(r) != len(self.cols)
                                                      for r in self.methods):
            raise ValueError("grid.methods must be len(rows) x len(cols)")
        return self


class TableSpec(_Strict):
    """One table: rows are methods (or a grid of method variants), columns datasets.

    ``dataset``/``datasets`` name the paper's dataset(s); ``--config profile=X dataset=Y``
    on the command line overrides the profile and the dataset of every table (the paper's
    numbers stay in the table, labelled with the paper's dataset)."""

    title: str | None = None
    profile: str | None = Field(None, description="default: the config's `profile`")
    dataset: str | None = Field(None, description="default: the config's `dataset`")
    datasets: list[str] | None = Field(None, min_length=1,
                                       description="several dataset columns (C10, C100)")
    methods: list[str] | None = Field(None, min_length=1, description="default: `methods`")
    labels: dict[str, str] = Field(default_factory=dict, description="method -> row label")
    grid: GridSpec | None = Field(None, description="a row x column grid of method variants")
    source: str | None = Field(
        None, description="transfer: retrain on the dataset the cell searched on `source` "
                          "(results/<profile>/<dataset>_<method>@<source>.json)")


class AnalysisSpec(_Strict):
    """`snakemake analysis`: ``nasflow analyze`` on the search of each method and seed."""

    profile: str | None = Field(None, description="default: the config's `profile`")
    dataset: str | None = Field(None, description="default: the config's `dataset`")
    methods: list[str] = Field(["darts_1level", "dropnas"], min_length=1)
    seeds: list[Seed] = Field([0], min_length=1)
    images: dict[str, int] = Field(default_factory=lambda: {"paper": 1000, "smoke": 300},
                                   description="per profile: images of the feature studies")


class PublishedEntry(_Strict):
    """One published result: test error (%) mean +- std over `n` seeds, best seed, params,
    search cost. Missing values are null (the paper does not report them)."""

    mean: float | None = None
    std: float | None = None
    best: float | None = None
    n: int | None = Field(None, ge=1, description="seeds behind mean +- std")
    top5: float | None = None
    params_m: float | None = None
    params_convention: str | None = None
    gpu_days: float | None = None
    source: str = Field(description="paper and table the numbers come from")


class PublishedNumbers(_Strict):
    """config `published`: tables.<table>.<dataset>.<method> -> PublishedEntry."""

    conventions: dict[str, str] = Field(default_factory=dict)
    tables: dict[str, dict[str, dict[str, PublishedEntry]]]


class PipelineConfig(_Strict):
    """Snakemake's ``config``: what to run and where. Params of the runs live in ``params/``.

    Paths: every profile writes under its own folder, ``runs/<profile>/``,
    ``results/<profile>/``, ``checkpoints/<profile>/``, so a smoke run and a paper run never
    overwrite each other. The short paths ``results/<dataset>_<method>.json`` and
    ``results/<dataset>_<method>_s<seed>.json`` are copies of the ``profile`` below (default
    ``paper``): ``snakemake results/cifar10_dropnas.json`` runs the papers' protocol, and
    ``--config profile=smoke`` switches them. Tables name their profile explicitly.
    """

    profile: str = Field("paper", pattern=NAME_PATTERN,
                         description="profile of results/<dataset>_<method>.json")
    dataset: str = Field("cifar10", pattern=NAME_PATTERN,
                         description="the dataset of tables that do not name one")
    datasets: list[str] = Field(["cifar10"], min_length=1, description="`matrix` target")
    methods: list[str] = Field(["darts", "dropnas"], min_length=1,
                               description="`matrix` target and tables that do not name methods")
    seeds: list[Seed] | None = Field(
        None, description="override every profile's seeds (e.g. --config 'seeds=[0,1]')")
    profiles: dict[str, ProfileSettings] = Field(
        default_factory=lambda: {"paper": ProfileSettings(seeds=list(range(8))),
                                 "smoke": ProfileSettings(seeds=[0, 1])})
    resources: dict[str, dict[Literal["search", "retrain", "evaluate"], RuleResources]] = Field(
        default_factory=dict, description="per profile, per rule; missing: RuleResources()")
    tables: dict[str, TableSpec] = Field(default_factory=dict,
                                         description="results/tables/<name>.md")
    default_table: str = Field("default", description="what a bare `snakemake` builds")
    search_on: dict[str, str] = Field(
        default_factory=lambda: {"imagenet": "cifar10"},
        description="retrain on the key, with the genotype searched on the value (transfer)")
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    published: PublishedNumbers = Field(default_factory=lambda: PublishedNumbers(tables={}),
                                        description="the papers' numbers per table")
    params_dir: str = "params"
    cli: str = Field("nasflow", description="how rules call the nasflow CLI")
    # command-line overrides of every table's profile / dataset (set_table_overrides)
    _overrides: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int] | None) -> list[int] | None:
        return None if value is None else ProfileSettings(seeds=value).seeds

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        if self.default_table not in self.tables:
            raise ValueError(f"default_table {self.default_table!r} is not in tables")
        for name in self.tables:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"table name {name!r} must match {NAME_PATTERN}")
        return self

    # -- resolution ---------------------------------------------------------------------
    def seeds_of(self, profile: str) -> list[int]:
        if self.seeds is not None:
            return list(self.seeds)
        if profile not in self.profiles:
            raise ValueError(f"profile {profile!r} has no entry under `profiles` (its seeds)")
        return list(self.profiles[profile].seeds)

    def set_table_overrides(self, profile: str | None = None,
                            dataset: str | None = None) -> None:
        """``--config profile=X dataset=Y`` given on the command line: every table (and the
        `analysis` target) then runs profile X on dataset Y (no transfer source)."""
        self._overrides = {k: v for k, v in (("profile", profile), ("dataset", dataset))
                           if v is not None}

    def table(self, name: str) -> dict[str, Any]:
        if name not in self.tables:
            raise ValueError(f"unknown table {name!r}; configured: {', '.join(self.tables)}")
        spec = self.tables[name]
        paper_datasets = spec.datasets or [spec.dataset or self.dataset]
        datasets = ([self._overrides["dataset"]] if "dataset" in self._overrides
                    else paper_datasets)
        source = None if "dataset" in self._overrides else spec.source
        methods = ([m for row in spec.grid.methods for m in row] if spec.grid
                   else spec.methods or self.methods)
        return {"name": name, "title": spec.title or name,
                "profile": self._overrides.get("profile", spec.profile or self.profile),
                "dataset": datasets[0], "datasets": datasets, "paper_datasets": paper_datasets,
                "overridden": sorted(self._overrides), "methods": methods,
                "labels": dict(spec.labels), "source": source,
                "grid": None if spec.grid is None else spec.grid.model_dump(),
                "results": [m if source is None else f"{m}@{source}" for m in methods],
                "published": {d: {m: e.model_dump() for m, e in ms.items()}
                              for d, ms in self.published.tables.get(name, {}).items()}}

    def analysis_plan(self) -> dict[str, Any]:
        a = self.analysis
        profile = self._overrides.get("profile", a.profile or self.profile)
        return {"profile": profile,
                "dataset": self._overrides.get("dataset", a.dataset or self.dataset),
                "methods": list(a.methods), "seeds": list(a.seeds),
                "images": a.images.get(profile, 1000)}

    def rule_resources(self, profile: str, rule: str) -> RuleResources:
        return self.resources.get(profile, {}).get(rule, RuleResources())

    def search_dataset(self, dataset: str) -> str:
        return self.search_on.get(dataset, dataset)

    def check_names(self, root: str | Path = ".") -> None:
        """Every profile / dataset / method named in the config has its params file."""
        known = available(root, self.params_dir)
        an = self.analysis_plan()
        named = {"profiles": {self.profile, *self.profiles, an["profile"],
                              *(t["profile"] for t in self._tables())},
                 "datasets": {self.dataset, *self.datasets, *self.search_on, *self.search_on.values(),
                              an["dataset"],
                              *(d for t in self._tables() for d in t["datasets"]),
                              *(t["source"] for t in self._tables() if t["source"])},
                 "methods": {*self.methods, *an["methods"],
                             *(m for t in self._tables() for m in t["methods"])}}
        for kind, names in named.items():
            missing = sorted(n for n in names if n not in known[kind])
            if missing:
                raise ValueError(f"no params file for {kind} {', '.join(missing)}: expected "
                                 f"{self.params_dir}/{kind}/<name>.yaml (have: "
                                 f"{', '.join(known[kind])})")

    def _tables(self) -> list[dict[str, Any]]:
        return [self.table(n) for n in self.tables]


def load_pipeline_config(data: dict[str, Any]) -> PipelineConfig:
    """Validate Snakemake's ``config`` dict; a ValueError with one readable line on error."""
    from pydantic import ValidationError

    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ValueError(f"workflow config: {key}: {err['msg']}") from None


def pipeline_schema() -> dict[str, Any]:
    schema = PipelineConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# ---- params files ----------------------------------------------------------------------------
def available(root: str | Path = ".", params_dir: str = "params") -> dict[str, list[str]]:
    """Names with a params file: ``{"datasets": [...], "methods": [...], "profiles": [...]}``."""
    base = Path(root) / params_dir
    return {kind: sorted(p.stem for p in (base / kind).glob("*.yaml"))
            for kind in ("datasets", "methods", "profiles")}


def params_files(dataset: str, method: str, profile: str, root: str | Path = ".",
                 params_dir: str = "params") -> list[str]:
    """The params files of one run, in composition order (later wins):
    dataset, method, the dataset's overlay if any (a recipe that must beat the method file,
    e.g. ImageNet retraining), profile. Paths are relative to ``root``."""
    files = [f"{params_dir}/datasets/{dataset}.yaml", f"{params_dir}/methods/{method}.yaml"]
    overlay = f"{params_dir}/overlays/{dataset}.yaml"
    if (Path(root) / overlay).is_file():
        files.append(overlay)
    files.append(f"{params_dir}/profiles/{profile}.yaml")
    return files


def params_args(files: Sequence[str], overrides: Sequence[str] = ()) -> str:
    """``--params F ... --set k=v ...`` as one shell-quoted string."""
    import shlex

    parts = [f"--params {shlex.quote(f)}" for f in files]
    parts += [f"--set {shlex.quote(o)}" for o in overrides]
    return " ".join(parts)


def check_params(root: str | Path = ".", params_dir: str = "params") -> list[str]:
    """Compose every dataset x method x profile into a RunConfig; return the errors."""
    from nasflow.config import load_config
    from nasflow.errors import NasflowError

    known = available(root, params_dir)
    errors = []
    for d in known["datasets"]:
        for m in known["methods"]:
            for p in known["profiles"]:
                files = [str(Path(root) / f) for f in params_files(d, m, p, root, params_dir)]
                try:
                    load_config(files, ["search.seed=0", "retrain.seed=0"])
                except NasflowError as exc:
                    errors.append(f"{d} x {m} x {p}: {exc}")
    return errors


# ---- records ---------------------------------------------------------------------------------
def _read(path: str | Path | None) -> dict[str, Any] | None:
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
    s, g, r, e = _read(search), _read(genotype), _read(retrain), _read(evaluation)
    par = _read(parent) or {}
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
        "resolved_params": {"search": _read(search_config), "retrain": _read(retrain_config)},
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


# ---- tables ----------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pm(stats: dict[str, Any], digits: int = 2) -> str:
    if stats["mean"] is None:
        return "-"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _cost_cell(cost: dict[str, Any]) -> str:
    gpu = cost["gpu_days"]
    if gpu["mean"] is not None:
        return f"{gpu['mean']:.2f} GPU-d"
    wall = cost["wall_time_s"]["mean"]
    if wall is None:
        return "-"
    if wall < 120:
        return f"{wall:.0f} s"
    return f"{wall / 60:.1f} min" if wall < 7200 else f"{wall / 3600:.1f} h"


def markdown_table(aggregates: Sequence[dict[str, Any]], title: str = "") -> str:
    """A Markdown table of aggregated records (one row per method). The header says N, the
    std convention and the selection, so mean-of-N and best-of-N are never mixed silently."""
    if not aggregates:
        raise ValueError("markdown_table: no records")
    for key in ("profile", "dataset"):
        vals = {a[key] for a in aggregates}
        if len(vals) > 1:
            raise ValueError(f"markdown_table: rows mix {key}s {sorted(vals)}")
    selections = {a["test_error"]["selection"] for a in aggregates}
    if len(selections) > 1:
        raise ValueError(f"markdown_table: rows mix test-error selections {sorted(selections)}")
    selection = selections.pop()
    a0 = aggregates[0]
    sel = ("final-epoch weights" if selection == "final"
           else "best epoch over retraining (selected on the test set)")
    lines = [f"## {title or a0['dataset']}", "",
             f"Dataset `{a0['dataset']}`, profile `{a0['profile']}`. Test error (%) of the "
             f"{sel}: mean ± std over N seeds (std: {STD_KIND}); *best of N* is the single best "
             "seed, reported separately. Params: "
             f"{a0.get('params_convention') or 'millions'}. MACs: multiply-accumulates (M). "
             "Cost: mean wall time per seed (GPU-days on a GPU).", "",
             "| Method | Test err. (%) mean ± std | Best of N (%) | N | Seeds | Params (M) | "
             "MACs (M) | Search cost | Retrain cost | Search device |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for a in aggregates:
        best = a["best_seed"]
        best_cell = "-" if best is None else f"{best['top1']:.2f} (seed {best['seed']})"
        lines.append(
            f"| {a['method']} | {_pm(a['test_error']['top1'])} | {best_cell} | {a['n_seeds']} | "
            f"{','.join(map(str, a['seeds']))} | {_pm(a['params_m'], 3)} | "
            f"{_fmt(a['macs_m']['mean'], 1)} | {_cost_cell(a['search_cost'])} | "
            f"{_cost_cell(a['retrain_cost'])} | {'; '.join(a['search_cost']['devices'])} |")
    return "\n".join(lines) + "\n"


# ---- the papers' numbers beside ours -------------------------------------------------------
def _ours(a: dict[str, Any] | None) -> dict[str, Any]:
    if a is None:
        return {"mean": None, "std": None, "best": None, "n": None, "top5": None,
                "params_m": None, "search_cost": None}
    te, best = a["test_error"], a["best_seed"] or {}
    return {"mean": te["top1"]["mean"], "std": te["top1"]["std"], "best": best.get("top1"),
            "best_seed": best.get("seed"), "n": a["n_seeds"], "seeds": a["seeds"],
            "top5": te["top5"]["mean"], "params_m": a["params_m"]["mean"],
            "search_cost": _cost_cell(a["search_cost"])}


def _paper(e: PublishedEntry | None) -> dict[str, Any]:
    if e is None:
        return {"mean": None, "std": None, "best": None, "n": None, "top5": None,
                "params_m": None, "params_convention": None, "gpu_days": None, "source": None}
    return e.model_dump()


def build_paper_table(spec: dict[str, Any], aggregates: dict[tuple[str, str], dict[str, Any]],
                      published: dict[str, dict[str, PublishedEntry]]) -> dict[str, Any]:
    """Rows of a paper table: ours (from the aggregates, keyed (dataset, result name)) beside
    the paper's numbers (``published[dataset][method]``). One structure, three renderings
    (Markdown, CSV, JSON), so the twins always hold the same rows."""
    aggs = list(aggregates.values())
    if not aggs:
        raise ValueError("paper table: no records")
    for key in ("profile",):
        vals = {a[key] for a in aggs}
        if len(vals) > 1:
            raise ValueError(f"paper table: rows mix {key}s {sorted(vals)}")
    selections = {a["test_error"]["selection"] for a in aggs}
    if len(selections) > 1:
        raise ValueError(f"paper table: rows mix test-error selections {sorted(selections)}")
    ns = sorted({a["n_seeds"] for a in aggs})
    if len(ns) > 1:
        raise ValueError(f"paper table: rows mix numbers of seeds {ns}")
    result = dict(zip(spec["methods"], spec["results"], strict=False))

    def row(method: str, label: str) -> dict[str, Any]:
        return {"label": label, "method": method,
                "ours": {d: _ours(aggregates.get((d, result[method]))) for d in spec["datasets"]},
                "paper": {d: _paper(published.get(d, {}).get(method))
                          for d in spec["paper_datasets"]}}

    grid = spec.get("grid")
    if grid:
        rows = [{"label": f"{grid['row_param']}={rv}",
                 "cells": [row(m, f"{grid['col_param']}={cv}")
                           for cv, m in zip(grid["cols"], ms, strict=False)]}
                for rv, ms in zip(grid["rows"], grid["methods"], strict=False)]
    else:
        rows = [row(m, spec["labels"].get(m, m)) for m in spec["methods"]]
    return {"table": spec.get("name"), "title": spec["title"], "profile": aggs[0]["profile"],
            "datasets": spec["datasets"], "paper_datasets": spec["paper_datasets"],
            "source": spec.get("source"), "overridden": spec.get("overridden", []),
            "selection": selections.pop(), "n_seeds": ns[0], "std": STD_KIND,
            "grid": grid, "rows": rows}


def _err_cell(c: dict[str, Any]) -> str:
    if c.get("mean") is None:
        return "-"
    return f"{c['mean']:.2f}" if c.get("std") is None else f"{c['mean']:.2f} ± {c['std']:.2f}"


def _columns(t: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(header, side, dataset, field) of a non-grid table, ours and paper side by side."""
    cols = []
    pairs = ([(d, d) for d in t["datasets"]] if t["datasets"] == t["paper_datasets"]
             else [(d, None) for d in t["datasets"]] + [(None, p) for p in t["paper_datasets"]])
    for d, p in pairs:
        if d is not None:
            cols += [(f"ours {d}", "ours", d, "err"), (f"ours {d} best", "ours", d, "best"),
                     (f"ours {d} params (M)", "ours", d, "params_m"),
                     (f"ours {d} search cost", "ours", d, "search_cost")]
        if p is not None:
            cols += [(f"paper {p}", "paper", p, "err"), (f"paper {p} best", "paper", p, "best"),
                     (f"paper {p} params (M)", "paper", p, "params_m"),
                     (f"paper {p} search cost (GPU-d)", "paper", p, "gpu_days")]
    return cols


def _cell(c: dict[str, Any], field: str, dataset: str = "") -> str:
    if field == "err":
        text = _err_cell(c)
        # top-1 / top-5 as the papers print ImageNet; CIFAR-style tables show top-1 only
        if dataset == "imagenet" and c.get("top5") is not None and text != "-":
            text += f" / {c['top5']:.1f}"
        return text
    v = c.get(field)
    if v is None:
        return "-"
    if field == "params_m":
        return f"{v:.2f}" + (f" ({c['params_convention']})" if c.get("params_convention")
                             else "")
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def paper_table_header(t: dict[str, Any]) -> str:
    sel = ("final-epoch weights" if t["selection"] == "final"
           else "best epoch over retraining (selected on the test set)")
    over = (f" Overridden on the command line: {', '.join(t['overridden'])} (the paper columns "
            "keep the paper's datasets)." if t["overridden"] else "")
    src = f" Cells searched on `{t['source']}`." if t.get("source") else ""
    return (f"Profile `{t['profile']}`, ours on {', '.join(t['datasets'])}.{src}{over} "
            f"**ours**: test error (%) of the {sel}, mean ± {t['std']} over N={t['n_seeds']} "
            "seeds; best = the best single seed; ImageNet-style cells read top-1 / top-5. "
            "Params: ours in the DARTS convention (no auxiliary head, /1e6). **paper**: the "
            "published numbers (mean ± std over 8 seeds where the paper reports it; its own "
            "params convention, in brackets).")


def paper_table_markdown(t: dict[str, Any]) -> str:
    lines = [f"## {t['title']}", "", paper_table_header(t), ""]
    if t["grid"]:
        g = t["grid"]
        head = ([f"ours {g['col_param']}={c}" for c in g["cols"]]
                + [f"paper {g['col_param']}={c}" for c in g["cols"]])
        lines += [f"| {g['row_param']} \\ {g['col_param']} | " + " | ".join(head) + " |",
                  "|---" * (len(head) + 1) + "|"]
        for r in t["rows"]:
            ours = [_err_cell(next(iter(c["ours"].values()))) for c in r["cells"]]
            paper = [_err_cell(next(iter(c["paper"].values()))) for c in r["cells"]]
            lines.append(f"| {r['label']} | " + " | ".join(ours + paper) + " |")
    else:
        cols = _columns(t)
        lines += ["| Method | " + " | ".join(h for h, *_ in cols) + " |",
                  "|---" * (len(cols) + 1) + "|"]
        for r in t["rows"]:
            lines.append(f"| {r['label']} | " + " | ".join(
                _cell(r[side][d], f, d) for _, side, d, f in cols) + " |")
    return "\n".join(lines) + "\n"


def paper_table_csv(t: dict[str, Any]) -> str:
    """The Markdown rows, with numbers in their own columns (mean, std, best, ...)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    fields = ("mean", "std", "best", "n", "top5", "params_m")
    if t["grid"]:
        g = t["grid"]
        header = [g["row_param"]]
        for side in ("ours", "paper"):
            header += [f"{side} {g['col_param']}={c} {f}" for c in g["cols"]
                       for f in ("mean", "std", "n")]
        w.writerow(header)
        for r in t["rows"]:
            out = [r["label"].split("=", 1)[1]]
            for side in ("ours", "paper"):
                for c in r["cells"]:
                    v = next(iter(c[side].values()))
                    out += [v.get(f) for f in ("mean", "std", "n")]
            w.writerow(["" if v is None else v for v in out])
        return buf.getvalue()
    groups = [("ours", d) for d in t["datasets"]] + [("paper", p) for p in t["paper_datasets"]]
    header = ["label", "method"]
    for side, d in groups:
        header += [f"{side} {d} {f}" for f in fields]
    w.writerow(header)
    for r in t["rows"]:
        out = [r["label"], r["method"]]
        for side, d in groups:
            out += [r[side][d].get(f) for f in fields]
        w.writerow(["" if v is None else v for v in out])
    return buf.getvalue()


def write_paper_table(spec: dict[str, Any], results: str | Path,
                      out_md: str | Path) -> dict[str, Any]:
    """Read the aggregates of `spec` (PipelineConfig.table, with its published numbers) under
    ``results``; write <out>.md, .csv and .json."""
    from nasflow.io import write_text

    pub = {d: {m: PublishedEntry.model_validate(e) for m, e in ms.items()}
           for d, ms in spec.get("published", {}).items()}
    aggs = {}
    for d in spec["datasets"]:
        for r in spec["results"]:
            aggs[(d, r)] = _read(Path(results) / spec["profile"] / f"{d}_{r}.json")
    t = build_paper_table(spec, aggs, pub)
    out_md = Path(out_md)
    write_text(out_md, paper_table_markdown(t))
    write_text(out_md.with_suffix(".csv"), paper_table_csv(t))
    _write_json(out_md.with_suffix(".json"), t)
    return t


# ---- command line ----------------------------------------------------------------------------
def _write_json(path: str | Path, obj: Any) -> None:
    from nasflow.io import write_json

    write_json(path, obj)


def _cmd_schema(args) -> None:
    _write_json(args.out, pipeline_schema())


def init_tracking_store() -> str:
    """Create (or open) the MLflow store once, before parallel jobs start, under the same
    machine-wide lock the trackers use (a fresh SQLite store is otherwise created by several
    jobs at once and one fails). Returns the resolved store URI."""
    from nasflow.tracking import ensure_store

    return ensure_store()


def _cmd_init_tracking(args) -> None:
    print(f"nasflow.pipeline: MLflow store ready: {init_tracking_store()}", file=sys.stderr)


def _cmd_params_files(args) -> None:
    print(" ".join(params_files(args.dataset, args.method, args.profile, args.root,
                                args.params_dir)))


def _cmd_check_params(args) -> None:
    errors = check_params(args.root, args.params_dir)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        raise SystemExit(2)
    known = available(args.root, args.params_dir)
    print(f"ok: {len(known['datasets'])} datasets x {len(known['methods'])} methods x "
          f"{len(known['profiles'])} profiles compose into valid run configs")


def _cmd_collect(args) -> None:
    record = collect_result(
        search=args.search, genotype=args.genotype, retrain=args.retrain,
        evaluation=args.evaluation, parent=args.parent, search_config=args.search_config,
        retrain_config=args.retrain_config, profile=args.profile, dataset=args.dataset,
        method=args.method, seed=args.seed)
    record["path"] = str(args.out)
    _write_json(args.out, record)
    if args.curves:
        write_curves(_read(args.search), _read(args.retrain), args.curves[0], args.curves[1])


def _cmd_aggregate(args) -> None:
    files = list(args.inputs)
    if args.dir is not None:
        if not args.seeds:
            raise ValueError("aggregate --dir needs --seeds")
        files += [Path(args.dir) / f"s{s}.json" for s in args.seeds]
    if not files:
        raise ValueError("aggregate: give per-seed files, or --dir and --seeds")
    agg = aggregate([_read(f) for f in files])
    _write_json(args.out, agg)
    if args.metrics is not None:
        _write_json(args.metrics, summary_metrics(agg))


def _cmd_table(args) -> None:
    from nasflow.io import write_text

    files = list(args.inputs) or [Path(args.results) / args.profile / f"{args.dataset}_{m}.json"
                                  for m in args.methods]
    if not files:
        raise ValueError("table: give aggregate files, or --profile, --dataset and --methods")
    write_text(args.out, markdown_table([_read(f) for f in files], args.title or ""))


def _cmd_paper_table(args) -> None:
    import json

    write_paper_table(json.loads(args.spec), args.results, args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nasflow.pipeline",
                                     description="nasflow pipeline helpers (records, tables).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("schema", help="write the JSON schema of workflow/config.yaml")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser("init-tracking", help="create the MLflow SQLite store once, if missing")
    p.set_defaults(func=_cmd_init_tracking)

    for name, func, helptext in (
            ("params-files", _cmd_params_files, "print one run's params files, in order"),
            ("check-params", _cmd_check_params,
             "compose every dataset x method x profile into a valid run config")):
        p = sub.add_parser(name, help=helptext)
        if name == "params-files":
            p.add_argument("--dataset", required=True)
            p.add_argument("--method", required=True)
            p.add_argument("--profile", required=True)
        p.add_argument("--root", default=".")
        p.add_argument("--params-dir", default="params")
        p.set_defaults(func=func)

    p = sub.add_parser("collect", help="assemble one seed's final record")
    for opt in ("search", "genotype", "retrain"):
        p.add_argument(f"--{opt}", type=Path, required=True)
    p.add_argument("--eval", dest="evaluation", type=Path, required=True)
    p.add_argument("--parent", type=Path, default=None, help="track-parent's run JSON")
    p.add_argument("--search-config", type=Path, default=None)
    p.add_argument("--retrain-config", type=Path, default=None)
    p.add_argument("--profile", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--curves", type=Path, nargs=2, metavar=("SEARCH_CSV", "RETRAIN_CSV"))
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("aggregate", help="mean +- population std over seeds, plus best seed")
    p.add_argument("inputs", nargs="*", type=Path, help="per-seed records")
    p.add_argument("--dir", type=Path, default=None, help="folder of s<seed>.json records")
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metrics", type=Path, default=None, help="also write summary numbers here")
    p.set_defaults(func=_cmd_aggregate)

    p = sub.add_parser("table", help="Markdown table of aggregated records")
    p.add_argument("inputs", nargs="*", type=Path, help="aggregate records, one row each")
    p.add_argument("--results", default="results")
    p.add_argument("--profile")
    p.add_argument("--dataset")
    p.add_argument("--methods", nargs="*", default=[])
    p.add_argument("--title", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_table)

    p = sub.add_parser("paper-table",
                       help="a paper table: ours beside the published numbers (.md/.csv/.json)")
    p.add_argument("--spec", required=True, help="the resolved table (PipelineConfig.table), JSON")
    p.add_argument("--results", default="results")
    p.add_argument("--out", type=Path, required=True, help="<name>.md; .csv and .json beside it")
    p.set_defaults(func=_cmd_paper_table)
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))
    from nasflow.errors import NasflowError

    try:
        args.func(args)
    except (NasflowError, ValueError, KeyError) as exc:
        msg = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        print(f"nasflow.pipeline: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
