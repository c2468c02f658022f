"""Cluster deployment: InferenceService specs, KFP runs, rollout, promote and rollback."""
