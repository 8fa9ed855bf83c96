"""Params lookup: which params files and ``--set`` overrides make up one run.

A run's params are, in composition order (later wins): ``params/datasets/<dataset>.yaml``,
``params/methods/<method>.yaml``, ``params/spaces/<space>.yaml`` (if the variant picks a
space), ``params/overlays/<dataset>.yaml`` (if present: a recipe that must beat the method
file, e.g. ImageNet retraining), ``params/profiles/<profile>.yaml``; then the variant's
overrides and the run's own (seeds). ``<method>`` may be a variant
(:mod:`nasflow.pipeline.variants`): it then names its base method's file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasflow.pipeline.variants import VariantGrid, VariantSpec, format_value, resolve

#: the kinds of params files, one folder each under params/
KINDS = ("datasets", "methods", "spaces", "overlays", "profiles")


def available(root: str | Path = ".", params_dir: str = "params") -> dict[str, list[str]]:
    """Names with a params file, per kind: ``{"datasets": [...], "methods": [...], ...}``
    (methods: the files only; variants come from the workflow config)."""
    base = Path(root) / params_dir
    return {kind: sorted(p.stem for p in (base / kind).glob("*.yaml")) for kind in KINDS}


@dataclass(frozen=True)
class RunParams:
    """The params files and ``--set`` overrides of one run, in composition order."""

    files: list[str]
    overrides: list[str] = field(default_factory=list)

    def args(self, extra: Sequence[str] = ()) -> str:
        return params_args(self.files, [*self.overrides, *extra])


def run_params(dataset: str, method: str, profile: str, root: str | Path = ".",
               params_dir: str = "params",
               variants: Mapping[str, VariantSpec] | None = None) -> RunParams:
    """The files and overrides of one (dataset, method or variant, profile); paths relative
    to ``root``. ``variants``: every declared variant (PipelineConfig.all_variants())."""
    recipe = resolve(method, variants or {})
    files = [f"{params_dir}/datasets/{dataset}.yaml", f"{params_dir}/methods/{recipe.method}.yaml"]
    if recipe.space is not None:
        files.append(f"{params_dir}/spaces/{recipe.space}.yaml")
    overlay = f"{params_dir}/overlays/{dataset}.yaml"
    if (Path(root) / overlay).is_file():
        files.append(overlay)
    files.append(f"{params_dir}/profiles/{profile}.yaml")
    return RunParams(files, list(recipe.overrides))


def params_files(dataset: str, method: str, profile: str, root: str | Path = ".",
                 params_dir: str = "params",
                 variants: Mapping[str, VariantSpec] | None = None) -> list[str]:
    """The params files of one run, in composition order (see :func:`run_params`)."""
    return run_params(dataset, method, profile, root, params_dir, variants).files


def params_args(files: Sequence[str], overrides: Sequence[str] = ()) -> str:
    """``--params F ... --set k=v ...`` as one shell-quoted string."""
    import shlex

    parts = [f"--params {shlex.quote(f)}" for f in files]
    parts += [f"--set {shlex.quote(o)}" for o in overrides]
    return " ".join(parts)


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def _get(data: dict[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def variant_errors(variants: Mapping[str, VariantSpec], grids: Mapping[str, VariantGrid],
                   root: str | Path = ".", params_dir: str = "params") -> list[str]:
    """Names of the declaration checked against ``params/`` (YAML only, no torch): every
    chain ends at a method file, spaces have files, no variant shadows a method file, no
    override sets a key that a profile or overlay sets (the override would silently beat
    it), and a grid's base cell really is its base."""
    known = available(root, params_dir)
    base = Path(root) / params_dir
    errors = []
    later = {f"{kind}/{name}": _yaml(base / kind / f"{name}.yaml")
             for kind in ("overlays", "profiles") for name in known[kind]}
    for name, spec in variants.items():
        if name in known["methods"]:
            errors.append(f"variant {name!r} shadows params/methods/{name}.yaml: rename one")
            continue
        recipe = resolve(name, variants)
        if recipe.method not in known["methods"]:
            errors.append(f"variant {name!r}: unknown base method {recipe.method!r} (chain "
                          f"{' -> '.join(recipe.chain)}); methods: {', '.join(known['methods'])}; "
                          f"variants: {', '.join(sorted(variants))}")
        if spec.space is not None and spec.space not in known["spaces"]:
            errors.append(f"variant {name!r}: no params file for space {spec.space!r}: expected "
                          f"{params_dir}/spaces/{spec.space}.yaml (have: "
                          f"{', '.join(known['spaces']) or 'none'})")
        for key in spec.set:
            for where, data in later.items():
                if _get(data, key)[0]:
                    errors.append(f"variant {name!r} overrides {key}, which "
                                  f"{params_dir}/{where}.yaml sets: overrides apply after the "
                                  "profile and overlay and would beat them")
    for gname, grid in grids.items():
        if grid.space is not None and grid.space not in known["spaces"]:
            errors.append(f"grid {gname!r}: no params file {params_dir}/spaces/{grid.space}.yaml")
        if grid.base_cell is None or errors:
            continue
        recipe = resolve(grid.base, variants)
        data = _yaml(base / "methods" / f"{recipe.method}.yaml")
        sets = dict(o.split("=", 1) for o in recipe.overrides)
        for axis, label in grid.base_cell.items():
            key, value = grid.axes[axis].key, grid.axes[axis].values[label]
            have = sets.get(key)
            if have is None:
                found, raw = _get(data, key)
                have = format_value(raw) if found else None
            if have != format_value(value):
                errors.append(f"grid {gname!r}: base_cell {axis}={label} sets {key}={value!r}, "
                              f"but {grid.base!r} has {have}: that cell is not the base")
    return errors


def check_params(root: str | Path = ".", params_dir: str = "params",
                 variants: Mapping[str, VariantSpec] | None = None) -> list[str]:
    """Compose every dataset x (method or variant) x profile into a RunConfig; the errors."""
    from nasflow.config import load_config
    from nasflow.errors import NasflowError

    known = available(root, params_dir)
    errors = []
    for d in known["datasets"]:
        for m in [*known["methods"], *sorted(variants or {})]:
            for p in known["profiles"]:
                run = run_params(d, m, p, root, params_dir, variants)
                try:
                    load_config([str(Path(root) / f) for f in run.files],
                                [*run.overrides, "search.seed=0", "retrain.seed=0"])
                except NasflowError as exc:
                    errors.append(f"{d} x {m} x {p}: {exc}")
    return errors
