"""Perturbation of the mixing weights (SDARTS, Chen & Hsieh ICML 2020, ``attacker/perturb.py``).

SDARTS perturbs the softmax weights ``A = softmax(alpha)`` (not alpha) before the w-step and
projects each edge's row back to the simplex the released way (:func:`clip_to_simplex`)."""

from __future__ import annotations

import torch


def clip_to_simplex(weights: torch.Tensor) -> torch.Tensor:
    """SDARTS ``clip()``: clamp rows to [0, 1]; a row that is all 0 gets 1 at its argmax
    (of the unclamped row); renormalise each row to sum 1."""
    clamped = weights.clamp(0.0, 1.0)
    dead = clamped.sum(-1, keepdim=True) == 0
    if dead.any():
        one_hot = torch.zeros_like(clamped).scatter_(-1, weights.argmax(-1, keepdim=True), 1.0)
        clamped = torch.where(dead, one_hot, clamped)
    return clamped / clamped.sum(-1, keepdim=True)


def random_perturbation(weights: torch.Tensor, epsilon: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """SDARTS-RS: ``A + U(-eps, eps)`` elementwise, then :func:`clip_to_simplex`."""
    noise = torch.rand(weights.shape, generator=generator, dtype=weights.dtype,
                       device=weights.device if generator is None else generator.device)
    noise = noise.to(weights.device).mul_(2 * epsilon).sub_(epsilon)
    return clip_to_simplex(weights + noise)


def epsilon_schedule(epoch: int, epochs: int, eps_min: float = 0.03, eps_max: float = 0.3) -> float:
    """SDARTS' linearly growing radius ``eps_e = eps_min + (eps_max - eps_min) * e / E``."""
    return eps_min + (eps_max - eps_min) * epoch / max(1, epochs)
