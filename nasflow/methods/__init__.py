"""Search methods: one module each, registered by name."""

from nasflow.methods import beta_darts, darts, dropnas  # noqa: F401  (registration)
from nasflow.methods.base import METHODS, MethodParamsBase, SearchMethod, register_method

__all__ = ["METHODS", "MethodParamsBase", "SearchMethod", "build_method", "register_method"]


def build_method(params: MethodParamsBase, search) -> SearchMethod:
    return METHODS[params.name](params, search)
