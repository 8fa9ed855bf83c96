"""Speed switches keep results: for the same seed, the fast paths give the same alphas as the
plain eager fp32 path after a few steps (fp32: tolerance 1e-5; bf16 autocast: 2e-2)."""

from __future__ import annotations

import pytest
import torch

from nasflow.params import RuntimeParams
from nasflow.spaces.ops import DilConv, set_dilated_rewrite
from nasflow.train.runtime import autocast, prepare_model
from tests.helpers import batch, tiny_search


def _run(method: str, channels_last: bool, amp: str = "off", steps: int = 3,
         dilated_conv: str = "native"):
    kw = {"r_parametric": 0.2, "r_nonparametric": 0.2} if method == "dropnas" else {}
    m = tiny_search(method, C=4, search_overrides={"alpha_lr": 0.01}, **kw)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    runtime = RuntimeParams(channels_last=channels_last, amp=amp, dilated_conv=dilated_conv)
    prepare_model(m.model, runtime, torch.device("cpu"))
    start = {c: a.detach().clone() for c, a in m.alphas.items()}
    for s in range(steps):
        xt, yt = batch(n=8, seed=s)
        xv, yv = batch(n=8, seed=100 + s)
        with autocast(runtime, torch.device("cpu")):
            m.step((xt.contiguous(memory_format=fmt), yt), (xv.contiguous(memory_format=fmt), yv))
    return m, start


@pytest.mark.parametrize("method", ["dropnas", "darts"])
def test_channels_last_matches_plain_fp32(method):
    plain, start = _run(method, channels_last=False)
    fast, _ = _run(method, channels_last=True)
    for c in plain.alphas:
        moved = (plain.alphas[c] - start[c]).abs().max()
        assert moved > 1e-3  # the alphas did move, so agreement means something
        torch.testing.assert_close(fast.alphas[c], plain.alphas[c], rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["dropnas", "darts"])
def test_dilated_rewrite_matches_native_dilated_conv(method):
    """All fast switches on (channels_last + the dilated-conv rewrite) against the plain path:
    the same alphas after three steps, within fp32 rounding."""
    plain, start = _run(method, channels_last=False)
    fast, _ = _run(method, channels_last=True, dilated_conv="rewrite")
    assert set_dilated_rewrite(fast.model, True) > 0  # the supernet has dil_conv ops
    for c in plain.alphas:
        assert (plain.alphas[c] - start[c]).abs().max() > 1e-3
        torch.testing.assert_close(fast.alphas[c], plain.alphas[c], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])
def test_dilated_rewrite_is_exact_per_op(kernel, stride, size):
    """Output, input gradient and weight gradient of one dil_conv op (odd sizes included)."""
    torch.manual_seed(0)
    op = DilConv(6, 6, kernel, stride, kernel - 1, 2, affine=False).double()
    x0 = torch.randn(4, 6, size, size, dtype=torch.float64)
    g = torch.randn_like(op(x0))
    results = []
    for rewrite in (False, True):
        set_dilated_rewrite(op, rewrite)
        x = x0.clone().requires_grad_(True)
        op.zero_grad()
        out = op(x)
        out.backward(g)
        results.append((out.detach(), x.grad, op[1].weight.grad.clone()))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dilated_rewrite_auto_is_cpu_only():
    m = tiny_search("darts")
    prepare_model(m.model, RuntimeParams(dilated_conv="auto"), torch.device("cpu"))
    convs = [c for c in m.model.modules() if hasattr(c, "rewrite")]
    assert convs and all(c.rewrite for c in convs)
    prepare_model(m.model, RuntimeParams(dilated_conv="auto"), torch.device("meta"))
    assert not any(c.rewrite for c in convs)


def test_bf16_autocast_gradients_stay_close_to_fp32():
    """bf16 autocast (8-bit mantissa): on this tiny C=4 supernet the alpha gradient of one step
    is within 30% relative L2 of fp32 and points the same way (cosine > 0.95); measured 0.22 and
    0.976. Alphas after Adam steps are not compared: Adam
    normalises each element, so bf16 noise on near-zero gradients flips whole steps."""
    grads = {}
    for amp in ("off", "bf16"):
        m = tiny_search("dropnas", C=4, r_parametric=0.2, r_nonparametric=0.2)
        masks = m.sample_active()
        m._last_masks = masks
        x, y = batch(n=16, seed=0)
        x = x.contiguous(memory_format=torch.channels_last)
        m.model.to(memory_format=torch.channels_last)
        with autocast(RuntimeParams(amp=amp), torch.device("cpu")):
            loss, _ = m.loss(x, y, masks)
        loss.backward()
        grads[amp] = torch.cat([a.grad.flatten() for a in m.arch_parameters()])
    g32, g16 = grads["off"], grads["bf16"]
    rel = ((g16 - g32).norm() / g32.norm()).item()
    cos = torch.nn.functional.cosine_similarity(g16, g32, dim=0).item()
    assert rel < 0.30 and cos > 0.95, (rel, cos)


@pytest.mark.parametrize("method, order, compiles", [("darts", 1, True), ("darts", 2, False),
                                                     ("dropnas", None, False)])
def test_compile_switch_reaches_the_networks(monkeypatch, capsys, method, order, compiles):
    """runtime.compile compiles the supernet's forward in place where its graph is static, says
    why not where it changes every step, and always compiles the retraining network. (Compiling
    itself is not run here: on this CPU it takes longer than the suite.)"""
    from nasflow.config import load_config
    from nasflow.genotype import PUBLISHED
    from nasflow.train.retrain import build_retrain_network
    from nasflow.train.search import build_search

    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    sets = [f"method.name={method}", "runtime.compile=true", "search.layers=3",
            "search.init_channels=4", "retrain.layers=3", "retrain.init_channels=4"]
    if order:
        sets.append(f"method.order={order}")
    cfg = load_config([], ["dataset.name=digits", *sets])
    _, _, model, _ = build_search(cfg, torch.device("cpu"))
    assert (compiled == [model]) is compiles
    if not compiles:
        assert "not compiling" in capsys.readouterr().err
    compiled.clear()
    _, net = build_retrain_network(cfg, PUBLISHED["DARTS_V2"], torch.device("cpu"))
    assert compiled == [net]


@pytest.mark.parametrize("compile_", [False, True])
def test_deterministic_switch_sets_torch_and_inductor_only_when_compiling(compile_):
    """runtime.deterministic turns on torch's deterministic algorithms (errors, not warnings);
    Inductor's own flag (and its ~2 s import) only when runtime.compile will use Inductor. In a
    fresh process: the test process may already have imported Inductor."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from nasflow.params import RuntimeParams\n"
        "from nasflow.train.runtime import setup_runtime\n"
        f"setup_runtime(RuntimeParams(deterministic=True, compile={compile_}), 0)\n"
        "inductor = sys.modules.get('torch._inductor.config')\n"
        "print(torch.are_deterministic_algorithms_enabled(),"
        " torch.is_deterministic_algorithms_warn_only_enabled(),"
        " inductor is not None and inductor.deterministic)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", str(compile_)]
