"""Contract tests: every registered method on every registered space whose ops it supports.

The combinations come from the registries, so a new method or space is covered here without
editing this file: one search step, derive, genotype JSON round trip, derive from the
recorded architecture values (what ``nasflow derive`` does), one retraining step of the
derived network, and a checkpoint save / resume round trip that continues exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nasflow.io import load_checkpoint, save_checkpoint
from nasflow.methods import METHODS, build_method
from nasflow.params import DeriveParams, RetrainParams, SearchParams
from nasflow.spaces import genotype_from_json, load_builtin_spaces, space_by_name
from nasflow.train.search import check_search_record
from tests.helpers import batch


def _combinations():
    for space_name in load_builtin_spaces():
        space = space_by_name(space_name)
        for method_name, cls in METHODS.items():
            if cls.supports_space(space) is None:
                yield pytest.param(method_name, space_name, id=f"{method_name}-{space_name}")


COMBINATIONS = list(_combinations())


def _build(method_name: str, space_name: str, seed: int = 0):
    torch.manual_seed(seed)
    space = space_by_name(space_name)
    search = SearchParams(epochs=2, batch_size=4, layers=3, init_channels=4, seed=seed,
                          alpha_init_std=0.5, alpha_lr=0.05)
    method = build_method(METHODS[method_name].Params(), search)
    method.bind_space(space)
    model = space.build_supernet(C=4, layers=3, num_classes=3, in_channels=1,
                                 **method.supernet_options())
    method.adapt_search_space(model, space, torch.device("cpu"),
                              generator=torch.Generator().manual_seed(seed))
    method.new_epoch(0)
    return space, method


def _step(method, seed: int):
    torch.manual_seed(seed)  # ops that draw (noise) and samplers use the global generator
    x, y = batch(seed=seed)
    x_v, y_v = batch(seed=seed + 100)
    return method.step((x, y), (x_v, y_v))


def test_every_space_is_covered():
    covered = {space for _, space in (p.values for p in COMBINATIONS)}
    assert covered == set(load_builtin_spaces())
    assert {"darts", "dropnas"} <= {m for m, _ in (p.values for p in COMBINATIONS)}


@pytest.mark.parametrize(("method_name", "space_name"), COMBINATIONS)
def test_method_on_space(method_name, space_name, tmp_path):
    space, method = _build(method_name, space_name)
    w_before = [p.detach().clone() for p in method.model.parameters()]
    out = _step(method, seed=1)
    assert torch.isfinite(out["loss"])
    assert out["logits"].shape == (4, 3)
    changed = [not torch.equal(a, p) for a, p in zip(w_before, method.model.parameters(), strict=True)]
    assert any(changed), "one search step moved no supernet weight"
    for cell in space.cell_types:
        assert method.alphas[cell].shape == (space.n_edges, space.width)

    # derive, and the genotype's JSON round trip through the space-dispatching loader
    genotype = method.genotype(DeriveParams())
    data = json.loads(json.dumps(genotype.model_dump(mode="json")))
    assert data["space"] == space.genotype_kind
    assert genotype_from_json(data, "contract") == genotype

    # `nasflow derive`: the same genotype from the recorded values, without the supernet
    record = {"space": space.name, "edge_ops": space.edge_ops,
              "alphas": {k: np.asarray(v).tolist() for k, v in method.arch_values().items()}}
    record = json.loads(json.dumps(record))
    reader = build_method(METHODS[method_name].Params(), method.search)
    reader.bind_space(space)
    assert reader.genotype(DeriveParams(), arch=check_search_record(record, space, "r")) == genotype

    # one retraining step of the derived network
    torch.manual_seed(0)
    retrain = RetrainParams(layers=3, init_channels=4, auxiliary=False, drop_path_prob=0.0)
    net = space.build_network(genotype, retrain, num_classes=3, in_channels=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = batch(seed=2)
    out = net(x)
    logits = out[0] if isinstance(out, tuple) else out
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert logits.shape == (4, 3)

    # checkpoint round trip: a resumed method continues exactly like the uninterrupted one
    save_checkpoint(tmp_path / "ckpt.pt", {"model": method.model.state_dict(),
                                           "method": method.state_dict()})
    _, resumed = _build(method_name, space_name, seed=5)  # other init: the load must overwrite
    state = load_checkpoint(tmp_path / "ckpt.pt")
    resumed.model.load_state_dict(state["model"])
    resumed.load_state_dict(state["method"])
    _step(method, seed=3)
    _step(resumed, seed=3)
    for cell in space.cell_types:
        torch.testing.assert_close(resumed.alphas[cell], method.alphas[cell], rtol=0, atol=1e-6)
    for a, b in zip(resumed.model.parameters(), method.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_record_of_another_space_is_refused():
    from nasflow.errors import NasflowError

    _, method = _build("darts", "darts")
    record = {"space": "darts", "edge_ops": method.space.edge_ops,
              "alphas": {k: v.tolist() for k, v in method.arch_values().items()}}
    with pytest.raises(NasflowError, match="made for space 'darts'"):
        check_search_record(record, space_by_name("rdarts_s2"), "search.json")
    small = space_by_name("darts", nodes=2)
    with pytest.raises(NasflowError, match=r"edge_ops.normal: .*14 edges.* has 5"):
        check_search_record(record, small, "search.json")
    record["alphas"]["normal"][0][0] = float("nan")
    with pytest.raises(NasflowError, match="NaN"):
        check_search_record(record, space_by_name("darts"), "search.json")


def test_smoke_search_matches_the_recording_before_the_registry():
    """The fixed-seed digits smoke search of DARTS and DropNAS (deterministic mode) gives the
    alphas and genotypes recorded before the space registry and method building blocks."""
    from tests.record_baseline import BASELINE, smoke_search
    from tests.record_baseline import METHODS as RECORDED

    baseline = json.loads(BASELINE.read_text())
    for method in RECORDED:
        now = smoke_search(method)
        for cell, rows in baseline[method]["alphas"].items():
            np.testing.assert_allclose(now["alphas"][cell], rows, rtol=0, atol=1e-6,
                                       err_msg=f"{method} {cell}")
        expected = {"space": "darts", **baseline[method]["genotype"]}
        assert now["genotype"] == expected, method


@pytest.mark.parametrize("method_name", ["darts", "dropnas"])
@pytest.mark.parametrize("space_name", list(load_builtin_spaces()))
def test_cli_stages_on_every_space(space_name, method_name, tmp_path, monkeypatch):
    """search -> derive -> retrain -> evaluate through the CLI on digits (smoke profile, a
    couple of steps): a genotype of the space's own kind comes out and trains."""
    from nasflow.cli import main
    from tests.record_baseline import ROOT

    monkeypatch.chdir(tmp_path)
    params = ["--params", str(ROOT / "params/datasets/digits.yaml"),
              "--params", str(ROOT / f"params/methods/{method_name}.yaml"),
              "--params", str(ROOT / "params/profiles/smoke.yaml"),
              "--set", f"space.name={space_name}", "--set", "tracking.enabled=false",
              "--set", f"dataset.root={ROOT / 'data'}", "--set", "search.epochs=1",
              "--set", "search.steps_per_epoch=2", "--set", "retrain.epochs=1",
              "--set", "retrain.steps_per_epoch=2"]
    assert main(["search", *params, "--out", "search"]) == 0
    record = json.loads((tmp_path / "search/search.json").read_text())
    assert record["space"] == space_name
    assert main(["derive", *params, "--search", "search/search.json", "--out", "g.json"]) == 0
    genotype = genotype_from_json(json.loads((tmp_path / "g.json").read_text()), "g.json")
    assert genotype.space == space_by_name(space_name).genotype_kind
    assert genotype == genotype_from_json(record["genotype"], "search.json")
    assert main(["retrain", *params, "--genotype", "g.json", "--out", "retrain"]) == 0
    assert main(["evaluate", *params, "--genotype", "g.json", "--weights", "retrain/model.pt",
                 "--out", "eval.json"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert 0 <= result["top1_err"] <= 100
    assert result["params_m"] > 0
