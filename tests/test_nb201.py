"""The NAS-Bench-201 space: cell strings, the benchmark's index order, supernet, derivation,
the standalone network's size against the benchmark's figures, and offline look-ups in a
benchmark file of the released layout (built here, a few cells)."""

from __future__ import annotations

import bz2
import fractions
import json
import pickle
import re

import numpy as np
import pytest
import torch

from nasflow.cli import main
from nasflow.errors import NasflowError
from nasflow.metrics import count_macs
from nasflow.params import DeriveParams, RetrainParams
from nasflow.spaces import genotype_from_json, published_genotypes, space_by_name
from nasflow.spaces.base import active_from_mask
from nasflow.spaces.nb201 import (
    NB201_OPS,
    Nb201Genotype,
    Nb201Network,
    arch_index,
    enumerate_archs,
    format_arch,
    parse_arch,
    set_fused_mixing,
)
from nasflow.spaces.nb201.benchmark import arch_results_state
from nasflow.spaces.ops import set_share_relu
from tests.helpers import batch

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


# ---- cell strings ------------------------------------------------------------------------------
def test_string_round_trip_and_edge_order():
    ops = parse_arch(ARCH)
    # alpha rows: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
    assert ops == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect",
                   "nor_conv_3x3", "skip_connect")
    assert format_arch(ops) == ARCH
    g = Nb201Genotype(arch=ARCH)
    assert g.edge_ops == ops
    assert str(g) == ARCH
    assert g.nodes[2] == [("skip_connect", 0), ("nor_conv_3x3", 1), ("skip_connect", 2)]
    assert Nb201Genotype.from_edge_ops(list(ops)) == g
    # inputs of a node in another order: the same cell, stored canonically
    shuffled = ("|nor_conv_3x3~0|+|avg_pool_3x3~1|nor_conv_3x3~0|+|skip_connect~2|skip_connect~0|"
                "nor_conv_3x3~1|")
    assert Nb201Genotype(arch=shuffled).arch == ARCH
    data = json.loads(json.dumps(g.model_dump(mode="json")))
    assert data == {"space": "nb201", "arch": ARCH}
    assert genotype_from_json(data, "g.json") == g
    assert genotype_from_json({"stage": "search", "genotype": data}, "search.json") == g


@pytest.mark.parametrize(("arch", "fragment"), [
    ("|nor_conv_3x3~0|+|none~0|none~1|", "needs 3 nodes separated by '+', found 2"),
    ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_5x5'"),
    ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", "node 2: input '2'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1: input '1'"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "node 2: input 0 appears twice"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2: has 1 input(s)"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must be written |op~input|"),
    ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "'none0' is not op~input"),
    ("|none~x|+|none~0|none~1|+|none~0|none~1|none~2|", "input 'x'"),
])
def test_bad_strings_name_the_problem(arch, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)) as info:
        parse_arch(arch)
    assert fragment in str(info.value)
    with pytest.raises(NasflowError) as info:
        genotype_from_json({"space": "nb201", "arch": arch}, "g.json")
    msg = str(info.value)
    assert msg.startswith("g.json: arch: ")
    assert fragment in msg
    assert "\n" not in msg


def test_genotype_json_errors_name_the_source_and_field():
    with pytest.raises(NasflowError, match=r"^g.json: extra: Extra inputs"):
        genotype_from_json({"space": "nb201", "arch": ARCH, "extra": 1}, "g.json")
    with pytest.raises(NasflowError, match=r"^g.json: arch: Field required"):
        genotype_from_json({"space": "nb201"}, "g.json")


# ---- the benchmark's index order ----------------------------------------------------------------
def test_enumeration_matches_the_benchmark_order():
    archs = enumerate_archs()
    assert len(archs) == len(set(archs)) == 15_625 == 5 ** 6
    # the cells generate_meta_info asserts after its random.seed(88) shuffle (AutoDL
    # exps/NAS-Bench-201/main.py; NATS-Bench's topology space asserts the same)
    assert archs[0] == ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|"
                        "skip_connect~1|skip_connect~2|")
    assert archs[9] == "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    assert archs[123] == ("|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|"
                          "avg_pool_3x3~1|nor_conv_3x3~2|")
    assert all(format_arch(parse_arch(a)) == a for a in archs[:200])
    assert arch_index(archs[4321]) == 4321 == Nb201Genotype(arch=archs[4321]).index


# ---- supernet ----------------------------------------------------------------------------------
def _supernet(**options):
    torch.manual_seed(0)
    space = space_by_name("nb201")
    net = space.build_supernet(C=4, layers=1, num_classes=3, in_channels=1, **options)
    return space, net


