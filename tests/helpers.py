"""Tiny supernets for fast, exact tests of the search methods (no data files needed)."""

from __future__ import annotations

import torch

from nasflow.methods import build_method
from nasflow.methods.base import METHODS
from nasflow.params import SearchParams, SpaceParams
from nasflow.spaces import SearchNetwork, build_cell_space


def tiny_search(method: str = "dropnas", *, layers: int = 3, C: int = 2, in_channels: int = 1,
                num_classes: int = 3, dtype=torch.float32, space: SpaceParams | None = None,
                search_overrides: dict | None = None, device: torch.device | str = "cpu",
                **method_params):
    space_params = space or SpaceParams()
    cell_space = build_cell_space(space_params)
    search = SearchParams(epochs=4, batch_size=4, layers=layers, init_channels=C, seed=0,
                          alpha_init_std=0.5, **(search_overrides or {}))
    torch.manual_seed(0)
    device = torch.device(device)
    model = SearchNetwork(cell_space, C, num_classes, layers, in_channels).to(device, dtype)
    params = METHODS[method].Params(**method_params)
    m = build_method(params, search)
    m.adapt_search_space(model, cell_space, device,
                         generator=torch.Generator().manual_seed(0))
    if dtype != torch.float32:
        with torch.no_grad():
            for c in m.alphas:
                m.alphas[c].data = m.alphas[c].data.to(dtype)
    return m


def batch(n: int = 4, in_channels: int = 1, size: int = 8, num_classes: int = 3, seed: int = 0,
          dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_channels, size, size, generator=g, dtype=dtype)
    y = torch.randint(0, num_classes, (n,), generator=g)
    return x, y
