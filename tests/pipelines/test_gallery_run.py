"""`mlstack run` on a line-item export, mapped by `configs/line_items.yaml` alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.support.logs import write_line_items
from tests.support.paths import PROJECT

pytestmark = pytest.mark.component


def test_mlstack_run_on_a_line_item_log(tmp_path: Path) -> None:
    shutil.copytree(PROJECT / "configs", tmp_path / "configs")
    shutil.copytree(
        PROJECT / "feature_repo",
        tmp_path / "feature_repo",
        ignore=shutil.ignore_patterns("data", "__pycache__"),
    )
    write_line_items(tmp_path / "data" / "line_items.csv.gz", customers=1500, seed=2)
    command = [
        str(Path(sys.executable).with_name("mlstack")),
        "--config",
        "configs/line_items.yaml",
        "--set",
        "tuning.max_trials=2",
        "run",
    ]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]

    summary = done.stdout[done.stdout.index("# mlstack training run") :]
    dropped = next(line for line in summary.splitlines() if "rows dropped, by rule" in line)
    assert "missing_customer_id" in dropped and "exact_duplicate" in dropped
    assert "zero_amount" in dropped  # the gallery's line-item policy drops free lines
    returns = next(line for line in summary.splitlines() if line.startswith("| returns"))
    assert int(returns.split("|")[2]) > 0
    assert "aliases: champion" in summary  # the first run on a new log ends with a champion

    artifacts = tmp_path / "artifacts" / "line_items"
    validation = json.loads(next(artifacts.glob("reports/*/validation.json")).read_text())
    assert validation["dropped"]["missing_customer_id"] > 0
    evaluation = json.loads(
        next(artifacts.glob("reports/evaluation/*/evaluation.json")).read_text()
    )
    assert "country" in {s["column"] for s in evaluation["slices"]}
    training = pd.read_parquet(next(artifacts.glob("kfp/*/training-set/dataset")))
    assert {"returns_total", "return_value_share", "distinct_products", "country"} <= set(
        training.columns
    )
