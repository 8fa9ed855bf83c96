"""Figures people would rather look at than JSON: cell diagrams, alpha heatmaps, alpha
trajectories (the Matthew effect), learning curves.

Matplotlib only, no graphviz. Every function builds a :class:`matplotlib.figure.Figure` on an
Agg canvas directly (no pyplot, no global backend switch, nothing to leak) and returns it; the
caller saves it with :func:`save` (atomic) or ``Tracker.log_figure``.

Edges are numbered as in DARTS: for node ``i`` the edges from its inputs ``j = 0 .. i+1`` in
order, where inputs 0 and 1 are the cell inputs ``c_{k-2}``, ``c_{k-1}`` and input ``2 + m``
is node ``m``; edge labels read ``j->n{i}``.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch
from matplotlib.path import Path as MplPath

from nasflow.io import atomic_path

OP_COLORS = {
    "none": "#000000",
    "skip_connect": "#7f7f7f",
    "max_pool_3x3": "#1f77b4",
    "avg_pool_3x3": "#17becf",
    "sep_conv_3x3": "#d62728",
    "sep_conv_5x5": "#ff7f0e",
    "sep_conv_7x7": "#8c564b",
    "dil_conv_3x3": "#2ca02c",
    "dil_conv_5x5": "#9c9a1a",
    "conv_7x1_1x7": "#e377c2",
    "conv_1x1": "#bcbd22",
    "conv_3x3": "#9467bd",
    "noise": "#c49c94",
}
_FALLBACK = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#393b79", "#637939", "#843c39")
_SAVE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def op_color(op: str) -> str:
    """A fixed colour per op, the same in every figure."""
    if op in OP_COLORS:
        return OP_COLORS[op]
    return _FALLBACK[sum(map(ord, op)) % len(_FALLBACK)]


def _figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> None:
    """Write ``fig`` atomically (PNG unless ``path`` ends in .pdf / .svg) and close it."""
    fmt = _SAVE_FORMATS.get(Path(path).suffix.lower(), "png")
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    finally:
        close(fig)


def close(fig: Figure) -> None:
    """Release a figure (only pyplot-made figures hold global state)."""
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)


def edge_labels(n_edges: int) -> list[str]:
    """``["0->n0", "1->n0", "0->n1", "1->n1", "2->n1", ...]`` for the first ``n_edges`` edges."""
    labels: list[str] = []
    node = 0
    while len(labels) < n_edges:
        labels.extend(f"{j}->n{node}" for j in range(node + 2))
        node += 1
    return labels[:n_edges]


# ---- cell diagram --------------------------------------------------------------------------
_DX, _DY, _R = 2.8, 1.7, 0.34  # layer spacing, node spacing, node radius (data units)
_INCH = 0.8  # inches per data unit
_CHAR_W, _TEXT_H = 0.078, 0.27  # label size estimate (data units) at fontsize 7


def cell_diagram(genotype: Any, cell: str = "normal", title: str | None = None) -> Figure:
    """The cell as a DAG laid out in layers from left to right: inputs ``c_{k-2}``,
    ``c_{k-1}``, intermediate nodes (a node's layer is one more than its deepest input's), the
    output ``c_{k}`` (the concatenation, dashed edges). Each genotype edge is an arrow coloured
    by its op and labelled with the op name (one text per edge, found via ``gid="op"``)."""
    from nasflow.genotype import Genotype

    if cell not in ("normal", "reduce"):
        raise ValueError(f"cell must be 'normal' or 'reduce', not {cell!r}")
    if isinstance(genotype, Mapping):
        genotype = Genotype.model_validate(genotype.get("genotype", genotype))
    genes: list[tuple[str, int]] = list(getattr(genotype, cell))
    concat: list[int] = list(getattr(genotype, f"{cell}_concat"))
    k = genotype.edges_per_node
    n_nodes = len(genes) // k
    out = n_nodes + 2

    # Layers: inputs at 0, a node one right of its deepest input, the output last.
    layer = {0: 0, 1: 0}
    for i in range(n_nodes):
        layer[i + 2] = 1 + max(layer[src] for _, src in genes[i * k:(i + 1) * k])
    layer[out] = max(layer.values()) + 1
    columns: dict[int, list[int]] = {}
    for node in sorted(layer):
        columns.setdefault(layer[node], []).append(node)
    inputs = {i + 2: [src for _, src in genes[i * k:(i + 1) * k]] for i in range(n_nodes)}
    inputs[out] = concat
    pos: dict[int, tuple[float, float]] = {}
    for col in sorted(columns):
        nodes = columns[col]
        if col > 0:  # barycentre ordering (top to bottom) to cut edge crossings
            nodes.sort(key=lambda n: (-np.mean([pos[s][1] for s in inputs[n]]), n))
        for r, node in enumerate(nodes):
            pos[node] = (col * _DX, ((len(nodes) - 1) / 2 - r) * _DY)

    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    x0, x1 = min(xs) - 0.8, max(xs) + 0.8
    y0, y1 = min(ys) - 1.0, max(ys) + 1.0
    fig = _figure(((x1 - x0) * _INCH, (y1 - y0) * _INCH + 0.4))
    ax = fig.add_subplot()
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.axis("off")

    centers = np.array([pos[n] for n in sorted(pos)])
    placed: list[tuple[float, float, float, float]] = []  # label boxes (cx, cy, half w, half h)
    used: list[tuple[int, int, float]] = []
    edges = [(op, src, j // k + 2) for j, (op, src) in enumerate(genes)]
    edges += [(None, c, out) for c in concat]
    for op, src, dst in edges:
        p0, p2 = np.array(pos[src]), np.array(pos[dst])
        others = np.array([pos[n] for n in sorted(pos) if n not in (src, dst)])
        rad = _pick_curvature(p0, p2, others, [u[2] for u in used if u[:2] == (src, dst)])
        used.append((src, dst, rad))
        curve = _bezier(p0, p2, rad)
        keep = (np.hypot(*(curve - p0).T) > _R) & (np.hypot(*(curve - p2).T) > _R + 0.02)
        color = "#b0b0b0" if op is None else op_color(op)
        ax.add_patch(FancyArrowPatch(
            path=MplPath(curve[keep]), arrowstyle="-|>", mutation_scale=11, color=color,
            lw=1.0 if op is None else 1.7, linestyle="--" if op is None else "-", zorder=1))
        if op is None:
            continue
        half_w, half_h = 0.5 * _CHAR_W * len(op) + 0.06, 0.5 * _TEXT_H
        cx, cy = _place_label(p0, p2, rad, half_w, half_h, placed, centers)
        placed.append((cx, cy, half_w, half_h))
        ax.text(cx, cy, op, fontsize=7, color=color, ha="center", va="center", zorder=3,
                gid="op", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": color,
                                "lw": 0.6, "alpha": 0.92})

    names = {0: "$c_{k-2}$", 1: "$c_{k-1}$", out: "$c_{k}$",
             **{i + 2: str(i) for i in range(n_nodes)}}
    for node, (x, y) in pos.items():
        face = "#c7e9c0" if node < 2 else "#fdf1a8" if node == out else "#c6dbef"
        ax.add_patch(Circle((x, y), _R, fc=face, ec="#555555", lw=1.0, zorder=4))
        ax.text(x, y, names[node], fontsize=9, ha="center", va="center", zorder=5, gid="node")
    ax.set_title(title or f"{cell} cell")
    return fig


def _bezier(p0: np.ndarray, p2: np.ndarray, rad: float, n: int = 80) -> np.ndarray:
    """Quadratic Bezier from p0 to p2 bent sideways by ``rad`` (0: straight)."""
    d = p2 - p0
    ctrl = (p0 + p2) / 2 + rad * np.array([-d[1], d[0]])
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t**2 * p2


def _pick_curvature(p0, p2, others: np.ndarray, taken: list[float]) -> float:
    """The straightest bend whose curve passes clear of every other node (and differs from
    the bends of earlier edges between the same two nodes)."""
    for rad in (0.0, 0.18, -0.18, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6):
        if any(abs(rad - t) < 0.1 for t in taken):
            continue
        if len(others) == 0:
            return rad
        curve = _bezier(p0, p2, rad, 40)
        dist = np.hypot(curve[:, None, 0] - others[None, :, 0], curve[:, None, 1] - others[None, :, 1])
        if dist.min() > 1.5 * _R:
            return rad
    return 0.6 if not taken else -max(taken, key=abs) - 0.2


def _place_label(p0, p2, rad, half_w, half_h, placed, centers) -> tuple[float, float]:
    """A point on the edge where the label overlaps no earlier label and no node."""
    best, best_cost = None, math.inf
    for t in (0.56, 0.66, 0.46, 0.74, 0.38, 0.3):
        d = p2 - p0
        ctrl = (p0 + p2) / 2 + rad * np.array([-d[1], d[0]])
        pt = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t**2 * p2
        cost = 0.0
        for cx, cy, w, h in placed:
            ox = max(0.0, w + half_w - abs(pt[0] - cx))
            oy = max(0.0, h + half_h - abs(pt[1] - cy))
            cost += ox * oy
        for c in centers:
            ox = max(0.0, _R + half_w - abs(pt[0] - c[0]))
            oy = max(0.0, _R + half_h - abs(pt[1] - c[1]))
            cost += ox * oy
        if cost < best_cost - 1e-9:
            best, best_cost = pt, cost
        if cost == 0.0:
            break
    assert best is not None
    return float(best[0]), float(best[1])


# ---- alphas --------------------------------------------------------------------------------
def _op_columns(edge_ops: Sequence[Sequence[str]]) -> list[str]:
    cols: list[str] = []
    for ops in edge_ops:
        cols.extend(op for op in ops if op not in cols)
    return cols


def _edge_matrix(probs: np.ndarray, edge_ops: Sequence[Sequence[str]], cols: list[str]) -> np.ndarray:
    """(edges, len(cols)) with each edge's values under its own ops' columns, NaN elsewhere
    (edges may have different op lists, e.g. RobustDARTS spaces)."""
    out = np.full((len(edge_ops), len(cols)), np.nan)
    for e, ops in enumerate(edge_ops):
        if probs.shape[1] < len(ops):
            raise ValueError(f"edge {e} has {len(ops)} ops but only {probs.shape[1]} values")
        for k, op in enumerate(ops):
            out[e, cols.index(op)] = probs[e, k]
    return out


def _check_probs(probs: Any, edge_ops: Sequence[Sequence[str]], what: str) -> np.ndarray:
    arr = np.asarray(probs, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != len(edge_ops):
        raise ValueError(f"{what}: expected an (edges={len(edge_ops)}, K) array, got shape {arr.shape}")
    return arr


def alpha_heatmap(probs: np.ndarray, edge_ops: Sequence[Sequence[str]], title: str) -> Figure:
    """softmax(alpha) as a table: one row per edge (``j->n{i}``), one column per op, every
    value written in its cell, each edge's strongest op in bold; ops an edge lacks are blank."""
    probs = _check_probs(probs, edge_ops, "alpha_heatmap")
    cols = _op_columns(edge_ops)
    mat = _edge_matrix(probs, edge_ops, cols)
    fig = _figure((0.85 * len(cols) + 2.6, 0.32 * len(mat) + 1.6))
    ax = fig.add_subplot()
    vmax = float(np.nanmax(mat)) if np.isfinite(mat).any() else 1.0
    cmap = _cmap("viridis")
    im = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, aspect="auto", vmin=0.0,
                   vmax=max(vmax, 1e-9))
    ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(mat)), edge_labels(len(mat)), fontsize=8)
    ax.set_ylabel("edge  (input -> node; inputs 0, 1 = $c_{k-2}$, $c_{k-1}$, 2+m = node m)",
                  fontsize=7)
    for e in range(mat.shape[0]):
        row = mat[e]
        best = int(np.nanargmax(row)) if np.isfinite(row).any() else -1
        for c in range(mat.shape[1]):
            v = row[c]
            if not np.isfinite(v):
                continue
            r, g, b, _ = cmap(v / max(vmax, 1e-9))
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(c, e, f"{v:.2f}", ha="center", va="center", fontsize=6.5, color=ink,
                    fontweight="bold" if c == best else "normal")
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    ax.set_title(title, fontsize=10)
    return fig


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="#eeeeee")


