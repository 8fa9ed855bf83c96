"""Partial channel connections' edge normalisation (PC-DARTS, Xu et al. ICLR 2020, Sec. 3.2).

Node ``i`` sums ``softmax(beta_{i,*})_j * MixedOp_j(h_j)`` over its incoming edges ``j``;
derivation multiplies each edge's op weights by the same edge weight. The channel split and
shuffle are a supernet option (``partial_channels``) of the spaces that honour it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def edge_normalisation(beta: torch.Tensor, node_edges: Sequence[Sequence[int]]) -> torch.Tensor:
    """(edges,) weights: ``softmax`` of ``beta`` over each node's incoming edges."""
    out = torch.empty_like(beta)
    for rows in node_edges:
        idx = torch.as_tensor(list(rows), device=beta.device)
        out[idx] = F.softmax(beta[idx], dim=0)
    return out


def edge_normalisation_np(beta: np.ndarray, node_edges: Sequence[Sequence[int]]) -> np.ndarray:
    """Host-side float64 twin of :func:`edge_normalisation` (derivation)."""
    beta = np.asarray(beta, dtype=np.float64)
    out = np.empty_like(beta)
    for rows in node_edges:
        v = beta[list(rows)]
        v = np.exp(v - v.max())
        out[list(rows)] = v / v.sum()
    return out
