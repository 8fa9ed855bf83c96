"""Report figures: structure of each plot (axes, labels, texts) and atomic saving."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from nasflow.genotype import PUBLISHED
from nasflow.report import plots

OPS8 = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
        "dil_conv_3x3", "dil_conv_5x5"]
EDGES = 14  # 4 nodes: 2 + 3 + 4 + 5


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _texts(fig: Figure, gid: str) -> list:
    return [t for ax in fig.axes for t in ax.texts if t.get_gid() == gid]


@pytest.mark.parametrize("cell", ["normal", "reduce"])
def test_cell_diagram_darts_v2(cell):
    g = PUBLISHED["DARTS_V2"]
    genes = getattr(g, cell)
    fig = plots.cell_diagram(g, cell)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    ops = _texts(fig, "op")
    assert Counter(t.get_text() for t in ops) == Counter(op for op, _ in genes)  # one per edge
    assert [t.get_color() for t in ops] == [plots.op_color(op) for op, _ in genes]
    nodes = {t.get_text(): t.get_position() for t in _texts(fig, "node")}
    assert set(nodes) == {"$c_{k-2}$", "$c_{k-1}$", "0", "1", "2", "3", "$c_{k}$"}
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == len(genes) + len(g.normal_concat)
    assert ax.get_title() == f"{cell} cell"

    # layered left to right: every edge points right, the output is rightmost
    x = {0: nodes["$c_{k-2}$"][0], 1: nodes["$c_{k-1}$"][0],
         **{i + 2: nodes[str(i)][0] for i in range(4)}}
    for j, (_, src) in enumerate(genes):
        assert x[src] < x[j // 2 + 2]
    assert nodes["$c_{k}$"][0] > max(x.values())

    # readable: no two op labels overlap once drawn
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in ops]
    assert not any(boxes[i].overlaps(boxes[j]) for i in range(len(boxes)) for j in range(i))


def test_cell_diagram_chain_and_dict_input():
    g = PUBLISHED["DropNAS_C10"]
    fig = plots.cell_diagram(g.model_dump(mode="json"), "reduce", title="DropNAS reduce")
    nodes = {t.get_text(): t.get_position()[0] for t in _texts(fig, "node")}
    # reduce cell: node k takes node k-1, so four node layers after the inputs
    assert nodes["$c_{k-2}$"] < nodes["0"] < nodes["1"] < nodes["2"] < nodes["3"] < nodes["$c_{k}$"]
    assert len(_texts(fig, "op")) == 8
    assert fig.axes[0].get_title() == "DropNAS reduce"
    with pytest.raises(ValueError, match="cell must be"):
        plots.cell_diagram(g, "both")


def test_alpha_heatmap():
    rng = np.random.default_rng(0)
    probs = _softmax(rng.normal(size=(EDGES, 8)))
    fig = plots.alpha_heatmap(probs, [OPS8] * EDGES, "normal softmax(alpha)")
    ax, _cbar = fig.axes  # the map and its colour bar
    assert [t.get_text() for t in ax.get_yticklabels()][:3] == ["0->n0", "1->n0", "0->n1"]
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "4->n3"
    assert [t.get_text() for t in ax.get_xticklabels()] == OPS8
    assert len(ax.texts) == EDGES * 8
    assert {t.get_text() for t in ax.texts} <= {f"{v:.2f}" for v in probs.ravel()}
    bold = [t for t in ax.texts if t.get_fontweight() == "bold"]
    assert len(bold) == EDGES  # each edge's strongest op
    assert ax.get_title() == "normal softmax(alpha)"

    # edges with different op lists (RobustDARTS-style): blanks where an edge lacks an op
    edge_ops = [OPS8[1:] if e % 2 else OPS8 for e in range(EDGES)]
    fig = plots.alpha_heatmap(probs, edge_ops, "mixed")
    assert len(fig.axes[0].texts) == sum(len(o) for o in edge_ops)
    with pytest.raises(ValueError, match="edges="):
        plots.alpha_heatmap(probs[:5], [OPS8] * EDGES, "bad")


def test_alpha_trajectories_small_multiples():
    rng = np.random.default_rng(1)
    history = [_softmax(rng.normal(size=(EDGES, 8)) + np.eye(8)[3] * t) for t in range(6)]
    fig = plots.alpha_trajectories(history, [OPS8] * EDGES, [0, 5, 13], "Matthew effect")
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["0->n0", "0->n2", "4->n3"]
    for ax, e in zip(fig.axes, [0, 5, 13], strict=True):
        assert len(ax.lines) == 8
        skip = ax.lines[OPS8.index("skip_connect")]
        assert list(skip.get_xdata()) == list(range(6))
        assert np.allclose(skip.get_ydata(), [h[e, 3] for h in history])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == OPS8
    assert fig.get_suptitle() == "Matthew effect"

    fig = plots.alpha_trajectories(history, [OPS8] * EDGES, None, "all")
    assert len(fig.axes) == EDGES  # unused grid cells are removed
    fig = plots.alpha_trajectories([], [OPS8] * EDGES, None, "empty")
    assert len(fig.axes) == 1
    assert fig.axes[0].texts[0].get_text() == "no history"


def test_learning_curves():
    history = [{"epoch": e, "train_loss": 2.0 / (e + 1), "train_acc": 50.0 + e,
                "test_acc": (45.0 + e) if e % 2 else None} for e in range(10)]
    history[3]["train_loss"] = float("nan")
    fig = plots.learning_curves(history, ["train_loss", "train_acc", "test_acc", "lr"], "retrain")
    loss_ax, acc_ax = fig.axes  # losses and accuracies on their own scales; "lr" absent
    assert [ln.get_label() for ln in loss_ax.lines] == ["train_loss"]
    assert [ln.get_label() for ln in acc_ax.lines] == ["train_acc", "test_acc"]
    assert len(loss_ax.lines[0].get_xdata()) == 9  # NaN skipped
    assert list(acc_ax.lines[1].get_xdata()) == [1, 3, 5, 7, 9]  # None skipped
    assert loss_ax.get_xlabel() == "epoch"
    assert fig.get_suptitle() == "retrain"
    assert len(plots.learning_curves([], ["train_loss"], "none").axes) == 1


def test_save_writes_png_atomically(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = tmp_path / "figs" / "cell.png"  # the folder is created
    plots.save(plots.cell_diagram(PUBLISHED["DARTS_V2"], "normal"), out)
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 5000
    assert [p.name for p in out.parent.iterdir()] == ["cell.png"]  # no temp file left

    fig = plt.figure()  # a pyplot figure is closed by save
    fig.add_subplot().plot([0, 1])
    plots.save(fig, tmp_path / "curve.pdf")
    assert (tmp_path / "curve.pdf").read_bytes().startswith(b"%PDF")
    assert not plt.get_fignums()
