"""FiD's legacy decoder cross-attention position bias, reproduced in transformers 5.x.

Transformers 3.0.2 gave decoder block 0's cross-attention a relative-position bias (FiD trained
it) and shared that bias, like the self-attention one, with every later decoder layer.
Transformers >= 4.0 drops the weight on load. Its effect is small (max |delta logit| ~0.15 on a
toy model) but released readers were trained with it, so exact reproduction needs it.

The bias for decoder position i and concatenated encoder position j uses T5's unidirectional
buckets of j - i (decoder attention is "not bidirectional" in T5's code): every key at or after
the query position falls into bucket 0, keys before it get their own buckets.
"""

from __future__ import annotations

import torch
from transformers.models.t5.modeling_t5 import T5Attention


def legacy_cross_attention_bias(
    weight: torch.Tensor,
    query_positions: torch.Tensor,
    key_positions: int | torch.Tensor,
    max_distance: int = 128,
) -> torch.Tensor:
    """Per-head additive bias for the decoder cross-attention.

    Args:
        weight: (buckets, heads) the legacy ``relative_attention_bias.weight``.
        query_positions: (Tq,) decoder positions (0 for the first generated token).
        key_positions: K, the length of the concatenated encoder states (keys at 0..K-1), or
            (B, K) long, each key's position per question (passages kept in their slots).
        max_distance: T5's ``relative_attention_max_distance`` (128 in every release).

    Returns:
        (1, heads, Tq, K) bias for a length, (B, heads, Tq, K) for positions; dtype of ``weight``.
    """
    if isinstance(key_positions, int):
        keys = torch.arange(key_positions, device=weight.device)[None, :]  # (1, K)
    else:
        keys = key_positions.to(weight.device)  # (B, K)
    # (B, Tq, K): memory position minus query position, T5's convention
    relative = keys[:, None, :] - query_positions.to(weight.device)[None, :, None]
    buckets = T5Attention._relative_position_bucket(
        relative, bidirectional=False, num_buckets=weight.shape[0], max_distance=max_distance
    )
    bias = weight[buckets]  # (B, Tq, K, heads)
    return bias.permute(0, 3, 1, 2)  # (B, heads, Tq, K)
