"""Retraining networks: published parameter counts, shapes, drop path, MACs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasflow.genotype import PUBLISHED
from nasflow.metrics import count_macs, count_parameters_dropnas_convention, count_parameters_m
from nasflow.nets import build_network
from nasflow.nets.darts_nets import drop_path


# Reference counts computed with the DARTS authors' model code (research notes, 2026-11-22).
@pytest.mark.parametrize("genotype, kind, C, layers, classes, expected", [
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


def test_dropnas_convention_gives_the_papers_4_1m():
    net = build_network("cifar", PUBLISHED["DropNAS_C10"], C=36, layers=20, num_classes=10,
                        auxiliary=True)
    assert round(count_parameters_dropnas_convention(net), 3) == 4.116


@pytest.mark.parametrize("in_ch, size", [(3, 32), (1, 8), (1, 28)])
def test_forward_shapes_train_and_eval(in_ch, size):
    net = build_network("cifar", PUBLISHED["DARTS_V2"], C=8, layers=5, num_classes=10,
                        auxiliary=True, in_channels=in_ch)
    net.drop_path_prob = 0.3
    x = torch.randn(2, in_ch, size, size)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    net.eval()
    logits, aux = net(x)
    assert logits.shape == (2, 10) and aux is None


def test_imagenet_forward_small():
    net = build_network("imagenet", PUBLISHED["DARTS_V2"], C=8, layers=5, num_classes=7,
                        auxiliary=True)
    net.train()
    logits, aux = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7) and aux.shape == (2, 7)


def test_drop_path_zeroes_samples_in_training_only():
    torch.manual_seed(0)
    x = torch.ones(400, 2, 3, 3)
    y = drop_path(x, 0.5)
    per_sample = y.flatten(1)
    zero = (per_sample == 0).all(1)
    assert 0.35 < zero.float().mean() < 0.65
    assert torch.allclose(per_sample[~zero], torch.full_like(per_sample[~zero], 2.0))
    assert drop_path(x, 0.0) is x
    net = build_network("cifar", PUBLISHED["DARTS_V2"], C=4, layers=3, num_classes=3, auxiliary=False)
    net.drop_path_prob = 0.9
    net.eval()
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(net(x)[0], net(x)[0])  # no randomness in eval


def test_macs_hand_count_and_darts_v2():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    assert count_macs(conv, (1, 3, 10, 10)) == 8 * 3 * 9 * 10 * 10
    net = build_network("cifar", PUBLISHED["DARTS_V2"], C=36, layers=20, num_classes=10, auxiliary=True)
    macs = count_macs(net, (1, 3, 32, 32)) / 1e6
    assert 500 < macs < 560, macs  # 528M for DARTS_V2 at 32x32
