"""Frozen readers behind one interface (:class:`Reader`)."""

from gumbel_rerank.reader.base import EncodedPassages, PassageTokens, Reader
from gumbel_rerank.reader.checkpoints import CheckpointError, LoadReport, load_t5_checkpoint
from gumbel_rerank.reader.fid import FiDReader, FiDReaderConfig

__all__ = [
    "CheckpointError",
    "EncodedPassages",
    "FiDReader",
    "FiDReaderConfig",
    "LoadReport",
    "PassageTokens",
    "Reader",
    "load_t5_checkpoint",
]
