"""The error of the deploy operations (rollout, promote, rollback, the canary's health)."""

from __future__ import annotations


class RolloutError(RuntimeError):
    """An operation cannot be done as asked; the message says why and what to do."""
