"""The run summary a person reads at the end of `make run`."""

from __future__ import annotations

import pytest

from mlstack.steps.results import Baselines, GateOutcome, Registered, Trained, Verdict
from mlstack.steps.summary import model_section, tuning_line

pytestmark = pytest.mark.unit


def test_the_tuning_reads_as_a_sentence_with_whole_numbers_shown_whole() -> None:
    # as the summary gets it: the metrics panel's numbers and the best fit's metadata, where
    # KFP stores every number as a float
    tuning = {
        "trials": 12.0,
        "pruned": 4.0,
        "failed": 0.0,
        "best_value": 0.36423293649104505,
        "best_params": {"learning_rate": 0.05, "max_iter": 100.0, "l2_regularization": 1.0},
    }
    assert tuning_line("pr_auc", tuning) == (
        "Tuning: best validation pr_auc 0.3642 in 12 trials (4 pruned, 0 failed): "
        "learning_rate=0.05, max_iter=100, l2_regularization=1"
    )


def test_a_tuning_without_counts_or_parameters_still_reads() -> None:
    assert tuning_line("pr_auc", {"best_params": {}}) == "Tuning: best parameters: the defaults"


def test_the_rows_the_budget_kept_read_as_a_sentence() -> None:
    # as the summary gets the train step's result: from its artifact's metadata, in floats
    facts = {
        "challenger": "gradient_boosting",
        "kind": "gradient_boosting",
        "params": {},
        "candidates": {},
        "rows": {
            "budget": 500000.0,
            "train_before": 2130000.0,
            "train_after": 500000.0,
            "final_before": 2900000.0,
            "final_after": 500000.0,
        },
    }
    section = model_section(
        "pr_auc",
        Baselines(baselines={}),
        {},
        Trained.from_facts(facts),
        GateOutcome(decision=Verdict(promote=False), report_dir="r"),
        {},
        Registered(model="m", version="1", model_kind="challenger", aliases=[], promoted=False),
    )
    assert section.training_rows == (
        "training on 500,000 of 2,130,000 training rows, sampled by snapshot and label "
        "(split.train_rows=500,000); the final fit on 500,000 of 2,900,000 train + "
        "validation rows, sampled the same way"
    )
