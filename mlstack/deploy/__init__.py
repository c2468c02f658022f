"""Cluster deployment: the chart's values and render (manifests/), KFP runs, rollout,
promote and rollback."""
