"""The model of ``workflow/config.yaml`` (Snakemake's ``config``, plus ``--config``).

Its JSON schema (``workflow/schemas/pipeline.schema.json``) is generated from these models
(:func:`pipeline_schema`), never hand-written, and the Snakefile validates ``config`` against
it; :func:`load_pipeline_config` turns a validation error into one readable line.
"""

from __future__ import annotations

import re
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

from nasflow.pipeline.lookup import RunParams, available, run_params, variant_errors
from nasflow.pipeline.variants import Recipe, VariantGrid, VariantSpec, expand_variants, resolve

#: rules with resources set per profile (workflow/config.yaml -> resources)
RESOURCE_RULES = ("search", "retrain", "evaluate")
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


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
    grid: GridSpec | str | None = Field(
        None, description="a row x column grid of method variants, or the name of a "
                          "2-axis `variant_grids` entry (rows: its first axis)")
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
    variants: dict[str, VariantSpec] = Field(
        default_factory=dict,
        description="method variants without a params file: name -> base method (or variant), "
                    "optional space, --set overrides; usable wherever a method name is")
    variant_grids: dict[str, VariantGrid] = Field(
        default_factory=dict,
        description="grids of variants (e.g. DropNAS drop rates): one variant per cell")
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
        self.all_variants()  # names, duplicates, cycles
        for name, spec in self.tables.items():
            if isinstance(spec.grid, str):
                if spec.grid not in self.variant_grids:
                    raise ValueError(f"table {name!r}: grid {spec.grid!r} is not in variant_grids "
                                     f"(have: {', '.join(self.variant_grids) or 'none'})")
                self.variant_grids[spec.grid].table_grid()
        return self

    # -- resolution ---------------------------------------------------------------------
    def all_variants(self) -> dict[str, VariantSpec]:
        """`variants` plus every cell of `variant_grids` (a cell equal to its base excluded)."""
        return expand_variants(self.variants, self.variant_grids)

    def recipe(self, method: str) -> Recipe:
        """How a method or variant name composes (method file, space file, overrides)."""
        return resolve(method, self.all_variants())

    def run_params(self, dataset: str, method: str, profile: str,
                   root: str | Path = ".") -> RunParams:
        """The params files and overrides of one run (``method`` may be a variant)."""
        return run_params(dataset, method, profile, root, self.params_dir, self.all_variants())

    def method_names(self, root: str | Path = ".") -> list[str]:
        """Every valid method name: the method files and the declared variants."""
        return sorted({*available(root, self.params_dir)["methods"], *self.all_variants()})

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
        grid = (self.variant_grids[spec.grid].table_grid() if isinstance(spec.grid, str)
                else None if spec.grid is None else spec.grid.model_dump())
        methods = ([m for row in grid["methods"] for m in row] if grid
                   else spec.methods or self.methods)
        return {"name": name, "title": spec.title or name,
                "profile": self._overrides.get("profile", spec.profile or self.profile),
                "dataset": datasets[0], "datasets": datasets, "paper_datasets": paper_datasets,
                "overridden": sorted(self._overrides), "methods": methods,
                "labels": dict(spec.labels), "source": source,
                "grid": grid,
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
        """Every profile / dataset / method named in the config has its params file (a
        method: or is a declared variant), and the variants check out against ``params/``."""
        known = available(root, self.params_dir)
        variants = self.all_variants()
        errors = variant_errors(variants, self.variant_grids, root, self.params_dir)
        if errors:
            raise ValueError("workflow config: " + "; ".join(errors))
        known["methods"] = sorted({*known["methods"], *variants})
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
                also = " or a `variants` entry" if kind == "methods" else ""
                raise ValueError(f"no params file for {kind} {', '.join(missing)}: expected "
                                 f"{self.params_dir}/{kind}/<name>.yaml{also} (have: "
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

