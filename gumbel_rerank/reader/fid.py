"""The frozen Fusion-in-Decoder reader with a differentiable passage mask.

Each passage is encoded on its own (so its states do not depend on the others); the decoder
cross-attends to the concatenation. A passage mask M (B, N) enters every decoder layer's
cross-attention as log M added to the logits of every token of each passage, which is exactly

    attn(m, i, t) = M_i exp(s_mit) / sum_jt' M_j exp(s_mjt')

and, with a 0/1 mask, exactly feeding only the kept passages. Gradients reach log M, never the
reader's weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from gumbel_rerank.masks import LOG_FLOOR
from gumbel_rerank.reader.base import EncodedPassages, PassageTokens, StatefulReader
from gumbel_rerank.reader.checkpoints import CheckpointError, LoadReport, load_t5_checkpoint
from gumbel_rerank.reader.encoder_cache import EncoderCache
from gumbel_rerank.reader.formatting import IGNORE_INDEX, tokenize_passages, tokenize_targets
from gumbel_rerank.reader.legacy_bias import legacy_cross_attention_bias

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json")
#: Values of ``FiDReaderConfig.answer_from``.
ANSWER_FROM = ("all", "last_word")


def final_answer(text: str, answer_from: str = "all") -> str:
    """The answer in a generated ``text``: all of it, or (``"last_word"``) its last
    whitespace-separated word, "" for an empty text."""
    if answer_from == "last_word":
        words = text.split()
        return words[-1] if words else ""
    return text


@dataclass
class FiDReaderConfig:
    """How the reader formats, encodes and decodes.

    Attributes:
        text_maxlength: tokens per passage (FiD: 200 for base, 250 for large readers).
        answer_maxlength: target tokens including EOS, and the default generation length.
        encode_chunk_size: passages per encoder call (bounds encoder memory); None = all.
        pad_to_max_length: pad passages to ``text_maxlength`` (FiD) or to the batch's longest.
        legacy_bias: use the checkpoint's legacy cross-attention bias; None = when present.
        dtype: "float32" or "bfloat16" (or "float64" for gradchecks).
        answer_from: what of the generated text is the answer: "all" of it, or its
            "last_word" (chain readers trained on targets such as "<intermediate> <answer>",
            whose final hop is the answer EM and F1 judge).
    """

    text_maxlength: int = 200
    answer_maxlength: int = 50
    encode_chunk_size: int | None = None
    pad_to_max_length: bool = True
    legacy_bias: bool | None = None
    dtype: str = "float32"
    answer_from: str = "all"

    def __post_init__(self) -> None:
        if self.answer_from not in ANSWER_FROM:
            raise ValueError(f"reader.answer_from: {self.answer_from!r} is not one of {ANSWER_FROM}")
        if self.dtype not in DTYPES:
            raise ValueError(f"reader.dtype: {self.dtype!r} is not one of {sorted(DTYPES)}")
        if self.text_maxlength < 1 or self.answer_maxlength < 2:
            raise ValueError("reader.text_maxlength must be >= 1 and reader.answer_maxlength >= 2")
        if self.encode_chunk_size is not None and self.encode_chunk_size < 1:
            raise ValueError("reader.encode_chunk_size must be a positive number of passages")


class FiDReader(StatefulReader):
    """A FiD T5 reader implementing :class:`gumbel_rerank.reader.base.Reader`.

    Frozen by default (reranker training); ``trainable=True`` leaves the T5 trainable for
    ``train-reader``, where the same formatting, encoding and loss code is used.
    """

    def __init__(
        self,
        model: T5ForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        config: FiDReaderConfig | None = None,
        legacy_bias_weight: torch.Tensor | None = None,
        load_report: LoadReport | None = None,
        trainable: bool = False,
    ) -> None:
        self.config = config or FiDReaderConfig()
        self.trainable = trainable
        if self.config.legacy_bias and legacy_bias_weight is None:
            raise ValueError("reader.legacy_bias=true but the checkpoint has no legacy bias weight")
        # The differentiable pass needs the mask inside the softmax as written; SDPA on CUDA has
        # a reported backward crash when only the mask requires grad (pytorch issue 148476).
        # set_attn_implementation, not config._attn_implementation: T5's encoder and decoder
        # stacks hold deep copies of the config, which the attribute does not reach.
        model.set_attn_implementation("eager")
        self.model = model.to(DTYPES[self.config.dtype])
        if not trainable:  # the reader of reranker training: eval mode, no parameter gradients
            self.model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.use_legacy_bias = legacy_bias_weight is not None and self.config.legacy_bias is not False
        self.legacy_bias_weight = legacy_bias_weight.to(self.dtype) if self.use_legacy_bias else None
        self.load_report = load_report
        self.encoder_cache: EncoderCache | None = None  # see use_encoder_cache
        if load_report is not None:
            load_report.legacy_bias_used = self.use_legacy_bias

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        tokenizer: str | Path | None = None,
        base_config: str | None = None,
        config: FiDReaderConfig | None = None,
        trainable: bool = False,
    ) -> FiDReader:
        """Load a FiD, plain HF T5, or config-less checkpoint directory, offline and strictly.

        Args:
            path: checkpoint directory.
            tokenizer: tokenizer directory; default the checkpoint directory. Released FiD
                readers ship none: point this at a t5-base tokenizer folder.
            base_config: "t5-base", "t5-large" or a config path (see ``load_t5_checkpoint``).
        """
        model, bias, report = load_t5_checkpoint(path, base_config=base_config)
        tok_dir = Path(tokenizer) if tokenizer is not None else Path(path)
        if not any((tok_dir / name).is_file() for name in TOKENIZER_FILES):
            raise CheckpointError(
                f"{tok_dir}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); released FiD "
                "readers ship none, pass the t5-base tokenizer folder with --reader-tokenizer"
            )
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        if len(tok) > model.config.vocab_size:
            # ids past the embedding table would index out of range mid-run (or, on a GPU,
            # fail with an opaque device-side assert): a tokenizer of another model
            raise CheckpointError(
                f"{tok_dir}: the tokenizer has {len(tok)} tokens but the reader {path} embeds only "
                f"{model.config.vocab_size} (reader.path / reader tokenizer of different models)"
            )
        if trainable:
            model.requires_grad_(True)
        return cls(model, tok, config, legacy_bias_weight=bias, load_report=report, trainable=trainable)


    # -- bookkeeping ------------------------------------------------------------------------
    @property
    def attention_layers(self) -> int:
        """Decoder layers, each with one cross-attention (what ADist's mass sums over)."""
        return len(self.model.decoder.block)

    def to(self, device: torch.device | str) -> FiDReader:
        """Move the T5 and the legacy bias weight to ``device``, in place (an encoder cache is
        emptied: its states were on the old device); returns ``self``."""
        super().to(device)
        if self.legacy_bias_weight is not None:
            self.legacy_bias_weight = self.legacy_bias_weight.to(device)
        return self

    # -- tokenisation -----------------------------------------------------------------------
    def tokenize_passages(
        self, questions: list[str], passages: list[list[dict]], n_passages: int | None = None
    ) -> PassageTokens:
        """See :func:`gumbel_rerank.reader.formatting.tokenize_passages`; (B, N, L) tensors."""
        return tokenize_passages(
            self.tokenizer,
            questions,
            passages,
            self.config.text_maxlength,
            n_passages=n_passages,
            pad_to_max_length=self.config.pad_to_max_length,
        )

    def tokenize_targets(self, answers: list[str]) -> torch.Tensor:
        """(B, T) labels: answer ids, one EOS, -100 padding."""
        return tokenize_targets(self.tokenizer, answers, self.config.answer_maxlength)

    # -- encoder ----------------------------------------------------------------------------
    def _encode(self, tokens: PassageTokens) -> EncodedPassages:
        b, n, length = tokens.input_ids.shape
        d = self.model.config.d_model
        flat_ids = tokens.input_ids.view(b * n, length)
        flat_mask = tokens.attention_mask.view(b * n, length)
        real = tokens.passage_valid.view(b * n).nonzero().squeeze(-1)  # (P,) real passages
        chunk = self.config.encode_chunk_size or max(len(real), 1)
        parts = [
            self.model.encoder(
                input_ids=flat_ids[rows], attention_mask=flat_mask[rows].long()
            ).last_hidden_state
            for rows in (real.split(chunk) if len(real) else ())
        ]
        hidden = torch.zeros(b * n, length, d, dtype=self.dtype, device=self.device)
        if parts:
            # index_copy (not in-place slice assignment) keeps the graph when training the reader
            hidden = hidden.index_copy(0, real, torch.cat(parts))
        token_mask = tokens.attention_mask & tokens.passage_valid[:, :, None]
        # (B*N, L, D) -> (B, N*L, D): passages concatenated per question, as FiD's decoder sees
        return EncodedPassages(hidden.view(b, n * length, d), token_mask)

    # -- decoder ----------------------------------------------------------------------------
    def cross_attention_mask(
        self,
        states: EncodedPassages,
        log_doc_mask: torch.Tensor | None = None,
        query_positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The 4-D additive float mask for the decoder cross-attention.

        Args:
            log_doc_mask: (B, N) log M per passage, or None for all passages fully kept.
            query_positions: (Tq,) decoder positions; needed only with the legacy bias.

        Returns:
            (B, 1, 1, N * L) mask: log M on every real token of passage i, dtype min on padding;
            with the legacy bias (B, heads, Tq, N * L).
        """
        b, n, length = states.token_mask.shape
        if log_doc_mask is None:
            log_doc_mask = torch.zeros(b, n, device=states.hidden.device)
        if log_doc_mask.shape != (b, n):
            raise ValueError(f"log_doc_mask has shape {tuple(log_doc_mask.shape)}, expected {(b, n)}")
        log_m = log_doc_mask.clamp(min=LOG_FLOOR).to(self.dtype)  # a dropped passage stays finite
        per_token = log_m[:, :, None].expand(b, n, length)  # (B, N, L)
        blocked = torch.tensor(torch.finfo(self.dtype).min, dtype=self.dtype, device=log_m.device)
        mask = torch.where(states.token_mask, per_token, blocked).reshape(b, 1, 1, n * length)
        if self.use_legacy_bias:
            if query_positions is None:
                raise ValueError("the legacy bias needs the decoder query positions")
            # each passage's tokens at its slot's positions (selected passages keep theirs)
            keys = states.slot_index()[:, :, None] * length + torch.arange(length, device=log_m.device)
            bias = legacy_cross_attention_bias(
                self.legacy_bias_weight,
                query_positions,
                keys.reshape(b, n * length),
                self.model.config.relative_attention_max_distance,
            )
            mask = mask + bias  # (B, heads, Tq, N*L)
        return mask

    def token_logprobs(
        self,
        states: EncodedPassages,
        labels: torch.Tensor,
        log_doc_mask: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Teacher-forced log p(a_t | q, passages) under the passage mask.

        Args:
            states: encoder states (B, N * L, D).
            labels: (B, T) target ids, -100 at padding.
            log_doc_mask: (B, N) log M, or None for all passages.
            temperature: divides the vocabulary logits before the softmax (Atlas's token-level
                EMDR2 puts its temperature there); 1 = the reader's own distribution.

        Returns:
            (B, T) log-probabilities (float32, or float64 for a float64 reader), 0 where labels are -100. Differentiable w.r.t.
            ``log_doc_mask``.
        """
        labels = labels.to(self.device)
        decoder_input_ids = self.model._shift_right(labels)
        positions = torch.arange(labels.shape[1], device=self.device)
        mask = self.cross_attention_mask(states, log_doc_mask, positions)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=states.hidden),
            attention_mask=mask,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
        )
        # float32 at least: bf16 log-softmax over a 32k vocabulary loses the answer's mass;
        # float64 stays float64 (gradchecks).
        logits = out.logits.to(torch.promote_types(out.logits.dtype, torch.float32))
        logp = (logits / temperature).log_softmax(dim=-1)  # (B, T, V)
        keep = labels != IGNORE_INDEX
        picked = logp.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)  # (B, T)
        return picked * keep

    def lm_loss(
        self, states: EncodedPassages, labels: torch.Tensor, log_doc_mask: torch.Tensor
    ) -> torch.Tensor:
        """Answer NLL per example, mean over its answer tokens, under log M.

        Args:
            states: encoder states from :meth:`encode`.
            labels: (B, T), -100 at padding.
            log_doc_mask: (B, N) log M.

        Returns:
            (B,) losses (float32 for bf16/fp32 readers); gradient flows to ``log_doc_mask`` only.
        """
        logp = self.token_logprobs(states, labels, log_doc_mask)
        n_tokens = (labels != IGNORE_INDEX).sum(dim=1).clamp(min=1).to(self.device)
        return -logp.sum(dim=1) / n_tokens

    @torch.no_grad()
    def cross_attention_mass(
        self, states: EncodedPassages, labels: torch.Tensor, log_doc_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ADist's signal: how much the decoder reads each passage while producing the answer.

        For decoder layer l, head h, answer token t and encoder token j, the attention
        probability A[l, h, t, j] times the norm of the value vector ||V[l, h, j]||, averaged
        over heads, summed over layers, the answer's (non-padding) tokens and passage i's tokens
        (Izacard & Grave 2021's attention score with Atlas's value-norm weighting).

        Args:
            states: encoder states (B, N * L, D).
            labels: (B, T) answer ids, -100 at padding (teacher forcing, as for the loss).
            log_doc_mask: (B, N) log M, or None for all passages (ADist's setting).

        Returns:
            (B, N) float32 (float64 for a float64 reader); 0 for padding passages.
        """
        labels = labels.to(self.device)
        b, n, length = states.token_mask.shape
        positions = torch.arange(labels.shape[1], device=self.device)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=states.hidden),
            attention_mask=self.cross_attention_mask(states, log_doc_mask, positions),
            decoder_input_ids=self.model._shift_right(labels),
            use_cache=False,
            output_attentions=True,
        )
        work = torch.promote_types(self.dtype, torch.float32)
        answer = (labels != IGNORE_INDEX).to(work)  # (B, T)
        mass = torch.zeros(b, n * length, dtype=work, device=self.device)
        for block, attn in zip(self.model.decoder.block, out.cross_attentions, strict=True):
            module = block.layer[1].EncDecAttention
            values = module.v(states.hidden).view(b, n * length, module.n_heads, module.key_value_proj_dim)
            value_norm = values.to(work).norm(dim=-1).transpose(1, 2)  # (B, H, N*L)
            weighted = attn.to(work) * value_norm[:, :, None, :]  # (B, H, T, N*L)
            mass += (weighted.mean(dim=1) * answer[:, :, None]).sum(dim=1)  # (B, N*L)
        per_token = mass.view(b, n, length) * states.token_mask.to(work)
        return per_token.sum(dim=-1)

    @torch.no_grad()
    def generate_ids(
        self,
        states: EncodedPassages,
        doc_idx: torch.Tensor | None = None,
        max_new_tokens: int | None = None,
    ) -> torch.Tensor:
        """Greedy decoding from the selected passages only (hard top-k).

        A custom loop rather than ``generate()``: ``generate`` takes only 2-D masks, and the
        legacy bias needs the decoder position of every step.

        Args:
            doc_idx: (B, k) passage indices to read (-1 = none); None reads all N.

        Returns:
            (B, T') generated ids without the start token, EOS included, pad after it.
        """
        if doc_idx is not None:
            states = states.select(doc_idx.to(states.token_mask.device))
        max_new = max_new_tokens or self.config.answer_maxlength
        cfg = self.model.config
        b = states.hidden.shape[0]
        encoder_outputs = BaseModelOutput(last_hidden_state=states.hidden)
        plain_mask = None if self.use_legacy_bias else self.cross_attention_mask(states)
        next_input = torch.full((b, 1), cfg.decoder_start_token_id, device=self.device)
        finished = torch.zeros(b, dtype=torch.bool, device=self.device)
        cache = None
        steps: list[torch.Tensor] = []
        for step in range(max_new):
            mask = plain_mask
            if mask is None:
                mask = self.cross_attention_mask(
                    states, None, torch.tensor([step], device=self.device)
                )
            out = self.model(
                encoder_outputs=encoder_outputs,
                attention_mask=mask,
                decoder_input_ids=next_input,
                cache=cache,  # transformers >= 5.24: `past_key_values` is deprecated (removed in 5.40)
                use_cache=True,
            )
            cache = out.cache
            token = out.logits[:, -1].argmax(dim=-1)
            token = torch.where(finished, torch.full_like(token, cfg.pad_token_id), token)
            steps.append(token)
            finished |= token == cfg.eos_token_id
            if bool(finished.all()):
                break
            next_input = token[:, None]
        return torch.stack(steps, dim=1)

    def generate(
        self,
        states: EncodedPassages,
        doc_idx: torch.Tensor | None = None,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Greedy answers (B strings) from the passages in ``doc_idx`` (B, k), or all; with
        ``answer_from="last_word"`` the final word of each generated text (chain readers)."""
        ids = self.generate_ids(states, doc_idx, max_new_tokens)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [final_answer(text, self.config.answer_from) for text in texts]
