"""The outcome of an evaluation and its JSON summary."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlstack.reports.page import write_file


@dataclass
class Evaluation:
    """The outcome of `evaluate_model`; `to_dict` is the JSON summary without the curves."""

    name: str
    metrics: dict[str, float]
    roc: dict[str, list[float]]
    confusion: dict[str, Any]
    threshold: float
    slices: pd.DataFrame
    bias_findings: list[str]
    errors: dict[str, Any]
    plots: dict[str, Path]
    html: Path
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "name": self.name,
                "metrics": self.metrics,
                "threshold": self.threshold,
                "confusion": self.confusion,
                "baselines": self.baselines,
                "slices": self.slices.to_dict("records"),
                "bias_findings": self.bias_findings,
                "errors": self.errors,
                "plots": {k: str(v) for k, v in self.plots.items()},
                "html": str(self.html),
            }
        )

    def write_json(self, path: Path) -> Path:
        return write_file(path, json.dumps(self.to_dict(), indent=2))


def jsonable(value: Any) -> Any:
    """Plain JSON types: NaN and infinities become None, numpy and pandas scalars unwrap."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
