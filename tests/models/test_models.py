"""Candidate pipelines, baselines and staged training, on small synthetic data."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlstack.config import Settings
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_names, label_name
from mlstack.models.baselines import RecencyHeuristic, fit_baselines, fit_l1_logistic
from mlstack.models.candidates import MODEL_KINDS, make_model
from mlstack.models.split import Split
from mlstack.models.train import (
    best_candidate,
    fit_staged,
    stage_budgets,
    train_candidates,
    training_frame,
)

pytestmark = pytest.mark.unit

FEATURES = ["recency_days", "orders_total", "noise"]
LABEL = "purchase_within_30d"
SMALL_GBM = {"max_iter": 20, "max_leaf_nodes": 7, "min_samples_leaf": 10}


def synthetic(n: int, seed: int = 0) -> pd.DataFrame:
    """Customers whose purchase odds fall with recency and rise with orders; `noise` is not
    related to the label; an id, a date and a constant ride along."""
    rng = np.random.default_rng(seed)
    recency = rng.integers(0, 365, n)
    orders = rng.poisson(3, n)
    logit = 1.0 - recency / 60 + 0.4 * orders
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            ENTITY: [f"c{i}" for i in range(n)],
            EVENT_TIMESTAMP: pd.Timestamp("2021-01-01", tz="UTC"),
            "noise": rng.normal(size=n),
            "orders_total": orders,
            "recency_days": recency,
            "constant": 1.0,
            LABEL: label,
        }
    )


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic(3000, seed=0), synthetic(1500, seed=1)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_models_take_raw_rows_and_ignore_extra_columns(kind: str, data) -> None:
    train, valid = data
    params = SMALL_GBM if kind == "gradient_boosting" else {}
    model = make_model(kind, params, FEATURES).fit(train, train[LABEL])

    shuffled = valid[[LABEL, "constant", *reversed(FEATURES), ENTITY, EVENT_TIMESTAMP]]
    expected = model.predict_proba(valid[FEATURES])[:, 1]
    np.testing.assert_allclose(model.predict_proba(shuffled)[:, 1], expected)
    assert list(model[0].get_feature_names_out()) == FEATURES


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_missing_feature_is_a_clear_error(kind: str, data) -> None:
    train, valid = data
    params = SMALL_GBM if kind == "gradient_boosting" else {}
    model = make_model(kind, params, FEATURES).fit(train, train[LABEL])
    with pytest.raises(ValueError, match=r"columns are missing: \{'orders_total'\}"):
        model.predict_proba(valid.drop(columns=["orders_total"]))


def test_unknown_kind_lists_the_kinds() -> None:
    with pytest.raises(ValueError, match="gradient_boosting, logistic_regression, l1_logistic"):
        make_model("random_forest", {}, FEATURES)


def test_linear_models_impute_missing_values(data) -> None:
    train, valid = data
    gappy = train.assign(noise=train["noise"].where(train.index % 3 > 0))
    model = make_model("logistic_regression", {}, FEATURES).fit(gappy, gappy[LABEL])
    scores = model.predict_proba(valid.assign(noise=np.nan))[:, 1]
    assert np.isfinite(scores).all()


def test_heuristic_is_monotone_calibrated_and_picklable(data) -> None:
    train, valid = data
    heuristic = RecencyHeuristic(n_bins=10).fit(train, train[LABEL])

    grid = pd.DataFrame({"recency_days": np.arange(-5, 500)})
    p = heuristic.predict_proba(grid)[:, 1]
    assert np.all(np.diff(p) <= 0)
    assert p.min() >= 0 and p.max() <= 1 and p[0] > p[-1]
    # isotonic rates keep the training base rate
    assert heuristic.predict_proba(train)[:, 1].mean() == pytest.approx(train[LABEL].mean())
    assert list(heuristic.classes_) == [0, 1]
    np.testing.assert_array_equal(
        heuristic.decision_function(valid), heuristic.predict_proba(valid)[:, 1]
    )

    restored = pickle.loads(pickle.dumps(heuristic))
    np.testing.assert_array_equal(restored.predict_proba(valid), heuristic.predict_proba(valid))
    assert roc_auc_score(valid[LABEL], restored.decision_function(valid)) > 0.7


def test_heuristic_stays_monotone_when_the_data_is_not() -> None:
    recency = np.repeat([10, 20, 30, 40], 100)
    rates = np.repeat([0.5, 0.2, 0.4, 0.1], 100)  # a bump at 30
    labels = (np.tile(np.arange(100), 4) < rates * 100).astype(int)
    heuristic = RecencyHeuristic(n_bins=4).fit(pd.DataFrame({"recency_days": recency}), labels)
    p = heuristic.decision_function(pd.DataFrame({"recency_days": [10, 20, 30, 40]}))
    np.testing.assert_allclose(p, [0.5, 0.3, 0.3, 0.1])


def test_heuristic_scores_missing_recency_at_the_base_rate(data) -> None:
    train, _ = data
    heuristic = RecencyHeuristic().fit(train, train[LABEL])
    p = heuristic.decision_function(pd.DataFrame({"recency_days": [np.nan, 0.0]}))
    assert p[0] == pytest.approx(train[LABEL].mean())
    with pytest.raises(ValueError, match="recency_days"):
        heuristic.decision_function(train.drop(columns=["recency_days"]))


def test_l1_drops_noise_and_constant_features(data) -> None:
    train, _ = data
    model, dropped = fit_l1_logistic(train, [*FEATURES, "constant"], LABEL, C=0.005)
    assert set(dropped) == {"noise", "constant"}
    assert model.predict_proba(train).shape == (len(train), 2)


def test_fit_staged_reports_each_stage(data) -> None:
    train, valid = data
    calls: list[tuple[int, float]] = []
    result = fit_staged(
        "gradient_boosting",
        SMALL_GBM,
        *training_frame(train, FEATURES, LABEL),
        *training_frame(valid, FEATURES, LABEL),
        report=lambda step, value: calls.append((step, value)),
        stages=4,
    )
    assert [step for step, _ in calls] == [1, 2, 3, 4]
    assert calls == result.history and result.score == calls[-1][1]
    clf = result.model.named_steps["model"]
    assert clf.n_iter_ == 20 and clf.max_iter == 20 and clf.warm_start is False
    # the staged model is the model a single fit would give
    single = make_model("gradient_boosting", SMALL_GBM, FEATURES).fit(train, train[LABEL])
    np.testing.assert_allclose(result.model.predict_proba(valid), single.predict_proba(valid))


def test_stage_budgets_double_up_to_the_full_model() -> None:
    assert stage_budgets(100, 3) == [25, 50, 100]
    assert stage_budgets(150, 3) == [38, 75, 150]
    assert stage_budgets(2, 3) == [1, 2]  # budgets that round alike are checked once
    assert stage_budgets(300, 1) == [300]


def test_fit_staged_fits_other_kinds_once(data) -> None:
    train, valid = data
    calls: list[tuple[int, float]] = []
    fit_staged(
        "logistic_regression",
        {},
        *training_frame(train, FEATURES, LABEL),
        *training_frame(valid, FEATURES, LABEL),
        metric="roc_auc",
        report=lambda step, value: calls.append((step, value)),
    )
    assert len(calls) == 1 and calls[0][0] == 1 and calls[0][1] > 0.8


class Pruned(Exception):
    pass


def test_an_exception_from_report_propagates(data) -> None:
    train, valid = data
    calls: list[int] = []

    def prune_at_two(step: int, value: float) -> None:
        calls.append(step)
        if step == 2:
            raise Pruned

    with pytest.raises(Pruned):
        fit_staged(
            "gradient_boosting",
            SMALL_GBM,
            *training_frame(train, FEATURES, LABEL),
            *training_frame(valid, FEATURES, LABEL),
            report=prune_at_two,
        )
    assert calls == [1, 2]


def test_models_learn_a_synthetic_signal(data) -> None:
    train, valid = data
    result = fit_staged(
        "gradient_boosting",
        SMALL_GBM,
        *training_frame(train, FEATURES, LABEL),
        *training_frame(valid, FEATURES, LABEL),
        metric="roc_auc",
    )
    assert result.score > 0.8
    heuristic = RecencyHeuristic().fit(train, train[LABEL])
    assert result.score > roc_auc_score(valid[LABEL], heuristic.decision_function(valid))


def full_feature_split(settings: Settings) -> Split:
    """Three parts carrying every configured feature: the signal in recency and orders."""

    def part(n: int, seed: int) -> pd.DataFrame:
        frame = synthetic(n, seed).rename(columns={LABEL: label_name(settings.features)})
        rng = np.random.default_rng(seed)
        for name in feature_names(settings):
            if name not in frame:
                frame[name] = rng.normal(size=n)
        return frame

    return Split(part(1500, 0), part(800, 1), part(800, 2))


def test_candidates_and_baselines_score_every_part() -> None:
    settings = Settings()
    split = full_feature_split(settings)
    candidates = train_candidates(split, settings, tuned_params=SMALL_GBM)
    baselines = fit_baselines(split, settings)

    assert set(candidates) == {"gradient_boosting", "logistic_regression"}
    assert candidates["gradient_boosting"].params["max_iter"] == 20
    assert set(baselines) == {"recency_heuristic", "l1_logistic"}
    for model in [*candidates.values(), *baselines.values()]:
        assert model.validation["rows"] == 800 and model.test["rows"] == 800
        assert model.test["roc_auc"] > 0.7
        assert model.info["final_fit_on"] == "train+validation"
    assert "recency_days" not in baselines["l1_logistic"].info["dropped_features"]
    best = best_candidate(candidates, "pr_auc")
    assert best.validation["pr_auc"] == max(c.validation["pr_auc"] for c in candidates.values())
