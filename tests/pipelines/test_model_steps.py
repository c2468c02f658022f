"""The model steps on a small training set: registry aliases, the gate, and crash safety."""

from __future__ import annotations

from pathlib import Path

import joblib
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest

from mlstack.config import Settings
from mlstack.data.ingest import ingest
from mlstack.features.build import build_features, build_labels
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_names, label_name
from mlstack.models.candidates import make_model
from mlstack.models.metrics import classification_metrics
from mlstack.registry import models, tracking
from mlstack.steps import gate
from mlstack.steps import model as steps
from mlstack.steps.results import Lineage, Registered, Verdict

pytestmark = pytest.mark.component


@pytest.fixture
def lifecycle(project, tmp_path: Path):
    """Settings (every model clears the heuristic's margin) and a small training set."""
    settings: Settings = project("gate.margin=-1.0", "tuning.max_trials=1")
    tx = pd.read_parquet(ingest(settings, out_path=tmp_path / "tx.parquet").path)
    features = build_features(tx, settings)
    labels = build_labels(tx, features[[ENTITY, EVENT_TIMESTAMP]], settings)
    dataset = tmp_path / "dataset.parquet"
    order = [ENTITY, EVENT_TIMESTAMP, label_name(settings.features), *feature_names(settings)]
    labels.merge(features, on=[ENTITY, EVENT_TIMESTAMP])[order].to_parquet(dataset)
    return settings, dataset, tmp_path


def run_model_steps(
    settings: Settings, dataset: Path, out: Path, challenger: Path | None = None
) -> Registered:
    """Every model step in pipeline order; `challenger` replaces the trained model."""
    run_id = steps.start_run_step(settings, "a note", _lineage()).run_id
    steps.baselines_step(settings, dataset, out / "baselines.joblib", run_id)
    best_fit = out / "best_fit.joblib"
    steps.tune_step(settings, dataset, str(dataset), run_id, best_fit)
    steps.train_step(settings, dataset, best_fit, out / "challenger.joblib", run_id)
    model_file = challenger or out / "challenger.joblib"
    evaluated = gate.evaluate_step(
        settings, dataset, model_file, out / "baselines.joblib", out / "report.html", run_id
    )
    decision = evaluated.gate.decision
    return gate.register_step(
        settings, dataset, model_file, out / "baselines.joblib", decision, evaluated.metrics, run_id
    )


def challenger_only(settings: Settings) -> Settings:
    """The gate with baselines out of the running: only the challenger may be promoted."""
    gate = settings.gate.model_copy(update={"baselines_compete": False})
    return settings.model_copy(update={"gate": gate})


def aliases(settings: Settings) -> dict[str, str]:
    return models.aliases(tracking.configure(settings.mlflow), settings.mlflow.registered_model)


def noise_model(settings: Settings, dataset: Path, path: Path) -> Path:
    """A model fit on shuffled labels: worse than any champion on the same test data."""
    frame = pd.read_parquet(dataset)
    label = label_name(settings.features)
    shuffled = np.random.default_rng(0).permutation(frame[label].to_numpy())
    model = make_model("gradient_boosting", {"max_iter": 20}, feature_names(settings))
    joblib.dump(model.fit(frame, shuffled), path)
    return path


