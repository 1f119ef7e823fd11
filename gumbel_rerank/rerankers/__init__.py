"""Cross-encoder and RankT5 rerankers: scoring (B, n) passages, ranking, save/load as plain
Hugging Face directories that `AutoModelForSequenceClassification` and sentence-transformers'
`CrossEncoder` load without this package."""

from gumbel_rerank.rerankers.model import (
    RankResult,
    Reranker,
    RerankerConfig,
    build_reranker_from_config,
)

__all__ = ["RankResult", "Reranker", "RerankerConfig", "build_reranker_from_config"]
