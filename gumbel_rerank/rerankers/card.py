"""What makes a saved reranker a shareable model: a model card (``README.md`` with the YAML
header the Hugging Face Hub reads) and sentence-transformers' configuration files.

A cross-encoder folder gets ``config_sentence_transformers.json`` (identity activation: the
scores are our raw logits, not sentence-transformers' default sigmoid), ``modules.json`` and
``sentence_bert_config.json``, so ``CrossEncoder(path).predict`` returns our scores with no
extra argument. The card states how the model was trained (filled in from the run by
``gumbel_rerank.training.run_card``) and three loading snippets, which the tests execute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gumbel_rerank.rerankers.config import RerankerConfig

#: Where the snippets of a card name the model folder (tests substitute a real path).
MODEL_PATH = "path/to/model"
CARD_NAME = "README.md"


@dataclass
class ModelCard:
    """What a card says; every field but the reranker's own settings is optional.

    Attributes:
        config: the reranker's settings (kind, template, max_length).
        base_model: the model training started from (a hub id or a local path), if known.
        objective: objective name and settings.
        reader: the reader it learned from (kind, path).
        data: training / dev data (files and question counts).
        training: steps, seed, selection, batch and learning rate.
        metrics: section title -> {metric: value} (dev and test evaluations).
        compare: the comparison row this model is part of (table columns -> values) and a note.
        datasets: Hub dataset ids, where the data is known to come from one.
    """

    config: RerankerConfig
    base_model: str | None = None
    objective: dict[str, Any] = field(default_factory=dict)
    reader: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    compare: dict[str, Any] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)


def header(card: ModelCard) -> dict[str, Any]:
    """The YAML front matter: library, pipeline, tags, base model and datasets where known."""
    cross = card.config.kind == "cross_encoder"
    meta: dict[str, Any] = {
        "library_name": "sentence-transformers" if cross else "transformers",
        "pipeline_tag": "text-ranking",
        "tags": ["gumbel-rerank", "reranker", "cross-encoder" if cross else "rankt5"]
        + ([f"objective:{card.objective['name']}"] if card.objective.get("name") else []),
    }
    if card.base_model and "/" in card.base_model and not Path(card.base_model).is_absolute():
        meta["base_model"] = card.base_model
    if card.datasets:
        meta["datasets"] = card.datasets
    return meta


def _table(rows: dict[str, Any]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {_value(value)} |" for key, value in rows.items()]
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict | list):
        return "`" + json.dumps(value, sort_keys=True) + "`"
    return str(value)


def snippets(config: RerankerConfig) -> list[tuple[str, str]]:
    """(title, python code) of the loading snippets for this kind of reranker; the code names
    the folder ``MODEL_PATH`` and defines ``scores`` for the example question's passages."""
    template = config.template
    example = (
        'question = "who discovered polonium?"\n'
        'passages = [{"title": "Marie Curie", "text": "Marie Curie discovered polonium and radium."},\n'
        '            {"title": "Paris", "text": "Paris is the capital of France."}]\n'
    )
    ours = (
        "from gumbel_rerank.rerankers import Reranker\n\n"
        + example
        + f'reranker = Reranker.from_pretrained("{MODEL_PATH}")  # reads its passage template itself\n'
        "ranked = reranker.rank(question, passages)  # best first, with raw scores\n"
        "scores = [r.score for r in sorted(ranked, key=lambda r: r.index)]\n"
    )
    if config.kind != "cross_encoder":
        transformers_code = (
            "import torch\nfrom transformers import AutoModelForSeq2SeqLM, AutoTokenizer\n\n"
            + example
            + f'tokenizer = AutoTokenizer.from_pretrained("{MODEL_PATH}")\n'
            f'model = AutoModelForSeq2SeqLM.from_pretrained("{MODEL_PATH}").eval()\n'
            f"texts = [{config.rankt5_query_template!r}.format(question=question, passage={template!r}.format(**p)) for p in passages]\n"
            f'enc = tokenizer(texts, truncation=True, max_length={config.max_length}, padding=True, return_tensors="pt")\n'
            "start = torch.full((len(texts), 1), model.config.decoder_start_token_id)\n"
            f"token = tokenizer.convert_tokens_to_ids({config.rankt5_token!r})\n"
            "with torch.no_grad():\n"
            "    scores = model(**enc, decoder_input_ids=start).logits[:, 0, token].tolist()\n"
        )
        return [("transformers (RankT5: the score is one token's logit at the first decoder step)", transformers_code), ("gumbel_rerank", ours)]
    st = (
        "from sentence_transformers import CrossEncoder\n\n"
        + example
        + f'model = CrossEncoder("{MODEL_PATH}")  # raw scores: the folder sets the identity activation\n'
        f"template = {template!r}  # format passages as in training\n"
        "scores = model.predict([(question, template.format(**p)) for p in passages]).tolist()\n"
    )
    hf = (
        "import torch\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        + example
        + f'tokenizer = AutoTokenizer.from_pretrained("{MODEL_PATH}")\n'
        f'model = AutoModelForSequenceClassification.from_pretrained("{MODEL_PATH}").eval()\n'
        f"texts = [{template!r}.format(**p) for p in passages]\n"
        f'enc = tokenizer([question] * len(texts), texts, truncation="longest_first", max_length={config.max_length},\n'
        '                padding=True, return_tensors="pt")\n'
        "with torch.no_grad():\n"
        "    logits = model(**enc).logits\n"
        "scores = (logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]).tolist()\n"
    )
    return [("sentence-transformers", st), ("transformers", hf), ("gumbel_rerank", ours)]


