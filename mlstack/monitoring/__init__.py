"""Monitoring: drift checks against the training reference, the retraining policy, the
decisions log, alerts, the retraining trigger and the replay of the data's timeline."""


class MonitoringError(RuntimeError):
    """A drift check cannot run (no reference, an empty window, an unreachable KFP ...);
    the message names the problem, and nothing was started."""
