"""Tiny supernets for fast, exact tests of the search methods (no data files needed)."""

from __future__ import annotations

import torch

from nasflow.methods import build_method
from nasflow.methods.base import METHODS
from nasflow.params import RuntimeParams, SearchParams
from nasflow.spaces import build_space
from nasflow.spaces.darts import DartsSpaceParams as SpaceParams
from nasflow.train.runtime import autocast, prepare_model


def tiny_search(method: str = "dropnas", *, layers: int = 3, C: int = 2, in_channels: int = 1,
                num_classes: int = 3, dtype=torch.float32, space: SpaceParams | None = None,
                search_overrides: dict | None = None, device: torch.device | str = "cpu",
                **method_params):
    space_params = space or SpaceParams()
    cell_space = build_space(space_params)
    search = SearchParams(epochs=4, batch_size=4, layers=layers, init_channels=C, seed=0,
                          alpha_init_std=0.5, **(search_overrides or {}))
    torch.manual_seed(0)
    device = torch.device(device)
    params = METHODS[method].Params(**method_params)
    m = build_method(params, search)
    m.bind_space(cell_space)
    model = cell_space.build_supernet(C=C, layers=layers, num_classes=num_classes,
                                      in_channels=in_channels, **m.supernet_options())
    model = model.to(device, dtype)
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


def search_steps(method: str, channels_last: bool, amp: str = "off", steps: int = 3,
         dilated_conv: str = "native", share_relu: bool = False, phase_subsample: bool = False,
         fused_mixing: bool = False, dtype: torch.dtype = torch.float32, device: str = "cpu",
         **method_params):
    """Three search steps on fixed batches with the given switches; returns the method and the
    alphas it started from."""
    device = torch.device(device)
    kw = {"r_parametric": 0.2, "r_nonparametric": 0.2} if method == "dropnas" else {}
    m = tiny_search(method, C=4, search_overrides={"alpha_lr": 0.01}, device=device, **kw,
                    **method_params)
    m.model.to(dtype)
    for alpha in m.alphas.values():  # in place: the optimizer holds these parameters
        alpha.data = alpha.data.to(dtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    runtime = RuntimeParams(channels_last=channels_last, amp=amp, dilated_conv=dilated_conv,
                            share_relu=share_relu, phase_subsample=phase_subsample,
                            fused_mixing=fused_mixing)
    prepare_model(m.model, runtime, device)
    start = {c: a.detach().clone() for c, a in m.alphas.items()}
    for s in range(steps):
        xt, yt = batch(n=8, seed=s)
        xv, yv = batch(n=8, seed=100 + s)
        with autocast(runtime, device):
            m.step((xt.to(device, dtype).contiguous(memory_format=fmt), yt.to(device)),
                   (xv.to(device, dtype).contiguous(memory_format=fmt), yv.to(device)))
    return m, start


def bf16_alpha_grad_error(device: str = "cpu") -> tuple[float, float]:
    """One DropNAS forward/backward on a tiny C=4 supernet in fp32 and under bf16 autocast:
    the relative L2 error and the cosine of the bf16 alpha gradient against the fp32 one."""
    grads = {}
    device = torch.device(device)
    for amp in ("off", "bf16"):
        m = tiny_search("dropnas", C=4, r_parametric=0.2, r_nonparametric=0.2, device=device)
        masks = m.sample_active()
        m._last_masks = masks
        x, y = batch(n=16, seed=0)
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        m.model.to(memory_format=torch.channels_last)
        with autocast(RuntimeParams(amp=amp), device):
            loss, _ = m.loss(x, y.to(device), masks)
        loss.backward()
        grads[amp] = torch.cat([a.grad.flatten() for a in m.arch_parameters()]).float()
    g32, g16 = grads["off"], grads["bf16"]
    rel = ((g16 - g32).norm() / g32.norm()).item()
    cos = torch.nn.functional.cosine_similarity(g16, g32, dim=0).item()
    return rel, cos