def render(card: ModelCard) -> str:
    """The card's markdown: YAML header, what the model is, how it was trained, its metrics,
    and the loading snippets."""
    meta = yaml.safe_dump(header(card), sort_keys=False).strip()
    kind = "cross-encoder" if card.config.kind == "cross_encoder" else "RankT5 reranker"
    parts = [
        f"---\n{meta}\n---",
        "# Reranker trained with gumbel_rerank",
        f"A {kind} that scores (question, passage) pairs with one raw logit (higher = more relevant), trained "
        "with gumbel_rerank " + (f"by the `{card.objective['name']}` objective" if card.objective.get("name") else "")
        + (f" from `{card.base_model}`" if card.base_model else "") + ".",
        f"**Passages must be formatted as in training:** `{card.config.template}` (a passage without a title is its "
        f"text alone); inputs are truncated to {card.config.max_length} tokens.",
    ]
    if card.objective:
        parts += ["## Training", _table({**{f"objective {k}": v for k, v in card.objective.items()}, **card.training})]
    if card.reader:
        parts += ["## Reader it learned from", _table(card.reader)]
    if card.data:
        parts += ["## Data", _table(card.data)]
    for title, values in card.metrics.items():
        parts += [f"## {title}", _table(values)]
    if card.compare:
        parts += ["## In its comparison", _table(card.compare)]
    parts.append("## Use")
    for title, code in snippets(card.config):
        parts += [f"### {title}", f"```python\n{code}```"]
    return "\n\n".join(parts) + "\n"


def read_card_header(directory: Path) -> dict[str, Any]:
    """The YAML header of ``directory``'s card (ValueError naming the file if it has none)."""
    text = (directory / CARD_NAME).read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        raise ValueError(f"{directory / CARD_NAME}: no YAML header (--- ... ---) at the top")
    return yaml.safe_load(text[4 : text.index("\n---", 4)])


def sentence_transformers_files(config: RerankerConfig, versions: dict[str, str]) -> dict[str, str]:
    """The files sentence-transformers' ``CrossEncoder`` reads, as written by its own
    ``save_pretrained`` (6.x layout): the identity activation (raw logits, not the default
    sigmoid of a one-logit model); the maximum length comes from the saved tokenizer."""
    if config.kind != "cross_encoder":
        return {}
    return {
        "config_sentence_transformers.json": json.dumps(
            {"__version__": versions, "activation_fn": "torch.nn.modules.linear.Identity", "default_prompt_name": None,
             "model_type": "CrossEncoder", "prompts": {}},
            indent=2,
        ),  # fmt: skip
        "modules.json": json.dumps(
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}], indent=2
        ),
        "sentence_bert_config.json": json.dumps(
            {"transformer_task": "sequence-classification",
             "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
             "module_output_name": "scores"},
            indent=2,
        ),  # fmt: skip
    }
