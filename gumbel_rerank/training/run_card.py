"""A trained reranker's model card, filled in from its run folder (``gumbel-rerank card``).

Read from the run: ``config.yaml`` (objective and settings, reader, data files, batch, learning
rate, seed), ``objective.json``, the last checkpoint's trainer state (steps), ``selection.json``
(the best dev point, with dev selection), ``report/report.json`` (the final dev evaluation) and
any test evaluation or comparison row the caller passes. The card (``model/README.md``) and
sentence-transformers' files are rewritten in place; the weights are not touched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gumbel_rerank.rerankers.card import CARD_NAME, ModelCard
from gumbel_rerank.rerankers.config import RerankerConfig
from gumbel_rerank.rerankers.storage import read_settings, write_card_files
from gumbel_rerank.training import checkpointing as ckpt

#: The metrics a card lists from an evaluation report (when present), per section.
CARD_METRICS = ("R@1", "R@3", "R@5", "MRR", "nDCG@5", "AllGold@3", "AllGold@5")


def report_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The headline numbers of an evaluation report: the reranker's ranking metrics, the
    indirect-evidence subset, evidence (``data.evidence_roles``) and end-to-end EM / F1."""
    out: dict[str, float] = {}
    ranking = report.get("rankings", {}).get("reranker", {})
    out.update({k: v for k, v in ranking.items() if k in CARD_METRICS})
    indirect = report.get("indirect", {}).get("reranker", {})
    out.update({f"indirect {k}": v for k, v in indirect.items() if k in CARD_METRICS})
    evidence = report.get("evidence", {}).get("reranker", {})
    out.update({f"evidence {k}": v for k, v in evidence.items()})
    out.update(report.get("end_to_end", {}).get("reranker", {}))
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float)}


def count_lines(path: str | None) -> int | None:
    """Questions in a JSONL file (lines), or None when it is not one here."""
    if not path or not Path(path).is_file() or not str(path).endswith(".jsonl"):
        return None
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def card_from_run(
    run_dir: Path,
    model_dir: Path | None = None,
    test_report: Mapping[str, Any] | None = None,
    compare_row: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The card of the reranker ``model_dir`` (default ``run_dir/model``) trained in ``run_dir``."""
    model_dir = model_dir or run_dir / "model"
    settings = read_settings(model_dir) or {}
    fields = set(RerankerConfig.__dataclass_fields__)
    config = RerankerConfig(**{k: v for k, v in settings.items() if k in fields})
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    objective = json.loads((run_dir / "objective.json").read_text()) if (run_dir / "objective.json").is_file() else {}
    data, reader, optim, run = (cfg.get(k, {}) for k in ("data", "reader", "optim", "run"))
    latest = ckpt.latest_checkpoint(run_dir / "checkpoints") if (run_dir / "checkpoints").is_dir() else None
    training: dict[str, Any] = {
        "steps": ckpt.read_trainer_state(latest)["step"] if latest else None,
        "questions per step": optim.get("micro_batch_size", 0) * optim.get("grad_accum", 1) or None,
        "learning rate": optim.get("lr"),
        "seed": run.get("seed"),
    }
    if (run_dir / "selection.json").is_file():
        chosen = json.loads((run_dir / "selection.json").read_text())
        if chosen.get("best_step") is None:
            training["published"] = f"the last step: no dev {chosen['metric']} was a number"
        else:
            training["published"] = f"the best dev {chosen['metric']} ({chosen['best_value']:.4f}) at step {chosen['best_step']}"
    metrics = {}
    if (run_dir / "report" / "report.json").is_file():
        report = json.loads((run_dir / "report" / "report.json").read_text())
        metrics[f"Dev metrics ({report.get('questions')} questions of {Path(data.get('dev') or '?').name})"] = report_metrics(report)
    if test_report is not None:
        metrics[f"Test metrics ({test_report.get('questions')} questions)"] = report_metrics(test_report)
    return ModelCard(
        config=config,
        base_model=(cfg.get("reranker") or {}).get("path"),
        objective={"name": objective.get("name"), "settings": objective.get("settings"), "uses labels": objective.get("uses_labels")}
        if objective
        else {},
        reader={k: v for k, v in {"kind": reader.get("kind", "fid"), "path": reader.get("path")}.items() if v},
        data={
            "train": f"{Path(data['train']).name} ({count_lines(data['train'])} questions)" if data.get("train") else None,
            "candidates per question": data.get("n_passages") or "all given",
        },
        training={k: v for k, v in training.items() if v is not None},
        metrics=metrics,
        compare=dict(compare_row or {}),
    )


def write_run_card(
    run_dir: Path,
    model_dir: Path | None = None,
    test_report: Mapping[str, Any] | None = None,
    compare_row: Mapping[str, Any] | None = None,
) -> Path:
    """(Re)write ``model_dir``'s card and sentence-transformers' files from the run; returns
    the card's path. A FileNotFoundError names a folder that holds no saved reranker."""
    model_dir = model_dir or run_dir / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no saved reranker (config.json) to write a card for")
    write_card_files(model_dir, card_from_run(run_dir, model_dir, test_report, compare_row))
    return model_dir / CARD_NAME
