"""CUDA checks: the fast paths against the plain path on the GPU, the GPU against the CPU, and
bf16 autocast against fp32. Run them on a GPU machine with ``pytest -m gpu`` (or
``benchmarks/gpu_check.sh``); without a CUDA device they are skipped, and their CPU
counterparts in ``test_fast_paths.py`` run instead. ``NASFLOW_GPU_TEST_DEVICE=cpu`` runs these
same checks on the CPU (to try them out where no GPU is)."""

from __future__ import annotations

import os

import pytest
import torch

from tests.helpers import bf16_alpha_grad_error, search_steps

DEVICE = os.environ.get("NASFLOW_GPU_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"),
]
METHODS = [("darts", {}), ("darts", {"order": 2}), ("dropnas", {})]


@pytest.fixture(autouse=True)
def _no_tf32():
    """fp32 comparisons mean fp32: TF32 convs and matmuls (10-bit mantissa, cuDNN's default
    for convs) are off in these tests; the training loops turn them on."""
    if not torch.cuda.is_available():
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize(("method", "params"), METHODS)
def test_fast_paths_match_the_plain_path_on_the_gpu(method, params):
    """Every fast switch on (channels_last, dil_conv as chosen for the device, ReLU sharing,
    phase subsampling, fused mixing) against all off: the same alphas after three search
    steps, to 1e-9 in float64 and 1e-4 in float32 (the CPU bounds are 1e-12 and 1e-4)."""
    for dtype, atol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        plain, start = search_steps(method, channels_last=False, dtype=dtype, device=DEVICE, **params)
        fast, _ = search_steps(method, channels_last=True, dilated_conv="auto", share_relu=True,
                       phase_subsample=True, fused_mixing=True, dtype=dtype, device=DEVICE,
                       **params)
        for c in plain.alphas:
            assert fast.alphas[c].device.type == torch.device(DEVICE).type
            assert (plain.alphas[c] - start[c]).abs().max() > 1e-3
            torch.testing.assert_close(fast.alphas[c], plain.alphas[c], rtol=0, atol=atol)


@pytest.mark.parametrize(("method", "params"), METHODS)
def test_a_gpu_search_step_matches_the_cpu(method, params):
    """The same seeds, batches and (host-drawn) DropNAS masks give the same alphas on the GPU as
    on the CPU after three steps, in float64."""
    fast = {"channels_last": True, "share_relu": True, "phase_subsample": True, "fused_mixing": True}
    gpu, start = search_steps(method, dtype=torch.float64, device=DEVICE, **fast, **params)
    cpu, _ = search_steps(method, dtype=torch.float64, device="cpu", **fast, **params)
    for c in cpu.alphas:
        assert (cpu.alphas[c] - start[c].cpu()).abs().max() > 1e-3
        torch.testing.assert_close(gpu.alphas[c].cpu(), cpu.alphas[c], rtol=0, atol=1e-9)


def test_bf16_autocast_gradients_stay_close_to_fp32_on_the_gpu():
    """The CPU test's bound: relative L2 error of the bf16 alpha gradient under 0.30, cosine
    over 0.95 (fp32 with TF32 off as the reference)."""
    rel, cos = bf16_alpha_grad_error(DEVICE)
    assert rel < 0.30, (rel, cos)
    assert cos > 0.95, (rel, cos)
