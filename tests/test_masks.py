"""Tests for gumbel_rerank.masks: the relaxed top-k log mask, hard top-k and reproducible noise.

Reference values are computed here independently of the module (probability space instead of
log space, noise re-drawn with torch.rand from an identically seeded generator), so a broken
implementation cannot agree with them by construction.
"""

from __future__ import annotations

import math

import pytest
import torch

from gumbel_rerank.masks import (
    MODES,
    MaskConfig,
    derive_seed,
    hard_topk,
    mask_statistics,
    noise_generator,
    relaxed_topk_log_mask,
    sample_gumbel,
)

FLOOR = -1e4


def _reference_gumbel(shape: tuple[int, ...], seed_args: tuple[int, int, int, int]) -> torch.Tensor:
    """Gumbel noise re-derived from first principles: float32 uniforms on the CPU, (k, B, n)."""
    u = torch.rand(shape, generator=noise_generator(*seed_args), dtype=torch.float32)
    return -torch.log(-torch.log(u))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(4, 7) scores and validity: a full row, a padded row, a short row (2 real), all padding."""
    scores = torch.randn(4, 7, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
    valid = torch.tensor(
        [
            [1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 0, 0],
            [1, 1, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0],
        ],
        dtype=torch.bool,
    )
    # Padding gets the highest scores of all: it must be excluded by `valid`, not by luck.
    scores = torch.where(valid, scores, torch.full_like(scores, 50.0))
    return scores, valid


# ------------------------------------------------------------------------------------------
# Config validation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"k": 0}, "k"),
        ({"k": -3}, "k"),
        ({"k": 2.0}, "k"),
        ({"k": True}, "k"),
        ({"tau": 0.0}, "tau"),
        ({"tau": -0.5}, "tau"),
        ({"tau": float("nan")}, "tau"),
        ({"kappa": 0.0}, "kappa"),
        ({"kappa": -1.0}, "kappa"),
        ({"mode": "gumble"}, "mode"),
        ({"log_floor": 0.0}, "log_floor"),
        ({"log_floor": float("-inf")}, "log_floor"),
    ],
)
def test_bad_config_raises_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"MaskConfig\.{field}\b"):
        MaskConfig(**kwargs)


def test_default_config_matches_method_doc() -> None:
    cfg = MaskConfig()
    assert (cfg.k, cfg.kappa, cfg.tau, cfg.mode, cfg.log_floor) == (5, 1.0, 0.5, "gumbel", -1e4)
    for mode in MODES:
        MaskConfig(mode=mode)  # every advertised mode is accepted


def test_bad_inputs_raise() -> None:
    cfg = MaskConfig(k=2)
    with pytest.raises(ValueError, match="shape"):
        relaxed_topk_log_mask(torch.zeros(5), None, cfg)
    with pytest.raises(ValueError, match="valid"):
        relaxed_topk_log_mask(torch.zeros(2, 5), torch.ones(2, 4, dtype=torch.bool), cfg)
    with pytest.raises(ValueError, match="bool"):
        relaxed_topk_log_mask(torch.zeros(2, 5), torch.ones(2, 5), cfg)
    with pytest.raises(ValueError, match="k"):
        hard_topk(torch.zeros(2, 5), None, 0)


# ------------------------------------------------------------------------------------------
# Values against an independent reference
# ------------------------------------------------------------------------------------------


def test_gumbel_mode_equals_max_of_k_softmaxes_in_probability_space() -> None:
    scores, valid = _batch()
    cfg = MaskConfig(k=3, kappa=1.7, tau=0.6)
    seed_args = (11, 4, 1, 2)
    log_mask = relaxed_topk_log_mask(scores, valid, cfg, noise_generator(*seed_args))

    noise = _reference_gumbel((cfg.k, *scores.shape), seed_args).double()  # (k, B, n)
    logits = (cfg.kappa * scores + noise) / cfg.tau
    logits = logits.masked_fill(~valid, float("-inf"))
    # Only row 0 and row 1 have more than k real passages; compare those.
    probs = torch.softmax(logits[:, :2], dim=-1)  # (k, 2, n)
    expected = probs.max(dim=0).values  # (2, n)
    got = log_mask[:2].exp()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # Padding in row 1 really gets the floor, not a tiny probability.
    assert torch.equal(log_mask[1, 5:], torch.full((2,), FLOOR, dtype=torch.float64))


def test_deterministic_mode_is_a_single_softmax() -> None:
    scores, valid = _batch()
    cfg = MaskConfig(k=3, kappa=2.0, tau=0.25, mode="deterministic")
    log_mask = relaxed_topk_log_mask(scores, valid, cfg)
    expected = torch.softmax(cfg.kappa * scores[0] / cfg.tau, dim=0)
    torch.testing.assert_close(log_mask[0].exp(), expected.clamp(min=math.exp(FLOOR)))
    # Row 1: the softmax runs over the 5 real passages only.
    expected_1 = torch.softmax(cfg.kappa * scores[1, :5] / cfg.tau, dim=0)
    torch.testing.assert_close(log_mask[1, :5].exp(), expected_1)
    # It does not consume randomness: an explicit generator changes nothing.
    again = relaxed_topk_log_mask(scores, valid, cfg, noise_generator(1, 2, 3, 4))
    assert torch.equal(log_mask, again)


def test_log_floor_clamps_and_is_configurable() -> None:
    # Huge score gaps and a tiny tau push log-probabilities far below the floor.
    scores = torch.tensor([[0.0, 100.0, 200.0, 300.0, 400.0]])
    cfg = MaskConfig(k=2, tau=0.01, log_floor=-50.0, mode="deterministic")
    log_mask = relaxed_topk_log_mask(scores, None, cfg)
    assert torch.isfinite(log_mask).all()
    assert log_mask.min().item() == -50.0
    assert log_mask[0, 4].item() == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["gumbel", "deterministic", "subset"])
def test_gradcheck(mode: str) -> None:
    scores, valid = _batch()
    scores = scores.clone().requires_grad_(True)
    cfg = MaskConfig(k=3, kappa=1.3, tau=0.7, mode=mode)

    def fn(s: torch.Tensor) -> torch.Tensor:
        # A fresh, identically seeded generator per call: the noise is the same every time.
        return relaxed_topk_log_mask(s, valid, cfg, noise_generator(5, 6, 7, 8))

    assert torch.autograd.gradcheck(fn, (scores,), eps=1e-6, atol=1e-6)

    # gradcheck alone would also pass for a constant function: the Jacobian must be non-trivial
    # on rows with more than k real passages and exactly zero elsewhere.
    jac = torch.autograd.functional.jacobian(fn, scores)  # (B, n, B, n)
    assert jac[0, :, 0, :].abs().max() > 1e-3
    assert jac[1, :5, 1, :5].abs().max() > 1e-3
    assert torch.count_nonzero(jac[1, :, 1, 5:]) == 0  # padding scores have no influence
    assert torch.count_nonzero(jac[1, 5:]) == 0  # padding outputs are constant
    assert torch.count_nonzero(jac[2:]) == 0  # short and empty rows: all kept, constant


def test_gradient_has_no_nan_with_padding_and_empty_rows() -> None:
    scores, valid = _batch()
    for mode in MODES:
        s = scores.clone().float().requires_grad_(True)
        out = relaxed_topk_log_mask(
            s, valid, MaskConfig(k=3, mode=mode), noise_generator(0, 0, 0, 0)
        )
        (out * torch.randn_like(out)).sum().backward()
        assert torch.isfinite(s.grad).all(), mode
        assert torch.count_nonzero(s.grad[~valid]) == 0, mode


# ------------------------------------------------------------------------------------------
# Monte-Carlo behaviour
# ------------------------------------------------------------------------------------------


def _repeat_rows(w: torch.Tensor, rows: int) -> torch.Tensor:
    return w.unsqueeze(0).expand(rows, -1).clone()  # (rows, n): independent draws per row


def _expected_distinct_winners(w: torch.Tensor, k: int, kappa: float = 1.0) -> float:
    # Gumbel-max: each sample's argmax is categorical(softmax(kappa w)); k i.i.d. draws.
    p = torch.softmax(kappa * w.double(), dim=0)
    return float((1 - (1 - p) ** k).sum())


def test_mask_sum_is_between_one_and_k_on_every_draw() -> None:
    w = torch.randn(20, generator=torch.Generator().manual_seed(0))
    for tau in (2.0, 0.5, 0.1):
        cfg = MaskConfig(k=4, tau=tau)
        m = relaxed_topk_log_mask(_repeat_rows(w, 500), None, cfg, noise_generator(1, 0, 0, 0))
        total = m.exp().sum(dim=1)  # (500,)
        # Each sample sums to 1 and max_j <= sum_j, so 1 <= sum M <= k exactly (up to rounding).
        assert total.min() >= 1 - 1e-5
        assert total.max() <= cfg.k + 1e-5


@pytest.mark.parametrize(
    ("name", "w", "in_k_band"),
    [
        ("flat", torch.zeros(50), True),
        ("diffuse", 0.5 * torch.randn(50, generator=torch.Generator().manual_seed(1)), True),
        ("separated", 3.0 * torch.arange(10.0), False),
    ],
)
def test_mask_sum_monte_carlo(name: str, w: torch.Tensor, in_k_band: bool) -> None:
    """E[sum M] at small tau is the expected number of distinct per-sample winners.

    That expectation is sum_i 1 - (1 - p_i)^k with p = softmax(kappa w). For diffuse scores
    over many passages it is close to k (4.80 for 50 equal scores, k = 5), inside the band
    [0.7 k, k]. For well-separated scores the top passage wins most samples and sum M is near 1,
    far below k: the max-of-k construction keeps fewer than k passages when the reranker is
    confident. Tolerance: 5 standard errors of the Monte-Carlo mean (SE ~ 0.007 with 4000
    draws) plus 0.05 for the soft leakage at tau = 0.1 (measured bias ~ 0.01).
    """
    k, rows = 5, 4000
    cfg = MaskConfig(k=k, tau=0.1)
    m = relaxed_topk_log_mask(_repeat_rows(w, rows), None, cfg, noise_generator(2, 0, 0, 0))
    total = m.exp().sum(dim=1).double()
    mean, se = total.mean().item(), total.std().item() / math.sqrt(rows)
    expected = _expected_distinct_winners(w, k)
    assert abs(mean - expected) <= 5 * se + 0.05, (name, mean, expected)
    if in_k_band:
        assert 0.7 * k <= mean <= k
    else:
        assert mean < 1.5


def test_small_tau_gumbel_tends_to_union_of_per_sample_argmaxes() -> None:
    """As tau -> 0, M -> indicator of {argmax_i (kappa w_i + G^(j)_i) : j = 1..k}.

    That set equals the hard top-k of a single perturbed score vector only when the k winners
    are distinct; with duplicates it has fewer than k members, which this batch includes.
    """
    rows, n, k, kappa = 64, 8, 3, 1.5
    seed_args = (3, 1, 0, 0)
    w = torch.randn(rows, n, generator=torch.Generator().manual_seed(4))
    noise = _reference_gumbel((k, rows, n), seed_args)
    winners = (kappa * w + noise).argmax(dim=-1)  # (k, rows)
    target = torch.zeros(rows, n)
    target.scatter_(1, winners.T, 1.0)  # (rows, n); duplicates collapse
    assert (target.sum(dim=1) < k).any(), "batch should contain rows with repeated winners"

    errors = []
    for tau in (0.3, 0.03, 0.003):
        cfg = MaskConfig(k=k, kappa=kappa, tau=tau)
        m = relaxed_topk_log_mask(w, None, cfg, noise_generator(*seed_args)).exp()
        errors.append((m - target).abs().mean().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3


def test_small_tau_deterministic_tends_to_hard_top1_not_topk() -> None:
    # k noise-free samples are identical, so their max is one softmax -> one-hot argmax.
    w = torch.tensor([[0.3, 2.0, 1.9, -1.0, 0.5], [1.0, 0.0, -0.5, 0.2, 0.9]])
    cfg = MaskConfig(k=3, tau=1e-3, mode="deterministic")
    m = relaxed_topk_log_mask(w, None, cfg).exp()
    expected = torch.nn.functional.one_hot(w.argmax(dim=1), 5).float()
    torch.testing.assert_close(m, expected, atol=1e-6, rtol=0)
    assert m.sum(dim=1).sub(1).abs().max() < 1e-6


def test_selection_frequency_increases_with_score() -> None:
    """With small tau, P(passage i kept) = 1 - (1 - p_i)^k, p = softmax(kappa w): monotone."""
    rows, k = 20000, 2
    w = 0.5 * torch.arange(6.0)
    cfg = MaskConfig(k=k, tau=0.05)
    m = relaxed_topk_log_mask(_repeat_rows(w, rows), None, cfg, noise_generator(9, 0, 0, 0))
    freq = (m.exp() > 0.5).double().mean(dim=0)  # (6,)
    assert (freq.diff() > 0).all(), freq
    p = torch.softmax(w.double(), dim=0)
    expected = 1 - (1 - p) ** k
    se = (expected * (1 - expected) / rows).sqrt()
    assert ((freq - expected).abs() <= 5 * se + 0.01).all(), (freq, expected)


# ------------------------------------------------------------------------------------------
# Padding and short rows
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("log_floor", [-1e4, -30.0])
def test_padding_never_selected_and_short_rows_keep_everything(mode: str, log_floor: float) -> None:
    scores, valid = _batch()
    for dtype in (torch.float32, torch.float64):
        cfg = MaskConfig(k=3, tau=0.2, mode=mode, log_floor=log_floor)
        out = relaxed_topk_log_mask(scores.to(dtype), valid, cfg, noise_generator(0, 1, 0, 0))
        assert out.dtype == dtype
        assert torch.isfinite(out).all()
        assert (out[~valid] == log_floor).all()
        # Row 2 has 2 <= k real passages: both kept with log mask exactly 0.
        assert (out[2, :2] == 0.0).all()
        # Rows with > k real passages never reach 0 everywhere: a real selection happened.
        assert (out[0] < 0).any() and (out[1, :5] < 0).any()


def test_row_with_exactly_k_valid_keeps_all() -> None:
    scores = torch.tensor([[5.0, -5.0, 0.0, 9.0], [5.0, -5.0, 0.0, 9.0]])
    valid = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    out = relaxed_topk_log_mask(scores, valid, MaskConfig(k=3), noise_generator(0, 0, 0, 0))
    assert out[0].tolist() == [0.0, 0.0, 0.0, FLOOR]
    assert (out[1] < 0).any()


# ------------------------------------------------------------------------------------------
# Reproducible noise
# ------------------------------------------------------------------------------------------


def test_same_seed_tuple_gives_identical_mask_and_each_field_matters() -> None:
    scores, valid = _batch()
    cfg = MaskConfig(k=3, tau=0.5)
    base = (1, 100, 3, 2)
    ref = relaxed_topk_log_mask(scores, valid, cfg, noise_generator(*base))
    again = relaxed_topk_log_mask(scores, valid, cfg, noise_generator(*base))
    assert torch.equal(ref, again)
    for position in range(4):
        changed = list(base)
        changed[position] += 1
        other = relaxed_topk_log_mask(scores, valid, cfg, noise_generator(*changed))
        assert not torch.equal(ref[:2], other[:2]), f"field {position} did not change the noise"
    # Order matters: swapping step and rank is a different stream.
    assert derive_seed(1, 2, 3, 4) != derive_seed(1, 3, 2, 4)


def test_derive_seed_is_a_fixed_function() -> None:
    # Golden values: changing the mixing would silently change the noise of resumed runs.
    assert derive_seed(0, 0, 0, 0) == 4986637327344839075
    assert derive_seed(1, 2, 3, 4) == 6462710975842466167
    seeds = {
        derive_seed(s, t, r, m)
        for s in range(4)
        for t in range(8)
        for r in range(4)
        for m in range(4)
    }
    assert len(seeds) == 4 * 8 * 4 * 4
    assert all(0 <= s < 2**64 for s in seeds)
    with pytest.raises(TypeError):
        derive_seed(1.5, 0, 0, 0)  # type: ignore[arg-type]


def test_noise_is_finite_and_standard_gumbel() -> None:
    g = sample_gumbel((200_000,), generator=noise_generator(0, 0, 0, 0))
    assert torch.isfinite(g).all()
    # Standard Gumbel: mean = Euler-Mascheroni constant, variance = pi^2 / 6.
    assert g.mean().item() == pytest.approx(0.5772, abs=0.01)
    assert g.var().item() == pytest.approx(math.pi**2 / 6, abs=0.03)


def test_noise_is_finite_when_the_uniform_draw_hits_zero() -> None:
    # torch.rand(float32) returns multiples of 2**-24, so u == 0 happens (about 1 in 16.8M);
    # unclamped, -log(-log 0) = -inf would poison the softmax. Find a seed that draws a 0.
    size = 2**20
    for seed in range(2000):
        if (torch.rand(size, generator=torch.Generator().manual_seed(seed)) == 0).any():
            break
    else:
        pytest.fail("no exact zero among the uniform draws; enlarge the search")
    g = sample_gumbel((size,), generator=torch.Generator().manual_seed(seed))
    assert torch.isfinite(g).all()


def test_noise_does_not_depend_on_score_dtype() -> None:
    scores, valid = _batch()
    cfg = MaskConfig(k=3)
    m64 = relaxed_topk_log_mask(scores, valid, cfg, noise_generator(0, 2, 0, 0))
    m32 = relaxed_topk_log_mask(scores.float(), valid, cfg, noise_generator(0, 2, 0, 0))
    torch.testing.assert_close(m32.double(), m64, rtol=1e-5, atol=1e-5)
    m16 = relaxed_topk_log_mask(scores.bfloat16(), valid, cfg, noise_generator(0, 2, 0, 0))
    assert m16.dtype == torch.bfloat16
    # bfloat16 rounds the scores (3 significant digits), hence the loose tolerance.
    torch.testing.assert_close(m16.double()[:2, :5].exp(), m64[:2, :5].exp(), atol=0.05, rtol=0)


def test_global_rng_is_used_without_generator() -> None:
    scores, valid = _batch()
    cfg = MaskConfig(k=3)
    torch.manual_seed(42)
    a = relaxed_topk_log_mask(scores, valid, cfg)
    torch.manual_seed(42)
    b = relaxed_topk_log_mask(scores, valid, cfg)
    c = relaxed_topk_log_mask(scores, valid, cfg)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_gives_the_same_mask_on_cuda() -> None:
    scores, valid = _batch()
    cfg = MaskConfig(k=3)
    cpu = relaxed_topk_log_mask(scores, valid, cfg, noise_generator(1, 2, 3, 4))
    gpu = relaxed_topk_log_mask(scores.cuda(), valid.cuda(), cfg, noise_generator(1, 2, 3, 4))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------------------
# Straight-through
# ------------------------------------------------------------------------------------------


def test_straight_through_forward_is_hard_topk_and_backward_is_gumbel() -> None:
    scores, valid = _batch()
    k = 3
    seed_args = (7, 7, 0, 1)
    s_st = scores.clone().requires_grad_(True)
    s_gb = scores.clone().requires_grad_(True)
    st = relaxed_topk_log_mask(
        s_st, valid, MaskConfig(k=k, tau=0.4, mode="straight_through"), noise_generator(*seed_args)
    )
    gb = relaxed_topk_log_mask(s_gb, valid, MaskConfig(k=k, tau=0.4), noise_generator(*seed_args))

    # Forward: exactly 0 on the hard top-k of the relaxed mask, exactly the floor elsewhere.
    _, hard = hard_topk(gb.detach(), valid, k)
    expected = torch.where(hard > 0, 0.0, FLOOR).double()
    assert torch.equal(st.detach(), expected)
    assert (st.detach() == 0).sum(dim=1).tolist() == [k, k, 2, 0]
    # The hard choice of row 0 follows the noise, not just the scores (else the noise is unused).
    assert set(torch.nonzero(st[0].detach() == 0).flatten().tolist()) == set(
        torch.topk(gb[0].detach(), k).indices.tolist()
    )

    # Backward: identical gradient to the gumbel relaxed mask for the same upstream gradient.
    upstream = torch.randn(scores.shape, generator=torch.Generator().manual_seed(0)).double()
    (st * upstream).sum().backward()
    (gb * upstream).sum().backward()
    assert s_st.grad.abs().max() > 1e-3
    torch.testing.assert_close(s_st.grad, s_gb.grad, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------
# hard_topk
# ------------------------------------------------------------------------------------------


def test_hard_topk_sorted_and_skips_padding() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 9.0], [3.0, 1.0, 2.0, 9.0, 9.0]])
    valid = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    idx, mask = hard_topk(scores, valid, 2)
    assert idx.dtype == torch.long
    assert idx.tolist() == [[1, 3], [0, 2]]
    assert mask.tolist() == [[0, 1, 0, 1, 0], [1, 0, 1, 0, 0]]
    assert mask.dtype == scores.dtype


def test_hard_topk_short_rows_padded_with_minus_one() -> None:
    scores = torch.tensor([[0.2, 0.8, 5.0, 5.0], [0.2, 0.8, 0.5, 0.1], [1.0, 2.0, 3.0, 4.0]])
    valid = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    idx, mask = hard_topk(scores, valid, 3)
    assert idx.shape == (3, 3)
    assert idx.tolist() == [[1, 0, -1], [1, 2, 0], [-1, -1, -1]]
    assert mask.sum(dim=1).tolist() == [2.0, 3.0, 0.0]
    # k larger than n: k_eff = n columns.
    idx, mask = hard_topk(scores, valid, 10)
    assert idx.shape == (3, 4)
    assert idx[0].tolist() == [1, 0, -1, -1]
    assert idx[1].tolist() == [1, 2, 0, 3]


def test_hard_topk_ties_prefer_lower_index_and_accept_no_valid() -> None:
    scores = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.0]])
    idx, mask = hard_topk(scores, None, 2)
    assert idx.tolist() == [[1, 2]]
    assert mask.tolist() == [[0, 1, 1, 0, 0]]


def test_hard_topk_matches_topk_on_random_inputs() -> None:
    gen = torch.Generator().manual_seed(5)
    scores = torch.randn(50, 12, generator=gen)
    valid = torch.rand(50, 12, generator=gen) > 0.3
    idx, mask = hard_topk(scores, valid, 4)
    masked = scores.masked_fill(~valid, float("-inf"))
    for row in range(50):
        n_valid = int(valid[row].sum())
        top = torch.topk(masked[row], min(4, n_valid)).indices.tolist() if n_valid else []
        assert idx[row, : len(top)].tolist() == top
        assert (idx[row, len(top) :] == -1).all()
        assert mask[row].nonzero().flatten().sort().values.tolist() == sorted(top)


# ------------------------------------------------------------------------------------------
# mask_statistics
# ------------------------------------------------------------------------------------------


def test_mask_statistics_known_values() -> None:
    log_mask = torch.tensor(
        [
            [0.0, FLOOR, FLOOR, FLOOR, FLOOR],  # one-hot: entropy 0, effective k 1
            [0.0, 0.0, 0.0, FLOOR, 0.0],  # 3 real ones kept, last entry is padding
            [FLOOR, FLOOR, FLOOR, FLOOR, FLOOR],  # padding only: ignored
        ]
    )
    valid = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    stats = mask_statistics(log_mask, valid)
    assert stats["num_rows"] == 2.0
    assert stats["mask_entropy"] == pytest.approx(math.log(3) / 2)
    assert stats["effective_k"] == pytest.approx(2.0)
    assert stats["effective_k_min"] == pytest.approx(1.0)
    assert stats["effective_k_max"] == pytest.approx(3.0)
    empty = mask_statistics(log_mask[2:], valid[2:])
    assert empty["num_rows"] == 0.0 and empty["effective_k"] == 0.0


def test_mask_statistics_on_a_real_mask() -> None:
    scores, valid = _batch()
    cfg = MaskConfig(k=3, tau=0.5)
    log_mask = relaxed_topk_log_mask(scores, valid, cfg, noise_generator(0, 0, 0, 0))
    stats = mask_statistics(log_mask, valid)
    assert stats["num_rows"] == 3.0
    m = log_mask.exp() * valid
    assert stats["effective_k"] == pytest.approx(m[:3].sum(dim=1).mean().item())
    assert 1.0 - 1e-9 <= stats["effective_k_min"] <= stats["effective_k_max"] <= 3.0 + 1e-9
    assert 0.0 < stats["mask_entropy"] < math.log(7)


def test_example_noise_does_not_depend_on_batch_layout_or_padding():
    from gumbel_rerank.masks import example_gumbel_noise

    together = example_gumbel_noise(7, 3, positions=[0, 1, 2], counts=[4, 2, 3], k=2, n=5)
    split = [example_gumbel_noise(7, 3, positions=[p], counts=[c], k=2, n=c) for p, c in [(0, 4), (1, 2), (2, 3)]]
    for b, alone in enumerate(split):
        assert torch.equal(together[:, b, : alone.shape[2]], alone[:, 0])
    assert torch.equal(together[:, 1, 2:], torch.zeros(2, 3))
    assert not torch.equal(together, example_gumbel_noise(7, 4, [0, 1, 2], [4, 2, 3], 2, 5))
    scores = torch.randn(3, 5)
    valid = torch.arange(5)[None, :] < torch.tensor([[4], [2], [3]])
    cfg = MaskConfig(k=2, tau=0.3)
    a = relaxed_topk_log_mask(scores, valid, cfg, noise=together)
    b = relaxed_topk_log_mask(scores, valid, cfg, noise=together.clone())
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="noise has shape"):
        relaxed_topk_log_mask(scores, valid, cfg, noise=together[:, :2])


def test_subset_mode_picks_k_distinct_passages_as_tau_shrinks() -> None:
    """Without replacement: at a small tau the mask is 1 on the top k of the one perturbed draw
    (k distinct passages, where max-of-k may repeat one); at any tau each pick sums to one, so
    the mask sums to k."""
    from gumbel_rerank.masks import subset_log_mask

    torch.manual_seed(0)
    scores = torch.randn(6, 8, dtype=torch.float64)
    valid = torch.ones(6, 8, dtype=torch.bool)
    noise = sample_gumbel((3, 6, 8), generator=noise_generator(1, 2, 3, 4), dtype=torch.float64)
    sharp = relaxed_topk_log_mask(scores, valid, MaskConfig(k=3, tau=1e-3, mode="subset"), noise=noise).exp()
    top = (scores + noise[0]).topk(3, dim=1).indices
    expected = torch.zeros_like(sharp).scatter_(1, top, 1.0)
    torch.testing.assert_close(sharp, expected, atol=1e-6, rtol=0)
    soft = subset_log_mask(scores + noise[0], 3, 0.7).exp()
    torch.testing.assert_close(soft.sum(dim=1), torch.full((6,), 3.0, dtype=torch.float64))
    # max-of-k with the same scale can count one passage for two samples: fewer than k kept
    maxk = relaxed_topk_log_mask(scores * 5, valid, MaskConfig(k=3, tau=1e-3), noise=noise).exp()
    assert float(maxk.sum(dim=1).min()) < 3.0 - 0.5
