"""The DropNAS paper's mechanism analyses (Hong et al. 2020, Sec. 3 and Fig. 2-4).

- Matthew effect: softmax(alpha) trajectories per op over the search (from search history).
- Per-op |grad alpha| over the search: which ops' alphas receive gradient.
- Co-adaptation: on edge E(0,2) (node 0 from cell input 0) of the first and last cell, the
  feature maps of the non-zero ops averaged over a batch of images, clustered with K-means
  (k=3) and projected to 2-D with PCA.
- alpha vs stand-alone accuracy: per op of one edge, the supernet's accuracy when that edge
  (in every cell of its type) runs only that op, and the Pearson correlation with softmax(alpha).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from nasflow.config import RunConfig
from nasflow.data import load_dataset, make_loader
from nasflow.io import load_weights
from nasflow.loaders import MADE_FOR, check_tensor_shapes, made_for
from nasflow.train.runtime import select_device
from nasflow.train.search import build_search


def load_trained_supernet(config: RunConfig, search_dir: Path):
    device = select_device(config.runtime)
    _, space, model, method = build_search(config, device)
    path = search_dir / "supernet.pt"
    state = load_weights(path, model, key="model", expected=made_for(config, MADE_FOR["search"]),
                         hint="search.layers / search.init_channels", map_location=device)
    check_tensor_shapes(state.get("alphas"), {c: tuple(a.shape) for c, a in method.alphas.items()},
                        path, "alphas")
    model.load_state_dict(state["model"])
    with torch.no_grad():
        for c, a in state["alphas"].items():
            method.alphas[c].copy_(a.to(device))
    model.eval()
    return space, model, method, device


def _images(config: RunConfig, device, n: int, split: str = "train"):
    ds = load_dataset(config.dataset, split)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(ds), generator=g)[: min(n, len(ds))]
    loader = make_loader(ds, idx, batch_size=len(idx), device=device, augment=None, shuffle=False,
                         drop_last=False, seed=0, channels_last=config.runtime.channels_last,
                         device_data=config.runtime.device_data)
    loader.set_epoch(0)
    return next(iter(loader))


@torch.no_grad()
def coadaptation(config: RunConfig, search_dir: Path, n_images: int = 1000, edge: int = 0,
                 cell_type: str = "normal") -> dict[str, Any]:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    space, model, method, device = load_trained_supernet(config, search_dir)
    x, _ = _images(config, device, n_images)
    cells = [i for i, c in enumerate(model.cells) if c.cell_type == cell_type]
    picks = {"first": cells[0], "last": cells[-1]}
    ops = space.edge_ops[cell_type][edge]
    feats: dict[tuple[str, int], torch.Tensor] = {}
    hooks = []
    for label, i in picks.items():
        for k, name in enumerate(ops):
            if name == "none":
                continue
            mod = model.cells[i].edges[edge].ops[k]
            def keep(_m, _i, out, key=(label, k)):
                feats[key] = out.float().mean(0).flatten().cpu()

            hooks.append(mod.register_forward_hook(keep))
    method.forward(x)
    for h in hooks:
        h.remove()
    result: dict[str, Any] = {"edge": edge, "cell_type": cell_type, "n_images": int(x.shape[0])}
    for label in picks:
        ks = [k for k, name in enumerate(ops) if name != "none"]
        mat = torch.stack([feats[(label, k)] for k in ks]).numpy()
        coords = PCA(n_components=2, random_state=0).fit_transform(mat)
        clusters = KMeans(n_clusters=min(3, len(ks)), n_init=10, random_state=0).fit_predict(mat)
        result[label] = {"cell": picks[label], "ops": [ops[k] for k in ks],
                         "pca": coords.round(6).tolist(), "cluster": clusters.tolist()}
    return result


@torch.no_grad()
def standalone_correlation(config: RunConfig, search_dir: Path, edge: int, cell_type: str = "normal",
                           n_images: int = 1000, split: str = "test") -> dict[str, Any]:
    """Accuracy of the supernet with ``edge`` reduced to one op, for every non-zero op."""
    space, model, method, device = load_trained_supernet(config, search_dir)
    x, y = _images(config, device, n_images, split)
    ops = space.edge_ops[cell_type][edge]
    probs = method.probabilities()[cell_type][edge]
    weights = method.op_weights(None)
    rows = []
    for k, name in enumerate(ops):
        if name == "none":
            continue
        w = {c: t.clone() for c, t in weights.items()}
        w[cell_type][edge] = F.one_hot(torch.tensor(k), w[cell_type].shape[1]).to(w[cell_type])
        active = {c: list(a) for c, a in method.active_ops(None).items()}
        active[cell_type][edge] = (k,)
        logits = model(x, w, active)
        acc = float((logits.argmax(1) == y).float().mean())
        rows.append({"op": name, "alpha_prob": float(probs[k]), "standalone_acc": acc})
    p = np.array([r["alpha_prob"] for r in rows])
    a = np.array([r["standalone_acc"] for r in rows])
    corr = float(np.corrcoef(p, a)[0, 1]) if p.std() > 0 and a.std() > 0 else float("nan")
    return {"edge": edge, "cell_type": cell_type, "split": split, "n_images": int(x.shape[0]),
            "ops": rows, "pearson_r": corr}


def grad_magnitude_series(history: list[dict], edge_ops: list[list[str]],
                          cell: str) -> dict[str, list[float]]:
    """Mean |grad alpha| of each op (over edges) per epoch."""
    series: dict[str, list[float]] = {}
    for h in history:
        g = np.asarray(h.get("alpha_grad_abs", {}).get(cell, []))
        if g.size == 0:
            continue
        per_op: dict[str, list[float]] = {}
        for e, ops in enumerate(edge_ops):
            for k, op in enumerate(ops):
                per_op.setdefault(op, []).append(float(g[e, k]))
        for op, vals in per_op.items():
            series.setdefault(op, []).append(float(np.mean(vals)))
    return series


def plot_series(series: dict[str, list[float]], title: str, ylabel: str):
    fig, ax = plt.subplots(figsize=(6, 4))
    for op, vals in series.items():
        ax.plot(range(len(vals)), vals, label=op)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_coadaptation(result: dict[str, Any], title: str):
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    colors = ["tab:red", "tab:green", "tab:blue"]
    for ax, label in zip(axes, ("first", "last"), strict=True):
        r = result[label]
        pts = np.asarray(r["pca"])
        for (px, py), op, c in zip(pts, r["ops"], r["cluster"], strict=True):
            ax.scatter(px, py, color=colors[c % 3], s=40)
            ax.annotate(op, (px, py), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"{label} cell (#{r['cell']}), edge E(0,2)")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_standalone(result: dict[str, Any], title: str):
    fig, ax = plt.subplots(figsize=(5, 4))
    for r in result["ops"]:
        ax.scatter(r["alpha_prob"], r["standalone_acc"])
        ax.annotate(r["op"], (r["alpha_prob"], r["standalone_acc"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("softmax(alpha)")
    ax.set_ylabel("stand-alone accuracy")
    ax.set_title(f"{title}: r = {result['pearson_r']:.3f}")
    fig.tight_layout()
    return fig
