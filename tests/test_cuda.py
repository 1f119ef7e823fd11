"""CUDA correctness (skipped without a GPU; ``benchmarks/gpu_check.sh`` runs them on one):
the mask and its gradient in bf16 on CUDA against float64 on the CPU, the reader's masked loss
under bf16 autocast against float32, a G-Rerank training step on CUDA against the CPU step,
and an interrupted CUDA run resumed against an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from tiny_world import build_world, reader_reranker_batch

from gumbel_rerank.cli import main
from gumbel_rerank.masks import MaskConfig, example_gumbel_noise, relaxed_topk_log_mask
from gumbel_rerank.objectives.base import StepContext
from gumbel_rerank.objectives.registry import build_objective

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.mark.parametrize("mode", ["gumbel", "straight_through", "subset"])
def test_mask_and_its_gradient_in_bf16_on_cuda_match_float64_on_cpu(mode):
    torch.manual_seed(0)
    scores = torch.randn(8, 20, dtype=torch.float64)
    valid = torch.ones(8, 20, dtype=torch.bool)
    valid[3, 15:] = False
    noise = example_gumbel_noise(0, 1, list(range(8)), valid.sum(1).tolist(), 5, 20)
    weights = torch.randn(8, 20, dtype=torch.float64)
    cfg = MaskConfig(k=5, kappa=1.0, tau=0.5, mode=mode)

    def run(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = s.detach().requires_grad_(True)
        log_mask = relaxed_topk_log_mask(s, valid.to(s.device), cfg, noise=noise)
        (log_mask.exp().double() * weights.to(s.device)).sum().backward()
        return log_mask.detach().double().cpu(), s.grad.double().cpu()

    reference_mask, reference_grad = run(scores)
    mask, grad = run(scores.to("cuda", torch.bfloat16))
    # bf16 scores carry 8 bits of mantissa: the mask and gradient agree to that rounding
    torch.testing.assert_close(mask.exp(), reference_mask.exp(), atol=2e-2, rtol=0)
    torch.testing.assert_close(grad, reference_grad, atol=5e-2 * float(reference_grad.abs().max()), rtol=0)


def test_masked_reader_loss_under_bf16_autocast_matches_float32(world):
    reader, _, batch = reader_reranker_batch(world)
    reader = reader.to("cuda")
    n = max(len(p) for p in batch.passages)
    states = reader.encode(reader.tokenize_passages(batch.questions, batch.passages, n_passages=n))
    labels = reader.tokenize_targets(batch.targets)
    log_mask = torch.log_softmax(torch.randn(len(batch), n, device="cuda"), dim=1).requires_grad_(True)
    full = reader.lm_loss(states, labels, log_mask)
    grad32 = torch.autograd.grad(full.sum(), log_mask)[0]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        half = reader.lm_loss(states, labels, log_mask)
    grad16 = torch.autograd.grad(half.sum(), log_mask)[0]
    torch.testing.assert_close(half.float(), full, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(grad16, grad32, atol=3e-2 * float(grad32.abs().max()), rtol=0)


def test_a_g_rerank_step_on_cuda_equals_the_cpu_step(world):
    """The same loss and reranker gradients on CUDA as on the CPU (float32; TF32 off)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    results = []
    for device in ("cpu", "cuda"):
        reader, reranker, batch = reader_reranker_batch(world)
        reader, reranker = reader.to(device), reranker.to(device)
        objective = build_objective("gumbel", {"mask": {"k": 2}}, reader=reader)
        loss, _ = objective.loss(reranker, batch, StepContext(step=3, seed=1))
        loss.backward()
        results.append((float(loss.detach()), [p.grad.detach().cpu() for p in reranker.parameters() if p.grad is not None]))
    (cpu_loss, cpu_grads), (gpu_loss, gpu_grads) = results
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-4, abs=1e-5)
    for a, b in zip(cpu_grads, gpu_grads, strict=True):
        torch.testing.assert_close(b, a, atol=1e-4 * max(1.0, float(a.abs().max())), rtol=1e-3)


def test_a_cuda_run_resumed_from_a_middle_checkpoint_ends_with_the_uninterrupted_weights(world, tmp_path):
    """Resume on CUDA: the step-4 checkpoint of an 8-step run, resumed, gives the same weights
    as the run itself (cuDNN/cuBLAS asked to be deterministic; the tiny models use no
    atomics-based kernels, where bit-identity is not guaranteed: docs/reliability.md)."""
    import shutil

    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    common = {"optim.max_steps": 8, "run.device": "cuda", "run.save_every": 4, "run.keep_last": 2}
    full = tmp_path / "full"
    assert main(["train", *world.overrides(full, **common)]) == 0
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    shutil.rmtree(resumed / "model")
    shutil.rmtree(resumed / "checkpoints" / "step-0000008")
    (resumed / "checkpoints" / "latest").write_text("step-0000004")
    assert main(["train", *world.overrides(resumed, **common), "--resume"]) == 0
    a = load_file(str(full / "model" / "model.safetensors"))
    b = load_file(str(resumed / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((resumed / "checkpoints" / "step-0000008" / "trainer_state.json").read_text())["step"] == 8