def test_aliases_gate_and_crash_safety(lifecycle) -> None:
    settings, dataset, out = lifecycle
    client = tracking.configure(settings.mlflow)
    name = settings.mlflow.registered_model

    # a first run where a baseline is best: the challenger (fit on shuffled labels) fails,
    # the L1 model passes, and it is registered as champion rather than leaving nothing
    noise = noise_model(settings, dataset, out / "noise.joblib")
    first = run_model_steps(settings, dataset, out, challenger=noise)
    assert first.version == "1" and first.promoted
    assert first.model_kind == "l1_logistic"
    assert aliases(settings) == {"champion": "1"}
    version = client.get_model_version(name, "1")
    assert version.tags["model_kind"] == "l1_logistic"
    assert version.tags["gate_vs_recency_heuristic"].startswith(("+", "-"))
    served = mlflow.sklearn.load_model(f"models:/{name}@champion")
    frame = pd.read_parquet(dataset)
    assert served.predict_proba(frame[feature_names(settings)].head(3)).shape == (3, 2)
    assert type(served[-1]).__name__ == "LogisticRegression"

    # a significantly worse challenger is registered as challenger, and the champion stays
    second = run_model_steps(challenger_only(settings), dataset, out, challenger=noise)
    assert second.version == "2" and not second.promoted
    assert second.model_kind == "challenger"
    assert aliases(settings) == {"champion": "1", "challenger": "2"}
    version = client.get_model_version(name, "2")
    assert version.tags["gate_decision"] == "reject"
    assert version.tags["gate_vs_champion"].startswith("-")

    # a crash in any step leaves no new champion (and no new version)
    garbage = out / "garbage.joblib"
    garbage.write_bytes(b"not a model")
    broken_data = out / "broken.parquet"
    broken_data.write_bytes(b"not parquet")
    run_id = steps.start_run_step(settings, "", _lineage()).run_id
    crashes = [
        lambda: steps.baselines_step(settings, broken_data, out / "b.joblib", run_id),
        lambda: steps.tune_step(settings, broken_data, str(broken_data), run_id, out / "f"),
        lambda: steps.train_step(settings, broken_data, garbage, out / "c.joblib", run_id),
        lambda: gate.evaluate_step(
            settings, dataset, garbage, out / "baselines.joblib", out / "r.html", run_id
        ),
        lambda: gate.register_step(
            settings,
            dataset,
            garbage,
            out / "baselines.joblib",
            Verdict(promote=True),
            {},
            run_id,
        ),
    ]
    for crash in crashes:
        with pytest.raises(Exception):  # noqa: B017 - any failure must leave the registry alone
            crash()
        assert aliases(settings) == {"champion": "1", "challenger": "2"}
    names = [str(v.version) for v in client.search_model_versions()]
    assert sorted(names) == ["1", "2"]


@pytest.mark.parametrize("cache", [True, False])
def test_training_reuses_the_best_tuning_fit_it_is_handed(lifecycle, cache: bool) -> None:
    settings, dataset, out = lifecycle
    settings = settings.model_copy(update={"cache": cache})
    run_id = steps.start_run_step(settings, "", _lineage()).run_id
    best_fit = out / "best_fit.joblib"
    tuned = steps.tune_step(settings, dataset, str(dataset), run_id, best_fit)
    handed = steps.BestFit.load(best_fit)
    assert handed.params == tuned.best_params and handed.fit is not None
    trained = steps.train_step(settings, dataset, best_fit, out / "challenger.joblib", run_id)

    kind, metric = settings.tuning.model, settings.tuning.objective
    found = trained.candidates[kind]
    # the fit travels as an artifact, with or without the step cache
    assert found.fit_reused is True
    assert found.params == tuned.best_params
    assert trained.candidates["logistic_regression"].fit_reused is False
    # the tuning's best value is the candidate's validation score: the same fit
    assert found.validation[metric] == pytest.approx(tuned.metrics["best_value"], abs=1e-12)

    # parameters without a fit (Katib's, tuned in trial pods): training fits them itself
    steps.BestFit(kind, tuned.best_params).save(best_fit)
    refit = steps.train_step(settings, dataset, best_fit, out / "challenger.joblib", run_id)
    assert refit.candidates[kind].fit_reused is False
    assert refit.candidates[kind].params == tuned.best_params


