"""Tuning: one search space, run by Optuna locally or as a Katib Experiment on a cluster.

- ``space``: the search space from ``tuning.space`` as Optuna distributions, samplers and
  pruners, grids, and Katib parameters.
- ``local``: ``run_study``, an Optuna study over an ``objective(params, report)``.
- ``katib``: the Katib Experiment (manifest, trial command line) and ``run_katib``.
"""
