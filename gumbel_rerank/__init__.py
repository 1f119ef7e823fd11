"""gumbel_rerank: train a passage reranker end to end from a frozen FiD reader's LM loss.

The method (Huang et al., ACL 2025, "Gumbel Reranking") turns reranker scores into a relaxed
top-k mask that enters the reader's decoder cross-attention as log M, so the answer loss
back-propagates into the reranker without relevance labels.
"""

__version__ = "0.1.0"