def _active(space, mask=None):
    valid = space.valid("cell")
    return {"cell": active_from_mask(valid if mask is None else mask & valid, space.edge_ops["cell"])}


def test_supernet_forward_backward_and_none_never_runs():
    space, net = _supernet()
    assert len(net.cells) == 3
    assert len(net.reductions) == 2
    ran = []
    for cell in net.cells:
        for edge in cell.edges:
            edge.ops[0].register_forward_hook(lambda *a: ran.append("none"))  # 'none' placeholder
    alpha = torch.nn.Parameter(1e-3 * torch.randn(space.n_edges, space.width))
    x, y = batch(seed=1)
    logits, feats = net(x, {"cell": torch.softmax(alpha, -1)}, _active(space), return_features=True)
    assert logits.shape == (4, 3)
    assert len(feats) == 3
    assert [f.shape[1] for f in feats] == [4, 8, 16]
    assert feats[-1].shape[-1] == 2
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    assert ran == []
    assert alpha.grad is not None
    assert torch.isfinite(alpha.grad).all()
    assert alpha.grad[:, 1:].abs().sum() > 0  # every executed op's column gets a gradient
    opt = torch.optim.SGD([*net.parameters(), alpha], lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_supernet_bn_and_dropped_ops():
    space, net = _supernet()
    cell_bns = [m for c in net.cells for m in c.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert cell_bns
    assert all(not bn.affine and not bn.track_running_stats for bn in cell_bns)
    conv = net.cells[0].edges[0].ops[NB201_OPS.index("nor_conv_3x3")][1]
    assert conv.bias is not None  # AutoDL: bias = not affine
    assert net.stem[1].affine
    assert net.reductions[0].conv_a[2].affine
    tracked = space_by_name("nb201", track_running_stats=True).build_supernet(
        C=4, layers=1, num_classes=3, in_channels=1)
    assert all(m.track_running_stats for m in tracked.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # a dropped op does not run: only skip_connect kept on every edge -> no conv executes
    ran = []
    for cell in net.cells:
        for edge in cell.edges:
            for k in (2, 3, 4):
                edge.ops[k].register_forward_hook(lambda *a: ran.append(1))
    mask = np.zeros((6, 5), dtype=bool)
    mask[:, 1] = True
    net(batch()[0], {"cell": torch.full((6, 5), 0.2)}, _active(space, mask))
    assert ran == []


def test_supernet_speed_switches_keep_values():
    space, net = _supernet()
    net.eval()  # batch statistics in the cells either way; running stats frozen elsewhere
    x = batch(seed=3)[0]
    w = {"cell": torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), -1)}
    ref = net(x, w, _active(space))
    assert set_share_relu(net, True) == 3
    assert set_fused_mixing(net, True) == 3
    torch.testing.assert_close(net(x, w, _active(space)), ref, rtol=1e-5, atol=1e-6)
    ones = {"cell": torch.ones(6)}
    torch.testing.assert_close(net(x, w, _active(space), edge_weights=ones), ref, rtol=1e-5, atol=1e-6)
    _, pc = _supernet(partial_channels=2)
    assert pc(x, w, _active(space)).shape == (4, 3)
    with pytest.raises(ValueError, match="cannot build a supernet"):
        space.build_supernet(C=4, layers=1, num_classes=3, in_channels=1, unknown=1)


# ---- derivation --------------------------------------------------------------------------------
def test_derive_takes_the_argmax_of_all_five_ops_none_included():
    space = space_by_name("nb201")
    s = np.full((6, 5), 0.1)
    s[0, 3] = 0.9                # 1<-0 nor_conv_3x3
    s[1, 0] = 0.9                # 2<-0 none: may be chosen
    s[2, 4] = 0.5                # 2<-1 avg_pool_3x3
    s[3, [1, 2]] = 0.6           # 3<-0 tie: the first column (skip_connect)
    s[4, 2] = 0.3                # 3<-1 nor_conv_1x1
    s[5, 1] = 0.2                # 3<-2 skip_connect
    g = space.derive({"cell": s}, DeriveParams(edges_per_node=1))
    assert g.arch == ("|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|"
                      "skip_connect~2|")
    assert space.derive({"cell": s}, DeriveParams(edges_per_node=2)) == g  # ignored
    with pytest.raises(NasflowError, match="6 edges x 5 ops"):
        space.derive({"cell": s[:5]}, DeriveParams())
    assert space.op_info("nor_conv_1x1").parametric
    assert not space.op_info("avg_pool_3x3").parametric
    assert space.parametric("cell")[:, 2:4].all()
    assert not space.parametric("cell")[:, [0, 1, 4]].any()


# ---- the standalone network --------------------------------------------------------------------
def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_network_size_matches_the_benchmark():
    """C = 16, N = 5, 10 classes. Counted by hand, layer by layer (affine BN: 2 per channel;
    convs bias-free; nor_conv_3x3 on C channels: 9 C^2 + 2 C):
      stem            conv 3*16*9 = 432, BN 32                                      =     464
      stage 1 cells   5 * 6 * (9*16^2 + 2*16) = 30 * 2,336                          =  70,080
      block 16->32    conv_a 9*16*32 + 64 = 4,672; conv_b 9*32^2 + 64 = 9,280;
                      shortcut 1x1 16*32 = 512                                      =  14,464
      stage 2 cells   30 * (9*32^2 + 64) = 30 * 9,280                               = 278,400
      block 32->64    conv_a 9*32*64 + 128 = 18,560; conv_b 9*64^2 + 128 = 36,992;
                      shortcut 32*64 = 2,048                                        =  57,600
      stage 3 cells   30 * (9*64^2 + 128) = 30 * 36,992                             = 1,109,760
      head            BN 128, linear 64*10 + 10 = 650                               =     778
      total                                                                           1,531,546
    The benchmark's largest cell (all nor_conv_3x3) reports 1.531546 "MB" (= 1e6 params) on
    cifar10 and its cell-free ones (only none / skip / pooling) 0.073306; its FLOPs, 220.11969M
    and 7.78305M, are our MACs plus the classifier's 10 bias additions."""
    per_layer = [464, 70_080, 14_464, 278_400, 57_600, 1_109_760, 778]
    assert sum(per_layer) == 1_531_546
    big = Nb201Network(Nb201Genotype(arch=ALL_3X3), C=16, N=5, num_classes=10)
    assert _n_params(big) == 1_531_546
    assert _n_params(big.stem) == 464
    assert _n_params(big.reductions[0]) == 14_464
    assert sum(_n_params(c) for c in big.cells[10:]) == 1_109_760
    small = Nb201Network(Nb201Genotype(arch=ALL_NONE), C=16, N=5, num_classes=10)
    assert _n_params(small) == 464 + 14_464 + 57_600 + 778 == 73_306
    assert _n_params(Nb201Network(Nb201Genotype(arch=ALL_3X3), 16, 5, 100)) == 1_537_396
    assert (count_macs(big, (1, 3, 32, 32)) + 10) / 1e6 == pytest.approx(220.11969, abs=1e-5)
    assert (count_macs(small, (1, 3, 32, 32)) + 10) / 1e6 == pytest.approx(7.78305, abs=1e-5)


def test_network_trains_and_fits_the_retraining_contract():
    space = space_by_name("nb201")
    retrain = RetrainParams(layers=3, init_channels=4, auxiliary=False, drop_path_prob=0.0)
    g = Nb201Genotype(arch="|nor_conv_3x3~0|+|none~0|none~1|+|avg_pool_3x3~0|none~1|skip_connect~2|")
    net = space.build_network(g, retrain, num_classes=3, in_channels=1)
    assert len(net.cells) == 9
    assert len(net.cells[0].layers) == 3
    net.drop_path_prob = 0.1  # the loop sets it; nothing reads it
    x, y = batch(seed=4)
    logits, aux = net(x)
    assert logits.shape == (4, 3)
    assert aux is None
    torch.nn.functional.cross_entropy(logits, y).backward()
    set_share_relu(net, True)
    net.eval()
    torch.testing.assert_close(net(x)[0], net.eval()(x)[0])
    # a node whose inputs are all none is zero (node 2 above feeds nothing: fine either way)
    dead = Nb201Network(Nb201Genotype(arch=ALL_NONE), C=4, N=1, num_classes=3, in_channels=1)
    assert torch.isfinite(dead(x)[0]).all()
    for bad, key in ((retrain.model_copy(update={"auxiliary": True}), "retrain.auxiliary"),
                     (retrain.model_copy(update={"drop_path_prob": 0.2}), "retrain.drop_path_prob")):
        with pytest.raises(NasflowError, match=key):
            space.build_network(g, bad, num_classes=3, in_channels=1)
    with pytest.raises(NasflowError, match="NB201 cells"):
        space.build_network(published_genotypes()["DARTS_V2"], retrain, num_classes=3, in_channels=1)


def test_published_cells_and_params_files():
    from pathlib import Path

    from nasflow.config import load_config

    pub = published_genotypes()
    assert pub["NB201_RESNET"].arch == ("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|"
                                        "none~1|skip_connect~2|")
    assert pub["NB201_NATS_SSS"].space == "nb201"
    root = Path(__file__).resolve().parents[1] / "params"
    c = load_config([str(root / "datasets/cifar10.yaml"), str(root / "methods/darts.yaml"),
                     str(root / "spaces/nb201.yaml"), str(root / "profiles/nb201_protocol.yaml")], [])
    r = c.retrain
    assert (c.space.name, c.search.layers, c.search.init_channels) == ("nb201", 5, 16)
    assert (r.layers, r.init_channels, r.epochs, r.batch_size) == (5, 16, 200, 256)
    assert (r.lr, r.lr_min, r.momentum, r.nesterov, r.weight_decay) == (0.1, 0.0, 0.9, True, 5e-4)
    assert (r.auxiliary, r.drop_path_prob, r.label_smoothing, r.augment.cutout) == (False, 0.0, 0.0, 0)
    assert (r.augment.crop_padding, r.augment.flip) == (4, True)
    with pytest.raises(ValueError, match=r"nesterov needs retrain.momentum > 0"):
        RetrainParams(nesterov=True, momentum=0.0)
    assert "nb201\tcells=cell\tedges=6\tnodes=3\tops/edge=5" in space_by_name("nb201").describe()


# ---- benchmark look-ups ------------------------------------------------------------------------
SEEDS = (777, 888)
# per cell: {(benchmark dataset, eval set): accuracy per seed} of the 200-epoch runs
FULL = {
    ARCH: {("cifar10-valid", "x-valid"): (89.0, 90.0), ("cifar10-valid", "ori-test"): (92.0, 93.0),
           ("cifar10", "ori-test"): (93.5, 94.5),
           ("cifar100", "x-valid"): (70.0, 71.0), ("cifar100", "x-test"): (71.0, 72.5),
           ("cifar100", "ori-test"): (70.5, 71.5),
           ("ImageNet16-120", "x-valid"): (44.0, 45.0), ("ImageNet16-120", "x-test"): (45.5, 46.0),
           ("ImageNet16-120", "ori-test"): (44.5, 45.5)},
    ALL_NONE: {("cifar10-valid", "x-valid"): (10.0, 10.0), ("cifar10", "ori-test"): (10.0, 10.0),
               ("cifar100", "x-test"): (1.0, 1.0), ("ImageNet16-120", "x-test"): (0.8, 0.9)},
}


def _state(arch: str, table, epochs: int, shift: float = 0.0) -> dict:
    runs: dict = {}
    for (dataset, eval_set), accs in table.items():
        for seed, acc in zip(SEEDS, accs, strict=True):
            runs.setdefault((dataset, seed), {})[eval_set] = acc + shift
    return arch_results_state(arch_index(arch), arch, runs, epochs=epochs)


def _benchmark_dict() -> dict:
    """The released layout: every cell string by index; results for the cells in FULL (the
    12-epoch 'less' runs deliberately differ, so a look-up of the wrong hp would show)."""
    infos = {arch_index(a): {"less": _state(a, t, 12, shift=-30.0), "full": _state(a, t, 200)}
             for a, t in FULL.items()}
    return {"meta_archs": list(enumerate_archs()), "arch2infos": infos,
            "evaluated_indexes": set(infos), "total_archs": 15_625}


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("nb201") / "NAS-Bench-201-fixture.pth"
    torch.save(_benchmark_dict(), path)
    return path


def _lookup(capsys, *args):
    code = main(["lookup", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_lookup_reports_the_200_epoch_means(bench_file, capsys):
    code, out, err = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(bench_file), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["arch"] == ARCH
    assert result["index"] == arch_index(ARCH)
    assert result["hp"] == "200"
    assert result["test_accuracy"] == {"cifar10": 94.0, "cifar100": 71.75, "ImageNet16-120": 45.75}
    assert result["valid_accuracy"] == {"cifar10": 89.5, "cifar100": 70.5, "ImageNet16-120": 44.5}
    assert result["seeds"]["cifar10"] == list(SEEDS)
    code, out, _ = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(bench_file))
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split() == ["cifar10", "test", "94.00", "valid", "89.50", "(2", "seeds)"]
    assert lines[3].split()[:3] == ["ImageNet16-120", "test", "45.75"]


def test_lookup_reads_genotype_files_records_and_names(bench_file, capsys, tmp_path):
    g = Nb201Genotype(arch=ALL_NONE)
    g.save(tmp_path / "g.json")
    (tmp_path / "search.json").write_text(json.dumps({"stage": "search", "genotype": g.model_dump()}))
    for ref in (tmp_path / "g.json", tmp_path / "search.json"):
        code, out, err = _lookup(capsys, "--genotype", str(ref), "--benchmark", str(bench_file),
                                 "--json", "--out", str(tmp_path / "r.json"))
        assert code == 0, err
        assert json.loads(out)["test_accuracy"]["cifar100"] == 1.0
        assert json.loads((tmp_path / "r.json").read_text())["arch"] == ALL_NONE
    # a valid cell without results in this (small) benchmark file: one clear line
    code, _, err = _lookup(capsys, "--genotype", "NB201_RESNET", "--benchmark", str(bench_file))
    assert code == 2
    assert err.count("\n") == 1
    assert "has no results in this benchmark" in err
    assert str(bench_file) in err


def test_lookup_errors_are_one_line(bench_file, capsys, tmp_path):
    missing = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    code, out, err = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(missing))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert str(missing) in err
    assert "no such benchmark file" in err
    code, _, err = _lookup(capsys, "--genotype", "|nor_conv_3x3~0|+|none~0|", "--benchmark",
                           str(bench_file))
    assert code == 2
    assert err.count("\n") == 1
    assert "not an NB201 cell" in err
    code, _, err = _lookup(capsys, "--genotype", "DARTS_V2", "--benchmark", str(bench_file))
    assert code == 2
    assert "'darts' genotype" in err
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a benchmark at all")
    code, _, err = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(garbage))
    assert code == 2
    assert err.count("\n") == 1
    assert "not a readable" in err
    other = tmp_path / "other.pth"
    torch.save({"meta_archs": ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "arch2infos": {}},
               other)
    code, _, err = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(other))
    assert code == 2
    assert "is not in this benchmark (1 cells)" in err
    torch.save({"something": 1}, other)
    code, _, err = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(other))
    assert code == 2
    assert "meta_archs: missing" in err


