"""Genotype JSON, derivation on hand-made alphas, published genotypes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nasflow.errors import NasflowError
from nasflow.genotype import PUBLISHED, Genotype, derive_cell
from nasflow.spaces import resolve_genotype
from nasflow.spaces.ops import DARTS_OPS

OPS = list(DARTS_OPS)


def _alpha(entries: dict[tuple[int, str], float], n_edges: int = 14) -> np.ndarray:
    a = np.zeros((n_edges, len(OPS)))
    for (e, op), v in entries.items():
        a[e, OPS.index(op)] = v
    return a


def test_derivation_picks_top2_edges_and_best_non_none_op():
    # node 0: edges 0,1; node 1: edges 2,3,4; node 2: 5..8; node 3: 9..13
    a = _alpha({
        (0, "sep_conv_3x3"): 2.0, (1, "max_pool_3x3"): 1.0,
        (2, "none"): 9.0, (2, "dil_conv_5x5"): 0.5,      # 'none' is never chosen
        (3, "skip_connect"): 3.0, (4, "sep_conv_5x5"): 2.5,
        (5, "avg_pool_3x3"): 0.1, (6, "sep_conv_3x3"): 4.0, (7, "dil_conv_3x3"): 3.5,
        (8, "sep_conv_3x3"): 0.2,
        (9, "skip_connect"): 0.3, (13, "dil_conv_5x5"): 5.0, (12, "sep_conv_5x5"): 4.9,
    })
    edge_ops = [OPS] * 14
    genes = derive_cell(a, edge_ops, nodes=4, rank_by="alpha")
    assert genes == [
        ("sep_conv_3x3", 0), ("max_pool_3x3", 1),
        ("skip_connect", 1), ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 1), ("dil_conv_3x3", 2),
        ("dil_conv_5x5", 4), ("sep_conv_5x5", 3),
    ]


def test_softmax_and_alpha_ranking_can_differ():
    # Edge A: one op clearly dominant but a low raw alpha relative to edge B's spread-out ops.
    a = np.full((2, len(OPS)), -5.0)
    a[0, OPS.index("sep_conv_3x3")] = 0.0           # softmax ~ 1.0, raw alpha 0
    a[1, :] = 1.0                                    # softmax 1/8 each, raw alpha 1
    genes_soft = derive_cell(a, [OPS] * 2, nodes=1, rank_by="softmax", edges_per_node=1)
    genes_raw = derive_cell(a, [OPS] * 2, nodes=1, rank_by="alpha", edges_per_node=1)
    assert genes_soft == [("sep_conv_3x3", 0)]
    assert genes_raw[0][1] == 1


def test_genotype_json_round_trip(tmp_path):
    for name, g in PUBLISHED.items():
        path = tmp_path / f"{name}.json"
        g.save(path)
        assert Genotype.load(path) == g
        assert json.loads(path.read_text())["normal"][0][0] == g.normal[0][0]


@pytest.mark.parametrize(("mutate", "key"), [
    (lambda d: d["normal"].__setitem__(0, ["conv_9x9", 0]), "unknown op"),
    (lambda d: d["reduce"].__setitem__(1, ["sep_conv_3x3", 7]), "input index"),
    (lambda d: d.__setitem__("extra", 1), "extra"),
])
def test_invalid_genotype_json_is_refused_with_file_and_key(tmp_path, mutate, key):
    data = PUBLISHED["DARTS_V2"].model_dump(mode="json")
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NasflowError) as err:
        Genotype.load(path)
    assert str(path) in str(err.value)
    assert key.split()[0] in str(err.value).lower()


def test_resolve_published_and_missing():
    assert resolve_genotype("DARTS_V2") is PUBLISHED["DARTS_V2"]
    with pytest.raises(NasflowError, match="no such genotype"):
        resolve_genotype("nope.json")
