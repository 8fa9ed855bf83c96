"""Grouped operation dropout and alpha-adjust (DropNAS, Hong et al. IJCAI 2020, Sec. 4.1).

Masks are drawn on the host (numpy), so nothing in a step waits on the device."""

from __future__ import annotations

import numpy as np
import torch


def drop_probabilities(r: float, group_size: int) -> float:
    """Per-op drop probability p = r^(1/|g|) (DropNAS Sec. 4.1)."""
    return float(r ** (1.0 / group_size)) if r > 0 else 0.0


def sample_group_masks(rng: np.random.Generator, groups: np.ndarray, valid: np.ndarray,
                       probs: dict[int, float]) -> np.ndarray:
    """Keep mask (edges, K) for one cell type. ``groups[e, k]`` is the op's group id; every
    non-empty group on every edge keeps at least one op (resampled until it does)."""
    keep = np.ones_like(valid)
    for g, p in probs.items():
        members = valid & (groups == g)
        if p <= 0 or not members.any():
            continue
        todo = np.ones(valid.shape[0], dtype=bool)
        while todo.any():
            draw = rng.random(valid.shape) >= p
            rows = np.flatnonzero(todo)
            keep[rows] = np.where(members[rows], draw[rows], keep[rows])
            alive = (keep & members).any(axis=1) | ~members.any(axis=1)
            todo = ~alive
    return keep & valid


@torch.no_grad()
def adjust_alphas(alpha: torch.Tensor, alpha_old: torch.Tensor, kept: torch.Tensor,
                  valid: torch.Tensor, rule: str = "code") -> None:
    """alpha-adjust (DropNAS Eq. 5-6), in place and vectorised over edges, so the dropped
    ops' probabilities do not move passively; edges with nothing dropped are left alone and
    padded columns are neither kept nor dropped.

    * ``paper`` (Eq. 6): ``x = ln(sum_kept exp(a_old) / sum_kept exp(a_new))`` added to kept alphas;
    * ``code`` (released code): with rho the kept mass before the step,
      ``x = ln(rho / (1 - rho) * sum_drop exp(a_new) / sum_kept exp(a_new))``, which also
      corrects for Adam's momentum moving the dropped alphas.
    """
    neg_inf = -float("inf")
    k_mask, d_mask = kept & valid, ~kept & valid
    has_drop = d_mask.any(dim=1, keepdim=True)
    lse_kept_new = alpha.masked_fill(~k_mask, neg_inf).logsumexp(dim=1, keepdim=True)
    if rule == "paper":
        lse_kept_old = alpha_old.masked_fill(~k_mask, neg_inf).logsumexp(1, keepdim=True)
        shift = lse_kept_old - lse_kept_new
    else:
        # log(rho / (1 - rho)) = lse_kept_old - lse_drop_old
        log_odds = (alpha_old.masked_fill(~k_mask, neg_inf).logsumexp(1, keepdim=True)
                    - alpha_old.masked_fill(~d_mask, neg_inf).logsumexp(1, keepdim=True))
        lse_drop_new = alpha.masked_fill(~d_mask, neg_inf).logsumexp(dim=1, keepdim=True)
        shift = log_odds + lse_drop_new - lse_kept_new
    shift = torch.where(has_drop, shift, torch.zeros_like(shift))
    alpha.add_(torch.where(k_mask, shift, torch.zeros_like(alpha)))
