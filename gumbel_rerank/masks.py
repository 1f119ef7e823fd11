"""Relaxed top-k passage masks for Gumbel reranking (method.md section 1, steps 2-4).

The reranker gives one score ``w_i`` per candidate passage. Training turns the scores into a
soft mask ``M`` in ``[0, 1]^n`` that is close to 1 on roughly ``k`` passages; the reader adds
``log M_i`` to the cross-attention logits of every token of passage ``i``. This module only
builds ``log M``; it knows nothing about the reader.

Construction (max of k Gumbel-softmaxes, L2X style, *not* the iterative Xie-Ermon relaxation)::

    G^(j)_i = -log(-log u^(j)_i),  u ~ U(0, 1) i.i.d., j = 1..k   (fresh noise per sample)
    M^(j)   = softmax((kappa * w + G^(j)) / tau)                  (over the n passages)
    M_i     = max_j M^(j)_i

Everything is computed in log space: ``log M = max_j log_softmax(...)`` (``max`` commutes with
the monotone ``log``), then clamped at ``MaskConfig.log_floor`` so no ``-inf`` ever enters the
soft path. Shapes used throughout: ``B`` questions in the batch, ``n`` candidate passages per
question (padded to the batch maximum), ``k`` passages to keep.

Two properties that follow from the construction and are easy to get wrong:

* ``sum_i M_i`` lies in ``[1, k]`` for every draw (each sample sums to one, and
  ``max_j <= sum_j``). As ``tau -> 0`` it tends to the number of *distinct* per-sample winners
  ``argmax_i (kappa * w_i + G^(j)_i)``, which is below ``k`` whenever two samples pick the same
  passage. A confident reranker (well-separated scores) therefore gets an effective k near 1,
  a diffuse one gets close to k. Its expectation is ``sum_i 1 - (1 - p_i)^k`` with
  ``p = softmax(kappa * w)`` (Gumbel-max trick).
* Without noise (``mode="deterministic"``) the k samples are identical, so their maximum is a
  single softmax: ``M = softmax(kappa * w / tau)``, which sums to 1 and tends to the one-hot
  argmax (hard top-1, not top-k) as ``tau -> 0``.
"""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "LOG_FLOOR",
    "MODES",
    "MaskConfig",
    "NoiseStream",
    "derive_seed",
    "example_gumbel_noise",
    "hard_topk",
    "hard_topk_log_mask",
    "mask_statistics",
    "noise_generator",
    "relaxed_topk_log_mask",
    "sample_gumbel",
    "subset_log_mask",
]

#: Accepted values of ``MaskConfig.mode``.
MODES = ("gumbel", "deterministic", "straight_through", "subset")

#: The one log-mask floor: ``log M`` of a dropped or padding passage. Finite, so no ``-inf``
#: enters a soft path (a NaN-free gradient), representable in float16 (whose range ends at about
#: -6.5e4), and low enough that ``exp(LOG_FLOOR)`` is exactly 0 in every float dtype. The reader
#: clamps at it, masks and evaluation write it for dropped passages.
LOG_FLOOR = -1e4


class NoiseStream(enum.IntEnum):
    """Independent random streams per (seed, step, example): the last key of :func:`derive_seed`.

    Every consumer of per-example randomness takes its own stream, so adding one never shifts
    another's draws (a resumed or re-laid-out run stays exact).
    """

    #: the Gumbel noise of the (first) relaxed top-k mask
    GUMBEL_MASK = 0
    #: train-reader's random distractor passages (curriculum contexts)
    CONTEXT_DISTRACTORS = 1
    #: LCE's choice of the positive and of the sampled negatives of a question's group
    LCE_GROUP = 2
    #: train-reader's draw of an example's kind in a mixed curriculum stage
    EXAMPLE_KIND = 3
    #: further independent masks of one example (``mask_samples`` > 1): this + draw index
    EXTRA_GUMBEL_MASKS = 1000

_MASK64 = (1 << 64) - 1


