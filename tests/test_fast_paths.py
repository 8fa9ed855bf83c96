"""Speed switches keep results: for the same seed, the fast paths give the same alphas as the
plain eager fp32 path after a few steps (fp32: tolerance 1e-5; bf16 autocast: 2e-2)."""

from __future__ import annotations

import pytest
import torch

from nasflow.params import RuntimeParams
from nasflow.spaces.ops import (
    DilatedDepthwiseConv2d,
    DilConv,
    FactorizedReduce,
    SepConv,
    set_dilated_rewrite,
    set_fused_mixing,
    set_phase_subsample,
    set_share_relu,
)
from nasflow.train.runtime import prepare_model
from tests.helpers import batch, bf16_alpha_grad_error, search_steps, tiny_search


@pytest.mark.parametrize("method", ["dropnas", "darts"])
def test_channels_last_matches_plain_fp32(method):
    plain, start = search_steps(method, channels_last=False)
    fast, _ = search_steps(method, channels_last=True)
    for c in plain.alphas:
        moved = (plain.alphas[c] - start[c]).abs().max()
        assert moved > 1e-3  # the alphas did move, so agreement means something
        torch.testing.assert_close(fast.alphas[c], plain.alphas[c], rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["dropnas", "darts"])
def test_dilated_rewrite_matches_native_dilated_conv(method):
    """All fast switches on (channels_last, the dilated-conv rewrite, ReLU sharing, phase
    subsampling, fused mixing) against the
    plain path: the same alphas after three steps, exactly in float64 (1e-12), and within fp32
    rounding in float32. The float32 bound is 1e-4, not 1e-5: each switch alone stays under
    2e-6, but together they reorder enough sums that Adam's normalised step (g / sqrt(v))
    magnifies the rounding on near-zero alpha gradients to ~2e-5."""
    for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
        plain, start = search_steps(method, channels_last=False, dtype=dtype)
        fast, _ = search_steps(method, channels_last=True, dilated_conv="rewrite", share_relu=True,
                       phase_subsample=True, fused_mixing=True, dtype=dtype)
        assert set_dilated_rewrite(fast.model, True) > 0  # the supernet has dil_conv ops
        assert set_phase_subsample(fast.model, True) > 0  # and FactorizedReduce ops
        for c in plain.alphas:
            assert fast.alphas[c].dtype == dtype
            assert (plain.alphas[c] - start[c]).abs().max() > 1e-3
            torch.testing.assert_close(fast.alphas[c], plain.alphas[c], rtol=0, atol=atol)


def _count_relu_modules(model: torch.nn.Module) -> list[int]:
    calls = [0]
    for mod in model.modules():
        if isinstance(mod, torch.nn.ReLU):
            mod.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize(("method", "params"), [("darts", {}), ("darts", {"order": 2}),
                                            ("dropnas", {})])
def test_share_relu_matches_per_op_relus(method, params):
    """runtime.share_relu: one ReLU per tensor instead of one per op reading it gives the same
    alphas after three steps (only the order of gradient sums differs: 1e-12 in float64; in
    float32 1e-5, as Adam's normalised step magnifies the reordering on near-zero gradients:
    measured up to 1.7e-6 on an AVX-512 CPU, under 1e-6 on an AVX2 one), and far fewer ReLU
    modules run."""
    for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        results, relu_calls = [], []
        for share in (False, True):
            m, start = search_steps(method, channels_last=False, share_relu=share, dtype=dtype, **params)
            results.append(m.alphas)
            calls = _count_relu_modules(m.model)
            m.forward(batch(n=2, dtype=dtype)[0])
            relu_calls.append(calls[0])
        for c in results[0]:
            assert (results[0][c] - start[c]).abs().max() > 1e-3
            torch.testing.assert_close(results[1][c], results[0][c], rtol=0, atol=atol)
    # every op and preprocessing skips its leading ReLU; only the inner ReLU of each
    # sep_conv (between its two halves, reading no shared tensor) still runs
    sep_convs = sum(isinstance(mod, SepConv) for mod in m.model.modules())
    assert relu_calls[1] == sep_convs < relu_calls[0] / 2, relu_calls