def test_lookup_loads_numpy_scalars_with_weights_only(tmp_path, capsys):
    data = _benchmark_dict()
    idx = arch_index(ARCH)
    run = data["arch2infos"][idx]["full"]["all_results"][("cifar10", 777)]
    run["eval_acc1es"] = {k: np.float64(v) for k, v in run["eval_acc1es"].items()}
    path = tmp_path / "np.pth"
    torch.save(data, path)
    code, out, err = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["test_accuracy"]["cifar10"] == 94.0


def _nats(data: dict) -> dict:
    """NATS-Bench's layout: arch2infos[index] keyed by hp ('12', '200')."""
    out = dict(data)
    out["arch2infos"] = {i: {"12": v["less"], "200": v["full"]} for i, v in data["arch2infos"].items()}
    return out


def test_lookup_reads_nats_bench_files_and_archives(tmp_path, capsys):
    data = _nats(_benchmark_dict())
    path = tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2"
    with bz2.open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=4)
    code, out, err = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["test_accuracy"]["cifar100"] == 71.75
    archive = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    archive.mkdir()
    with bz2.open(archive / "meta.pickle.pbz2", "wb") as fh:
        pickle.dump({"meta_archs": data["meta_archs"], "evaluated_indexes": set()}, fh)
    for idx, infos in data["arch2infos"].items():
        with bz2.open(archive / f"{idx:06d}.pickle.pbz2", "wb") as fh:
            pickle.dump(infos, fh)
    code, out, err = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(archive), "--json")
    assert code == 0, err
    assert json.loads(out)["test_accuracy"]["ImageNet16-120"] == 45.75


def test_lookup_refuses_code_in_pickles_unless_trusted(tmp_path, capsys):
    data = _nats(_benchmark_dict())
    data["note"] = fractions.Fraction(1, 3)  # any class beyond plain data
    path = tmp_path / "tss.pickle.pbz2"
    with bz2.open(path, "wb") as fh:
        pickle.dump(data, fh)
    code, _, err = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(path))
    assert code == 2
    assert err.count("\n") == 1
    assert "fractions.Fraction" in err
    assert "--trust-pickle" in err
    code, out, err = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(path), "--json",
                             "--trust-pickle")
    assert code == 0, err
    assert json.loads(out)["test_accuracy"]["cifar10"] == 94.0
    torch_path = tmp_path / "tss.pth"
    torch.save(data, torch_path)
    code, _, err = _lookup(capsys, "--genotype", ARCH, "--benchmark", str(torch_path))
    assert code == 2
    assert "fractions.Fraction" in err
    assert "--trust-pickle" in err
