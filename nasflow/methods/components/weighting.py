"""Op weighting: how per-edge architecture parameters become the weights the supernet mixes
with, and how strengths are read off them for derivation (host side, float64)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def softmax(alpha: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """DARTS Eq. 2: ``softmax`` over each edge's ops. With ``keep`` (bool, same shape) the
    softmax runs over the kept ops only and dropped ops get weight 0 (DropNAS Sec. 4.1)."""
    if keep is None:
        return F.softmax(alpha, dim=-1)
    return F.softmax(alpha.masked_fill(~keep, -float("inf")), dim=-1)


def sigmoid(alpha: torch.Tensor) -> torch.Tensor:
    """FairDARTS Eq. 3: independent ``sigmoid(alpha)`` per op (no competition)."""
    return torch.sigmoid(alpha)


def gumbel_softmax(alpha: torch.Tensor, tau: float, hard: bool = True,
                   generator: torch.Generator | None = None, max_tries: int = 100) -> torch.Tensor:
    """GDAS (Dong & Yang 2019, Eq. 3-5, ``search_model_gdas.py``): with Gumbel noise
    ``g = -log(E)``, ``E ~ Exp(1)``, ``p = softmax((log_softmax(alpha) + g) / tau)``.
    ``hard``: the straight-through one-hot ``h = onehot(argmax p) - p.detach() + p`` (forward
    value one-hot, gradient of ``p``). Resampled while a draw is not finite, as released."""
    logp = F.log_softmax(alpha, dim=-1)
    for _ in range(max_tries):
        e = torch.empty_like(alpha).exponential_(generator=generator)
        p = F.softmax((logp - e.log()) / tau, dim=-1)
        if torch.isfinite(p).all():
            break
    else:
        raise FloatingPointError("Gumbel-softmax: no finite sample in 100 draws (alphas diverged?)")
    if not hard:
        return p
    index = p.argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(p).scatter_(-1, index, 1.0)
    return one_hot - p.detach() + p


def dirichlet(alpha: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """DrNAS (Chen et al. 2021, Eq. 2): ``theta ~ Dirichlet(ELU(alpha) + 1)`` per edge, drawn
    with the pathwise (reparameterised) gradient. Invalid (padded) columns get weight 0."""
    conc = F.elu(alpha) + 1
    if valid is not None:
        conc = torch.where(valid, conc, torch.ones_like(conc))
    theta = torch.distributions.Dirichlet(conc).rsample()
    if valid is not None:
        theta = theta * valid
        theta = theta / theta.sum(-1, keepdim=True)
    return theta


@dataclass(frozen=True)
class LinearSchedule:
    """``start -> end`` linearly over ``epochs`` epochs: value at epoch ``e`` is
    ``start - (start - end) * e / (epochs - 1)`` (GDAS' tau, 10 -> 0.1)."""

    start: float
    end: float
    epochs: int

    def __call__(self, epoch: int) -> float:
        t = min(max(epoch, 0), self.epochs - 1) / max(1, self.epochs - 1)
        return self.start - (self.start - self.end) * t


# ---- host-side readouts (derivation) -------------------------------------------------------
def softmax_np(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 over the valid columns (invalid columns 0)."""
    v = np.where(valid, np.asarray(values, dtype=np.float64), -np.inf)
    v = np.exp(v - v.max(axis=-1, keepdims=True))
    return v / v.sum(axis=-1, keepdims=True)


def sigmoid_np(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64))), 0.0)