def alpha_trajectories(history: Sequence[np.ndarray], edge_ops: Sequence[Sequence[str]],
                       edges: Sequence[int] | None = None, title: str = "",
                       epochs: Sequence[int] | None = None) -> Figure:
    """softmax(alpha) of every op over the epochs, one small panel per selected edge (all by
    default): how a few ops (often ``skip_connect``) grow at the others' expense, the Matthew
    effect. ``history[t]`` is the (edges, K) array after epoch ``epochs[t]`` (default ``t``)."""
    edges = list(range(len(edge_ops))) if edges is None else [int(e) for e in edges]
    for e in edges:
        if not 0 <= e < len(edge_ops):
            raise ValueError(f"edge {e} out of range (the cell has {len(edge_ops)} edges)")
    if not history or not edges:
        fig = _figure((4.0, 2.5))
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no history", ha="center", va="center", transform=ax.transAxes)
        ax.axis("off")
        ax.set_title(title)
        return fig
    traj = np.stack([_check_probs(h, edge_ops, f"alpha_trajectories[{t}]")
                     for t, h in enumerate(history)])  # epochs x edges x K
    x = np.arange(len(traj)) if epochs is None else np.asarray(epochs)
    if len(x) != len(traj):
        raise ValueError(f"{len(x)} epochs for {len(traj)} history entries")
    cols = min(len(edges), 5)
    rows = math.ceil(len(edges) / cols)
    fig = _figure((2.7 * cols + 0.4, 2.1 * rows + 0.9))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    labels = edge_labels(len(edge_ops))
    ymax = max(float(np.nanmax(traj[:, edges])) * 1.05, 1e-6)
    handles: dict[str, Any] = {}
    marker = "o" if len(traj) == 1 else None
    for ax, e in zip(axes.flat, edges, strict=False):
        for k, op in enumerate(edge_ops[e]):
            (line,) = ax.plot(x, traj[:, e, k], color=op_color(op), lw=1.3, marker=marker,
                              ms=3, label=op)
            handles.setdefault(op, line)
        ax.set_title(labels[e], fontsize=8)
        ax.set_ylim(0, ymax)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, lw=0.5)
    for ax in list(axes.flat)[len(edges):]:
        fig.delaxes(ax)
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=8)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncol=min(len(handles), 5), fontsize=7, frameon=False)
    fig.suptitle(title or "softmax(alpha) per op", fontsize=10)
    return fig


