"""Baselines, candidates, training, evaluation and the promotion gate."""
