"""Compose, validate and resolve a run's params.

A run config is the deep merge, in order, of params YAML files (conventionally dataset,
method, profile) and ``--set key.path=value`` overrides, validated as :class:`RunConfig`.
Every error names the file that supplied the offending key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError

from nasflow.errors import ParamsError
from nasflow.methods import METHODS
from nasflow.spaces import load_builtin_spaces
from nasflow.params import (
    DatasetParams,
    DeriveParams,
    EvaluateParams,
    RetrainParams,
    RuntimeParams,
    SearchParams,
    StrictModel,
    TrackingParams,
)

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


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(str(path), "(file)", "params file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(parse)"
        raise ParamsError(str(path), where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(str(path), "(top level)", "must be a mapping of sections")
    return data


def _merge(base: dict, new: dict, origin: dict, source: str, prefix: tuple = ()) -> None:
    """Deep-merge ``new`` into ``base``, recording which source set each leaf key."""
    for key, value in new.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, origin, source, path)
        else:
            base[key] = value
            origin[path] = source
            if isinstance(value, dict):  # every nested leaf comes from this source
                _record(value, origin, source, path)


def _record(value: dict, origin: dict, source: str, prefix: tuple) -> None:
    for key, sub in value.items():
        origin[(*prefix, str(key))] = source
        if isinstance(sub, dict):
            _record(sub, origin, source, (*prefix, str(key)))


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ParamsError("--set", text, "expected key.path=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


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
        _merge(merged, nested, origin, f"--set {text}")
    return merged, origin


def load_config(files: list[str | os.PathLike], overrides: list[str] = ()) -> RunConfig:
    """Compose and validate; raise one :class:`ParamsError` naming file and key."""
    merged, origin = compose(files, overrides)
    method = merged.get("method")
    if isinstance(method, dict) and method.get("name") not in METHODS:
        src = origin.get(("method", "name"), ", ".join(map(str, files)))
        raise ParamsError(src, "method.name",
                          f"unknown method {method.get('name')!r}; known: {', '.join(METHODS)}")
    space = merged.get("space")
    spaces = load_builtin_spaces()
    if isinstance(space, dict) and space.get("name", "darts") not in spaces:
        src = origin.get(("space", "name"), ", ".join(map(str, files)))
        raise ParamsError(src, "space.name",
                          f"unknown space {space.get('name')!r}; known: {', '.join(spaces)}")
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err["loc"])
        # drop the union tag pydantic inserts for discriminated unions (method.<name>.field)
        if len(loc) >= 2 and ((loc[0] == "method" and loc[1] in METHODS)
                              or (loc[0] == "space" and loc[1] in load_builtin_spaces())):
            loc = (loc[0], *loc[2:])
        key = ".".join(loc) or "(top level)"
        src = _origin_of(loc, origin) or ", ".join(map(str, files)) or "(defaults)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ParamsError(src, key, msg) from None


def _origin_of(loc: tuple, origin: dict) -> str | None:
    """The source that set ``loc``, a parent of it, or (for a section-level error) the last
    source that set any key inside it."""
    inside = [src for path, src in origin.items() if len(path) > len(loc) and path[: len(loc)] == loc]
    if inside:
        return inside[-1]
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
