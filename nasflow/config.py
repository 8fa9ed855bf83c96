"""Compose, validate and resolve a run's params.

A run config is the deep merge, in order, of params YAML files (conventionally dataset,
method, profile) and ``--set key.path=value`` overrides, validated as :class:`RunConfig`.
Every error names the file that supplied the offending key.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from nasflow.errors import ParamsError
from nasflow.loaders import clip
from nasflow.methods import METHODS
from nasflow.params import (
    DatasetParams,
    DeriveParams,
    EvaluateParams,
    RelationError,
    RetrainParams,
    RuntimeParams,
    SearchParams,
    StrictModel,
    TrackingParams,
)
from nasflow.spaces import build_space, load_builtin_spaces


def _space_tag(value: Any) -> str:
    """The ``space`` section's tag: ``name``, ``darts`` when absent (files before the registry)."""
    if isinstance(value, dict):
        return str(value.get("name", "darts"))
    return str(getattr(value, "name", "darts"))


SpaceParams = Annotated[
    Union[tuple(Annotated[cls.Params, Tag(name)]  # noqa: UP007
                for name, cls in load_builtin_spaces().items())],
    Discriminator(_space_tag),
]

MethodParams = Annotated[
    Union[tuple(cls.Params for cls in METHODS.values())],  # noqa: UP007
    Field(discriminator="name"),
]


class RunConfig(StrictModel):
    """Everything one pipeline run needs; each stage reads its own section."""

    dataset: DatasetParams
    space: SpaceParams = Field(default_factory=lambda: load_builtin_spaces()["darts"].Params())
    method: MethodParams
    search: SearchParams = SearchParams()
    derive: DeriveParams = DeriveParams()
    retrain: RetrainParams = RetrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    runtime: RuntimeParams = RuntimeParams()
    tracking: TrackingParams = TrackingParams()

    @model_validator(mode="after")
    def _relations(self) -> RunConfig:
        """Relations between sections (each section's own relations live in its model)."""
        check_split(self)
        check_space_and_derive(self)
        build_space(self.space).check_run(self)
        return self


def is_bilevel(config: RunConfig) -> bool:
    """Whether the method trains alpha on a held-out split (``search.train_portion``)."""
    cls = METHODS.get(config.method.name)
    return bool(getattr(cls, "bilevel", True)) and not getattr(config.method, "one_level", False)


def check_split(config: RunConfig) -> None:
    """A bilevel method needs images on both sides of ``search.train_portion``; a known
    ``dataset.limit_train`` must hold at least one batch of each split."""
    s = config.search
    bilevel = is_bilevel(config)
    name = config.method.name
    if bilevel and s.train_portion >= 1.0:
        keys = ("search.train_portion", "method.name")
        if hasattr(config.method, "one_level"):
            keys += ("method.one_level",)
        raise RelationError(keys, f"search.train_portion = {s.train_portion} leaves no images for "
                            f"alpha, but method {name} is bilevel: use a portion in (0, 1), e.g. "
                            "0.5" + (", or method.one_level: true" if "method.one_level" in keys else ""))
    n = config.dataset.limit_train
    if n is None:
        return
    if bilevel:
        cut = math.floor(s.train_portion * n)
        for part, size in (("the weights", cut), ("alpha", n - cut)):
            if size < s.batch_size:
                raise RelationError(("search.batch_size", "search.train_portion", "dataset.limit_train"),
                                    f"dataset.limit_train = {n} with search.train_portion = "
                                    f"{s.train_portion} leaves {size} images for {part}, less than "
                                    f"one batch (search.batch_size = {s.batch_size})")
    elif n < s.batch_size:
        raise RelationError(("search.batch_size", "dataset.limit_train"),
                            f"dataset.limit_train = {n} images are less than one batch "
                            f"(search.batch_size = {s.batch_size})")
    if n < config.retrain.batch_size:
        raise RelationError(("retrain.batch_size", "dataset.limit_train"),
                            f"dataset.limit_train = {n} images are less than one batch "
                            f"(retrain.batch_size = {config.retrain.batch_size})")


def check_space_and_derive(config: RunConfig) -> None:
    """The space's cells must have an op other than ``none``, and (DARTS-kind genotypes, which
    keep ``derive.edges_per_node`` input edges per node) every node needs that many input
    edges with an op other than ``none``."""
    from nasflow.errors import NasflowError
    from nasflow.spaces import build_space

    params = config.space
    try:
        space = build_space(params)
        edge_ops = space.edge_ops
        node_rows = space.node_edges()
    except (ValueError, NasflowError) as exc:
        raise RelationError(("space",), clip(str(exc), 300)) from None
    key = next((f"space.{k}" for k in ("edge_ops", "ops") if getattr(params, k, None)), "space")
    k = config.derive.edges_per_node
    keeps_edges = getattr(space, "genotype_kind", "darts") == "darts"
    for cell, lists in edge_ops.items():
        if lists and all(op == "none" for edge in lists for op in edge):
            raise RelationError((key,), f"every op of the {cell} cell is 'none': a cell needs at "
                                "least one other op (e.g. skip_connect, sep_conv_3x3)")
        if not keeps_edges:
            continue
        for node, rows in enumerate(node_rows):
            if len(rows) < k:
                raise RelationError(("derive.edges_per_node", key if key != "space" else "space.nodes"),
                                    f"derive.edges_per_node = {k}, but node {node} of a cell has only "
                                    f"{len(rows)} input edges")
            real = sum(1 for r in rows if any(op != "none" for op in lists[r]))
            if real < k:
                raise RelationError((key, "derive.edges_per_node"),
                                    f"node {node} of the {cell} cell has {real} input edge(s) with an "
                                    f"op other than 'none', derive.edges_per_node = {k} needs {k}")


def _read_yaml(path: Path) -> dict[str, Any]:
    from nasflow.errors import InputError
    from nasflow.loaders import load_yaml

    try:
        data = load_yaml(path, "params file")
    except ParamsError:
        raise
    except InputError as exc:  # unreadable, not UTF-8, bad syntax, duplicate key
        raise ParamsError(exc.file, exc.key or "", exc.reason) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(str(path), "(top level)",
                          f"must be a mapping of sections (dataset:, search:, ...), not {_kind(data)}")
    _check_keys(data, str(path))
    return data


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {value}"
    if isinstance(value, int | float):
        return f"the number {clip(value, 40)}"
    if isinstance(value, str):
        return f"the string {clip(repr(value), 40)}"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _check_keys(data: Any, source: str, prefix: tuple = ()) -> None:
    """Every key is a string (YAML reads bare yes / no / on / off / null and numbers as other
    types, which would never match a params key)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                where = ".".join(prefix) or "(top level)"
                raise ParamsError(source, where, f"key {clip(repr(key), 40)} is not a string (a bare "
                                  "yes / no / on / off / null or number): quote it")
            _check_keys(value, source, (*prefix, key))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            _check_keys(item, source, (*prefix[:-1], f"{prefix[-1]}[{i}]") if prefix else prefix)


def _merge(base: dict, new: dict, origin: dict, source: str, prefix: tuple = ()) -> None:
    """Deep-merge ``new`` into ``base``, recording which source set each leaf key."""
    for key, value in new.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, origin, source, path)
        else:
            if key in base:  # replaced whole: what earlier sources set inside it is gone
                for old in [p for p in origin if len(p) > len(path) and p[: len(path)] == path]:
                    del origin[old]
            base[key] = value
            origin[path] = source
            if isinstance(value, dict):  # every nested leaf comes from this source
                _record(value, origin, source, path)


def _record(value: dict, origin: dict, source: str, prefix: tuple) -> None:
    for key, sub in value.items():
        origin[(*prefix, str(key))] = source
        if isinstance(sub, dict):
            _record(sub, origin, source, (*prefix, str(key)))


def _override_source(text: str) -> str:
    return f"--set {clip(text, 100)}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``key.path=value``: the value is read as YAML (``3``, ``0.1``, ``[1, 2]``, ``true``; an
    empty value is null)."""
    from nasflow.errors import InputError
    from nasflow.loaders import parse_yaml

    source = _override_source(text)
    if "=" not in text:
        raise ParamsError("--set", clip(text, 100), "expected key.path=value")
    key, raw = text.split("=", 1)
    keys = key.strip().split(".")
    if not key.strip() or any(not k.strip() or k != k.strip() for k in keys):
        raise ParamsError(source, clip(key, 100) or "(empty)",
                          "the key path has an empty part or spaces (expected e.g. search.epochs)")
    if not raw.strip():
        return keys, None
    try:
        value = parse_yaml(raw, source, "YAML value")
    except InputError as exc:
        raise ParamsError(source, clip(key, 100), f"{exc.reason} (quote strings: "
                          "--set 'dataset.root=\"my data\"')") from None
    _check_keys(value, source, tuple(keys))
    return keys, value


def compose(files: list[str | os.PathLike], overrides: list[str] = ()) -> tuple[dict, dict]:
    merged: dict[str, Any] = {}
    origin: dict[tuple, str] = {}
    for f in files:
        _merge(merged, _read_yaml(Path(f)), origin, str(f))
    for text in overrides:
        keys, value = parse_override(text)
        nested: dict[str, Any] = value
        for k in reversed(keys):
            nested = {k: nested}
        _merge(merged, nested, origin, _override_source(text))
    return merged, origin


_MAPPING_ERRORS = ("model_type", "dict_type", "model_attributes_type")


def load_config(files: list[str | os.PathLike], overrides: list[str] = ()) -> RunConfig:
    """Compose and validate; raise one :class:`ParamsError` naming file and key."""
    merged, origin = compose(files, overrides)
    fallback = ", ".join(map(str, files)) or "(defaults)"
    method = merged.get("method")
    if isinstance(method, dict) and not (isinstance(method.get("name"), str)
                                         and method["name"] in METHODS):
        src = origin.get(("method", "name"), fallback)
        raise ParamsError(src, "method.name",
                          f"unknown method {clip(repr(method.get('name')), 60)}; known: "
                          f"{', '.join(METHODS)}")
    space = merged.get("space")
    spaces = load_builtin_spaces()
    if isinstance(space, dict) and not (isinstance(space.get("name", "darts"), str)
                                        and space.get("name", "darts") in spaces):
        src = origin.get(("space", "name"), fallback)
        raise ParamsError(src, "space.name",
                          f"unknown space {clip(repr(space.get('name')), 60)}; known: "
                          f"{', '.join(spaces)}")
    dataset = merged.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("name"), str):
        # checked here, not in DatasetParams: nasflow.params sits below the dataset registry
        from nasflow.data import available_datasets

        if dataset["name"] not in available_datasets():
            raise ParamsError(origin.get(("dataset", "name"), fallback), "dataset.name",
                              f"unknown dataset {clip(repr(dataset['name']), 60)}; known: "
                              f"{', '.join(available_datasets())}")
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        err = errors[0]
        loc = tuple(str(p) for p in err["loc"])
        # drop the union tag pydantic inserts for discriminated unions (method.<name>.field)
        if len(loc) >= 2 and ((loc[0] == "method" and loc[1] in METHODS)
                              or (loc[0] == "space" and loc[1] in load_builtin_spaces())):
            loc = (loc[0], *loc[2:])
        relation = (err.get("ctx") or {}).get("error")
        if isinstance(relation, RelationError):
            keys = [".".join((*loc, k)) for k in relation.keys]
            sources = list(dict.fromkeys(
                s for k in keys if (s := _origin_of(tuple(k.split(".")), origin, inside=False))))
            raise ParamsError(", ".join(sources) or fallback, ", ".join(keys),
                              clip(str(relation), 400)) from None
        key = ".".join(loc) or "(top level)"
        src = _origin_of(loc, origin) or fallback
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _suggestion(loc, merged)
        elif err["type"] in _MAPPING_ERRORS:
            msg = f"must be a mapping of keys, not {_kind(err.get('input'))}"
            if err.get("input") is None and len(loc) == 1:
                msg += f" (write `{loc[0]}: {{}}` for an empty section, or leave it out)"
        elif err["type"] == "finite_number":
            msg = f"must be a finite number, not {clip(err.get('input'), 40)}"
        if len(errors) > 1:
            msg += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        raise ParamsError(src, clip(key, 120), clip(msg, 400)) from None


def _suggestion(loc: tuple, merged: dict) -> str:
    """`` (did you mean search.epochs?)`` for a misspelt key."""
    import difflib

    model: Any = RunConfig
    for part in loc[:-1]:
        if model is RunConfig and part == "method":
            section = merged.get("method")
            name = section.get("name") if isinstance(section, dict) else None
            model = METHODS[name].Params if isinstance(name, str) and name in METHODS else None
            continue
        if model is RunConfig and part == "space":
            section, spaces = merged.get("space"), load_builtin_spaces()
            name = section.get("name", "darts") if isinstance(section, dict) else None
            model = spaces[name].Params if isinstance(name, str) and name in spaces else None
            continue
        field = model.model_fields.get(part) if model is not None else None
        ann = getattr(field, "annotation", None)
        model = ann if isinstance(ann, type) and issubclass(ann, StrictModel) else None
        if model is None:
            return ""
    if model is None:
        return ""
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.75)
    return f" (did you mean {'.'.join((*loc[:-1], close[0]))}?)" if close else ""


def _origin_of(loc: tuple, origin: dict, inside: bool = True) -> str | None:
    """The source that set ``loc``, a parent of it, or (for a section-level error) the last
    source that set any key inside it."""
    if inside:
        within = [src for path, src in origin.items() if len(path) > len(loc) and path[: len(loc)] == loc]
        if within:
            return within[-1]
    for n in range(len(loc), 0, -1):
        if loc[:n] in origin:
            return origin[loc[:n]]
    return None


def resolved(config: RunConfig) -> dict[str, Any]:
    """The fully resolved config as plain data (saved next to every output)."""
    return config.model_dump(mode="json")


def json_schema() -> dict[str, Any]:
    """JSON schema of a run config, generated from the pydantic models (one definition)."""
    return RunConfig.model_json_schema()
