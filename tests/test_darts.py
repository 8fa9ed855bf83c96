"""DARTS (Liu et al. 2019): second-order hypergradient, one-level, beta-DARTS."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from tests.helpers import batch, tiny_search


def _exact_hypergradient(m, xt, yt, xv, yv):
    """d/d alpha L_val(w - xi (grad_w L_train(w, alpha) + wd w + mu buf), alpha), exactly,
    by differentiating through the inner gradient (create_graph=True)."""
    model = m.model
    names, params = zip(*model.named_parameters(), strict=True)
    xi, wd, mu = m.lr(), m.search.w_weight_decay, m.search.w_momentum
    alphas = m.arch_parameters()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    logits = functional_call(model, (dict(zip(names, params, strict=True)), buffers),
                             (xt, m.op_weights(None), m.active_ops(None)))
    loss_t = F.cross_entropy(logits, yt)
    grads = torch.autograd.grad(loss_t, params, create_graph=True)
    w_prime = {}
    for n, p, g in zip(names, params, grads, strict=True):
        buf = m.w_optimizer.state.get(p, {}).get("momentum_buffer")
        step = g + wd * p + (mu * buf if buf is not None else 0)
        w_prime[n] = p - xi * step
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    logits_v = functional_call(model, (w_prime, buffers), (xv, m.op_weights(None), m.active_ops(None)))
    loss_v = F.cross_entropy(logits_v, yv)
    return torch.autograd.grad(loss_v, alphas)


def test_second_order_hypergradient_matches_exact_autograd():
    torch.manual_seed(0)
    # The paper's finite-difference scale (0.01 / ||v||) is coarse on a tiny BN-in-train net;
    # in float64 a small scale makes the central difference converge, so the comparison checks
    # the unrolled formula itself (Eq. 7-8), not FD truncation error.
    m = tiny_search("darts", order=2, dtype=torch.float64, unrolled_eps=1e-7,
                    search_overrides={"w_lr": 0.1, "w_weight_decay": 3e-3})
    xt, yt = batch(n=8, seed=1, dtype=torch.float64)
    xv, yv = batch(n=8, seed=2, dtype=torch.float64)
    # one plain w step first, so the momentum buffer term of the unrolled step is exercised
    m.w_step(xt, yt)
    exact = _exact_hypergradient(m, xt, yt, xv, yv)
    m.alpha_optimizer.zero_grad(set_to_none=True)
    m.unrolled_backward(xt, yt, xv, yv)
    for a, g in zip(m.arch_parameters(), exact, strict=True):
        rel = (a.grad - g).norm() / g.norm()
        assert rel < 1e-5, float(rel)
    # and the second-order term matters: first order alone is measurably different
    first = torch.autograd.grad(m.loss(xv, yv)[0], m.arch_parameters())
    assert any((f - g).norm() / g.norm() > 1e-3 for f, g in zip(first, exact, strict=True))


def test_first_order_bilevel_updates_alpha_on_val_and_w_on_train():
    m = tiny_search("darts", order=1)
    a0 = {c: a.detach().clone() for c, a in m.alphas.items()}
    w0 = [p.detach().clone() for p in m.model.parameters()]
    out = m.step(batch(seed=1), batch(seed=2))
    assert torch.isfinite(out["loss"])
    assert any(not torch.equal(a.detach(), a0[c]) for c, a in m.alphas.items())
    assert any(not torch.equal(p.detach(), q) for p, q in zip(m.model.parameters(), w0, strict=True))
    assert m.bilevel


def test_one_level_uses_one_batch():
    m = tiny_search("darts", one_level=True)
    assert not m.bilevel
    a0 = m.alphas["normal"].detach().clone()
    m.step(batch(seed=1))
    assert not torch.equal(m.alphas["normal"].detach(), a0)


def test_beta_darts_regulariser_is_mean_logsumexp_with_linear_schedule():
    m = tiny_search("beta_darts", lambda_start=1.0, lambda_end=5.0)
    m.new_epoch(0)
    beta = sum(a.logsumexp(-1).mean() for a in m.arch_parameters())
    torch.testing.assert_close(m.arch_regularizer(), 1.0 * beta)
    m.new_epoch(m.search.epochs - 1)
    torch.testing.assert_close(m.arch_regularizer(), 5.0 * beta)


def test_search_state_dict_round_trip():
    m = tiny_search("darts", order=1)
    m.step(batch(seed=1), batch(seed=2))
    state = m.state_dict()
    m2 = tiny_search("darts", order=1)
    m2.load_state_dict(state)
    for c in m.alphas:
        assert torch.equal(m.alphas[c], m2.alphas[c])
