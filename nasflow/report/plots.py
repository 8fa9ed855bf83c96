"""Figures people would rather look at than JSON: cell diagrams, alpha heatmaps, alpha
trajectories (the Matthew effect), learning curves. Matplotlib only (Agg), no graphviz."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nasflow.io import atomic_path  # noqa: E402

OP_COLORS = {
    "skip_connect": "tab:gray", "max_pool_3x3": "tab:blue", "avg_pool_3x3": "tab:cyan",
    "sep_conv_3x3": "tab:red", "sep_conv_5x5": "tab:orange", "dil_conv_3x3": "tab:green",
    "dil_conv_5x5": "tab:olive", "none": "black",
}


def save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def cell_diagram(genotype, cell: str = "normal"):
    """The cell as a left-to-right DAG; edges labelled and coloured by op."""
    genes = genotype.reduce if cell == "reduce" else genotype.normal
    concat = genotype.reduce_concat if cell == "reduce" else genotype.normal_concat
    k = genotype.edges_per_node
    n_nodes = len(genes) // k
    pos = {0: (0.0, 1.0), 1: (0.0, -1.0)}
    for i in range(n_nodes):
        pos[i + 2] = (1.0 + i, 1.5 - 3.0 * i / max(n_nodes - 1, 1))
    out_pos = (n_nodes + 1.0, 0.0)
    fig, ax = plt.subplots(figsize=(2.2 * (n_nodes + 2), 4))
    for j, (op, src) in enumerate(genes):
        dst = j // k + 2
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        color = OP_COLORS.get(op, "tab:purple")
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "->", "color": color, "lw": 1.6,
                                "shrinkA": 14, "shrinkB": 14})
        t = 0.45 + 0.1 * (j % k)
        ax.text(x0 + t * (x1 - x0), y0 + t * (y1 - y0), op, fontsize=7, color=color,
                ha="center", va="center", bbox={"fc": "white", "ec": "none", "alpha": 0.8})
    for c in concat:
        ax.annotate("", xy=out_pos, xytext=pos[c],
                    arrowprops={"arrowstyle": "->", "color": "lightgray", "lw": 1, "shrinkA": 14,
                                "shrinkB": 14})
    labels = {0: "c_{k-2}", 1: "c_{k-1}", **{i + 2: str(i) for i in range(n_nodes)}}
    for node, (x, y) in pos.items():
        ax.scatter([x], [y], s=700, color="lightgreen" if node < 2 else "lightblue", zorder=3)
        ax.text(x, y, labels[node], ha="center", va="center", fontsize=8, zorder=4)
    ax.scatter([out_pos[0]], [out_pos[1]], s=700, color="khaki", zorder=3)
    ax.text(*out_pos, "c_{k}", ha="center", va="center", fontsize=8, zorder=4)
    ax.set_title(f"{cell} cell")
    ax.axis("off")
    fig.tight_layout()
    return fig


def _edge_labels(n_edges: int) -> list[str]:
    labels, node = [], 0
    while len(labels) < n_edges:
        labels.extend(f"{j}->n{node}" for j in range(node + 2))
        node += 1
    return labels[:n_edges]


def alpha_heatmap(probs: np.ndarray, edge_ops: list[list[str]], title: str):
    ops = max(edge_ops, key=len)
    probs = np.asarray(probs)[:, : len(ops)]
    fig, ax = plt.subplots(figsize=(1.0 * len(ops) + 2, 0.35 * len(probs) + 1.5))
    im = ax.imshow(probs, cmap="viridis", aspect="auto", vmin=0, vmax=max(float(probs.max()), 1e-9))
    ax.set_xticks(range(len(ops)), ops, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(probs)), _edge_labels(len(probs)), fontsize=8)
    for e in range(probs.shape[0]):
        for k in range(probs.shape[1]):
            ax.text(k, e, f"{probs[e, k]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if probs[e, k] < 0.6 * probs.max() else "black")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def alpha_trajectories(history: list[np.ndarray], edge_ops: list[list[str]], edges: list[int] | None,
                       title: str):
    """softmax(alpha) of every op over epochs, one small panel per edge."""
    edges = list(range(len(edge_ops))) if edges is None else edges
    cols = min(len(edges), 5)
    rows = int(np.ceil(len(edges) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows), squeeze=False, sharey=True)
    labels = _edge_labels(len(edge_ops))
    traj = np.asarray(history)  # epochs x edges x K
    for ax, e in zip(axes.flat, edges, strict=False):
        for k, op in enumerate(edge_ops[e]):
            ax.plot(range(len(traj)), traj[:, e, k], color=OP_COLORS.get(op, "tab:purple"), label=op, lw=1.2)
        ax.set_title(labels[e], fontsize=8)
    for ax in list(axes.flat)[len(edges):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def learning_curves(history: list[dict], keys: list[str], title: str):
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        pts = [(h["epoch"], h[key]) for h in history if key in h and h[key] is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", ms=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
