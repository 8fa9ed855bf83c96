"""beta-DARTS (Ye et al., CVPR 2022): DARTS with the Beta-Decay regulariser on alphas.

L_beta = mean over edges of logsumexp_k(alpha_k) (Eq. 9), added to the architecture loss with
weight lambda_t ramped linearly from ``lambda_start`` to ``lambda_end`` over the search
(the authors' ``mlc_loss`` schedule). Everything else is first-order bilevel DARTS.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from nasflow.methods.base import register_method
from nasflow.methods.components.regularisers import beta_decay
from nasflow.methods.darts import DARTS


@register_method
class BetaDARTS(DARTS):
    class Params(DARTS.Params):
        name: Literal["beta_darts"] = "beta_darts"  # type: ignore[assignment]
        lambda_start: float = Field(0.0, ge=0)
        lambda_end: float = Field(50.0, ge=0)

    params: Params

    def beta_weight(self) -> float:
        t = self.epoch / max(1, self.search.epochs - 1)
        return self.params.lambda_start + t * (self.params.lambda_end - self.params.lambda_start)

    def arch_regularizer(self) -> torch.Tensor:
        return self.beta_weight() * beta_decay(self.arch_parameters())
