"""The method building blocks and the RobustDARTS spaces, each against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nasflow.methods.components import partial, perturb, regularisers, weighting
from nasflow.spaces import space_by_name
from nasflow.spaces.darts.supernet import MixedOp, channel_shuffle
from nasflow.spaces.ops import Noise


# ---- weighting -----------------------------------------------------------------------------
def test_softmax_over_kept_ops_only():
    a = torch.tensor([[0.0, 1.0, 2.0]])
    keep = torch.tensor([[True, False, True]])
    w = weighting.softmax(a, keep)
    e0, e2 = 1.0, math.exp(2.0)
    torch.testing.assert_close(w, torch.tensor([[e0 / (e0 + e2), 0.0, e2 / (e0 + e2)]]))


def test_gumbel_hard_is_one_hot_and_its_gradient_reaches_every_alpha():
    a = torch.tensor([[0.3, -0.2, 1.0, 0.1], [0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    g = torch.Generator().manual_seed(0)
    h = weighting.gumbel_softmax(a, tau=1.0, hard=True, generator=g)
    assert torch.equal(h.detach().sum(-1), torch.ones(2))
    assert set(h.detach().unique().tolist()) == {0.0, 1.0}
    # a loss through the selected op only still moves every alpha of the edge
    (h * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert (a.grad != 0).all()


def test_gumbel_soft_matches_the_formula():
    a = torch.tensor([[0.5, -1.0, 2.0]])
    tau = 0.7
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    p = weighting.gumbel_softmax(a, tau=tau, hard=False, generator=g1)
    e = torch.empty_like(a).exponential_(generator=g2)
    expected = torch.softmax((torch.log_softmax(a, -1) - e.log()) / tau, -1)
    torch.testing.assert_close(p, expected)


def test_temperature_schedule_gdas():
    tau = weighting.LinearSchedule(10.0, 0.1, epochs=250)
    assert tau(0) == 10.0
    assert tau(249) == pytest.approx(0.1)
    assert tau(124) == pytest.approx(10 - 9.9 * 124 / 249)


def test_dirichlet_samples_lie_on_the_simplex_with_the_right_mean():
    torch.manual_seed(0)
    n = 50_000
    a = torch.tensor([[0.5, -0.5, 2.0]]).expand(n, 3)
    theta = weighting.dirichlet(a)
    assert (theta >= 0).all()
    torch.testing.assert_close(theta.sum(-1), torch.ones(n))
    conc = torch.nn.functional.elu(a[0]) + 1
    mean = conc / conc.sum()
    # Dirichlet: Var theta_k = m_k (1 - m_k) / (sum conc + 1); allow 5 standard errors
    stderr = (mean * (1 - mean) / (conc.sum() + 1) / n).sqrt()
    assert ((theta.mean(0) - mean).abs() < 5 * stderr).all()


def test_dirichlet_gradient_is_pathwise():
    a = torch.zeros(1, 3, requires_grad=True)
    weighting.dirichlet(a)[0, 0].backward()
    assert a.grad is not None
    assert (a.grad != 0).any()


def test_readouts_on_the_host():
    valid = np.array([[True, True, False]])
    p = weighting.softmax_np(np.array([[0.0, math.log(3.0), 99.0]]), valid)
    np.testing.assert_allclose(p, [[0.25, 0.75, 0.0]])
    s = weighting.sigmoid_np(np.array([[0.0, 99.0, 1.0]]), valid)
    np.testing.assert_allclose(s, [[0.5, 1.0, 0.0]])


# ---- regularisers --------------------------------------------------------------------------
def test_zero_one_loss_value_and_gradient():
    a = torch.tensor([[0.0, 2.0], [-1.0, 0.5]], requires_grad=True)
    loss = regularisers.zero_one_loss([a])
    s = torch.sigmoid(a.detach())
    assert loss.item() == pytest.approx(-((s - 0.5) ** 2).mean().item())
    loss.backward()
    # d/da of -mean((s - .5)^2) = -2 (s - .5) s (1 - s) / n
    torch.testing.assert_close(a.grad, -2 * (s - 0.5) * s * (1 - s) / 4)


def test_beta_decay_is_the_mean_logsumexp():
    a = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    expected = (math.log(2.0) + math.log(math.e + math.e**2)) / 2
    assert regularisers.beta_decay([a]).item() == pytest.approx(expected)


def test_dirichlet_kl_is_zero_at_the_uniform_prior_and_positive_elsewhere():
    assert regularisers.dirichlet_kl([torch.zeros(3, 4)]).item() == pytest.approx(0.0, abs=1e-6)
    assert regularisers.dirichlet_kl([torch.tensor([[2.0, -0.5, 0.0, 0.0]])]).item() > 0


def test_l2_decay_only_on_masked_alphas():
    w = [torch.tensor([1.0, 2.0])]
    a = [torch.tensor([[1.0, 3.0]])]
    m = [torch.tensor([[True, False]])]
    assert regularisers.l2_decay(w, a, m, 0.5, 0.1).item() == pytest.approx(0.5 * 5 + 0.1 * 1)


# ---- perturbation --------------------------------------------------------------------------
def test_clip_to_simplex_as_released():
    w = torch.tensor([[0.5, 0.7, -0.2], [-0.1, -0.3, -0.2]])
    out = perturb.clip_to_simplex(w)
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.7, 0.0]) / 1.2)
    torch.testing.assert_close(out[1], torch.tensor([1.0, 0.0, 0.0]))  # argmax of the raw row


def test_random_perturbation_stays_in_the_epsilon_box():
    torch.manual_seed(0)
    w = torch.softmax(torch.randn(14, 8), -1)
    eps = 0.03
    g = torch.Generator().manual_seed(1)
    noise = torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) * 2 * eps - eps
    out = perturb.random_perturbation(w, eps, generator=g)
    torch.testing.assert_close(out, perturb.clip_to_simplex(w + noise))
    assert noise.abs().max() <= eps
    torch.testing.assert_close(out.sum(-1), torch.ones(14))
    assert perturb.epsilon_schedule(0, 50) == pytest.approx(0.03)
    assert perturb.epsilon_schedule(50, 50) == pytest.approx(0.3)


# ---- partial channels and edge normalisation (PC-DARTS) ------------------------------------
def test_channel_shuffle_permutation():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    # groups of (0,1,2), (3,4,5) interleaved
    assert channel_shuffle(x, 2).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_mixed_op_is_the_pc_darts_formula(stride):
    torch.manual_seed(0)
    ops = ["none", "skip_connect", "sep_conv_3x3", "avg_pool_3x3"]
    op = MixedOp(8, stride, ops, partial_channels=4).eval()
    x = torch.randn(2, 8, 6, 6)
    w = torch.softmax(torch.randn(4), -1)
    beta = torch.tensor(0.3)
    out = op(x, list(w.unbind(0)), (1, 2, 3), edge_weight=beta)
    part, rest = x[:, :2], x[:, 2:]
    mixed = sum(w[k] * op.ops[k](part) for k in (1, 2, 3))
    if stride == 2:
        rest = torch.nn.functional.max_pool2d(rest, 2, 2)
    expected = channel_shuffle(torch.cat([mixed, rest], 1), 4) * beta
    torch.testing.assert_close(out, expected)
    assert op.ops[2][0][1].in_channels == 2  # ops are built with C / K channels


def test_edge_normalisation_is_a_softmax_over_each_nodes_inputs():
    space = space_by_name("darts")
    beta = torch.randn(space.n_edges)
    w = partial.edge_normalisation(beta, space.node_edges())
    for rows in space.node_edges():
        torch.testing.assert_close(w[rows], torch.softmax(beta[rows], 0))
    np.testing.assert_allclose(partial.edge_normalisation_np(beta.numpy(), space.node_edges()),
                               w.numpy(), rtol=1e-6)
    assert [len(r) for r in space.node_edges()] == [2, 3, 4, 5]


# ---- RobustDARTS spaces --------------------------------------------------------------------
def test_s1_op_lists_as_published():
    s1 = space_by_name("rdarts_s1")
    n, r = s1.edge_ops["normal"], s1.edge_ops["reduce"]
    assert len(n) == len(r) == 14
    assert all(len(e) == 2 for e in n + r)
    assert n[0] == ["skip_connect", "dil_conv_3x3"]
    assert n[5] == ["max_pool_3x3", "skip_connect"]
    assert n[12] == n[13] == ["dil_conv_3x3", "dil_conv_5x5"]
    assert r[0] == ["max_pool_3x3", "avg_pool_3x3"]
    assert r[6] == ["max_pool_3x3", "sep_conv_3x3"]
    assert r[13] == ["skip_connect", "dil_conv_5x5"]
    assert sum("skip_connect" in e for e in n) == 12
    assert sum("skip_connect" in e for e in r) == 6


@pytest.mark.parametrize(("name", "ops"), [
    ("rdarts_s2", ["skip_connect", "sep_conv_3x3"]),
    ("rdarts_s3", ["none", "skip_connect", "sep_conv_3x3"]),
    ("rdarts_s4", ["noise", "sep_conv_3x3"]),
])
def test_uniform_robustdarts_spaces(name, ops):
    space = space_by_name(name)
    assert all(e == ops for c in space.cell_types for e in space.edge_ops[c])
    assert space.n_edges == 14
    assert space.width == len(ops)


@pytest.mark.parametrize("stride", [1, 2])
def test_noise_op_shape_and_statistics(stride):
    torch.manual_seed(0)
    x = torch.full((8, 16, 32, 32), 5.0, requires_grad=True)
    y = Noise(stride)(x)
    assert y.shape == (8, 16, 32 // stride, 32 // stride)
    assert y.mean().item() == pytest.approx(0.0, abs=0.02)
    assert y.std().item() == pytest.approx(1.0, abs=0.02)
    assert not y.requires_grad  # independent of the input: no gradient reaches it
