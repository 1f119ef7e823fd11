"""Word-level tokenizers trained in-process on local text (synthetic data, tests, the demo).

No tokenizer can be downloaded here, and small closed-vocabulary data needs none: every word is
one token, so a tiny model never has to assemble an entity from pieces.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

T5_SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _word_model(texts: Iterable[str], specials: list[str], unk: str) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials))
    return tok


def train_t5_tokenizer(
    texts: Iterable[str], directory: str | Path, extra_tokens: tuple[str, ...] = ()
) -> PreTrainedTokenizerFast:
    """A reader tokenizer with T5's special ids (pad 0, eos 1, unk 2), saved to ``directory``.

    ``extra_tokens`` become special tokens after those (e.g. RankT5's "<extra_id_10>").

    Like transformers 5.x T5 tokenizers it appends </s> by default; the reader never relies on
    that (it tokenises with add_special_tokens=False and adds one EOS to targets itself).
    """
    tok = _word_model(texts, T5_SPECIALS + list(extra_tokens), "<unk>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=list(extra_tokens),
    )
    fast.save_pretrained(str(directory))
    return fast


def train_bert_tokenizer(texts: Iterable[str], directory: str | Path) -> PreTrainedTokenizerFast:
    """A cross-encoder tokenizer: [CLS] question [SEP] passage [SEP] with segment ids."""
    tok = _word_model(texts, BERT_SPECIALS, "[UNK]")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(str(directory))
    return fast
