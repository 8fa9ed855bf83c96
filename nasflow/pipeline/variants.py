"""Method variants as data: ``variants`` and ``variant_grids`` in ``workflow/config.yaml``.

A variant is a name that works wherever a method name does (``results/<dataset>_<variant>.json``,
tables, transfer ``<variant>@<source>``) without a params file of its own: a **base** (a method
with ``params/methods/<base>.yaml``, or another variant), optionally a search **space**
(``params/spaces/<space>.yaml``, composed right after the method file) and ``--set``
**overrides** of the method-level sections. A **grid** (DropNAS' 3x3 drop rates) declares the
product of its axes once and expands into one variant per cell, named by a template; the cell
equal to the base itself (``base_cell``) is the base, not a second copy of it.

Pure data and validation: no files are read here (:mod:`nasflow.pipeline.lookup` checks the
names against ``params/``).
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: sections a variant may override: the method file's (a profile or overlay never sets them)
OVERRIDE_SECTIONS = ("method", "space", "search", "derive", "retrain")
#: a method or variant name (also a Snakemake wildcard value and part of result paths)
VARIANT_NAME = r"^[a-z][a-z0-9_\-]*$"
OVERRIDE_KEY = rf"^(?:{'|'.join(OVERRIDE_SECTIONS)})(?:\.[a-z_][a-z0-9_]*)+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- --set values -------------------------------------------------------------------------
def format_value(value: Any, nested: bool = False) -> str:
    """``value`` as the YAML text that ``nasflow --set key=<text>`` reads back as ``value``
    (YAML 1.1 traps avoided: ``1e-05`` -> ``1.0e-05``, ``off`` -> ``"off"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, str):
        import yaml

        plain = (not nested and value.strip() == value and value != ""
                 and not re.search(r"[\s'\"#,:\[\]{}&*!|>%@`]", value))
        if plain:
            try:
                plain = yaml.safe_load(value) == value
            except yaml.YAMLError:
                plain = False
        return value if plain else json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v, True) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {format_value(v, True)}"
                               for k, v in value.items()) + "}"
    raise ValueError(f"cannot pass {value!r} ({type(value).__name__}) as a --set value")


def override(key: str, value: Any) -> str:
    """One ``--set`` argument, ``key=value``."""
    return f"{key}={format_value(value)}"


def _check_key(key: str) -> str:
    if not re.match(OVERRIDE_KEY, key):
        raise ValueError(
            f"override key {key!r} must be a dotted params key in one of the sections "
            f"{', '.join(OVERRIDE_SECTIONS)} (e.g. method.r_parametric)")
    return key


def _check_value(key: str, value: Any) -> Any:
    import yaml

    if yaml.safe_load(format_value(value)) != value:
        raise ValueError(f"{key}: {value!r} does not survive --set")
    return value


def _check_overrides(values: dict[str, Any]) -> dict[str, Any]:
    for key, value in values.items():
        _check_value(_check_key(key), value)
    return values


# ---- the declaration --------------------------------------------------------------------------
class VariantSpec(_Strict):
    """One variant: its base plus ``--set`` overrides (applied after every params file)."""

    base: str = Field(description="a method (params/methods/<base>.yaml) or another variant")
    space: str | None = Field(None, description="params/spaces/<space>.yaml (default: the "
                                                "base's); composed right after the method file")
    set: dict[str, Any] = Field(default_factory=dict,
                                description="dotted params key -> value (--set overrides)")
    description: str | None = None

    @field_validator("set")
    @classmethod
    def _overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_overrides(value)


class GridAxis(_Strict):
    """One axis of a grid: the params key it sets and its values, by label."""

    key: str = Field(description="dotted params key, e.g. method.r_parametric")
    values: dict[str, Any] = Field(min_length=1,
                                   description="label (used in the variant name) -> value")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return _check_key(value)

    @field_validator("values")
    @classmethod
    def _values(cls, values: dict[str, Any]) -> dict[str, Any]:
        for label, value in values.items():
            _check_value(label, value)
            if not re.match(r"^[a-z0-9_.+\-]+$", label):
                raise ValueError(f"axis label {label!r}: lower-case letters, digits, _ . + - only")
        return values


