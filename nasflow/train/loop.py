"""Pieces shared by the search and retrain loops: on-device metric accumulation and the
NaN/inf guard. Nothing here syncs with the device inside a step."""

from __future__ import annotations

import torch

from nasflow.errors import DivergenceError


class EpochMeter:
    """Sums loss and top-1 hits on the device; ``result()`` syncs once per epoch."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device, dtype=torch.float64)
        self.correct = torch.zeros((), device=device, dtype=torch.int64)
        self.count = 0
        self.first_bad = torch.full((), -1, device=device, dtype=torch.int64)
        self.steps = 0

    def update(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        n = y.shape[0]
        self.loss += loss.detach().double() * n
        self.correct += (logits.detach().argmax(dim=1) == y).sum()
        self.count += n
        bad = ~torch.isfinite(loss.detach())
        # a Python scalar in torch.where: no host-to-device copy, no sync
        self.first_bad = torch.where(bad & (self.first_bad < 0), self.steps, self.first_bad)
        self.steps += 1

    def reduce(self) -> None:
        """Sum the counters over data-parallel ranks (no-op in one process)."""
        from nasflow.train.distributed import world

        if world()[1] == 1:
            return
        import torch.distributed as tdist

        packed = torch.stack([self.loss, self.correct.double(), torch.tensor(float(self.count),
                              device=self.loss.device, dtype=torch.float64)])
        tdist.all_reduce(packed)
        bad = self.first_bad.clone()
        tdist.all_reduce(bad, op=tdist.ReduceOp.MAX)
        self.loss, self.correct = packed[0], packed[1].long()
        self.count, self.first_bad = int(packed[2]), bad

    def check_finite(self, where: str) -> None:
        """Raise DivergenceError naming the first non-finite step (one sync)."""
        step = int(self.first_bad)
        if step >= 0:
            raise DivergenceError(
                f"{where}: loss became NaN/inf at step {step}; stopped, the last good checkpoint "
                "is kept (lower the learning rate, enable gradient clipping, or try amp: off)"
            )

    def result(self) -> tuple[float, float]:
        if self.count == 0:
            return float("nan"), float("nan")
        return float(self.loss) / self.count, float(self.correct) / self.count


@torch.no_grad()
def evaluate_model(forward, loader, device, topk=(1, 5)) -> dict[str, float]:
    """Top-k accuracy and mean loss of ``forward(x) -> logits`` over a loader."""
    loss = torch.zeros((), device=device, dtype=torch.float64)
    hits = torch.zeros(len(topk), device=device, dtype=torch.int64)
    n = 0
    for x, y in loader:
        logits = forward(x).float()
        loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").double()
        k_max = min(max(topk), logits.shape[1])
        pred = logits.topk(k_max, dim=1).indices
        match = pred.eq(y[:, None])
        hits += torch.stack([match[:, : min(k, k_max)].any(dim=1).sum() for k in topk])
        n += y.shape[0]
    hits_host = hits.tolist()
    out = {"loss": float(loss) / max(n, 1), "n": n}
    for k, h in zip(topk, hits_host, strict=True):
        out[f"top{k}_acc"] = h / max(n, 1)
    return out
