"""Gate steps: evaluation of the challenger, the gate's decision, and registration.

The champion alias moves only in the last step, after everything else succeeded: a crash
anywhere leaves the champion where it was.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import joblib

from mlstack.config import Settings
from mlstack.config.modelling import MlflowSettings
from mlstack.features.definitions import ENTITY, feature_names, label_name
from mlstack.models.evaluate import evaluate_model
from mlstack.models.gate import CHALLENGER, decide, interval_name
from mlstack.models.metrics import classification_metrics
from mlstack.models.parts import codes_of, labels_of, scores_of_each
from mlstack.models.split_file import FINAL
from mlstack.models.train import final_fit_frame
from mlstack.registry.reference import build_reference, log_reference
from mlstack.steps import keep, step
from mlstack.steps.model import load_split
from mlstack.steps.results import Evaluated, GateOutcome, Registered, Verdict, plain

log = logging.getLogger(__name__)


CHAMPION_SCORES = "champion"  # its key beside the challenger and the baselines (BASELINES)


def _champion(cfg: MlflowSettings) -> tuple[str, Any] | None:
    """The current champion's version and model, or None when there is none."""
    import mlflow.sklearn  # lazy on purpose: MLflow is slow to import

    from mlstack.registry import models, tracking

    client = tracking.configure(cfg)
    current = models.champion(client, cfg.registered_model)
    if current is None:
        return None
    uri = f"models:/{cfg.registered_model}@{models.CHAMPION}"
    return str(current.version), mlflow.sklearn.load_model(uri)


@step
def evaluate_step(
    settings: Settings,
    dataset: Path,
    challenger: Path,
    baselines: Path,
    report_html: Path,
    run_id: str,
) -> Evaluated:
    """Evaluate the challenger on the test period against the baselines and the champion;
    decide whether it may become champion."""
    from mlstack.registry import tracking  # lazy on purpose: MLflow is slow to import

    # every test row is scored; past `CHUNK_ROWS` rows they are streamed from a file, and
    # only their labels, scores, customers and slice columns are held whole
    test = load_split(settings, dataset, parts=("test",)).test
    features, label = feature_names(settings), label_name(settings.features)
    candidates = {CHALLENGER: joblib.load(challenger), **joblib.load(baselines)}
    found = _champion(settings.mlflow)
    champion_version, champion = found if found else (None, None)
    scorers = candidates | ({CHAMPION_SCORES: champion} if champion is not None else {})
    scores = scores_of_each(scorers, test)  # scored once: the report and the gate
    challenger_scores, champion_scores = scores.pop(CHALLENGER), scores.pop(CHAMPION_SCORES, None)
    out_dir = settings.reports_dir / "evaluation" / run_id
    evaluation = evaluate_model(
        None,
        test,
        features,
        label,
        settings,
        out_dir,
        name=CHALLENGER,
        scores=challenger_scores,
        baselines=scores,
    )
    keep(evaluation.html, report_html)
    labels, ev = labels_of(test, label), settings.evaluation
    champion_metrics = None
    if champion_scores is not None:
        champion_metrics = classification_metrics(
            labels, champion_scores, ev.top_fraction, ev.calibration_bins
        )
    decision = decide(
        labels,
        codes_of(test, ENTITY),  # the customers, as codes: the gate redraws them
        {CHALLENGER: challenger_scores, **scores},
        champion_scores,
        settings.gate,
    )
    for reason in decision.reasons:
        log.info("gate: %s", reason)
    log.info(
        "gate decision: %s",
        f"PROMOTE {decision.candidate}" if decision.promote else "keep the champion",
    )
    with tracking.training_run(settings.mlflow, "", run_id=run_id):
        import mlflow

        tracking.log_metrics("test", evaluation.metrics)
        if champion_metrics:
            tracking.log_metrics("champion_test", champion_metrics)
        mlflow.log_metrics(decision.intervals())
        tracking.log_reports({"evaluation": out_dir})
        mlflow.log_dict(decision.to_dict(), "gate_decision.json")
        mlflow.set_tag("gate_decision", "promote" if decision.promote else "reject")
        mlflow.set_tag("gate_candidate", decision.registered)
    # with every candidate's test metrics: register records the chosen one's
    test_metrics = {CHALLENGER: dict(evaluation.metrics), **evaluation.baselines}
    verdict = Verdict.model_validate(plain({**decision.to_dict(), "test_metrics": test_metrics}))
    return Evaluated(
        metrics=plain(dict(evaluation.metrics)),
        evaluation=evaluation.to_dict(),
        roc=plain(evaluation.roc),
        confusion=plain(evaluation.confusion),
        gate=GateOutcome(
            decision=verdict,
            champion_version=champion_version,
            champion_metrics=plain(champion_metrics),
            report_dir=str(out_dir),
        ),
    )


@step
def register_step(
    settings: Settings,
    dataset: Path,
    challenger: Path,
    baselines: Path,
    decision: Verdict,
    test_metrics: dict[str, float],
    run_id: str,
) -> Registered:
    """Log and register the model the gate chose (the challenger, or a learned baseline that
    passed where it did not); alias it `challenger`, and `champion` if it passed.
    `test_metrics` are the challenger's; a baseline's come with the decision."""
    from mlstack.registry import models, tracking  # lazy on purpose: MLflow is slow to import

    name = settings.mlflow.registered_model
    kind = decision.candidate or CHALLENGER
    if kind == CHALLENGER:
        model = joblib.load(challenger)
    else:
        model = joblib.load(baselines)[kind]
        test_metrics = decision.test_metrics[kind]
    split = load_split(settings, dataset, parts=("train", "validation", FINAL))
    example = split.train.head(5)[feature_names(settings)]
    client = tracking.configure(settings.mlflow)
    with tracking.training_run(settings.mlflow, "", run_id=run_id):
        info = tracking.log_model(model, tracking.MODEL_NAME, example, registered_model=name)
        # the drift checks' reference: the rows the model was fit on, with its scores
        log_reference(
            build_reference(
                model,
                final_fit_frame(split),
                settings,
                test_metrics,
                trained_until=split.boundaries.get("validation_end"),
            )
        )
    verdict = "promote" if decision.promote else "reject"
    intervals = {
        f"gate_vs_{interval_name(c['rule'], c['against'])}": (
            f"{c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]"
        )
        for c in decision.comparisons.get(kind, [])
    }  # e.g. gate_vs_l1_logistic: +0.0009 [-0.0021, +0.0040]
    tags = {"gate_decision": verdict, "model_kind": kind, **intervals}
    version = models.register(
        client, settings.mlflow, info.model_uri, metrics=test_metrics, tags=tags
    )
    reasons = "; ".join(decision.reasons)
    models.set_alias(client, name, models.CHALLENGER, version.version, f"run {run_id}: {reasons}")
    if decision.promote:
        models.promote(
            client, settings.mlflow, version.version, f"gate passed in run {run_id}: {reasons}"
        )
    aliases = sorted(
        a for a, v in models.aliases(client, name).items() if v == str(version.version)
    )
    log.info(
        "registered %s (%s) version %s, aliases: %s",
        name,
        kind,
        version.version,
        ", ".join(aliases) or "none",
    )
    return Registered(
        model=name,
        version=str(version.version),
        model_kind=kind,
        aliases=aliases,
        promoted=decision.promote,
    )
