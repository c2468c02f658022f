"""The repository's paths the tests read: its root (the one place it is computed), the
bundled data and the bundled config."""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
BUNDLED = PROJECT / "data" / "cdnow_master.txt.gz"
CONFIG = PROJECT / "configs" / "cdnow.yaml"
