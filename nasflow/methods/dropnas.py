"""DropNAS: grouped operation dropout for one-level DARTS (Hong et al., IJCAI 2020, Sec. 4).

Per step and per edge, every op is dropped independently with probability
``p = r ** (1 / |group|)`` (Sec. 4.1), so ``r`` is the probability that a whole group is
dropped; a group that happens to be fully dropped is resampled (at least one op kept per
group). Groups: parametric O_p = {sep, dil convs}, non-parametric O_np = {pools, skip, none}.
One mask set is drawn for normal cells and one for reduction cells, shared by all cells of
that type and by every sample of the batch (and by every DDP rank: masks come from a
host-side generator seeded identically on all ranks).

The forward uses a softmax over the *kept* ops only; dropped ops are not executed, so their
``w`` and ``alpha`` get no gradient. After the optimizer steps, alpha-adjust (Eq. 5-6) keeps
the dropped ops' probabilities from moving passively:

- ``paper``: x = ln(sum_kept exp(a_old) / sum_kept exp(a_new)) added to kept alphas (Eq. 6);
- ``code`` (released code, default): with rho the kept mass before the step,
  x = ln(rho / (1 - rho) * sum_drop exp(a_new) / sum_kept exp(a_new)), which also corrects for
  Adam's momentum moving the dropped alphas.

Partial decay (Sec. 4.2): L2 decay only on kept ``w`` (params of executed ops) and kept alphas.
``code`` mode (default) reproduces the released code: a separate decay loss
``lambda_w * sum ||w||^2 + lambda_a * sum ||a||^2``, its own backward, clip and a second step
of both optimizers. ``joint`` mode adds the decay terms to the CE loss (one step).

Every mask is drawn on the host (numpy), so nothing in the step waits on the device.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from nasflow.methods.base import MethodParamsBase, SearchMethod, register_method
from nasflow.methods.components import regularisers, weighting
from nasflow.methods.components.dropout import (
    adjust_alphas,
    drop_probabilities,
    sample_group_masks,
)

__all__ = ["DropNAS", "drop_probabilities", "sample_group_masks"]


@register_method
class DropNAS(SearchMethod):
    bilevel = False

    class Params(MethodParamsBase):
        name: Literal["dropnas"] = "dropnas"
        r_parametric: float = Field(3e-5, ge=0, lt=1, description="P(all of O_p dropped)")
        r_nonparametric: float = Field(3e-5, ge=0, lt=1, description="P(all of O_np dropped)")
        grouping: bool = Field(True, description="False: one group of all ops (ablation)")
        alpha_adjust: Literal["code", "paper", "off"] = "code"
        partial_decay: bool = Field(True, description="False: decay all w and alpha (ablation)")
        decay_mode: Literal["code", "joint"] = "code"
        warmup_epochs: int = Field(0, ge=0, description="epochs without dropout (code option)")
        mask_seed_offset: int = Field(7919, ge=0, description="mask RNG = seed + offset")

    params: Params
    _last_masks: dict[str, np.ndarray]

    def adapt_search_space(self, model, space, device, generator=None):
        super().adapt_search_space(model, space, device, generator)
        self.rng = np.random.default_rng(self.search.seed + self.params.mask_seed_offset)
        self.groups = {}
        for c in self.cell_types:
            para = space.parametric(c)
            self.groups[c] = np.where(para, 0, 1) if self.params.grouping else np.zeros_like(para, dtype=int)
        self._last_masks = {}
        self._kept_t: dict[str, torch.Tensor] | None = None
        # Which op each w belongs to: (cell type, edge, column), or None if always executed.
        self._param_owner: list[tuple[torch.Tensor, tuple[str, int, int] | None]] = []
        owned = {}
        for cell in model.cells:
            for e, mixed in enumerate(cell.edges):
                for k, op in enumerate(mixed.ops):
                    for p in op.parameters():
                        owned[id(p)] = (cell.cell_type, e, k)
        self._param_owner = [(p, owned.get(id(p))) for p in model.parameters()]

    def make_w_optimizer(self):  # decay is partial and applied separately
        s = self.search
        return torch.optim.SGD(self.model.parameters(), s.w_lr, momentum=s.w_momentum,
                               weight_decay=0.0)

    def make_alpha_optimizer(self):
        s = self.search
        return torch.optim.Adam(self.arch_parameters(), lr=s.alpha_lr, betas=s.alpha_betas,
                                weight_decay=0.0)

    # -- hooks ------------------------------------------------------------------------------
    def group_probs(self, cell: str) -> dict[int, float]:
        if self.epoch < self.params.warmup_epochs:
            return {}
        valid, groups = self.valid[cell], self.groups[cell]
        if not self.params.grouping:
            size = int(valid[0].sum())
            r = self.params.r_parametric
            return {0: drop_probabilities(r, size)}
        sizes = {g: int((valid[0] & (groups[0] == g)).sum()) for g in (0, 1)}
        rs = {0: self.params.r_parametric, 1: self.params.r_nonparametric}
        return {g: drop_probabilities(rs[g], sizes[g]) for g in (0, 1) if sizes[g] > 0}

    def compile_blocker(self) -> str | None:
        return "the executed ops change every step (drop masks): each step would recompile"

    def sample_active(self) -> dict[str, np.ndarray]:
        return {c: sample_group_masks(self.rng, self.groups[c], self.valid[c], self.group_probs(c))
                for c in self.cell_types}

    def op_weights(self, masks):
        """Softmax over the kept ops only (DropNAS Sec. 4.1)."""
        if masks is None:
            return super().op_weights(None)
        kept = (self._kept_t if masks is self._last_masks and self._kept_t is not None
                else {c: self._mask_t(m) for c, m in masks.items()})
        return {c: weighting.softmax(a, keep=kept[c]) for c, a in self.alphas.items()}

    def _mask_t(self, mask: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(mask)
        if self.device.type == "cuda":  # a pageable copy would wait for the stream: pin it
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    # -- the step (order as in the released search.py) --------------------------------------
    def step(self, train_batch, val_batch=None) -> dict[str, torch.Tensor]:
        x, y = train_batch
        masks = self.sample_active()
        self._last_masks = masks
        kept = {c: self._mask_t(m) for c, m in masks.items()}
        self._kept_t = kept
        alphas_old = {c: a.detach().clone() for c, a in self.alphas.items()}

        self.w_optimizer.zero_grad(set_to_none=True)
        self.alpha_optimizer.zero_grad(set_to_none=True)
        loss, logits = self.loss(x, y, masks)
        if self.params.decay_mode == "joint":
            (loss + self.decay_loss(kept)).backward()
        else:
            loss.backward()
        self.reduce_grads()  # every rank has the same masks, so the same grads are present
        self.record_alpha_grads()
        self.clip_w(self.search.w_grad_clip)
        self.w_optimizer.step()
        if self.epoch >= self.params.warmup_epochs:
            self.alpha_optimizer.step()

        if self.params.decay_mode == "code":
            decay = self.decay_loss(kept)
            self.w_optimizer.zero_grad(set_to_none=True)
            self.alpha_optimizer.zero_grad(set_to_none=True)
            decay.backward()
            self.clip_w(self.search.w_grad_clip)
            self.w_optimizer.step()
            self.alpha_optimizer.step()

        if self.params.alpha_adjust != "off":
            self.adjust_alphas(alphas_old, kept)
        return {"loss": loss.detach(), "logits": logits.detach()}

    def kept_w_params(self, masks: dict[str, np.ndarray]) -> list[torch.Tensor]:
        """Params of the ops executed this step (the released code tests ``grad != 0``; this
        is the same set, found from the host-side masks without a device sync)."""
        return [p for p, owner in self._param_owner
                if owner is None or masks[owner[0]][owner[1], owner[2]]]

    def decay_loss(self, kept: dict[str, torch.Tensor]) -> torch.Tensor:
        s = self.search
        params = (self.kept_w_params(self._last_masks) if self.params.partial_decay
                  else list(self.model.parameters()))
        cells = list(self.alphas)
        masks = [kept[c] if self.params.partial_decay else self._valid_t[c] for c in cells]
        return regularisers.l2_decay(params, [self.alphas[c] for c in cells], masks,
                                     s.w_weight_decay, s.alpha_weight_decay)

    def adjust_alphas(self, alphas_old: dict[str, torch.Tensor], kept: dict[str, torch.Tensor]):
        """alpha-adjust (DropNAS Eq. 5-6, :func:`~nasflow.methods.components.dropout.adjust_alphas`)."""
        for c, a in self.alphas.items():
            adjust_alphas(a, alphas_old[c], kept[c], self._valid_t[c], self.params.alpha_adjust)

    # -- checkpointing: the mask RNG continues exactly after a resume ------------------------
    def extra_state(self) -> dict[str, Any]:
        state = self.rng.bit_generator.state
        return {"mask_rng": {"s": int(state["state"]["state"]), "inc": int(state["state"]["inc"]),
                             "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "mask_rng" in state:
            r = state["mask_rng"]
            self.rng.bit_generator.state = {
                "bit_generator": "PCG64",
                "state": {"state": int(r["s"]), "inc": int(r["inc"])},
                "has_uint32": int(r["has_uint32"]), "uinteger": int(r["uinteger"]),
            }