def _retraining_network_results(network: str, size: int, switch):
    """A float64 DARTS_V2 retraining network (aux head, drop path on) run with ``switch`` off
    and on: per setting, the outputs and every parameter gradient, and how many ReLU modules
    ran. ``switch(net, enabled)`` returns how many modules it set."""
    from nasflow.genotype import PUBLISHED
    from nasflow.nets import build_network

    torch.manual_seed(0)
    net = build_network(network, PUBLISHED["DARTS_V2"], C=8, layers=6, num_classes=5,
                        auxiliary=True, in_channels=3).double().train()
    net.drop_path_prob = 0.3
    x = torch.randn(3, 3, size, size, dtype=torch.float64)
    results, relu_calls = [], []
    for enabled in (False, True):
        assert switch(net, enabled) > 0
        net.zero_grad()
        calls = _count_relu_modules(net)
        torch.manual_seed(1)  # the same drop-path draws
        logits, aux = net(x)
        (logits.square().sum() + aux.sum()).backward()
        results.append([logits.detach(), aux.detach(), *(p.grad.clone() for p in net.parameters())])
        relu_calls.append(calls[0])
        for mod in net.modules():
            mod._forward_hooks.clear()
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    return net, relu_calls


@pytest.mark.parametrize(("network", "size"), [("cifar", 16), ("imagenet", 32)])
def test_share_relu_is_exact_in_the_retraining_network(network, size):
    """Retraining networks (aux head and drop path on): outputs identical in float64 and
    every parameter gradient equal to 1e-12 with and without ReLU sharing."""
    _, relu_calls = _retraining_network_results(network, size, set_share_relu)
    assert relu_calls[1] < relu_calls[0], relu_calls


def test_malloc_tuning_keeps_freed_activation_memory_for_reuse():
    """runtime.malloc_tuning (glibc): a 24 MiB activation is, by default, mmapped and handed
    back to the OS when freed (so the next step page-faults it in again); with the tuning it
    comes from the heap and stays there, free for the next step. Read from glibc's own
    accounting (mallinfo2), in fresh processes: mallopt is process-wide."""
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc tuning applies to glibc only")
    code = (
        "import ctypes, sys, torch\n"
        "from nasflow.params import RuntimeParams\n"
        "from nasflow.train.runtime import setup_runtime\n"
        "class Info(ctypes.Structure):\n"
        "    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks',"
        " 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
        "libc = ctypes.CDLL('libc.so.6')\n"
        "libc.mallinfo2.restype = Info\n"
        "setup_runtime(RuntimeParams(device='cpu', malloc_tuning=sys.argv[1] == '1'), 0)\n"
        "before = libc.mallinfo2()\n"
        "t = torch.empty(6 << 20)\n"
        "during = libc.mallinfo2()\n"
        "del t\n"
        "after = libc.mallinfo2()\n"
        "print((during.hblkhd - before.hblkhd) >> 20, (after.hblkhd - before.hblkhd) >> 20,"
        " after.fordblks >> 20)\n")
    res = {}
    for tuned in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", code, tuned], capture_output=True, text=True,
                             check=True)
        res[tuned] = [int(v) for v in out.stdout.split()]
    mmapped, left_mapped, _ = res["0"]
    # default: mmapped, unmapped on free
    assert mmapped >= 24, res
    assert left_mapped == 0, res
    mmapped, left_mapped, kept_free = res["1"]
    # tuned: heap, kept
    assert mmapped == 0, res
    assert left_mapped == 0, res
    assert kept_free >= 24, res


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


@pytest.mark.parametrize(("method", "params"), [("darts", {}), ("darts", {"order": 2}),
                                            ("darts", {"one_level": True}), ("dropnas", {}),
                                            ("beta_darts", {})])
def test_fused_mixing_matches_separate_products_and_sums(method, params):
    """runtime.fused_mixing: the supernet's node sums as in-place multiply-add chains give the
    same alphas after three steps as DARTS' product-then-sum (1e-12 in float64; float32 within
    rounding, 1e-5), and the network's output is the same tensor values."""
    for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        ref, start = search_steps(method, channels_last=False, dtype=dtype, **params)
        fused, _ = search_steps(method, channels_last=False, fused_mixing=True, dtype=dtype, **params)
        assert set_fused_mixing(fused.model, True) == len(fused.model.cells)
        for c in ref.alphas:
            assert (ref.alphas[c] - start[c]).abs().max() > 1e-3
            torch.testing.assert_close(fused.alphas[c], ref.alphas[c], rtol=0, atol=atol)


