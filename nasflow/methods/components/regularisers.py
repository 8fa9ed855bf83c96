"""Extra loss terms on the architecture (and weight) parameters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F


def beta_decay(alphas: Iterable[torch.Tensor]) -> torch.Tensor:
    """beta-DARTS Eq. 9: the mean over edges of ``logsumexp_k(alpha_k)``, summed over cell
    types (the authors' ``mlc_loss``)."""
    return sum(a.logsumexp(dim=-1).mean() for a in alphas)  # type: ignore[return-value]


def l2_decay(weights: Sequence[torch.Tensor], alphas: Sequence[torch.Tensor],
             alpha_masks: Sequence[torch.Tensor], lambda_w: float, lambda_a: float) -> torch.Tensor:
    """DropNAS partial decay (Sec. 4.2): ``lambda_w * sum ||w||^2 + lambda_a * sum ||m * a||^2``
    over the given (kept) weights and the masked alphas."""
    w_term = torch.stack([p.pow(2).sum() for p in weights]).sum() if weights else 0.0
    a_term: torch.Tensor | float = 0.0
    for a, m in zip(alphas, alpha_masks, strict=True):
        a_term = a_term + (a * m.to(a.dtype)).pow(2).sum()
    return lambda_w * w_term + lambda_a * a_term  # type: ignore[return-value]


def zero_one_loss(alphas: Iterable[torch.Tensor], valid: Iterable[torch.Tensor] | None = None,
                  ) -> torch.Tensor:
    """FairDARTS Eq. 5 (``ConvSeparateLoss``): ``L01 = -mean((sigmoid(alpha) - 0.5)^2)`` over
    every op of every cell type (pushes each sigmoid weight to 0 or 1)."""
    terms = []
    for i, a in enumerate(alphas):
        d = (torch.sigmoid(a) - 0.5).pow(2)
        if valid is not None:
            d = d[list(valid)[i]]
        terms.append(d.reshape(-1))
    return -torch.cat(terms).mean()


def dirichlet_kl(alphas: Iterable[torch.Tensor]) -> torch.Tensor:
    """DrNAS' ``_get_kl_reg``: ``sum KL(Dir(ELU(alpha) + 1) || Dir(1))`` over edges."""
    total: torch.Tensor | float = 0.0
    for a in alphas:
        conc = F.elu(a) + 1
        q = torch.distributions.Dirichlet(conc)
        p = torch.distributions.Dirichlet(torch.ones_like(conc))
        total = total + torch.distributions.kl_divergence(q, p).sum()
    return total  # type: ignore[return-value]