@dataclass
class MaskConfig:
    """Hyper-parameters of the relaxed top-k mask.

    Attributes:
        k: number of passages to keep (number of Gumbel-softmax samples). Must be >= 1.
        kappa: scale applied to the reranker scores before adding noise. Must be > 0.
        tau: softmax temperature; smaller is closer to a hard mask. Must be > 0.
        mode: ``"gumbel"`` (default, the method), ``"deterministic"`` (ablation without noise:
            ``softmax(kappa * w / tau)``), or ``"straight_through"`` (forward value is the hard
            top-k of the gumbel relaxed mask, backward is the gumbel relaxed mask's gradient),
            or ``"subset"`` (a relaxed top-k *without replacement*, the iterative relaxation of
            Xie & Ermon 2019: one Gumbel draw, k softmaxes, each passage's logit lowered by
            ``log(1 - p)`` after every pick, ``M`` their sum; the k picks are distinct, where the
            max-of-k mask counts a passage drawn twice once).
        log_floor: value that ``log M`` is clamped to instead of ``-inf``; padding passages get
            exactly this value. Must be finite and negative. The default -1e4 is representable
            in float16 (whose range ends at about -6.5e4) and makes ``exp(log_floor)`` zero.
    """

    k: int = 5
    kappa: float = 1.0
    tau: float = 0.5
    mode: str = "gumbel"
    log_floor: float = LOG_FLOOR

    def __post_init__(self) -> None:
        # bool is an int subclass; k=True is certainly a mistake.
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"MaskConfig.k must be an integer >= 1, got {self.k!r}")
        if not self.tau > 0 or self.tau == float("inf"):
            raise ValueError(
                f"MaskConfig.tau (temperature) must be a finite number > 0, got {self.tau!r}"
            )
        if not self.kappa > 0 or self.kappa == float("inf"):
            raise ValueError(
                f"MaskConfig.kappa (score scale) must be a finite number > 0, got {self.kappa!r}"
            )
        if self.mode not in MODES:
            raise ValueError(f"MaskConfig.mode must be one of {MODES}, got {self.mode!r}")
        if not (-float("inf") < self.log_floor < 0):
            raise ValueError(
                "MaskConfig.log_floor must be a finite negative number (e.g. -1e4), "
                f"got {self.log_floor!r}"
            )


# ---------------------------------------------------------------------------------------------
# Reproducible noise
# ---------------------------------------------------------------------------------------------


