"""DropNAS (Hong et al. 2020, Sec. 4): masks, kept-op softmax, alpha-adjust, partial decay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasflow.methods.dropnas import drop_probabilities, sample_group_masks
from nasflow.spaces.ops import OPS, set_share_relu
from tests.helpers import batch, tiny_search


def _group_ids(m, cell="normal"):
    return m.groups[cell]


@pytest.mark.parametrize("r", [3e-5, 0.05])
def test_drop_frequency_matches_r_to_one_over_group_size(r):
    m = tiny_search("dropnas", r_parametric=r, r_nonparametric=r)
    groups, valid = m.groups["normal"], m.valid["normal"]
    probs = m.group_probs("normal")
    p = r ** (1 / 4)
    assert probs == {0: pytest.approx(p), 1: pytest.approx(p)}
    rng = np.random.default_rng(1)
    n = 4000
    dropped = np.zeros(valid.shape)
    for _ in range(n):
        keep = sample_group_masks(rng, groups, valid, probs)
        dropped += ~keep
        for g in (0, 1):  # never a whole group dropped on any edge
            assert (keep & (groups == g)).any(axis=1).all()
    freq = dropped / n
    # Resampling an all-dropped group conditions on "not all dropped":
    # P(drop) = (p - r) / (1 - r), which is p to 5 digits at the paper's r = 3e-5.
    expected = (p - r) / (1 - r)
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert np.abs(freq.mean() - expected) < 4 * sigma / np.sqrt(freq.size)
    assert np.all(np.abs(freq - expected) < 5 * sigma)


def test_no_grouping_uses_one_group_of_all_ops():
    m = tiny_search("dropnas", grouping=False, r_parametric=0.2)
    assert set(np.unique(m.groups["normal"])) == {0}
    assert m.group_probs("normal") == {0: pytest.approx(0.2 ** (1 / 8))}


def test_space_variant_changes_group_size():
    from nasflow.spaces.darts import DartsSpaceParams as SpaceParams

    m = tiny_search("dropnas", space=SpaceParams(variant="1-skip"), r_nonparametric=0.01)
    # 1-skip: O_np = {none, skip_connect}, so p_np = r^(1/2)
    assert m.group_probs("normal")[1] == pytest.approx(0.1)
    assert drop_probabilities(0.0, 4) == 0.0


def test_masks_fresh_every_step_and_separate_per_cell_type():
    m = tiny_search("dropnas", r_parametric=0.3, r_nonparametric=0.3)
    a, b = m.sample_active(), m.sample_active()
    assert not np.array_equal(a["normal"], b["normal"])
    assert not np.array_equal(a["normal"], a["reduce"])


def test_kept_weights_are_softmax_over_kept_ops_only():
    m = tiny_search("dropnas", r_parametric=0.3, r_nonparametric=0.3)
    masks = m.sample_active()
    w = m.op_weights(masks)
    for c in ("normal", "reduce"):
        alpha = m.alphas[c].detach()
        for e in range(alpha.shape[0]):
            kept = torch.from_numpy(masks[c][e])
            expect = torch.zeros_like(alpha[e])
            expect[kept] = F.softmax(alpha[e][kept], dim=0)
            torch.testing.assert_close(w[c][e].detach(), expect)


@pytest.mark.parametrize("share_relu", [False, True])
def test_dropped_ops_are_never_executed(share_relu):
    m = tiny_search("dropnas", r_parametric=0.4, r_nonparametric=0.4)
    assert set_share_relu(m.model, share_relu) > 0
    calls: dict[tuple, int] = {}
    for i, cell in enumerate(m.model.cells):
        for e, mixed in enumerate(cell.edges):
            for k, op in enumerate(mixed.ops):
                key = (i, cell.cell_type, e, k)
                calls[key] = 0
                op.register_forward_hook(lambda *_, key=key: calls.__setitem__(key, calls[key] + 1))
    masks = m.sample_active()
    x, y = batch()
    m._last_masks = masks
    loss, _ = m.loss(x, y, masks)
    loss.backward()
    n_dropped = 0
    for (i, c, e, k), n in calls.items():
        op_name = m.space.edge_ops[c][e][k]
        should_run = bool(masks[c][e, k]) and op_name != "none"
        assert n == int(should_run), (i, c, e, op_name)
        n_dropped += not masks[c][e, k]
    assert n_dropped > 0
    # and dropped ops' parameters and alphas get no gradient
    for cell in m.model.cells:
        for e, mixed in enumerate(cell.edges):
            for k, op in enumerate(mixed.ops):
                if not masks[cell.cell_type][e, k]:
                    assert all(p.grad is None for p in op.parameters())
    for c in ("normal", "reduce"):
        g = m.alphas[c].grad
        assert torch.all(g[torch.from_numpy(~masks[c])] == 0)


@pytest.mark.parametrize("mode", ["paper", "code"])
def test_alpha_adjust_keeps_dropped_probabilities(mode):
    m = tiny_search("dropnas", alpha_adjust=mode, r_parametric=0.3, r_nonparametric=0.3,
                    search_overrides={"alpha_lr": 0.05})
    before = {c: F.softmax(a.detach(), -1).clone() for c, a in m.alphas.items()}
    m.step(batch())
    masks = m._last_masks
    moved = False
    for c, a in m.alphas.items():
        after = F.softmax(a.detach(), -1)
        dropped = torch.from_numpy(~masks[c])
        # first Adam step: dropped alphas have no grad and no momentum, so both forms agree
        torch.testing.assert_close(after[dropped], before[c][dropped], rtol=1e-5, atol=1e-7)
        moved |= not torch.allclose(after[~dropped], before[c][~dropped])
    assert moved  # the kept ops did learn


def test_alpha_adjust_code_form_keeps_kept_mass_under_adam_drift():
    m = tiny_search("dropnas", alpha_adjust="code", r_parametric=0.3, r_nonparametric=0.3,
                    search_overrides={"alpha_lr": 0.05})
    for s in range(4):  # build up Adam momentum so dropped alphas drift
        x, y = batch(seed=s)
        old = {c: a.detach().clone() for c, a in m.alphas.items()}
        m.step((x, y))
        masks = m._last_masks
        for c, a in m.alphas.items():
            kept = torch.from_numpy(masks[c])
            has_drop = (~kept).any(dim=1)
            rho_old = F.softmax(old[c], -1).masked_fill(~kept, 0).sum(-1)
            rho_new = F.softmax(a.detach(), -1).masked_fill(~kept, 0).sum(-1)
            torch.testing.assert_close(rho_new[has_drop], rho_old[has_drop], rtol=1e-4, atol=1e-6)


def test_alpha_adjust_off_lets_dropped_probabilities_move():
    m = tiny_search("dropnas", alpha_adjust="off", r_parametric=0.3, r_nonparametric=0.3,
                    search_overrides={"alpha_lr": 0.05})
    before = {c: F.softmax(a.detach(), -1).clone() for c, a in m.alphas.items()}
    m.step(batch())
    masks = m._last_masks
    changed = any(
        not torch.allclose(F.softmax(a.detach(), -1)[torch.from_numpy(~masks[c])],
                           before[c][torch.from_numpy(~masks[c])])
        for c, a in m.alphas.items())
    assert changed  # the passive update the paper describes


def _op_params(m):
    out = {}
    for i, cell in enumerate(m.model.cells):
        for e, mixed in enumerate(cell.edges):
            for k, op in enumerate(mixed.ops):
                for j, p in enumerate(op.parameters()):
                    out[(i, cell.cell_type, e, k, j)] = p
    return out


@pytest.mark.parametrize("decay_mode", ["code", "joint"])
def test_partial_decay_touches_only_kept_parameters(decay_mode):
    m = tiny_search("dropnas", r_parametric=0.4, r_nonparametric=0.4, decay_mode=decay_mode,
                    alpha_adjust="off", search_overrides={"w_weight_decay": 0.1,
                                                          "alpha_weight_decay": 0.1})
    params = _op_params(m)
    before = {k: p.detach().clone() for k, p in params.items()}
    alphas_before = {c: a.detach().clone() for c, a in m.alphas.items()}
    m.step(batch())  # first step: no momentum yet, so only gradients move parameters
    masks = m._last_masks
    kept_ids = {id(p) for p in m.kept_w_params(masks)}
    n_dropped = 0
    for key, p in params.items():
        _, c, e, k, _ = key
        if masks[c][e, k]:
            assert id(p) in kept_ids
            assert not torch.equal(p.detach(), before[key])
        else:
            assert id(p) not in kept_ids
            assert torch.equal(p.detach(), before[key]), key
            n_dropped += 1
    assert n_dropped > 0
    for c, a in m.alphas.items():
        dropped = torch.from_numpy(~masks[c])
        assert torch.equal(a.detach()[dropped], alphas_before[c][dropped])


def test_without_partial_decay_dropped_parameters_decay():
    m = tiny_search("dropnas", r_parametric=0.4, r_nonparametric=0.4, partial_decay=False,
                    alpha_adjust="off", search_overrides={"w_weight_decay": 0.1})
    params = _op_params(m)
    before = {k: p.detach().clone() for k, p in params.items()}
    m.step(batch())
    masks = m._last_masks
    dropped_changed = [not torch.equal(p.detach(), before[key])
                       for key, p in params.items() if not masks[key[1]][key[2], key[3]]]
    assert dropped_changed
    assert all(dropped_changed)


def test_mask_rng_state_round_trips():
    m = tiny_search("dropnas", r_parametric=0.3, r_nonparametric=0.3)
    m.sample_active()
    state = m.extra_state()
    a = m.sample_active()
    m.load_extra_state(state)
    b = m.sample_active()
    for c in a:
        assert np.array_equal(a[c], b[c])


def test_groups_follow_op_registry():
    m = tiny_search("dropnas")
    for e, ops in enumerate(m.space.edge_ops["normal"]):
        for k, op in enumerate(ops):
            assert m.groups["normal"][e, k] == (0 if OPS[op].parametric else 1)
