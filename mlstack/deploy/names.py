"""Names the chart's objects and the Python acting on the live objects must agree on.

The chart (helm/mlstack) writes them into the InferenceService; rollout reads and patches
them there; the server exports the metrics the canary's health is judged by. A chart test
renders the chart and checks it uses these very names, so the two sides cannot drift.
"""

from __future__ import annotations

# the predictor's model container in the InferenceService
PREDICTOR_CONTAINER = "kserve-container"
# where KServe's storage initializer puts the model files given by KSERVE_STORAGE_ENV
MODEL_MOUNT = "/mnt/models"
KSERVE_STORAGE_ENV = "STORAGE_URI"
# the server's model location (serving.storage_uri): a models:/ URI or MODEL_MOUNT
STORAGE_ENV = "MLSTACK_SERVING__STORAGE_URI"
# the predictor's Prometheus endpoint and the metric families the canary is judged by
METRICS_PATH = "/metrics"
REQUESTS_METRIC = "mlstack_requests"
LATENCY_METRIC = "mlstack_request_seconds"