# ---- learning curves -----------------------------------------------------------------------
def _panel_of(key: str) -> str:
    low = key.lower()
    if "loss" in low:
        return "loss"
    if "acc" in low or "err" in low:
        return "accuracy / error"
    return key


def learning_curves(history: Sequence[Mapping[str, Any]], keys: Sequence[str], title: str) -> Figure:
    """Per-epoch metrics against the epoch, one panel per kind (losses, accuracies / errors,
    each other key alone) so that differently scaled metrics stay readable. Entries without a
    key, or with a None / non-finite value, are skipped; the x value is ``entry["epoch"]``
    (else the entry's index)."""
    panels: dict[str, list[tuple[str, list[float], list[float]]]] = {}
    for key in keys:
        xs, ys = [], []
        for i, entry in enumerate(history):
            v = entry.get(key)
            if isinstance(v, bool) or not isinstance(v, int | float | np.number) \
                    or not math.isfinite(float(v)):
                continue
            xs.append(float(entry.get("epoch", i)))
            ys.append(float(v))
        if xs:
            panels.setdefault(_panel_of(key), []).append((key, xs, ys))
    if not panels:
        fig = _figure((4.0, 2.5))
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.axis("off")
        ax.set_title(title)
        return fig
    fig = _figure((4.2 * len(panels) + 0.3, 3.4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (panel, series) in zip(axes, panels.items(), strict=True):
        for key, xs, ys in series:
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, lw=1.4, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(panel)
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig
