"""The search-method interface (after NASLib's optimizer: set up on a space, ``step`` on
batches, read off a genotype) with hooks for what differs between DARTS-family methods.

A method owns the architecture parameters (one (edges, width) alpha tensor per cell type of
any registered space), the optimizers and the update rule. The supernet holds only operation
weights ``w``. What a method changes is composed from :mod:`nasflow.methods.components`:

* ``op_weights`` -- how alphas become the supernet's mixing weights (softmax, sigmoid, Gumbel,
  Dirichlet, ... from :mod:`~nasflow.methods.components.weighting`), ``sample_active`` --
  which ops run this step (all, kept by drop masks, one sampled), ``edge_weights`` -- a
  per-edge factor (PC-DARTS edge normalisation), ``supernet_options`` -- supernet features
  the method needs from the space (``partial_channels``);
* ``arch_regularizer`` -- extra loss terms, ``step`` -- when alphas and w step;
* ``readout`` -- per-(edge, op) strengths that the space's ``derive`` turns into a genotype;
  it is a function of the architecture values only, so ``nasflow derive`` reads a genotype
  off a search record through the method without building the supernet.

To add a method: subclass :class:`SearchMethod` (or :class:`~nasflow.methods.darts.DARTS`),
give it a ``Params`` model with ``name: Literal["..."]``, decorate it with
:func:`register_method`, import its module in ``nasflow/methods/__init__.py`` and add
``params/methods/<name>.yaml``. The contract tests cover it on every space whose ops it
supports (``supports_space``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nasflow.methods.components import weighting
from nasflow.params import DeriveParams, SearchParams, StrictModel
from nasflow.spaces.base import ActiveOps, SearchSpace, active_from_mask

METHODS: dict[str, type[SearchMethod]] = {}

# Padded (non-existent) op columns: a large negative logit, so they get ~0 weight. Not -inf,
# which would turn a 0 * inf into NaN in gradients.
_PAD_LOGIT = -1e9


class MethodParamsBase(StrictModel):
    name: str


def register_method(cls: type[SearchMethod]) -> type[SearchMethod]:
    name = cls.Params.model_fields["name"].default
    if not name:
        raise TypeError(f"{cls.__name__}.Params.name needs a default (the method's name)")
    METHODS[name] = cls
    cls.name = name
    return cls


class SearchMethod:
    """Base class. Subclasses override the hooks, rarely ``step`` itself."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[MethodParamsBase]] = MethodParamsBase
    #: bilevel methods need a held-out batch for alpha (``train_portion`` split)
    bilevel: ClassVar[bool] = True

    model: nn.Module  # the supernet, set by ``adapt_search_space``
    space: SearchSpace

    def __init__(self, params: MethodParamsBase, search: SearchParams):
        self.params = params
        self.search = search
        self.alphas: dict[str, nn.Parameter] = {}
        self.epoch = 0
        self._grad_sum: dict[str, torch.Tensor] = {}
        self._grad_steps = 0

    # ---- set-up --------------------------------------------------------------------------
    @classmethod
    def supports_space(cls, space: SearchSpace) -> str | None:
        """Why this method cannot search ``space`` (None: it can)."""
        return None

    def supernet_options(self) -> dict[str, Any]:
        """Supernet features this method needs from the space (``build_supernet`` options)."""
        return {}

    def bind_space(self, space: SearchSpace) -> None:
        """Know the space (cell types, op lists, valid columns) without a supernet: enough for
        ``readout`` / ``genotype`` from recorded architecture values."""
        why = self.supports_space(space)
        if why:
            from nasflow.errors import NasflowError

            raise NasflowError(f"method {self.name!r} cannot search space {space.name!r}: {why}")
        self.space = space
        self.cell_types = space.cell_types
        self.valid = {c: space.valid(c) for c in self.cell_types}

    def adapt_search_space(self, model: nn.Module, space: SearchSpace, device: torch.device,
                           generator: torch.Generator | None = None) -> None:
        """Create alphas (init ``alpha_init_std * randn``, DARTS) and optimizers for ``model``."""
        self.bind_space(space)
        self.model, self.device = model, device
        self._valid_t = {c: torch.as_tensor(v, device=device) for c, v in self.valid.items()}
        for cell in self.cell_types:
            init = torch.randn(space.n_edges, space.width, generator=generator)
            init = init.mul_(self.search.alpha_init_std).masked_fill_(
                ~torch.as_tensor(self.valid[cell]), _PAD_LOGIT)
            self.alphas[cell] = nn.Parameter(init.to(device))
        self._all_active = {c: active_from_mask(self.valid[c], space.edge_ops[c])
                            for c in self.cell_types}
        self.w_optimizer = self.make_w_optimizer()
        self.alpha_optimizer = self.make_alpha_optimizer()
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_optimizer, T_max=self.search.epochs, eta_min=self.search.w_lr_min)

    def make_w_optimizer(self) -> torch.optim.Optimizer:
        s = self.search
        return torch.optim.SGD(self.model.parameters(), s.w_lr, momentum=s.w_momentum,
                               weight_decay=s.w_weight_decay)

    def make_alpha_optimizer(self) -> torch.optim.Optimizer:
        s = self.search
        return torch.optim.Adam(self.arch_parameters(), lr=s.alpha_lr, betas=s.alpha_betas,
                                weight_decay=s.alpha_weight_decay)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas[c] for c in self.cell_types]

    # ---- hooks ---------------------------------------------------------------------------
    def sample_active(self) -> dict[str, np.ndarray] | None:
        """Which ops run this step, as host-side (edges, K) bool masks; None: all valid ops."""
        return None

    def op_weights(self, masks: dict[str, np.ndarray] | None) -> dict[str, torch.Tensor]:
        """How alphas become op weights: DARTS' softmax over each edge's ops (Eq. 2)."""
        return {c: weighting.softmax(a) for c, a in self.alphas.items()}

    def edge_weights(self) -> dict[str, torch.Tensor] | None:
        """A per-edge factor on each edge's output (PC-DARTS edge normalisation); None: 1."""
        return None

    def arch_regularizer(self) -> torch.Tensor | None:
        """Extra loss on alphas added to the architecture loss (beta-DARTS, ...)."""
        return None

    def new_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def compile_blocker(self) -> str | None:
        """Why ``runtime.compile`` cannot pay for this method's supernet (None: it can)."""
        return None

    # ---- shared pieces -------------------------------------------------------------------
    def active_ops(self, masks: dict[str, np.ndarray] | None) -> ActiveOps:
        if masks is None:
            return self._all_active
        return {c: active_from_mask(masks[c] & self.valid[c], self.space.edge_ops[c])
                for c in self.cell_types}

    def forward(self, x: torch.Tensor, masks: dict[str, np.ndarray] | None = None,
                return_features: bool = False):
        edge_weights = self.edge_weights()
        extra = {} if edge_weights is None else {"edge_weights": edge_weights}
        return self.model(x, self.op_weights(masks), self.active_ops(masks),
                          return_features=return_features, **extra)

    def loss(self, x: torch.Tensor, y: torch.Tensor, masks=None) -> tuple[torch.Tensor, Any]:
        logits = self.forward(x, masks)
        return F.cross_entropy(logits, y), logits

    def reduce_grads(self, include_alphas: bool = True) -> None:
        """Average this step's gradients over data-parallel ranks (no-op in one process)."""
        from nasflow.train.distributed import all_reduce_mean

        tensors = [p.grad for p in self.model.parameters()]
        if include_alphas:
            tensors += [a.grad for a in self.arch_parameters()]
        all_reduce_mean(tensors)

    def record_alpha_grads(self) -> None:
        """Accumulate |d loss / d alpha| of the architecture loss, on the device (analysis of
        the Matthew effect: which ops' alphas actually receive gradient)."""
        with torch.no_grad():
            for c, a in self.alphas.items():
                if a.grad is None:
                    continue
                if c not in self._grad_sum:
                    self._grad_sum[c] = torch.zeros_like(a, dtype=torch.float32)
                self._grad_sum[c] += a.grad.abs().float()
        self._grad_steps += 1

    def pop_alpha_grad_means(self) -> dict[str, np.ndarray]:
        """Mean |grad alpha| per (edge, op) since the last call (one sync per epoch)."""
        out = {c: (g / max(self._grad_steps, 1)).cpu().numpy() for c, g in self._grad_sum.items()}
        self._grad_sum, self._grad_steps = {}, 0
        return out

    def reduce_alpha_grads(self) -> None:
        from nasflow.train.distributed import all_reduce_mean

        all_reduce_mean([a.grad for a in self.arch_parameters()])

    def clip_w(self, max_norm: float) -> torch.Tensor:
        # foreach clipping; returns the norm as a tensor (no host sync)
        return nn.utils.clip_grad_norm_(self.model.parameters(), max_norm, foreach=True)

    def lr(self) -> float:
        return self.w_optimizer.param_groups[0]["lr"]

    def end_epoch(self) -> None:
        self.scheduler.step()

    def step(self, train_batch, val_batch=None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ---- read-outs -----------------------------------------------------------------------
    def probabilities(self) -> dict[str, np.ndarray]:
        """Softmax of alphas per cell type (padded columns ~0), on the host."""
        with torch.no_grad():
            return {c: F.softmax(a.float(), dim=-1).cpu().numpy() for c, a in self.alphas.items()}

    def alpha_values(self) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {c: a.float().cpu().numpy() for c, a in self.alphas.items()}

    def arch_values(self) -> dict[str, np.ndarray]:
        """Every architecture value a readout needs, on the host: the alphas by cell type
        (plus, in methods with more, e.g. ``beta.<cell>``). Saved in ``search.json``."""
        return self.alpha_values()

    def readout(self, arch: dict[str, np.ndarray], derive: DeriveParams) -> dict[str, np.ndarray]:
        """Per-(edge, op) strengths for the space's derivation, from ``arch_values()``:
        the softmax weight (DARTS Sec. 2.4), or the raw alpha (``derive.rank_by: alpha``,
        DropNAS' released code)."""
        if derive.rank_by == "alpha":
            return {c: np.asarray(arch[c], dtype=np.float64) for c in self.cell_types}
        return {c: weighting.softmax_np(arch[c], self.valid[c]) for c in self.cell_types}

    def genotype(self, derive: DeriveParams | None = None,
                 arch: dict[str, np.ndarray] | None = None) -> Any:
        """The space's genotype read off ``arch`` (default: the current values)."""
        derive = derive or DeriveParams.model_validate({})
        return self.space.derive(self.readout(self.arch_values() if arch is None else arch, derive),
                                 derive)

    def alpha_entropy(self) -> dict[str, float]:
        """Mean per-edge entropy of the op distribution (nats): falls as the search decides."""
        out = {}
        for c, p in self.probabilities().items():
            p = np.where(self.valid[c], p, 0.0)
            ent = -(p * np.log(np.clip(p, 1e-12, None))).sum(-1)
            out[c] = float(ent.mean())
        return out

    # ---- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "alphas": {c: a.detach().cpu() for c, a in self.alphas.items()},
            "w_optimizer": self.w_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for c, a in state["alphas"].items():
                self.alphas[c].copy_(a.to(self.alphas[c].device))
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
