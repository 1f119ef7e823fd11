"""Training: the loop (:class:`~gumbel_rerank.training.loop.Trainer`), the engines it drives
(plain torch, DeepSpeed ZeRO), collation, checkpoints, process groups, the metrics log, the job
configurations and the two job entry points (``train_reranker``, ``train_reader``).

Kept free of imports here, so ``gumbel_rerank.training.config`` loads without the loop."""
