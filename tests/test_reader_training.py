"""train-reader curricula: which passages the reader reads at each step."""

from __future__ import annotations

import pytest
import torch

from gumbel_rerank.config import ConfigError, load_config
from gumbel_rerank.objectives.base import Batch
from gumbel_rerank.objectives.reader_nll import select_contexts, stage_at
from gumbel_rerank.training.config import CurriculumStage, ReaderTrainConfig


def make_batch() -> Batch:
    passages = [[{"title": f"t{i}", "text": f"p{i}"} for i in range(5)] for _ in range(2)]
    gold = torch.tensor([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    has_answer = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    return Batch(["a", "b"], ["q1", "q2"], passages, ["x", "y"], [["x"], ["y"]], gold, has_answer, [0, 1])


def test_stages_follow_each_other_and_the_last_runs_on():
    stages = [CurriculumStage(steps=2, contexts="answer"), CurriculumStage(steps=3, contexts="gold")]
    assert [stage_at(stages, s).contexts for s in range(7)] == ["answer"] * 2 + ["gold"] * 5
    assert stage_at([], 4) is None


def test_answer_gold_and_distractor_contexts():
    batch = make_batch()
    answer = select_contexts(batch, CurriculumStage(contexts="answer"), seed=0, step=0)
    assert [p["title"] for p in answer[0]] == ["t3"]  # gold and contains the answer
    assert len(answer[1]) == 5  # no such passage: falls back to all rather than nothing
    gold = select_contexts(batch, CurriculumStage(contexts="gold"), seed=0, step=0)
    assert [p["title"] for p in gold[0]] == ["t1", "t3"] and [p["title"] for p in gold[1]] == ["t0"]
    mixed = select_contexts(batch, CurriculumStage(contexts="gold", distractors=2), seed=0, step=0)
    assert len(mixed[0]) == 4 and {"t1", "t3"} <= {p["title"] for p in mixed[0]}
    assert mixed == select_contexts(batch, CurriculumStage(contexts="gold", distractors=2), seed=0, step=0)
    draws = {tuple(p["title"] for p in select_contexts(batch, CurriculumStage(contexts="gold", distractors=2), 0, s)[0]) for s in range(20)}
    assert len(draws) > 1  # distractors change with the step
    assert select_contexts(batch, CurriculumStage(contexts="all"), 0, 0) == batch.passages


def test_curriculum_from_yaml_and_bad_stages():
    cfg = load_config(ReaderTrainConfig, None, ["--curriculum=[{steps: 100, contexts: answer}, {steps: 50, contexts: gold, distractors: 2}]"])
    assert cfg.curriculum == [CurriculumStage(100, "answer", 0), CurriculumStage(50, "gold", 2)]
    with pytest.raises(ConfigError, match="curriculum.contexts"):
        load_config(ReaderTrainConfig, None, ["--curriculum=[{contexts: bridge}]"])
    with pytest.raises(ConfigError, match="expected a list"):
        load_config(ReaderTrainConfig, None, ["--curriculum=answer"])
