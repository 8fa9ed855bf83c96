"""DARTS (Liu et al., ICLR 2019): first order, second order (unrolled), and one-level.

Bilevel (Eq. 3-4): alpha minimises L_val(w*(alpha), alpha), w minimises L_train(w, alpha).
Per step DARTS first updates alpha on a validation batch, then w on a training batch.

- first order (Eq. 7 with xi = 0): grad_alpha L_val(w, alpha).
- second order (Eq. 6-8): w' = w - xi * (grad_w L_train(w, alpha) + wd * w + mu * buf) is the
  one-step unrolled weight of the actual SGD update (momentum buffer ``buf``, xi = current lr);
  the hypergradient is grad_alpha L_val(w', alpha) - xi * H v with v = grad_w' L_val(w', alpha)
  and the Hessian-vector product by central finite differences (Eq. 8):
  H v ~= (grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)) / (2 eps),
  w+- = w +- eps v, eps = 0.01 / ||v||.
- one-level: w and alpha share one training batch and one backward (the DropNAS paper's
  baseline, Sec. 3); the whole training set is used.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch.func import functional_call

from nasflow.methods.base import MethodParamsBase, SearchMethod, register_method
from nasflow.train.distributed import all_reduce_mean


@register_method
class DARTS(SearchMethod):
    class Params(MethodParamsBase):
        name: Literal["darts"] = "darts"
        order: Literal[1, 2] = Field(1, description="1: first order; 2: unrolled second order")
        one_level: bool = Field(False, description="w and alpha on the same batch (no split)")
        unrolled_eps: float = Field(0.01, gt=0, description="finite-difference scale (Eq. 8)")

        @model_validator(mode="after")
        def _bilevel_for_second_order(self):
            if self.one_level and self.order == 2:
                raise ValueError("order 2 (unrolled) needs bilevel optimisation: set one_level: false")
            return self

    params: Params

    def __init__(self, params, search):
        super().__init__(params, search)
        self.bilevel = not params.one_level

    def compile_blocker(self) -> str | None:
        if self.params.order == 2:
            return "second order runs the supernet functionally on unrolled weights (w')"
        return None

    # -- the step ---------------------------------------------------------------------------
    def step(self, train_batch, val_batch=None) -> dict[str, torch.Tensor]:
        if self.params.one_level:
            return self.one_level_step(*train_batch)
        x_t, y_t = train_batch
        x_v, y_v = val_batch
        self.alpha_optimizer.zero_grad(set_to_none=True)
        if self.params.order == 2:
            self.unrolled_backward(x_t, y_t, x_v, y_v)
        else:
            loss_v, _ = self.loss(x_v, y_v)
            reg = self.arch_regularizer()
            (loss_v if reg is None else loss_v + reg).backward(inputs=self.arch_parameters())
            self.reduce_alpha_grads()
        self.record_alpha_grads()
        self.alpha_optimizer.step()
        return self.w_step(x_t, y_t)

    def w_step(self, x, y) -> dict[str, torch.Tensor]:
        self.w_optimizer.zero_grad(set_to_none=True)
        loss, logits = self.loss(x, y)
        loss.backward(inputs=list(self.model.parameters()))
        self.reduce_grads(include_alphas=False)
        self.clip_w(self.search.w_grad_clip)
        self.w_optimizer.step()
        return {"loss": loss.detach(), "logits": logits.detach()}

    def one_level_step(self, x, y) -> dict[str, torch.Tensor]:
        self.w_optimizer.zero_grad(set_to_none=True)
        self.alpha_optimizer.zero_grad(set_to_none=True)
        loss, logits = self.loss(x, y)
        reg = self.arch_regularizer()
        (loss if reg is None else loss + reg).backward()
        self.reduce_grads()
        self.record_alpha_grads()
        self.clip_w(self.search.w_grad_clip)
        self.w_optimizer.step()
        self.alpha_optimizer.step()
        return {"loss": loss.detach(), "logits": logits.detach()}

    # -- second order -----------------------------------------------------------------------
    def unrolled_backward(self, x_t, y_t, x_v, y_v) -> None:
        """Set ``alpha.grad`` to the DARTS second-order hypergradient (Eq. 7-8)."""
        model, alphas = self.model, self.arch_parameters()
        names, params = zip(*model.named_parameters(), strict=True)
        xi = self.lr()
        mu = self.search.w_momentum
        wd = self.search.w_weight_decay

        # w' = w - xi * (dL_train/dw + wd*w + mu*buf): the SGD step the optimizer would take.
        loss_t, _ = self.loss(x_t, y_t)
        grads = torch.autograd.grad(loss_t, params)
        all_reduce_mean(grads)  # data-parallel: the unrolled step uses the global gradient
        with torch.no_grad():
            w_prime = {}
            for n, p, g in zip(names, params, grads, strict=True):
                buf = self.w_optimizer.state.get(p, {}).get("momentum_buffer")
                step = g + wd * p
                if buf is not None:
                    step = step + mu * buf
                w_prime[n] = (p - xi * step).requires_grad_(True)

        # L_val(w', alpha): its gradient w.r.t. alpha and v = its gradient w.r.t. w'.
        # BN buffers are cloned: the unrolled forward must not move the real running stats.
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        logits = functional_call(model, (w_prime, buffers),
                                 (x_v, self.op_weights(None), self.active_ops(None)))
        loss_v = F.cross_entropy(logits, y_v)
        reg = self.arch_regularizer()
        if reg is not None:
            loss_v = loss_v + reg
        out = torch.autograd.grad(loss_v, [*alphas, *w_prime.values()], allow_unused=True)
        d_alpha = [torch.zeros_like(a) if g is None else g
                   for g, a in zip(out[: len(alphas)], alphas, strict=True)]
        v = [torch.zeros_like(p) if g is None else g
             for g, p in zip(out[len(alphas):], params, strict=True)]

        all_reduce_mean([*d_alpha, *v])
        implicit = self.hessian_vector_product(v, x_t, y_t)
        all_reduce_mean(implicit)
        for a, g, h in zip(alphas, d_alpha, implicit, strict=True):
            a.grad = g - xi * h

    def hessian_vector_product(self, v, x, y) -> list[torch.Tensor]:
        """(d^2 L_train / d alpha d w) v by central differences at the current w (Eq. 8)."""
        params: list[torch.Tensor] = list(self.model.parameters())
        eps = self.params.unrolled_eps / torch.cat([t.reshape(-1) for t in v]).norm()
        alphas = self.arch_parameters()

        def grad_alpha_at(scale: float):
            with torch.no_grad():
                torch._foreach_add_(params, [t * (scale * eps) for t in v])
            loss, _ = self.loss(x, y)
            return torch.autograd.grad(loss, alphas)

        g_pos = grad_alpha_at(1.0)        # w + eps v
        g_neg = grad_alpha_at(-2.0)       # w - eps v
        with torch.no_grad():             # back to w
            torch._foreach_add_(params, [t * eps for t in v])
        return [(p - n) / (2 * eps) for p, n in zip(g_pos, g_neg, strict=True)]
