"""Tuning: one search space, run by Optuna locally or as a Katib Experiment on a cluster.

- ``space``: the search space from ``tuning.space`` as Optuna distributions, samplers and
  pruners, grids, and Katib parameters.
- ``local``: ``run_study``, an Optuna study over an ``objective(params, report)``.
- ``katib``: the Katib Experiment (manifest, trial command line) and ``run_katib``.
"""

from __future__ import annotations

from typing import Any


def format_params(params: dict[str, Any]) -> str:
    """Parameters on one line, numbers to four significant digits (a whole float, as an
    artifact's metadata turns integers into, shows as an integer)."""
    return ", ".join(
        f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in params.items()
    )
