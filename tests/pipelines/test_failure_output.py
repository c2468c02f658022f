"""What a person sees when `mlstack run` stops at a failed step: the real command, run as a
user runs it, on a CDNOW sample with purchases dated in the future."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from mlstack.config import Settings

pytestmark = [pytest.mark.component, pytest.mark.slow]


def mlstack_run(root: Path, source: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`mlstack ... run` in `root` on `source`, stdout and stderr as the terminal shows them."""
    command = [
        sys.executable,
        "-m",
        "mlstack.cli",
        "--config",
        str(root / "configs" / "cdnow.yaml"),
        "--set",
        f"root={root}",
        "--set",
        f"source.uri={source}",
        "--set",
        "validation.min_rows=100",
        "run",
        *options,
    ]
    return subprocess.run(
        command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300
    )


@pytest.fixture
def future_purchases(project, tmp_path: Path) -> tuple[Settings, Path]:
    """The project's CDNOW sample and two purchases dated 2099, which
    `timestamp_out_of_range` (whose policy in the config is stop) rejects."""
    settings: Settings = project()
    bad = tmp_path / "future.txt.gz"
    with gzip.open(settings.source.uri, "rt") as src, gzip.open(bad, "wt") as out:
        out.write(src.read())
        out.write("00999 20990101 1 10.00\n00998 20990201 2 24.00\n")
    return settings, bad


def test_a_failed_validation_ends_with_one_readable_block(future_purchases) -> None:
    settings, bad = future_purchases

    done = mlstack_run(settings.root, bad)

    assert done.returncode == 1
    assert "Traceback" not in done.stdout
    assert "step validate: started" in done.stdout  # the step logs still stream
    *_, headline, cause, report, setting, hint = done.stdout.rstrip().splitlines()
    assert headline == "error: step 'validate' failed"
    assert cause.startswith("  timestamp_out_of_range: 2 rows: timestamps outside 1990-01-01..")
    assert "timestamp=2099-01-01" in cause
    page = Path(report.removeprefix("  report:  "))
    assert page.is_file() and page.name == "validation.html"
    assert page.is_relative_to(settings.reports_dir)
    assert setting == (
        "  setting: validation.policies.timestamp_out_of_range: stop | drop | keep (now stop)"
    )
    assert "--verbose" in hint
    record = settings.artifacts_dir / "runs" / "last-failure.json"
    assert record.is_file()

    verbose = mlstack_run(settings.root, bad, "--verbose")

    assert verbose.returncode == 1
    # the step's own traceback, streamed with its logs, and the runner's
    assert verbose.stdout.count("Traceback (most recent call last)") == 2
    assert "DataValidationError" in verbose.stdout
    assert verbose.stdout.rstrip().splitlines()[-4:] == done.stdout.rstrip().splitlines()[-5:-1]
