"""Model evaluation on synthetic test periods built in the tests: metrics, KFP curves,
slices and bias findings, the false positive / negative analysis, plots and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlstack.config import EvaluationSettings, Settings
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP
from mlstack.models import error_analysis as error_analysis_module
from mlstack.models.curves import MAX_ROC_POINTS, operating_point
from mlstack.models.error_analysis import error_analysis
from mlstack.models.evaluate import HTML_FILE, JSON_FILE, PLOT_FILES, evaluate_model
from mlstack.models.evaluation import Evaluation
from mlstack.models.evaluation_page import _errors_section
from mlstack.models.metrics import classification_metrics, top_mask
from mlstack.models.parts import StreamedPart, codes_of, columns_of, rows_at
from mlstack.models.slices import slices_of

pytestmark = pytest.mark.unit

LABEL = "purchase_within_30d"
FEATURES = ["tenure_days", "spend_total", "signal", "noise"]
CHANNELS = {"web": 2400, "store": 2400, "kiosk": 60, "partner": 300}  # rows per channel


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


@pytest.fixture(scope="module")
def scored() -> tuple[pd.DataFrame, np.ndarray]:
    """A test period whose scores carry the signal in every channel but `store`, where they
    are noise at the same base rate; `partner` has no purchases, `kiosk` is tiny."""
    rng = np.random.default_rng(7)
    channel = np.repeat(list(CHANNELS), list(CHANNELS.values()))
    n = len(channel)
    signal = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            ENTITY: pd.array([f"c{i:05d}" for i in range(n)], dtype="string"),
            EVENT_TIMESTAMP: pd.Timestamp("1998-05-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 8, n) * 7, unit="D"),
            "tenure_days": rng.integers(0, 500, n),
            "spend_total": rng.lognormal(3.5, 1.0, n).round(2),
            "signal": signal,
            "noise": rng.normal(size=n),
            "channel": channel,
        }
    )
    frame[LABEL] = (rng.random(n) < _sigmoid(2.5 * signal - 2.5)).astype(int)
    frame.loc[frame["channel"] == "partner", LABEL] = 0
    scores = _sigmoid(2.5 * signal - 2.5)
    store = (frame["channel"] == "store").to_numpy()
    scores[store] = rng.permutation(scores[store])  # same scores, no signal left
    return frame, scores


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(evaluation=EvaluationSettings(slice_columns=["channel", "absent_column"]))


@pytest.fixture(scope="module")
def evaluation(
    scored: tuple[pd.DataFrame, np.ndarray], settings: Settings, tmp_path_factory
) -> Evaluation:
    frame, scores = scored
    rng = np.random.default_rng(3)
    baselines = {
        "recency heuristic": scores + rng.normal(scale=0.3, size=len(scores)),
        "coin flip": rng.random(len(scores)),
    }
    out = tmp_path_factory.mktemp("evaluation")
    return evaluate_model(
        None, frame, FEATURES, LABEL, settings, out, "candidate", scores, baselines
    )


def test_metrics_are_the_shared_definitions(
    evaluation: Evaluation, scored: tuple[pd.DataFrame, np.ndarray], settings: Settings
) -> None:
    frame, scores = scored
    config = settings.evaluation
    expected = classification_metrics(
        frame[LABEL].to_numpy(), scores, config.top_fraction, config.calibration_bins
    )
    assert evaluation.metrics == expected
    assert set(evaluation.baselines) == {"recency heuristic", "coin flip"}
    assert evaluation.baselines["coin flip"]["roc_auc"] < evaluation.metrics["roc_auc"]


def test_model_is_scored_when_no_scores_are_given(
    scored: tuple[pd.DataFrame, np.ndarray], settings: Settings, tmp_path: Path
) -> None:
    frame, scores = scored

    class Fixed:
        def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
            assert list(rows.columns) == FEATURES
            return np.column_stack([1 - scores, scores])

    result = evaluate_model(Fixed(), frame, FEATURES, LABEL, settings, tmp_path)
    assert result.name == "model"
    assert result.metrics["pr_auc"] == pytest.approx(
        classification_metrics(frame[LABEL].to_numpy(), scores)["pr_auc"]
    )


def test_degraded_slice_is_a_bias_finding_and_fair_one_is_not(evaluation: Evaluation) -> None:
    slices = evaluation.slices.set_index(["slice", "value"])
    assert bool(slices.loc[("channel", "store"), "bias_finding"])
    assert not slices.loc[("channel", "web"), "bias_finding"]
    assert slices.loc[("channel", "web"), "pr_auc_gap"] < 0
    store = [s for s in evaluation.bias_findings if s.startswith("channel store")]
    assert len(store) == 1 and "ranks this slice worse" in store[0]
    assert not any(s.startswith("channel web") for s in evaluation.bias_findings)
    row = slices.loc[("channel", "store")]
    assert row["pr_auc_lift"] == pytest.approx(row["pr_auc"] / row["base_rate"])


def test_small_and_one_class_slices_are_listed_but_not_scored(evaluation: Evaluation) -> None:
    slices = evaluation.slices.set_index(["slice", "value"])
    kiosk, partner = slices.loc[("channel", "kiosk")], slices.loc[("channel", "partner")]
    assert kiosk["rows"] == CHANNELS["kiosk"] and not kiosk["scored"]
    assert "rows" in kiosk["note"] and np.isnan(kiosk["pr_auc"])
    assert not partner["scored"] and "one class" in partner["note"]
    assert not kiosk["bias_finding"] and not partner["bias_finding"]
    assert "absent_column" not in set(evaluation.slices["slice"])


def test_tenure_and_spend_bands(evaluation: Evaluation) -> None:
    names = evaluation.slices.groupby("slice")["value"].apply(list)
    assert names["tenure_days band"] == ["<90d", "90–180d", "180–365d", "≥365d"]
    assert len(names["spend_total quartile"]) == 4
    for name in ("tenure_days band", "spend_total quartile"):
        assert evaluation.slices.loc[evaluation.slices["slice"] == name, "rows"].sum() == sum(
            CHANNELS.values()
        )


def test_tenure_falls_back_to_quartiles_when_one_band_holds_every_row() -> None:
    cohort = pd.DataFrame({"tenure_days": np.arange(380, 500)})
    names = {s.name for s in slices_of(cohort, [])}
    assert names == {"tenure_days quartile"}


def test_roc_points_fit_kfp(evaluation: Evaluation) -> None:
    from kfp.dsl import ClassificationMetrics

    roc = evaluation.roc
    assert 2 < len(roc["fpr"]) <= MAX_ROC_POINTS
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"])
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)
    assert np.isfinite(roc["thresholds"]).all()
    artifact = ClassificationMetrics(name="metrics")
    artifact.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    artifact.log_confusion_matrix(
        evaluation.confusion["categories"], evaluation.confusion["matrix"]
    )
    assert len(artifact.metadata["confidenceMetrics"]) == len(roc["fpr"])


def test_confusion_matrix_is_the_top_fraction(
    evaluation: Evaluation, scored: tuple[pd.DataFrame, np.ndarray], settings: Settings
) -> None:
    frame, scores = scored
    (tn, fp), (fn, tp) = evaluation.confusion["matrix"]
    assert evaluation.confusion["categories"] == ["no purchase", "purchase"]
    assert tn + fp + fn + tp == len(frame)
    assert tp + fn == frame[LABEL].sum()
    selected = top_mask(scores, settings.evaluation.top_fraction)
    assert tp + fp == selected.sum()
    assert evaluation.threshold == scores[selected].min()
    assert tp / (tp + fp) == pytest.approx(evaluation.metrics["precision_at_top"])


def test_explicit_threshold_sets_the_operating_point() -> None:
    scores = np.array([0.1, 0.5, 0.7, 0.9])
    predicted, threshold = operating_point(scores, 0.25, threshold=0.5)
    assert threshold == 0.5 and predicted.tolist() == [False, True, True, True]
    predicted, threshold = operating_point(scores, 0.25)
    assert threshold == 0.9 and predicted.sum() == 1


def test_scores_that_are_not_probabilities_at_a_given_threshold(
    scored: tuple[pd.DataFrame, np.ndarray], settings: Settings, tmp_path: Path
) -> None:
    frame, scores = scored
    logits = np.log(scores / (1 - scores))
    result = evaluate_model(
        None, frame, FEATURES, LABEL, settings, tmp_path, scores=logits, threshold=0.0
    )
    (_, fp), (_, tp) = result.confusion["matrix"]
    assert result.threshold == 0.0 and tp + fp == (logits >= 0).sum()
    assert np.isnan(result.metrics["brier"]) and result.to_dict()["metrics"]["brier"] is None
    assert "score ≥ 0" in result.html.read_text()
    assert all(path.is_file() for path in result.plots.values())


def test_error_analysis_names_the_feature_that_separates_the_errors() -> None:
    """Scores use `x` only; purchases also need a low `z`. False positives are then the
    selected rows with a high `z`, and missed purchasers the ones whose `x` was too low."""
    rng = np.random.default_rng(11)
    n = 6000
    frame = pd.DataFrame(
        {
            ENTITY: [f"c{i}" for i in range(n)],
            EVENT_TIMESTAMP: pd.Timestamp("1998-05-01", tz="UTC"),
            "x": rng.normal(size=n),
            "z": rng.random(n),
            "noise": rng.normal(size=n),
        }
    )
    y = (((frame["x"] > 0.8) & (frame["z"] < 0.5)) | (rng.random(n) < 0.01)).to_numpy().astype(int)
    scores = _sigmoid(2 * frame["x"].to_numpy())
    predicted, threshold = operating_point(scores, 0.1)
    result = error_analysis(frame, ["x", "z", "noise"], y, scores, predicted, threshold)

    fp = pd.DataFrame(result["false_positives"]["features"]).set_index("feature")
    assert fp["d vs tn"].abs().idxmax() == "x"  # what got them selected
    assert fp["d vs tp"].abs().idxmax() == "z" and fp.loc["z", "d vs tp"] > 1  # what was missed
    fn = pd.DataFrame(result["false_negatives"]["features"]).set_index("feature")
    assert fn["d vs tp"].abs().idxmax() == "x" and fn.loc["x", "d vs tp"] < 0
    assert (
        result["counts"]["fp"] == result["false_positives"]["count"] == (predicted & (y == 0)).sum()
    )

    examples = pd.DataFrame(result["false_positives"]["examples"])
    fp_scores = scores[predicted & (y == 0)]
    assert examples["score"].tolist() == sorted(fp_scores, reverse=True)[: len(examples)]
    assert {ENTITY, EVENT_TIMESTAMP, "score", "x"} <= set(examples.columns)
    missed = pd.DataFrame(result["false_negatives"]["examples"])
    assert missed["score"].is_monotonic_increasing

    sentences = " ".join(result["sentences"])
    assert "higher z" in sentences and "lower x" in sentences
    assert len(result["sentences"]) == 3


def streamed(frame: pd.DataFrame, folder: Path, chunk_rows: int) -> StreamedPart:
    """The frame as a streamed part: its rows in a file, read `chunk_rows` at a time."""
    path = folder / "spilled" / "test.parquet"
    path.parent.mkdir(parents=True)
    frame.to_parquet(path, index=False, row_group_size=chunk_rows)
    return StreamedPart(path, list(frame.columns), frame[LABEL].to_numpy(), chunk_rows)


def test_a_streamed_test_part_is_evaluated_as_the_frame_is(
    evaluation: Evaluation,
    scored: tuple[pd.DataFrame, np.ndarray],
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Past `CHUNK_ROWS` the test rows stay in their file: the same figures, slices, error
    analysis and examples come out, row for row."""
    frame, scores = scored
    part = streamed(frame, tmp_path, chunk_rows=700)
    rng = np.random.default_rng(3)  # the fixture's baselines, drawn again
    baselines = {
        "recency heuristic": scores + rng.normal(scale=0.3, size=len(scores)),
        "coin flip": rng.random(len(scores)),
    }
    result = evaluate_model(
        None, part, FEATURES, LABEL, settings, tmp_path / "out", "candidate", scores, baselines
    )
    paths = ("html", "plots")
    expected = {k: v for k, v in evaluation.to_dict().items() if k not in paths}
    assert {k: v for k, v in result.to_dict().items() if k not in paths} == expected
    pd.testing.assert_frame_equal(result.slices, evaluation.slices)
    assert result.errors["false_positives"]["examples"]  # there were rows to read back


