"""checkov's Kubernetes checks on the rendered chart: no failures beyond the justified skips."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from mlstack.deploy.chart import CHART_DIR, objects, render
from tests.deploy.test_chart import VALUE_SETS
from tests.support.paths import PROJECT

CHECKOV = PROJECT / ".venv-checkov" / "bin" / "checkov"
CONFIG = CHART_DIR.parent / ".checkov.yaml"


def _scan(folder: Path) -> dict:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make setup` (it builds the checkov venv)")
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(folder), "--config-file", str(CONFIG), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(proc.stdout)
    return (
        report
        if isinstance(report, dict)
        else {"results": {"failed_checks": [], "passed_checks": []}}
    )


@pytest.mark.component
def test_rendered_chart_passes_checkov(tmp_path: Path) -> None:
    for name, values in VALUE_SETS.items():
        docs = objects(render(values))
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    report = _scan(tmp_path)
    failed = [
        f"{f['check_id']} {f['resource']} ({f['file_path']})"
        for f in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert report["summary"]["passed"] > 400  # the scan saw the objects
    assert report["summary"]["resource_count"] >= 150


@pytest.mark.component
def test_the_scan_fails_on_an_insecure_override(tmp_path: Path) -> None:
    """The same scan flags a container that may escalate, so a pass above means something."""
    docs = objects(render())
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0]["securityContext"][
                "allowPrivilegeEscalation"
            ] = True
    (tmp_path / "insecure.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    failed = {f["check_id"] for f in _scan(tmp_path)["results"]["failed_checks"]}
    assert "CKV_K8S_20" in failed


@pytest.mark.unit
def test_every_skip_is_justified() -> None:
    text = CONFIG.read_text()
    skips = yaml.safe_load(text)["skip-check"]
    assert 0 < len(skips) <= 5
    lines = text.splitlines()
    for check_id in skips:
        (i,) = [n for n, line in enumerate(lines) if re.fullmatch(rf"\s*- {check_id}", line)]
        assert lines[i - 1].strip().startswith("#") and len(lines[i - 1]) > 40, check_id