def _splitmix64(x: int) -> int:
    """One round of the SplitMix64 finaliser: a fixed, well-mixing bijection on 64-bit ints."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(seed: int, step: int, rank: int, micro_batch: int) -> int:
    """Combine ``(seed, step, rank, micro_batch)`` into one 64-bit generator seed.

    Uses a fixed mixing function (SplitMix64 chained over the four values), never Python's
    ``hash()``, so the result is identical across processes, machines and Python versions: a
    resumed or re-run step draws exactly the same noise. The chain is order sensitive, so e.g.
    swapping ``step`` and ``rank`` gives a different seed. Negative integers are accepted and
    taken modulo 2**64.

    Returns:
        An integer in ``[0, 2**64)``, valid for ``torch.Generator.manual_seed``.
    """
    h = 0x243F6A8885A308D3  # arbitrary fixed start (digits of pi) so all-zero inputs mix too
    for value in (seed, step, rank, micro_batch):
        # operator.index accepts numpy / torch integer scalars but rejects floats.
        h = _splitmix64(h ^ (operator.index(value) & _MASK64))
    return h


def noise_generator(
    seed: int, step: int, rank: int, micro_batch: int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A fresh ``torch.Generator`` seeded by :func:`derive_seed` of the four integers.

    Create one per (optimizer step, data-parallel rank, gradient-accumulation micro batch) and
    pass it to :func:`relaxed_topk_log_mask`. Keep the default ``device="cpu"``: the mask
    function then draws the noise on the CPU and moves it to the scores' device, so the noise
    (and hence the mask) is the same on CPU and GPU. A CUDA generator also works but draws a
    different stream than the CPU one.
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, step, rank, micro_batch))
    return generator


def sample_gumbel(
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard Gumbel noise ``G = -log(-log u)`` of the given shape.

    ``u`` is drawn in float32 on the generator's device (the CPU for ``generator=None``, which
    then uses the global CPU RNG), clamped to ``[tiny, 1 - eps]`` so that ``G`` is finite, and
    only then cast to ``dtype`` and moved to ``device``. Drawing in a fixed dtype on a fixed
    device makes the noise independent of the scores' dtype and device.

    :func:`relaxed_topk_log_mask` draws its noise with exactly this function, with shape
    ``(k, B, n)``, so callers (and tests) can reproduce it from an identically seeded generator.
    """
    draw_device = generator.device if generator is not None else torch.device("cpu")
    finfo = torch.finfo(torch.float32)
    u = torch.rand(shape, generator=generator, device=draw_device, dtype=torch.float32)
    # u == 0 would give G = -inf and u == 1 would give G = +inf.
    u = u.clamp(min=finfo.tiny, max=1.0 - finfo.eps)
    gumbel = -torch.log(-torch.log(u))
    return gumbel.to(device=device if device is not None else draw_device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Hard top-k
# ---------------------------------------------------------------------------------------------


def _check_inputs(scores: Tensor, valid: Tensor | None) -> Tensor:
    """Validate ``scores`` (B, n) and return a boolean ``valid`` (B, n) on the same device."""
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape (B, n), got shape {tuple(scores.shape)}")
    if valid is None:
        return torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    if valid.shape != scores.shape:
        raise ValueError(
            f"valid must have the same shape as scores {tuple(scores.shape)}, "
            f"got {tuple(valid.shape)}"
        )
    if valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool tensor, got dtype {valid.dtype}")
    return valid.to(scores.device)


@torch.no_grad()
def example_gumbel_noise(
    seed: int, step: int, positions: list[int], counts: list[int], k: int, n: int, draw: int = 0
) -> Tensor:
    """Gumbel noise keyed by example, not by batch layout.

    Example b draws its (k, counts[b]) noise from ``noise_generator(seed, step, positions[b], 0)``
    where ``positions[b]`` is its place in the step's global batch (a function of rank and
    micro-batch). So a resumed or re-run step draws the same noise, and so does the same global
    batch split differently over processes or accumulation steps (which is what makes two
    processes train exactly like one). Noise does not depend on padding either. ``draw`` > 0
    gives further independent draws for the same example (several masks per question).

    Returns:
        (k, B, n) float32 noise on the CPU, zeros at padding positions (they are masked anyway).
    """
    out = torch.zeros(k, len(positions), n)
    for b, (position, count) in enumerate(zip(positions, counts, strict=True)):
        stream = NoiseStream.GUMBEL_MASK if draw == 0 else NoiseStream.EXTRA_GUMBEL_MASKS + draw
        gen = noise_generator(seed, step, position, stream)
        out[:, b, :count] = sample_gumbel((k, count), generator=gen)
    return out


def hard_topk(scores: Tensor, valid: Tensor | None, k: int) -> tuple[Tensor, Tensor]:
    """Hard top-k selection by score, never choosing padding passages.

    Args:
        scores: (B, n) passage scores (higher is better). Not differentiated.
        valid: (B, n) bool, True for real passages; ``None`` means all are real.
        k: number of passages to keep, >= 1.

    Returns:
        ``(indices, mask)``:

        * ``indices``: (B, k_eff) long with ``k_eff = min(k, n)``; each row lists the chosen
          passages sorted by score, highest first (ties: lower passage index first). A row with
          fewer than ``k_eff`` valid passages lists all of them and pads the remaining slots
          with ``-1``, so ``indices >= 0`` marks real choices and padding always sits at the end.
        * ``mask``: (B, n) 0/1 mask of the chosen passages, in ``scores.dtype`` when that is a
          floating dtype, float32 otherwise. Its row sum is ``min(k, n_valid)``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    valid = _check_inputs(scores, valid)
    num_rows, n = scores.shape
    k_eff = min(k, n)
    # Two stable sorts give the lexicographic order (valid first, then score descending, then
    # passage index) without having to invent a sentinel score for padding.
    order = torch.sort(scores.detach(), dim=1, descending=True, stable=True).indices  # (B, n)
    valid_sorted = valid.gather(1, order)  # (B, n)
    regroup = torch.sort((~valid_sorted).to(torch.uint8), dim=1, stable=True).indices  # (B, n)
    order = order.gather(1, regroup)[:, :k_eff]  # (B, k_eff)
    chosen_valid = valid.gather(1, order)  # (B, k_eff): False only in short rows' tail slots
    indices = torch.where(chosen_valid, order, torch.full_like(order, -1))

    mask_dtype = scores.dtype if scores.is_floating_point() else torch.float32
    mask = torch.zeros((num_rows, n), dtype=mask_dtype, device=scores.device)
    mask.scatter_(1, order, chosen_valid.to(mask_dtype))  # padding slots scatter a 0
    return indices, mask


def hard_topk_log_mask(
    scores: Tensor, valid: Tensor | None, k: int, log_floor: float = LOG_FLOOR
) -> Tensor:
    """The log mask of the hard top-k: 0 on the k best-scored real passages, ``log_floor``
    elsewhere (padding included). Feeding it to a reader is exactly reading only those passages.

    Args:
        scores: (B, n) passage scores; not differentiated.
        valid: (B, n) bool, True for real passages; ``None`` = all real.
        k: passages to keep (>= 1).

    Returns:
        (B, n) float32 on ``scores.device``, values in ``{0, log_floor}``.
    """
    _, hard = hard_topk(scores.detach(), valid, k)  # (B, n) 0/1
    zero = torch.zeros(hard.shape, dtype=torch.float32, device=hard.device)
    return torch.where(hard > 0, zero, torch.full_like(zero, log_floor))


# ---------------------------------------------------------------------------------------------
# Relaxed top-k
# ---------------------------------------------------------------------------------------------


def relaxed_topk_log_mask(
    scores: Tensor,
    valid: Tensor | None,
    cfg: MaskConfig,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Log of the relaxed top-k mask, ``log M``, differentiable w.r.t. ``scores``.

    Args:
        scores: (B, n) reranker scores ``w`` (floating point).
        valid: (B, n) bool, True for real passages, False for padding; ``None`` = all real.
        cfg: mask hyper-parameters (k, kappa, tau, mode, log_floor).
        generator: source of the uniform noise (see :func:`noise_generator`); ``None`` uses the
            global CPU RNG. Unused in ``"deterministic"`` mode. The noise has shape (k, B, n)
            and is drawn for every row, padding included, so a row's noise does not depend on
            which passages of the batch are padding.
        noise: (k, B, n) Gumbel noise to use instead of drawing it (see
            :func:`example_gumbel_noise`); ``generator`` is then ignored.

    Returns:
        (B, n) tensor in ``scores.dtype`` on ``scores.device`` (computed internally in at least
        float32), with values in ``[log_floor, 0]`` (in ``"subset"`` mode a passage may
        exceed 0: :func:`subset_log_mask`):

        * padding passages: exactly ``log_floor``, and they get no probability in any softmax;
        * rows with ``n_valid <= k``: exactly ``0.0`` for every real passage (all are kept;
          the gradient there is zero);
        * other rows: ``max_j log_softmax((kappa * w + G^(j)) / tau)`` clamped at ``log_floor``
          (``"gumbel"``); ``log_softmax(kappa * w / tau)`` (``"deterministic"``, the max of k
          identical noise-free samples); or, for ``"straight_through"``, the value ``0`` on the
          hard top-k of the gumbel relaxed mask and ``log_floor`` elsewhere, with the gradient
          of the gumbel relaxed log mask (straight-through in log space: the reader then sees
          exactly k passages, and passages it cannot see get almost no upstream gradient).
    """
    valid = _check_inputs(scores, valid)
    if not scores.is_floating_point():
        raise ValueError(f"scores must be a floating point tensor, got dtype {scores.dtype}")
    num_rows, n = scores.shape
    # float16 / bfloat16 scores are promoted to float32; float64 stays float64 (gradcheck).
    work_dtype = torch.promote_types(scores.dtype, torch.float32)
    logits = scores.to(work_dtype) * cfg.kappa  # (B, n)

    n_valid = valid.sum(dim=1)  # (B,)
    keep_all = n_valid <= cfg.k  # (B,) rows whose real passages are all kept
    # Padding gets -inf logits, so zero probability. A row without any real passage would
    # turn into an all -inf softmax (NaN); its soft values are overwritten below anyway, so
    # let such rows' padding through the softmax rather than produce NaN there.
    softmax_valid = valid | (n_valid == 0).unsqueeze(1)  # (B, n)

    if cfg.mode == "deterministic":
        # k noise-free samples are identical and their max is any one of them: one sample.
        perturbed = logits.unsqueeze(0)  # (1, B, n)
    else:
        if noise is None:
            noise = sample_gumbel(
                (cfg.k, num_rows, n), generator=generator, device=scores.device, dtype=work_dtype
            )  # (k, B, n)
        elif noise.shape != (cfg.k, num_rows, n):
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {(cfg.k, num_rows, n)}")
        noise = noise.to(device=scores.device, dtype=work_dtype)
        perturbed = logits.unsqueeze(0) + noise  # (k, B, n)
    perturbed = perturbed.masked_fill(~softmax_valid.unsqueeze(0), float("-inf"))
    if cfg.mode == "subset":
        log_mask = subset_log_mask(perturbed[0], cfg.k, cfg.tau).clamp(min=cfg.log_floor)
    else:
        log_samples = torch.log_softmax(perturbed / cfg.tau, dim=-1)  # (k or 1, B, n)
        # log(max_j M^(j)) = max_j log M^(j); then keep -inf (and tiny values) out of the soft path.
        log_mask = log_samples.amax(dim=0).clamp(min=cfg.log_floor)  # (B, n)

    floor = torch.full_like(log_mask, cfg.log_floor)
    zero = torch.zeros_like(log_mask)
    # torch.where (not arithmetic) so the overwritten entries pass no gradient, not even NaN.
    log_mask = torch.where(keep_all.unsqueeze(1), zero, log_mask)
    log_mask = torch.where(valid, log_mask, floor)

    if cfg.mode == "straight_through":
        # (B, n) in {0, log_floor}: the hard top-k of the relaxed mask itself
        hard_log = hard_topk_log_mask(log_mask, valid, cfg.k, cfg.log_floor).to(log_mask.dtype)
        # x - x.detach() is exactly 0 in the forward pass, so the value is exactly hard_log,
        # while the backward pass sees d(log_mask)/d(scores).
        log_mask = hard_log + (log_mask - log_mask.detach())

    return log_mask.to(scores.dtype)


def subset_log_mask(perturbed: Tensor, k: int, tau: float) -> Tensor:
    """``log M`` of the relaxed top-k without replacement (Xie & Ermon 2019) from one perturbed
    score row per question.

    ``p_1 = softmax(s / tau)``; after pick j every logit is lowered by ``log(1 - p_j)``
    (``s <- s + log(1 - p_j)``), so a passage already taken has little mass left for the next
    pick; ``M = sum_j p_j``, which sums to k over the passages. As ``tau -> 0`` this is the
    hard top-k of the perturbed scores: k distinct passages. At a moderate tau a strong
    passage can collect more than 1 (two picks' mass); it is not capped, which would cut its
    gradient: the reader's attention uses only the ratios of M between passages.

    Args:
        perturbed: (B, n) ``kappa * w + G`` (``-inf`` where a passage cannot be picked).
        k: picks. tau: temperature.

    Returns:
        (B, n) ``log M``, finite (callers clamp at the floor).
    """
    # passages that cannot be picked get a finite, hopeless logit: an all -inf row would give
    # NaN gradients in the softmax and logsumexp below, even where the result is overwritten
    logits = perturbed.nan_to_num(neginf=-1e9)
    picks = []
    for _ in range(k):
        log_p = torch.log_softmax(logits / tau, dim=-1)  # (B, n)
        picks.append(log_p)
        # log(1 - p) from log p, kept finite when p rounds to 1 (a passage already taken)
        logits = logits + torch.log1p(-log_p.exp().clamp(max=1.0 - 1e-6))
    return torch.logsumexp(torch.stack(picks), dim=0)


@torch.no_grad()
def mask_statistics(log_mask: Tensor, valid: Tensor | None) -> dict[str, float]:
    """Logging summaries of a (B, n) log mask; rows without real passages are ignored.

    Returns a dict of Python floats:

    * ``mask_entropy``: mean over rows of the entropy (nats) of the normalised mask
      ``M / sum M`` over the real passages; ``log k`` for k equal weights, 0 for a one-hot.
    * ``effective_k``: mean over rows of ``sum M`` over the real passages (``1..k`` for the
      gumbel mask, see the module docstring); ``effective_k_min`` / ``effective_k_max``: its
      range over rows.
    * ``num_rows``: rows that entered the averages.

    All values are 0.0 when no row has a real passage.
    """
    valid = _check_inputs(log_mask, valid)
    log_m = log_mask.detach().to(torch.float64).masked_fill(~valid, float("-inf"))  # (B, n)
    rows = valid.any(dim=1)  # (B,)
    if not bool(rows.any()):
        keys = ("mask_entropy", "effective_k", "effective_k_min", "effective_k_max", "num_rows")
        return dict.fromkeys(keys, 0.0)
    log_m = log_m[rows]  # (R, n), R rows with at least one real passage
    log_total = torch.logsumexp(log_m, dim=1, keepdim=True)  # (R, 1) = log sum M
    log_p = log_m - log_total  # (R, n), -inf on padding
    p = log_p.exp()
    # 0 * log 0 := 0 for padding (and underflowed) entries instead of NaN.
    entropy = torch.where(p > 0, -p * log_p, torch.zeros_like(p)).sum(dim=1)  # (R,)
    effective_k = log_total.squeeze(1).exp()  # (R,)
    return {
        "mask_entropy": float(entropy.mean()),
        "effective_k": float(effective_k.mean()),
        "effective_k_min": float(effective_k.min()),
        "effective_k_max": float(effective_k.max()),
        "num_rows": float(rows.sum()),
    }