def test_fused_mixing_handles_edges_and_nodes_with_every_op_dropped():
    """DropNAS without grouping at a drop rate near 1 keeps one op per edge, often ``none``,
    so edges run no op: the fused chain then starts at the next edge that runs one, as the
    separate sums do."""
    x, _ = batch(n=4, dtype=torch.float64)
    outs = []
    for fused in (False, True):
        m = tiny_search("dropnas", C=4, r_parametric=0.99, grouping=False, dtype=torch.float64)
        m.model.double()
        set_fused_mixing(m.model, fused)
        masks = m.sample_active()
        none_kept = sum(not act for act in m.active_ops(masks)["normal"])
        outs.append(m.forward(x, masks))
    assert none_kept > 0  # some edges really had every op dropped
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-12)


def _graph_has(out: torch.Tensor, node_name: str) -> bool:
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ == node_name:
            return True
        todo.extend(nxt for nxt, _ in fn.next_functions)
    return False


@pytest.mark.parametrize("op_kind", ["factorized_reduce", "dil_conv_stride2"])
@pytest.mark.parametrize("size", [(8, 8), (7, 7), (7, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_phase_subsample_is_exact_per_op(op_kind, size, channels_last):
    """runtime.phase_subsample: output, input gradient and weight gradients of the ops that
    read every 2nd pixel equal the sliced reference in float64 (odd and mixed sizes, both
    memory formats), and the switch really routes them through the phase op."""
    torch.manual_seed(0)
    if op_kind == "factorized_reduce":
        op = FactorizedReduce(6, 8, affine=True).double()
    else:
        op = DilConv(6, 6, 3, 2, 2, 2, affine=False).double()
        set_dilated_rewrite(op, True)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    op = op.to(memory_format=fmt)
    x0 = torch.randn(4, 6, *size, dtype=torch.float64).contiguous(memory_format=fmt)
    g = torch.randn_like(op(x0))
    results = []
    for enabled in (False, True):
        assert set_phase_subsample(op, enabled) == 1
        x = x0.clone().requires_grad_(True)
        op.zero_grad()
        out = op(x)
        assert _graph_has(out, "_PixelPhasesBackward") == enabled
        out.backward(g)
        assert x.grad.is_contiguous(memory_format=fmt)
        results.append((out.detach(), x.grad, *(p.grad.clone() for p in op.parameters())))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_phase_subsample_reaches_retraining_networks_and_stays_exact():
    """A DARTS_V2 network (FactorizedReduce preprocessing after each reduction cell), with
    drop path and the auxiliary head: identical outputs and parameter gradients in float64, and
    the switch reaches every FactorizedReduce and dilated conv."""
    net, _ = _retraining_network_results("cifar", 16, set_phase_subsample)
    reduces = sum(isinstance(mod, FactorizedReduce) for mod in net.modules())
    assert reduces >= 2  # preprocessing after each of the two reduction cells, at least
    dil_convs = sum(isinstance(mod, DilatedDepthwiseConv2d) for mod in net.modules())
    assert set_phase_subsample(net, True) == reduces + dil_convs


def test_dilated_rewrite_auto_is_cpu_only():
    m = tiny_search("darts")
    prepare_model(m.model, RuntimeParams(dilated_conv="auto"), torch.device("cpu"))
    convs = [c for c in m.model.modules() if hasattr(c, "rewrite")]
    assert convs
    assert all(c.rewrite for c in convs)
    prepare_model(m.model, RuntimeParams(dilated_conv="auto"), torch.device("meta"))
    assert not any(c.rewrite for c in convs)


def test_bf16_autocast_gradients_stay_close_to_fp32():
    """bf16 autocast (8-bit mantissa): on this tiny C=4 supernet the alpha gradient of one step
    is within 30% relative L2 of fp32 and points the same way (cosine > 0.95); measured 0.22 and
    0.976. Alphas after Adam steps are not compared: Adam
    normalises each element, so bf16 noise on near-zero gradients flips whole steps."""
    rel, cos = bf16_alpha_grad_error("cpu")
    assert rel < 0.30, (rel, cos)
    assert cos > 0.95, (rel, cos)


@pytest.mark.parametrize(("method", "order", "compiles"), [("darts", 1, True), ("darts", 2, False),
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
