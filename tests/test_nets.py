"""Retraining networks: published parameter counts, shapes, drop path, aux heads, MACs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasflow.genotype import PUBLISHED, Genotype
from nasflow.metrics import count_macs, count_parameters_dropnas_convention, count_parameters_m
from nasflow.nets import (
    AuxiliaryHeadCIFAR,
    AuxiliaryHeadImageNet,
    Cell,
    NetworkCIFAR,
    NetworkImageNet,
    build_network,
    drop_path,
)
from nasflow.spaces.ops import FactorizedReduce, Identity, ReLUConvBN


def _cifar(genotype="DARTS_V2", **kw):
    args = {"C": 36, "layers": 20, "num_classes": 10, "auxiliary": True}
    args.update(kw)
    return build_network("cifar", PUBLISHED[genotype], **args)


# Reference counts computed with the DARTS authors' model code (quark0/darts cnn/model.py,
# utils.count_parameters_in_MB: all parameters except "auxiliary" ones, / 1e6).
@pytest.mark.parametrize(("genotype", "kind", "C", "layers", "classes", "expected"), [
    ("DARTS_V2", "cifar", 36, 20, 10, 3.349342),
    ("DARTS_V2", "cifar", 36, 20, 100, 3.401272),
    ("DARTS_V1", "cifar", 36, 20, 10, 3.169414),
    ("DARTS_V2", "imagenet", 48, 14, 1000, 4.718752),
    ("DropNAS_C10", "cifar", 36, 20, 10, 3.83923),
])
def test_published_parameter_counts(genotype, kind, C, layers, classes, expected):
    net = build_network(kind, PUBLISHED[genotype], C=C, layers=layers, num_classes=classes,
                        auxiliary=True)
    assert round(count_parameters_m(net), 6) == pytest.approx(expected, abs=1e-6)
    # The auxiliary head is excluded, so building without it gives the same count.
    bare = build_network(kind, PUBLISHED[genotype], C=C, layers=layers, num_classes=classes,
                         auxiliary=False)
    assert count_parameters_m(bare) == count_parameters_m(net)


def test_dropnas_convention_gives_the_papers_4_1m():
    net = _cifar("DropNAS_C10")
    n_aux = sum(p.numel() for p in net.auxiliary_head.parameters())
    # C_aux = 4 * 144 = 576: conv1x1 576*128, BN 2*128, conv2x2 128*768*4, BN 2*768, Linear 768*10+10
    assert n_aux == 576 * 128 + 256 + 128 * 768 * 4 + 1536 + 7690
    assert count_parameters_m(net, exclude_auxiliary=False) * 1e6 == pytest.approx(3839230 + n_aux)
    assert round(count_parameters_dropnas_convention(net), 3) == 4.116


def test_only_the_auxiliary_head_submodule_is_excluded():
    m = nn.Module()
    m.auxiliary_weight = nn.Parameter(torch.zeros(10))  # not an auxiliary_head submodule
    m.auxiliary_head = nn.Linear(3, 4)                   # 16 parameters
    m.body = nn.Sequential()
    m.body.auxiliary_head = nn.Linear(1, 1)              # nested one too: 2 parameters
    assert count_parameters_m(m) * 1e6 == pytest.approx(10)
    assert count_parameters_m(m, exclude_auxiliary=False) * 1e6 == pytest.approx(28)


def test_structure_follows_darts():
    net = _cifar()
    assert isinstance(net, NetworkCIFAR)
    assert len(net.cells) == 20
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [6, 13]
    assert isinstance(net.cells[7].preprocess0, FactorizedReduce)  # after a reduction
    assert isinstance(net.cells[8].preprocess0, ReLUConvBN)
    assert net.stem[0].out_channels == 108
    assert net.classifier.in_features == 4 * 144
    assert net.auxiliary_head.features[2].in_channels == 4 * 144  # after cell 13
    # ops reading the cell inputs of a reduction cell stride 2; skip_connect there is FR.
    red = net.cells[6]
    assert isinstance(red.ops[2], Identity)  # skip_connect from node 2: stride 1
    assert red.ops[0].stride == 2
    assert red.ops[3].stride == 2
    assert isinstance(net.cells[0].ops[5], Identity)  # normal skip_connect
    inet = build_network("imagenet", PUBLISHED["DARTS_V2"], C=48, layers=14, num_classes=1000,
                         auxiliary=True)
    assert isinstance(inet, NetworkImageNet)
    assert isinstance(inet.cells[0].preprocess0, FactorizedReduce)  # reduction_prev=True
    assert [i for i, c in enumerate(inet.cells) if c.reduction] == [4, 9]
    assert not any(isinstance(m, nn.BatchNorm2d) and m.num_features == 768
                   for m in inet.auxiliary_head.modules())  # DARTS omits that BN
    with pytest.raises(ValueError, match="unknown network kind"):
        build_network("mobile", PUBLISHED["DARTS_V2"], C=8, layers=3, num_classes=2, auxiliary=False)


@pytest.mark.parametrize(("in_ch", "size", "aux_size"), [(3, 32, 8), (1, 8, 2), (1, 28, 7)])
def test_forward_shapes_train_and_eval(in_ch, size, aux_size):
    torch.manual_seed(0)
    net = build_network("cifar", PUBLISHED["DARTS_V2"], C=8, layers=5, num_classes=10,
                        auxiliary=True, in_channels=in_ch)
    seen = []
    net.auxiliary_head.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[-2:])))
    net.drop_path_prob = 0.3
    x = torch.randn(2, in_ch, size, size)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (2, 10)
    assert aux.shape == (2, 10)
    assert seen == [(aux_size, aux_size)]
    (F.cross_entropy(logits, torch.tensor([0, 1])) + 0.4 * F.cross_entropy(aux, torch.tensor([0, 1]))
     ).backward()
    assert net.stem[0].weight.grad is not None
    net.eval()
    with torch.no_grad():
        logits, aux = net(x)
    assert logits.shape == (2, 10)
    assert aux is None
    assert torch.isfinite(logits).all()


def test_imagenet_forward_small():
    net = build_network("imagenet", PUBLISHED["DARTS_V2"], C=8, layers=5, num_classes=7,
                        auxiliary=True)
    net.drop_path_prob = 0.2
    net.train()
    logits, aux = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7)
    assert aux.shape == (2, 7)
    net.eval()
    with torch.no_grad():
        logits, aux = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7)
    assert aux is None


def _darts_head(head, stride, with_bn768):
    """DARTS' head layers, with the pooling spelled out as in the reference."""
    f = head.features
    layers = [nn.ReLU(), nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False), *f[2:]]
    assert isinstance(f[6], nn.BatchNorm2d) == with_bn768
    return nn.Sequential(*layers)


