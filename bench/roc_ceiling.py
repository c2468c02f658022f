"""How much test-period ROC-AUC do the features hold at all? (`make bench`, model part)

    python bench/roc_ceiling.py [--dataset PATH] [--folds 5]

Two figures per model kind (default parameters), on the full training set:

- policy: the pipeline's own figure. Fit on train, refit on train + validation, score the
  test period (`mlstack.models.train.train_candidates`, the L1 baseline alike).
- in-period: fit on the test period itself, out of fold (GroupKFold by customer, so no
  customer is both fitted and scored). A model that sees the test period's own outcomes is
  an upper bound for any model trained before it on these features.

The training set defaults to the one `bench/pipeline.py` keeps (artifacts/bench/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GroupKFold

from mlstack.config import load_settings
from mlstack.features.definitions import ENTITY, feature_names, label_name
from mlstack.models.baselines import fit_baselines
from mlstack.models.candidates import make_model
from mlstack.models.split import time_split
from mlstack.models.train import train_candidates

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = PROJECT / "artifacts" / "bench" / "training_set.parquet"


def in_period(test: pd.DataFrame, kind: str, features: list[str], label: str, folds: int):
    """Out-of-fold scores of `kind` fitted on the test rows, folds grouped by customer."""
    y = test[label].to_numpy().astype(int)
    scores = np.zeros(len(test))
    for fit_rows, score_rows in GroupKFold(folds).split(test, y, test[ENTITY]):
        model = make_model(kind, None, features)
        model.fit(test.iloc[fit_rows], y[fit_rows])
        scores[score_rows] = model.predict_proba(test.iloc[score_rows])[:, 1]
    return roc_auc_score(y, scores), average_precision_score(y, scores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    if not args.dataset.is_file():
        raise SystemExit(f"no training set at {args.dataset}: run bench/pipeline.py first")
    settings = load_settings()
    features, label = feature_names(settings), label_name(settings.features)
    split = time_split(
        pd.read_parquet(args.dataset), settings.split, settings.features.horizon_days
    )
    policy = {k: c.test for k, c in train_candidates(split, settings).items()}
    policy["l1_logistic"] = fit_baselines(split, settings)["l1_logistic"].test

    bounds = split.boundaries
    print(f"test period {bounds['test_start']}..{bounds['test_end']}, {len(split.test):,} rows")
    print("ROC-AUC / PR-AUC\n")
    print("| model | policy (fit before the test period) | in-period ceiling (out of fold) |")
    print("|---|---|---|")
    for kind, test in policy.items():
        roc, pr = in_period(split.test, kind, features, label, args.folds)
        print(
            f"| {kind} | {test['roc_auc']:.4f} / {test['pr_auc']:.4f} | {roc:.4f} / {pr:.4f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