def test_tuning_and_training_fit_on_the_row_budget(lifecycle, caplog) -> None:
    settings, dataset, out = lifecycle
    whole = steps.load_split(with_budget(settings, None), dataset)
    budget = len(whole.train) // 2
    settings = with_budget(settings, budget)
    run_id = steps.start_run_step(settings, "", _lineage()).run_id
    best_fit = out / "best_fit.joblib"
    with caplog.at_level("INFO", logger="mlstack.models.split_file"):
        tuned = steps.tune_step(settings, dataset, str(dataset), run_id, best_fit)
    assert (tuned.rows.budget, tuned.rows.train_after) == (budget, budget)
    assert tuned.rows.train_before == len(whole.train)
    assert f"training on {budget:,} of {len(whole.train):,} training rows" in caplog.text

    # the tuning's score is on every validation row, not a sample of them
    label, metric = label_name(settings.features), settings.tuning.objective
    fitted = steps.BestFit.load(best_fit).fit.model
    scores = fitted.predict_proba(whole.validation[feature_names(settings)])[:, 1]
    on_all = classification_metrics(whole.validation[label].to_numpy(), scores)[metric]
    assert tuned.metrics["best_value"] == pytest.approx(on_all, abs=1e-12)

    trained = steps.train_step(settings, dataset, best_fit, out / "challenger.joblib", run_id)
    assert trained.rows == tuned.rows
    assert trained.candidates[settings.tuning.model].fit_reused is True  # the same sample
    # the final fit: train + validation sampled to the budget too
    assert trained.rows.final_after == budget
    assert trained.rows.final_before == len(whole.train) + len(whole.validation)
    params = tracking.configure(settings.mlflow).get_run(run_id).data.params
    assert params["train_rows_budget"] == str(budget)
    assert params["train_rows_before"] == str(len(whole.train))
    assert params["train_rows_after"] == params["final_fit_rows_after"] == str(budget)


def with_budget(settings: Settings, train_rows: int | None) -> Settings:
    split = settings.split.model_copy(update={"train_rows": train_rows})
    return settings.model_copy(update={"split": split})


def _lineage() -> Lineage:
    return Lineage(
        data_version="d" * 16,
        feature_version="f" * 16,
        feature_service="customer_propensity_v1",
        training_rows=1,
    )


def test_cli_lists_promotes_and_rolls_back(lifecycle) -> None:
    from typer.testing import CliRunner

    from mlstack.cli import app

    settings, dataset, out = lifecycle
    run_model_steps(settings, dataset, out)
    noise = noise_model(settings, dataset, out / "n")
    run_model_steps(challenger_only(settings), dataset, out, challenger=noise)
    base = [
        "--config",
        str(settings.root / "configs" / "cdnow.yaml"),
        "--set",
        f"root={settings.root}",
    ]
    runner = CliRunner()

    listed = runner.invoke(app, [*base, "models"])
    assert listed.exit_code == 0, listed.output
    assert "champion" in listed.output and "challenger" in listed.output

    promoted = runner.invoke(app, [*base, "promote", "2", "--reason", "try the noisy one"])
    assert promoted.exit_code == 0, promoted.output
    assert aliases(settings)["champion"] == "2"
    client = tracking.configure(settings.mlflow)
    version = client.get_model_version(settings.mlflow.registered_model, "2")
    assert version.tags["champion_reason"] == "try the noisy one"

    rolled = runner.invoke(app, [*base, "rollback", "--reason", "noisy one is worse"])
    assert rolled.exit_code == 0, rolled.output
    assert aliases(settings)["champion"] == "1"

    missing = runner.invoke(app, [*base, "promote", "9", "--reason", "no such version"])
    assert missing.exit_code != 0
    assert "no version 9" in missing.output


def test_tune_trial_prints_katib_stdout_metrics(lifecycle) -> None:
    import re

    from typer.testing import CliRunner

    from mlstack.cli import app

    settings, dataset, _ = lifecycle
    base = [
        "--config",
        str(settings.root / "configs" / "cdnow.yaml"),
        "--set",
        f"root={settings.root}",
    ]
    flags = [
        "--learning-rate=0.1",
        "--max-iter=50",
        "--max-leaf-nodes=8",
        "--min-samples-leaf=100",
        "--l2-regularization=0.01",
    ]
    result = CliRunner().invoke(app, [*base, "tune-trial", "--dataset", str(dataset), *flags])
    assert result.exit_code == 0, result.output
    lines = re.findall(r"^\S+Z pr_auc=([0-9.]+)$", result.output, flags=re.MULTILINE)
    assert len(lines) == 3  # one per boosting stage (12, 25, 50 trees), for Katib's median stop
    assert all(0 < float(v) <= 1 for v in lines)

    bad = CliRunner().invoke(app, [*base, "tune-trial", "--dataset", str(dataset), "--depth=3"])
    assert bad.exit_code != 0
    assert "unexpected trial argument '--depth=3'" in bad.output
