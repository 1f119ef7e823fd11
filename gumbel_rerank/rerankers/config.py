"""Reranker settings: :class:`RerankerConfig`, its templates, and how a passage becomes text.

:class:`RerankerConfig` is what a saved reranker directory stores in ``gumbel_rerank.json``
(:mod:`gumbel_rerank.rerankers.storage`); :func:`format_passage` turns a passage dict into the
passage side of a (question, passage) pair; :func:`kind_of` says which scorer a Hugging Face
configuration calls for.
"""

from __future__ import annotations

import dataclasses
import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

KINDS = ("cross_encoder", "rankt5")

DEFAULT_RANKT5_TOKEN = "<extra_id_10>"
"""RankT5's score token: an unused sentinel of the T5 vocabulary (the paper uses <extra_id_10>)."""

# Model types that are always scored RankT5-style even if a config lacks is_encoder_decoder.
_T5_MODEL_TYPES = frozenset({"t5", "mt5", "umt5", "longt5"})


def _template_fields(template: str, what: str) -> set[str]:
    """Named placeholders of a ``str.format`` template; raises ValueError on malformed braces."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(
            f"{what}={template!r} is not a valid str.format template ({err}); "
            "escape literal braces as '{{' and '}}'."
        ) from err
    names = {name for _, name, _, _ in parsed if name is not None}
    if "" in names or any(name.isdigit() for name in names):
        raise ValueError(
            f"{what}={template!r} uses positional placeholders ('{{}}' or '{{0}}'); "
            "use named ones such as '{text}'."
        )
    return names


#: RerankerConfig.autocast values.
AUTOCAST = (None, "bf16", "auto")


@dataclass
class RerankerConfig:
    """Settings of a :class:`Reranker` (saved as ``gumbel_rerank.json`` next to the model).

    Attributes:
        kind: ``"cross_encoder"`` (sequence-classification model) or ``"rankt5"`` (T5 scored by
            one token's logit at the first decoder step).
        max_length: maximum number of tokens of one (question, passage) input, special tokens
            included. Cross-encoders truncate ``longest_first`` (the same strategy as
            sentence-transformers' CrossEncoder, so saved models score identically there); RankT5
            truncates the end of the single "Query: ... Document: ..." string.
        template: how a passage dict's ``title`` and ``text`` become the passage string, with
            placeholders ``{title}`` (optional) and ``{text}`` (required). A passage without a
            title (key missing, None or empty) uses its text alone, so no dangling separator such
            as ": text" is produced.
        rankt5_token: RankT5 only: the token whose first-step decoder logit is the score. ``None``
            means ``"<extra_id_10>"`` (the RankT5 paper's choice); it must then exist in the
            tokenizer's vocabulary, otherwise construction fails asking for an explicit token.
            The resolved token is stored back, so saved settings always name it.
        rankt5_query_template: RankT5 only: the encoder input, with placeholders ``{question}``
            and ``{passage}`` (the passage already formatted with ``template``).
        autocast: ``"bf16"`` runs the model under ``torch.autocast`` in bfloat16 on its device
            (CUDA, or a CPU with AVX-512 BF16 / AMX: 2.9x faster forward+backward for
            MiniLM-L6 on this project's CI CPU); weights, gradients and the returned scores stay
            float32. ``"auto"``: bf16 where the device computes it natively (a CUDA GPU with
            bf16, a CPU with AVX-512 BF16 or AMX), else off: bf16 emulated on older CPUs is
            slower than float32. None (default) runs in the weights' dtype. Scores differ from
            float32 by bfloat16 rounding (about 3 significant digits), so rankings of near-ties
            can differ.
        grad_chunk_size: while gradients are on (training), run the model on at most this many
            pairs at a time and keep none of a chunk's activations: each chunk is recomputed in
            the backward pass (gradient caching, i.e. whole-model activation checkpointing per
            chunk). Peak activation memory is one chunk's instead of all P pairs', so n = 100
            passages per question fit, for about one more forward pass of time. Scores and
            gradients equal those of plain chunked scoring (dropout's random state is replayed).
            None (default) keeps every activation. Inference is unaffected.
        compile_train: while gradients are on (training), run the model through
            ``torch.compile`` (inductor; the weights stay parameters, unlike the frozen
            inference graph), with pair lengths padded to a multiple of ``pad_multiple`` so a
            run meets only a few shapes (each new one compiles once). Where no compiler works,
            the first step warns and training stays eager. Loss and gradients equal eager
            ones to float rounding (a test); dropout draws from inductor's own generator, so
            a compiled run's weights differ from an eager run's (each is reproducible).
        pad_multiple: with ``compile_train``, pad each batch's pairs to a multiple of this many
            tokens (None: no rounding).
    """

    kind: str = "cross_encoder"
    max_length: int = 256
    template: str = "{title}: {text}"
    rankt5_token: str | None = None
    rankt5_query_template: str = "Query: {question} Document: {passage}"
    autocast: str | None = None
    grad_chunk_size: int | None = None
    compile_train: bool = False
    pad_multiple: int | None = 16

    def __post_init__(self) -> None:
        if self.autocast not in AUTOCAST:
            raise ValueError(f"RerankerConfig.autocast={self.autocast!r} is not one of {AUTOCAST}.")
        if self.grad_chunk_size is not None and (
            isinstance(self.grad_chunk_size, bool) or not isinstance(self.grad_chunk_size, int) or self.grad_chunk_size < 1
        ):
            raise ValueError(f"RerankerConfig.grad_chunk_size must be a positive int or None, got {self.grad_chunk_size!r}.")
        if self.pad_multiple is not None and (isinstance(self.pad_multiple, bool) or not isinstance(self.pad_multiple, int) or self.pad_multiple < 1):
            raise ValueError(f"RerankerConfig.pad_multiple must be a positive int or None, got {self.pad_multiple!r}.")
        if self.kind not in KINDS:
            raise ValueError(
                f"RerankerConfig.kind={self.kind!r} is not supported; use one of {KINDS}."
            )
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int):
            raise TypeError(
                f"RerankerConfig.max_length must be an int, got {type(self.max_length).__name__}."
            )
        if self.max_length < 4:
            raise ValueError(
                f"RerankerConfig.max_length={self.max_length} leaves no room for a question and a "
                "passage next to the special tokens; use at least 4 (typically 128-512)."
            )
        if not isinstance(self.template, str):
            raise TypeError("RerankerConfig.template must be a str such as '{title}: {text}'.")
        fields = _template_fields(self.template, "RerankerConfig.template")
        if "text" not in fields or not fields <= {"title", "text"}:
            raise ValueError(
                f"RerankerConfig.template={self.template!r} must contain '{{text}}' and may only "
                f"use the placeholders {{title}} and {{text}} (found {sorted(fields)})."
            )
        if self.rankt5_token is not None and (
            not isinstance(self.rankt5_token, str) or not self.rankt5_token
        ):
            raise ValueError(
                "RerankerConfig.rankt5_token must be None (use '<extra_id_10>') or a non-empty "
                f"token string, got {self.rankt5_token!r}."
            )
        if not isinstance(self.rankt5_query_template, str):
            raise TypeError("RerankerConfig.rankt5_query_template must be a str.")
        fields = _template_fields(
            self.rankt5_query_template, "RerankerConfig.rankt5_query_template"
        )
        if fields != {"question", "passage"}:
            raise ValueError(
                f"RerankerConfig.rankt5_query_template={self.rankt5_query_template!r} must use "
                f"exactly the placeholders {{question}} and {{passage}} (found {sorted(fields)})."
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (what ``gumbel_rerank.json`` stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RerankerConfig:
        """Build from a mapping, ignoring (with a warning) keys this version does not know.

        Unknown keys are tolerated so a directory saved by a newer version still loads.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("Ignoring unknown reranker settings %s.", unknown)
        return cls(**{k: v for k, v in data.items() if k in known})


def format_passage(passage: str | Mapping[str, Any], template: str = "{title}: {text}") -> str:
    """The passage side of a (question, passage) pair.

    Args:
        passage: a str (used as is: it is the text and has no title) or a mapping with a str
            ``"text"`` and an optional ``"title"``.
        template: ``str.format`` template with ``{title}`` and ``{text}``; used only when the
            passage has a non-empty title, otherwise the text is returned alone.
    """
    if isinstance(passage, str):
        return passage
    if not isinstance(passage, Mapping):
        raise TypeError(
            f"A passage must be a str or a dict with 'text' (and optional 'title'), "
            f"got {type(passage).__name__}."
        )
    text = passage.get("text")
    if not isinstance(text, str):
        raise ValueError(
            f"A passage dict needs a str 'text' field; got keys {sorted(passage)} "
            f"(text={text!r:.60})."
        )
    title = passage.get("title")
    if title is None or title == "":
        return text
    return template.format(title=title, text=text)


def kind_of(hf_config: Any) -> str:
    """Which scorer a Hugging Face config calls for: ``"rankt5"`` for encoder-decoders (the T5
    family, also when a config lacks ``is_encoder_decoder``), else ``"cross_encoder"``."""
    if getattr(hf_config, "is_encoder_decoder", False):
        return "rankt5"
    if getattr(hf_config, "model_type", None) in _T5_MODEL_TYPES:
        return "rankt5"
    return "cross_encoder"


__all__ = [
    "DEFAULT_RANKT5_TOKEN",
    "KINDS",
    "RerankerConfig",
    "format_passage",
    "kind_of",
]
