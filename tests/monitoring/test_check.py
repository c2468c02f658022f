"""`run_check` end to end: a champion with its reference in a real MLflow store, the payload
log written to the serving contract, the decisions log, the alert webhook (a real HTTP
server on loopback) and the KFP trigger (the KFP API double); failures start nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlstack.config import Settings
from mlstack.monitoring import MonitoringError
from mlstack.monitoring.check import check_step, run_check
from mlstack.monitoring.decisions import read_log
from mlstack.steps.results import DriftChecked
from pipelines.run import compile_training
from tests.monitoring.helpers import register_champion, write_payloads
from tests.support.kfp_double import serve_kfp

NOW = datetime.now(UTC) + timedelta(hours=1)  # after the champion is registered


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.component
def test_missing_reference_and_empty_window(project: Callable[..., Settings]) -> None:
    settings = project()
    with pytest.raises(MonitoringError, match=r"missing reference: .* has no champion yet"):
        run_check(settings, now=NOW)
    register_champion(settings)
    with pytest.raises(MonitoringError, match="empty window: no payloads rows"):
        run_check(settings, now=NOW)
    assert read_log(settings) == []  # nothing decided, nothing recorded


@pytest.mark.integration
def test_drifted_payloads_retrain_once_per_window_and_alert(
    project: Callable[..., Settings], webhook: tuple[str, list[dict]], tmp_path: Path
) -> None:
    url, received = webhook
    with serve_kfp() as kfp_api:
        settings = project(
            "mode=cluster",
            f"kfp.host={kfp_api.url}",
            f"kfp.token_path={tmp_path / 'none'}",
            f"kfp.package_path={tmp_path / 'dist' / 'training.yaml'}",
            "monitoring.policy.min_days_between_retrains=0",
            f"monitoring.alert_webhook={url}",
        )
        compile_training(settings, tmp_path / "dist")
        version, model = register_champion(settings)
        write_payloads(settings, model, shift=0.0, when=NOW - timedelta(days=2), rows=800)
        quiet = run_check(settings, now=NOW)
        assert quiet.decision.action == "none", quiet.decision.reasons
        assert quiet.model["model_version"] == version
        assert Path(quiet.window["report"]).read_text().lower().count("drift") > 10
        assert kfp_api.objects["runs"] == {} and received == []
        settings.monitoring.html_report = False  # one Evidently report is enough here

        write_payloads(settings, model, shift=0.6, when=NOW - timedelta(days=1), rows=1500)
        drifted = run_check(settings, now=NOW)
        assert drifted.decision.action == "retrain"
        assert drifted.window["run"]["started"] is True
        (run,) = kfp_api.objects["runs"].values()
        assert run["display_name"].endswith(drifted.window["id"])
        # the same window checked again (a retried CronJob, later the same UTC day: the
        # window is named by its dates) starts no second run
        retry_at = min(NOW + timedelta(hours=1), NOW.replace(hour=23, minute=59, second=59))
        again = run_check(settings, now=retry_at)
        assert again.window["run"] == {**drifted.window["run"], "started": False}
        assert len(kfp_api.objects["runs"]) == 1

    log = read_log(settings)
    assert [e["action"] for e in log] == ["none", "retrain", "retrain"]
    assert any("features drifted" in r for r in log[1]["reasons"])
    assert len(received) == 2 and received[0]["action"] == "retrain"
    assert received[0]["window"]["id"] == drifted.window["id"]
    summary = json.loads(
        (settings.artifacts_dir / "monitoring" / drifted.window["id"] / "summary.json").read_text()
    )
    assert summary["decision"]["action"] == "retrain"


@pytest.mark.component
def test_unreachable_kfp_records_nothing(project: Callable[..., Settings], tmp_path: Path) -> None:
    settings = project(
        "mode=cluster",
        "kfp.host=http://127.0.0.1:9",
        f"kfp.token_path={tmp_path / 'none'}",
        f"kfp.package_path={tmp_path / 'dist' / 'training.yaml'}",
        "monitoring.policy.min_days_between_retrains=0",
        "monitoring.html_report=false",
    )
    compile_training(settings, tmp_path / "dist")
    _, model = register_champion(settings)
    write_payloads(settings, model, shift=0.6, when=NOW - timedelta(days=1), rows=1500)
    with pytest.raises(MonitoringError, match="unreachable"):
        run_check(settings, now=NOW)
    assert read_log(settings) == []


@pytest.mark.component
def test_cli_drift_names_the_problem(project: Callable[..., Settings], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlstack.cli import app

    project()
    args = ["--config", str(tmp_path / "configs" / "cdnow.yaml"), "--set", f"root={tmp_path}"]
    result = CliRunner().invoke(app, [*args, "drift", "--no-trigger"])
    assert result.exit_code == 1
    assert "error: missing reference" in result.output
    assert "has no champion yet" in result.output


@pytest.mark.component
def test_snapshot_source_with_matured_labels(project: Callable[..., Settings]) -> None:
    """`source: snapshots`: the newest feature snapshot in the window, scored by the champion,
    and the realised performance of the snapshot whose labels matured (from the log)."""
    from mlstack.data.ingest import normalise, read_source
    from mlstack.features import store
    from mlstack.features.build import build_features

    settings = project(
        "monitoring.source=snapshots",
        "monitoring.html_report=false",
    )
    transactions = normalise(read_source(settings.source), settings.source)
    store.write_source(build_features(transactions, settings), settings)
    register_champion(settings)
    result = run_check(settings, now=datetime(1998, 3, 1, tzinfo=UTC), trigger=False)
    assert result.window["source"] == "snapshots"
    assert result.window["rows"] > 500  # the customers of the newest snapshot, 1998-02-27
    # the snapshot one horizon earlier (1998-01-30) has matured labels, from the log
    assert result.performance is not None
    assert 0 < result.performance["pr_auc"] <= 1
    assert result.performance["rows"] > 500
    assert read_log(settings)[-1]["performance"]["pr_auc"] == result.performance["pr_auc"]
    # calendar features are the same for every customer of a snapshot: not tested, not dead
    tested = {c.column for c in result.features}
    assert "days_to_next_peak" not in tested and "recency_days" in tested
    assert not any(r.startswith("dead") for r in result.decision.reasons)


@pytest.mark.component
def test_the_pipeline_step_decides_and_leaves_the_retrain_to_the_pipeline(
    project: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = project("monitoring.policy.min_days_between_retrains=0")
    _, model = register_champion(settings)
    write_payloads(settings, model, shift=0.6, when=NOW - timedelta(days=1), rows=1500)
    result = check_step(settings, tmp_path / "out" / "report.html")
    assert isinstance(result, DriftChecked)
    assert result.action == "retrain" and any("features drifted" in r for r in result.reasons)
    assert 0 < result.metrics["drifted_share"] <= 1
    (entry,) = read_log(settings)
    assert entry["window"]["id"] == result.window_id
    assert "run" not in entry["window"], "the step starts no run: the pipeline's next step does"
    assert "drift" in (tmp_path / "out" / "report.html").read_text().lower()
