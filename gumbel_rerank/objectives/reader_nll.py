"""FiD reader fine-tuning: answer NLL over the passages given (``gumbel-rerank train-reader``)."""

from __future__ import annotations

import torch

from gumbel_rerank.objectives.base import Batch, StepContext
from gumbel_rerank.reader.fid import FiDReader


class ReaderNLLLoss:
    """Mean answer NLL of a FiD reader reading all of each question's passages.

    The reader's T5 is the trained module: passages are encoded with gradients (unlike the
    frozen reader of reranker training) and the loss is FiD's, per-example mean over answer
    tokens, then mean over the batch.

    Args:
        reader: a FiDReader whose ``model`` is the module the engine trains.
    """

    name = "reader_nll"

    def __init__(self, reader: FiDReader):
        self.reader = reader

    def loss(
        self, module: torch.nn.Module, batch: Batch, ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if module is not self.reader.model:
            raise ValueError("ReaderNLLLoss trains the reader's own T5 model")
        tokens = self.reader.tokenize_passages(batch.questions, batch.passages)
        states = self.reader.encode(tokens, with_grad=True)
        labels = self.reader.tokenize_targets(batch.targets)
        n = tokens.passage_valid.shape[1]
        loss = self.reader.lm_loss(states, labels, torch.zeros(len(batch), n, device=self.reader.device))
        return loss.mean(), ({"loss_nll": float(loss.mean().detach())} if ctx.log else {})
