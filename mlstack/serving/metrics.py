"""Prometheus metrics of the model server, served on `/metrics` next to KServe's own."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter(
    "mlstack_requests_total", "Prediction requests by protocol and outcome", ["protocol", "outcome"]
)
INSTANCES = Counter("mlstack_instances_total", "Instances scored", ["protocol"])
LATENCY = Histogram(
    "mlstack_request_seconds",
    "Prediction request latency inside the server (parse to response)",
    ["protocol"],
    buckets=LATENCY_BUCKETS,
)
PROTOCOLS = ("v1", "v2")
# children bound once: a label lookup per request costs more than the count itself
ANSWERED_BY_PROTOCOL = {p: REQUESTS.labels(protocol=p, outcome="ok") for p in PROTOCOLS}
LATENCY_BY_PROTOCOL = {p: LATENCY.labels(protocol=p) for p in PROTOCOLS}
INSTANCES_BY_PROTOCOL = {p: INSTANCES.labels(protocol=p) for p in PROTOCOLS}
ERRORS = Counter("mlstack_errors_total", "Errors by kind", ["kind"])
FEATURE_LOOKUP = Histogram(
    "mlstack_feature_lookup_seconds",
    "Feast online feature lookup latency per request",
    buckets=LATENCY_BUCKETS,
)
UNKNOWN_CUSTOMERS = Counter(
    "mlstack_unknown_customers_total", "Customer ids without online features"
)
MODEL_VERSION = Gauge(
    "mlstack_model_version_info", "1 for the model version being served", ["model", "version"]
)
PAYLOAD_ROWS_DROPPED = Counter(
    "mlstack_payload_rows_dropped_total",
    "Payload rows not logged because the buffer was full (the sink down or slow)",
)
PAYLOAD_WRITE_ERRORS = Counter(
    "mlstack_payload_write_errors_total", "Failed payload log writes (the rows are retried)"
)
PAYLOAD_BUFFERED_ROWS = Gauge("mlstack_payload_buffered_rows", "Payload rows waiting to be written")
RELOADS = Counter("mlstack_model_reloads_total", "Hot reload attempts by outcome", ["outcome"])


def set_model_version(model: str, version: str, previous: str | None) -> None:
    """Mark `version` as served (and `previous`, if any, as no longer served)."""
    if previous is not None and previous != version:
        MODEL_VERSION.labels(model=model, version=previous).set(0)
    MODEL_VERSION.labels(model=model, version=version).set(1)