def test_aux_heads_are_darts_on_their_design_size_and_safe_elsewhere():
    torch.manual_seed(0)
    head = AuxiliaryHeadCIFAR(16, 10).eval()
    ref = _darts_head(head, 3, with_bn768=True)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(head(x), head.classifier(ref(x).flatten(1)))
        for s in (2, 4, 7, 1):  # tiny maps: adaptive 2x2, then the 2x2 conv gives 1x1
            assert head(torch.randn(2, 16, s, s)).shape == (2, 10)
    ihead = AuxiliaryHeadImageNet(16, 5).eval()
    ref = _darts_head(ihead, 2, with_bn768=False)
    x = torch.randn(2, 16, 7, 7)  # what reaches it at 224x224 (layers=14)
    with torch.no_grad():
        assert torch.equal(ihead(x), ihead.classifier(ref(x).flatten(1)))
        assert ihead(torch.randn(2, 16, 3, 3)).shape == (2, 5)


def test_drop_path_function():
    torch.manual_seed(0)
    x = torch.ones(400, 2, 3, 3)
    y = drop_path(x, 0.5)
    per_sample = y.flatten(1)
    zero = (per_sample == 0).all(1)
    assert 0.35 < zero.float().mean() < 0.65
    assert torch.allclose(per_sample[~zero], torch.full_like(per_sample[~zero], 2.0))
    assert drop_path(x, 0.0) is x


def test_cell_drop_path_zeroes_op_outputs_in_training_only():
    """DARTS_V2 normal cell: node 0 = sep(s0) + sep(s1), node 2 = sep(s1) + skip(s0).
    With p=0.5 each non-identity op output is, per sample, either 0 or doubled; Identity
    (skip_connect) is never dropped."""
    torch.manual_seed(0)
    C, n = 4, 64
    cell = Cell(PUBLISHED["DARTS_V2"], 6, 6, C, reduction=False, reduction_prev=False).train()
    s0, s1 = torch.randn(n, 6, 5, 5), torch.randn(n, 6, 5, 5)
    with torch.no_grad():
        out = cell(s0, s1, 0.5)
        p0, p1 = cell.preprocess0(s0), cell.preprocess1(s1)  # train-mode BN: batch statistics
        a, b = cell.ops[0](p0), cell.ops[1](p1)
        c = cell.ops[4](p1)
    assert isinstance(cell.ops[5], Identity)
    node0, node2 = out[:, :C], out[:, 2 * C:3 * C]
    choices0 = torch.stack([torch.zeros_like(a), 2 * a, 2 * b, 2 * (a + b)], 1)  # n, 4, C, H, W
    err0 = (choices0 - node0[:, None]).flatten(2).abs().amax(2)  # n, 4
    picked = err0.argmin(1)
    assert (err0.min(1).values < 1e-4).all()
    assert set(picked.tolist()) == {0, 1, 2, 3}  # every combination occurs in 64 samples
    assert 0.1 < (picked == 0).float().mean() < 0.45  # both dropped: p = 0.25
    assert ((node0.flatten(1) == 0).all(1) == (picked == 0)).all()
    choices2 = torch.stack([p0, p0 + 2 * c], 1)
    err2 = (choices2 - node2[:, None]).flatten(2).abs().amax(2)
    assert (err2.min(1).values < 1e-4).all()
    assert set(err2.argmin(1).tolist()) == {0, 1}

    cell.eval()
    with torch.no_grad():
        out_eval = cell(s0, s1, 0.5)
        p0, p1 = cell.preprocess0(s0), cell.preprocess1(s1)
        expected0 = cell.ops[0](p0) + cell.ops[1](p1)
    assert torch.allclose(out_eval[:, :C], expected0, atol=1e-6)
    assert not (out_eval.flatten(1) == 0).all(1).any()