def test_rows_at_reads_the_rows_asked_for_from_either_kind_of_part(
    scored: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    frame, _ = scored
    positions = np.array([0, 3, 699, 700, 2400, len(frame) - 1])
    expected = frame[["noise", ENTITY]].iloc[positions].set_axis(positions)
    part = streamed(frame, tmp_path, chunk_rows=700)
    pd.testing.assert_frame_equal(rows_at(part, positions, ["noise", ENTITY]), expected)
    pd.testing.assert_frame_equal(rows_at(frame, positions, ["noise", ENTITY]), expected)
    pd.testing.assert_frame_equal(columns_of(part, ["channel"]), frame[["channel"]])
    with pytest.raises(ValueError, match="ascending"):
        rows_at(part, positions[::-1], ["noise"])


def test_customer_codes_number_the_customers_as_np_unique_does(tmp_path: Path) -> None:
    """The gate redraws customers by their codes: the same numbering as their ids' sorted
    order, whether the part is a frame or streamed (dictionary-encoded as it is read)."""
    rng = np.random.default_rng(5)
    ids = rng.choice([f"c{i}" for i in rng.permutation(900)], size=5000)
    frame = pd.DataFrame({ENTITY: pd.array(ids, dtype="string"), LABEL: rng.integers(0, 2, 5000)})
    expected = np.unique(ids, return_inverse=True)[1]
    assert np.array_equal(codes_of(frame, ENTITY), expected)
    assert np.array_equal(codes_of(streamed(frame, tmp_path, chunk_rows=700), ENTITY), expected)


def test_large_error_groups_are_described_by_a_sample(
    scored: tuple[pd.DataFrame, np.ndarray], monkeypatch
) -> None:
    """Medians and means of a group past `ERROR_STAT_ROWS` rows are of a random sample of
    that many, and the analysis says so; smaller groups are described whole."""
    frame, scores = scored
    y = frame[LABEL].to_numpy()
    predicted, threshold = operating_point(scores, 0.1)
    whole = error_analysis(frame, FEATURES, y, scores, predicted, threshold)
    monkeypatch.setattr(error_analysis_module, "ERROR_STAT_ROWS", 300)
    sampled = error_analysis(frame, FEATURES, y, scores, predicted, threshold)
    counts = sampled["counts"]
    assert sampled["described"] == {g: min(n, 300) for g, n in counts.items()}
    assert counts["tn"] > 300 and whole["described"] == counts
    note = next(s for s in sampled["sentences"] if "random sample" in s)
    assert f"{counts['tn']:,} true negatives" in note and "300 rows" in note
    assert not any("random sample" in s for s in whole["sentences"])
    assert "(medians and means of 300-row samples of the true negatives)" in _errors_section(
        sampled
    )
    assert "-row samples" not in _errors_section(whole)
    full = pd.DataFrame(whole["false_negatives"]["features"]).set_index("feature")
    part = pd.DataFrame(sampled["false_negatives"]["features"]).set_index("feature")
    # the true negatives' spend: a sample's median near the whole group's, not equal to it
    median = part.loc["spend_total", "median tn"]
    assert median != full.loc["spend_total", "median tn"]
    assert median == pytest.approx(full.loc["spend_total", "median tn"], rel=0.2)
    # the examples and percentile ranks do not depend on the sample
    assert sampled["false_negatives"]["examples"] == whole["false_negatives"]["examples"]
    assert part["d vs tp"].to_dict() == full["d vs tp"].to_dict()


def test_plots_and_report_are_written(evaluation: Evaluation) -> None:
    out = evaluation.html.parent
    assert set(evaluation.plots) == set(PLOT_FILES)
    for path in evaluation.plots.values():
        assert path.parent == out and path.read_bytes().startswith(b"\x89PNG")
    text = evaluation.html.read_text()
    assert evaluation.html == out / HTML_FILE
    for section in (
        "Metrics",
        "Comparison with baselines",
        "ROC and precision-recall",
        "Gains and lift",
        "Calibration",
        "Confusion matrix",
        "Slices",
        "False positives and false negatives",
    ):
        assert f"<h2>{section}</h2>" in text
    assert "recency heuristic" in text and "coin flip" in text
    assert text.count("data:image/png;base64,") == len(PLOT_FILES)
    assert "background: #fde0dd" in text  # the flagged slice is highlighted
    assert "c0" in text  # customer ids of the error examples


def test_summary_is_plain_json(evaluation: Evaluation, tmp_path: Path) -> None:
    written = json.loads((evaluation.html.parent / JSON_FILE).read_text())
    text = json.dumps(evaluation.to_dict(), allow_nan=False)
    assert json.loads(text) == written
    assert "roc" not in written and written["threshold"] == evaluation.threshold
    assert written["confusion"] == evaluation.confusion
    assert len(written["slices"]) == len(evaluation.slices)
    assert written["baselines"]["recency heuristic"]["brier"] is None  # scores outside [0, 1]
    path = evaluation.write_json(tmp_path / "sub" / "summary.json")
    assert json.loads(path.read_text()) == written


def _with_nan(scores: np.ndarray) -> np.ndarray:
    return np.where(np.arange(len(scores)) == 5, np.nan, scores)


@pytest.mark.parametrize(
    ("spoil", "message"), [(lambda s: s[:3], "3 scores for"), (_with_nan, "NaN")]
)
def test_bad_scores_are_refused_before_anything_is_written(
    scored: tuple[pd.DataFrame, np.ndarray],
    settings: Settings,
    tmp_path: Path,
    spoil,
    message: str,
) -> None:
    frame, scores = scored
    with pytest.raises(ValueError, match=message):
        evaluate_model(None, frame, FEATURES, LABEL, settings, tmp_path, scores=spoil(scores))
    assert not any(tmp_path.iterdir())


def test_unlabelled_rows_are_refused(
    scored: tuple[pd.DataFrame, np.ndarray], settings: Settings, tmp_path: Path
) -> None:
    frame, scores = scored
    unlabelled = frame.astype({LABEL: float})
    unlabelled.loc[3, LABEL] = np.nan
    with pytest.raises(ValueError, match="missing values"):
        evaluate_model(None, unlabelled, FEATURES, LABEL, settings, tmp_path, scores=scores)
    with pytest.raises(ValueError, match="lacks columns"):
        evaluate_model(None, frame, [*FEATURES, "nope"], LABEL, settings, tmp_path, scores=scores)
    assert not any(tmp_path.iterdir())
