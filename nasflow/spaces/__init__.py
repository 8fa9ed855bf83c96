"""Search spaces behind one interface (:class:`~nasflow.spaces.base.SearchSpace`), registered
by name: ``darts``, ``rdarts_s1`` .. ``rdarts_s4``, ``nb201``.

This package's ``__init__`` stays light (the op registry and genotypes import
``nasflow.spaces.ops`` without pulling in every space); the built-in spaces register on the
first call that needs the registry.
"""

from __future__ import annotations

import os
from typing import Any

from nasflow.spaces.base import (
    SPACES,
    Edge,
    OpInfo,
    SearchSpace,
    SpaceParamsBase,
    register_space,
)

BUILTIN_SPACES = ("nasflow.spaces.darts", "nasflow.spaces.rdarts", "nasflow.spaces.nb201")


def load_builtin_spaces() -> dict[str, type[SearchSpace]]:
    """Import (once) the modules that register the built-in spaces; returns the registry."""
    import importlib

    for module in BUILTIN_SPACES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a built-in space's own import failed: a real error
                raise
    # one order whatever was imported first (the config union and its schema follow it):
    # built-in modules in BUILTIN_SPACES order, then any others, each in registration order
    def rank(name: str) -> int:
        module = SPACES[name].__module__
        hits = [i for i, m in enumerate(BUILTIN_SPACES) if module == m or module.startswith(m + ".")]
        return hits[0] if hits else len(BUILTIN_SPACES)

    ordered = sorted(SPACES, key=rank)
    if list(SPACES) != ordered:
        items = {name: SPACES[name] for name in ordered}
        SPACES.clear()
        SPACES.update(items)
    return SPACES


def build_space(params: SpaceParamsBase) -> SearchSpace:
    """The space object of a validated ``space`` params section."""
    return load_builtin_spaces()[params.name](params)


def space_by_name(name: str, **params: Any) -> SearchSpace:
    """A space with its default params (tests, benchmarks): ``space_by_name("nb201")``."""
    cls = load_builtin_spaces()[name]
    return cls(cls.Params(name=name, **params))


def genotype_kinds() -> dict[str, SearchSpace]:
    """One default space per genotype kind (``darts``, ``nb201``): the validator of that kind."""
    out: dict[str, SearchSpace] = {}
    for name in load_builtin_spaces():
        space = space_by_name(name)
        out.setdefault(space.genotype_kind, space)
    return out


def genotype_from_json(data: Any, source: str = "genotype") -> Any:
    """A genotype of any space from parsed JSON (a bare genotype, or a record embedding one
    under ``genotype``). The ``space`` tag picks the type; files without one are DARTS
    genotypes (the format before the registry)."""
    from nasflow.errors import NasflowError

    if isinstance(data, dict) and "genotype" in data and "normal" not in data and "arch" not in data:
        data = data["genotype"]
    if not isinstance(data, dict):
        raise NasflowError(f"{source}: a genotype must be a JSON object, not {type(data).__name__}")
    kind = data.get("space", "darts")
    kinds = genotype_kinds()
    if kind not in kinds:
        raise NasflowError(f"{source}: space: unknown genotype kind {kind!r}; known: "
                           f"{', '.join(kinds)}")
    return kinds[kind].genotype_from_json(data, source)


def load_genotype(path: str | os.PathLike) -> Any:
    from nasflow.io import read_json

    return genotype_from_json(read_json(path), str(path))


def published_genotypes() -> dict[str, Any]:
    """Published cells of every space, by name (DARTS_V2, DropNAS_C10, NB201 optimum, ...)."""
    from nasflow.genotype import PUBLISHED

    out = dict(PUBLISHED)
    for space_cls in load_builtin_spaces().values():
        out.update(getattr(space_cls, "published", {}))
    return out


def resolve_genotype(ref: str | os.PathLike) -> Any:
    """A published name (``DARTS_V2``) or a path to a genotype / result JSON of any space."""
    from nasflow.errors import NasflowError

    published = published_genotypes()
    if str(ref) in published:
        return published[str(ref)]
    if not os.path.exists(ref):
        raise NasflowError(f"{ref}: no such genotype file, and not a published genotype "
                           f"({', '.join(published)})")
    return load_genotype(ref)


def check_genotype_space(genotype: Any, space: SearchSpace, source: str) -> None:
    """Refuse a genotype of another kind than the configured space builds."""
    from nasflow.errors import NasflowError

    kind = getattr(genotype, "space", "darts")
    if kind != space.genotype_kind:
        raise NasflowError(f"{source}: a {kind!r} genotype, but params say space.name: "
                           f"{space.name} (its networks take {space.genotype_kind!r} genotypes)")


__all__ = [
    "SPACES", "Edge", "OpInfo", "SearchSpace", "SpaceParamsBase", "build_space",
    "check_genotype_space", "genotype_from_json", "load_builtin_spaces", "load_genotype",
    "published_genotypes", "register_space", "resolve_genotype", "space_by_name",
]