def test_cell_with_three_edges_per_node():
    g = Genotype(normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("avg_pool_3x3", 0),
                         ("dil_conv_3x3", 2), ("max_pool_3x3", 1), ("skip_connect", 0)],
                 normal_concat=[2, 3],
                 reduce=[("max_pool_3x3", 0), ("skip_connect", 1), ("sep_conv_5x5", 0)],
                 reduce_concat=[2], edges_per_node=3)
    cell = Cell(g, 5, 6, 4, reduction=False, reduction_prev=True)
    assert cell.nodes == 2
    assert cell.multiplier == 2
    assert len(cell.ops) == 6
    assert cell(torch.randn(2, 5, 8, 8), torch.randn(2, 6, 4, 4), 0.3).shape == (2, 8, 4, 4)
    red = Cell(g, 4, 4, 4, reduction=True, reduction_prev=False)
    assert isinstance(red.ops[1], FactorizedReduce)  # skip_connect from input 1, stride 2
    assert red(torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)).shape == (2, 4, 4, 4)
    net = NetworkCIFAR(4, 3, 3, True, g, in_channels=1).train()
    logits, aux = net(torch.randn(2, 1, 12, 12))
    assert logits.shape == (2, 3)
    assert aux.shape == (2, 3)


def test_network_drop_path_prob_is_used_in_training_only():
    torch.manual_seed(0)
    net = build_network("cifar", PUBLISHED["DARTS_V2"], C=4, layers=3, num_classes=3, auxiliary=False)
    x = torch.randn(4, 3, 8, 8)
    net.train()
    with torch.no_grad():
        assert torch.equal(net(x)[0], net(x)[0])  # drop_path_prob defaults to 0
        net.drop_path_prob = 0.5
        assert not torch.equal(net(x)[0], net(x)[0])
        net.eval()
        assert torch.equal(net(x)[0], net(x)[0])


def test_macs_hand_count():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    assert count_macs(conv, (1, 3, 10, 10)) == 8 * 3 * 9 * 10 * 10
    assert count_macs(conv, (4, 3, 10, 10)) == 8 * 3 * 9 * 10 * 10  # per image
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, groups=1, bias=True), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),  # depthwise
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5),
    ).train()
    assert count_macs(model, (1, 1, 6, 6)) == 4 * 9 * 36 + 4 * 9 * 36 + 4 * 5
    assert model.training  # mode restored


def test_macs_tiny_and_darts_v2():
    def tiny(aux):
        return build_network("cifar", PUBLISHED["DARTS_V2"], C=4, layers=3, num_classes=10,
                             auxiliary=aux, in_channels=1)
    assert count_macs(tiny(True), (1, 1, 8, 8)) > 0
    # The aux head is off in eval mode, so it does not change the count.
    assert count_macs(tiny(True), (1, 1, 8, 8)) == count_macs(tiny(False), (1, 1, 8, 8))
    net = _cifar()
    macs = count_macs(net, (1, 3, 32, 32)) / 1e6
    print(f"DARTS_V2 CIFAR-10 C=36 20 cells: {macs:.2f}M MACs")
    # Published multi-adds for this net are ~528-550M (e.g. FairDARTS Table 1: 528M); convs and
    # Linear only (measured: 528.36M).
    assert 520 < macs < 550, macs


def test_macs_equal_pytorch_flop_counter():
    """The function-level count is PyTorch's aten-level FlopCounterMode / 2, on a searched-cell
    net (separable, dilated, grouped convs, pooling, the classifier) and on plain matmuls."""
    from torch.utils.flop_counter import FlopCounterMode

    def reference(model, shape):
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(shape))
        return counter.get_total_flops() // 2 // shape[0]

    net = build_network("cifar", PUBLISHED["DropNAS_C10"], C=8, layers=5, num_classes=10,
                        auxiliary=True, in_channels=3)
    assert count_macs(net, (2, 3, 16, 16)) == reference(net, (2, 3, 16, 16)) > 0

    class Products(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 4))

        def forward(self, x):  # (N, 3, 6): x @ w, torch.matmul, torch.bmm
            y = x @ self.w
            return torch.bmm(torch.matmul(y, self.w.t()), x.transpose(1, 2))

    assert count_macs(Products(), (2, 3, 6)) == reference(Products(), (2, 3, 6)) == 3*6*4 + 3*4*6 + 3*6*3