class VariantGrid(_Strict):
    """A product of axes over one base, e.g. DropNAS' drop rates:
    ``name: dropnas_rp{r_p}_rnp{r_np}`` with axes ``r_np`` (rows) and ``r_p`` (columns)."""

    base: str = Field(description="a method or a variant")
    space: str | None = Field(None, description="params/spaces/<space>.yaml of every cell")
    name: str = Field(description="variant name template, one {axis} field per axis")
    axes: dict[str, GridAxis] = Field(min_length=1, description="in order: a table's rows, "
                                                                "then its columns")
    base_cell: dict[str, str] | None = Field(
        None, description="axis -> label of the cell equal to the base: that cell is the "
                          "base itself (no second copy of its runs)")
    set: dict[str, Any] = Field(default_factory=dict, description="overrides of every cell")
    description: str | None = None

    @field_validator("set")
    @classmethod
    def _overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_overrides(value)

    @model_validator(mode="after")
    def _shape(self) -> VariantGrid:
        fields = {f for _, f, _, _ in string.Formatter().parse(self.name) if f is not None}
        if fields != set(self.axes):
            raise ValueError(f"grid name {self.name!r} must use each axis once as "
                             f"{{axis}}: {', '.join(self.axes)}")
        if self.base_cell is not None:
            if set(self.base_cell) != set(self.axes):
                raise ValueError(f"base_cell must give a label for each axis: "
                                 f"{', '.join(self.axes)}")
            for axis, label in self.base_cell.items():
                if label not in self.axes[axis].values:
                    raise ValueError(f"base_cell.{axis}: {label!r} is not a label of that axis")
        keys = [a.key for a in self.axes.values()]
        if len(set(keys)) != len(keys):
            raise ValueError("two axes set the same key")
        return self

    def cells(self) -> list[tuple[dict[str, str], str]]:
        """Every cell in row-major order: (axis -> label, variant name or the base)."""
        out: list[tuple[dict[str, str], str]] = [({}, "")]
        for axis, spec in self.axes.items():
            out = [({**labels, axis: label}, "") for labels, _ in out for label in spec.values]
        return [(labels, self.base if labels == self.base_cell else self.name.format(**labels))
                for labels, _ in out]

    def expand(self) -> dict[str, VariantSpec]:
        """One variant per cell (the base cell excluded)."""
        out = {}
        for labels, name in self.cells():
            if labels == self.base_cell:
                continue
            sets = dict(self.set)
            sets.update({self.axes[a].key: self.axes[a].values[lab] for a, lab in labels.items()})
            out[name] = VariantSpec(base=self.base, space=self.space, set=sets,
                                    description=self.description)
        return out

    def table_grid(self) -> dict[str, Any]:
        """The 2-axis grid as a table lays it out (rows: first axis, columns: second)."""
        if len(self.axes) != 2:
            raise ValueError(f"a table grid needs 2 axes, this one has {len(self.axes)}")
        (row, rs), (col, cs) = self.axes.items()
        names = {tuple(lab[a] for a in (row, col)): n for lab, n in self.cells()}
        return {"row_param": row, "col_param": col, "rows": list(rs.values),
                "cols": list(cs.values),
                "methods": [[names[(r, c)] for c in cs.values] for r in rs.values]}


# ---- resolution -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """How one method name composes: the method file, the space file, the overrides."""

    name: str
    method: str                   # params/methods/<method>.yaml
    space: str | None             # params/spaces/<space>.yaml
    overrides: tuple[str, ...]    # --set texts, the base's first
    chain: tuple[str, ...]        # name, its base, ..., the method


def expand_variants(variants: Mapping[str, VariantSpec],
                    grids: Mapping[str, VariantGrid]) -> dict[str, VariantSpec]:
    """Every declared variant, the grids expanded; a name declared twice is an error."""
    out = dict(variants)
    for gname, grid in grids.items():
        for name, spec in grid.expand().items():
            if name in out:
                raise ValueError(f"variant {name!r} (of grid {gname!r}) is declared twice")
            out[name] = spec
    for name in out:
        if not re.match(VARIANT_NAME, name):
            raise ValueError(f"variant name {name!r} must match {VARIANT_NAME}")
    for name in out:
        resolve(name, out)  # cycles
    return out


def resolve(name: str, variants: Mapping[str, VariantSpec]) -> Recipe:
    """Follow ``base`` until a name that is no variant (the method); collect the overrides."""
    chain = [name]
    specs = []
    while chain[-1] in variants:
        spec = variants[chain[-1]]
        specs.append(spec)
        if spec.base in chain:
            raise ValueError(f"variants {' -> '.join([*chain, spec.base])}: a cycle")
        chain.append(spec.base)
    space = next((s.space for s in specs if s.space is not None), None)
    overrides: list[str] = []
    for spec in reversed(specs):  # the base's overrides first, the variant's own last
        overrides += [override(k, v) for k, v in spec.set.items()]
    return Recipe(name, chain[-1], space, tuple(overrides), tuple(chain))
