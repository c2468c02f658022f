"""The canary's health, and the verdict of the automatic rollback rule (`deploy.rollback`).

Read from Prometheus' query API over the rule's window when `deploy.prometheus_url` is set,
else from the predictor's own /metrics endpoint (`deploy.metrics_url`): the request counter
by outcome and the latency histogram the server exports (`mlstack.deploy.names`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

from mlstack.config.operations import DeploySettings
from mlstack.deploy.errors import RolloutError
from mlstack.deploy.names import LATENCY_METRIC, REQUESTS_METRIC

HTTP_TIMEOUT = 10


@dataclass(frozen=True)
class Health:
    """The canary's traffic, errors and p99 latency, and the verdict of the rollback rule."""

    requests: float
    errors: float
    p99_seconds: float | None
    source: str
    breaches: tuple[str, ...] = ()
    judged: bool = True
    note: str = ""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def summary(self) -> str:
        p99 = f"{self.p99_seconds * 1000:.0f} ms" if self.p99_seconds is not None else "n/a"
        return (
            f"{self.requests:.0f} requests, error rate {self.error_rate:.2%}, p99 {p99} "
            f"(from {self.source})"
        )


def _judge(
    deploy: DeploySettings, requests_: float, errors: float, p99: float | None, source: str
) -> Health:
    rule = deploy.rollback
    if requests_ < rule.min_requests:
        return Health(requests_, errors, p99, source, judged=False)
    breaches = []
    rate = errors / requests_
    if rate > rule.max_error_rate:
        breaches.append(f"error rate {rate:.2%} > limit {rule.max_error_rate:.2%}")
    if p99 is not None and p99 > rule.max_p99_seconds:
        breaches.append(
            f"p99 latency {p99 * 1000:.0f} ms > limit {rule.max_p99_seconds * 1000:.0f} ms"
        )
    return Health(requests_, errors, p99, source, tuple(breaches))


def quantile_from_buckets(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of a cumulative histogram [(upper bound, count)], as Prometheus'
    `histogram_quantile` estimates it (linear within a bucket; the top finite bound if the
    quantile falls in +Inf)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def health_from_metrics_text(deploy: DeploySettings, text: str, source: str) -> Health:
    """Judge the canary from a Prometheus text exposition (the predictor's /metrics)."""
    error_outcomes = set(deploy.rollback.error_outcomes)
    total = errors = 0.0
    buckets: dict[float, float] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as err:
        raise RolloutError(f"{source} did not return Prometheus metrics: {err}") from err
    for family in families:
        for sample in family.samples:
            if sample.name == f"{REQUESTS_METRIC}_total":
                total += sample.value
                if sample.labels.get("outcome") in error_outcomes:
                    errors += sample.value
            elif sample.name == f"{LATENCY_METRIC}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    if not any(f.name == REQUESTS_METRIC for f in families):
        raise RolloutError(f"{source} has no {REQUESTS_METRIC}_total: is it the mlstack predictor?")
    return _judge(deploy, total, errors, quantile_from_buckets(0.99, list(buckets.items())), source)


def _prom_query(base: str, query: str) -> float | None:
    url = base.rstrip("/") + "/api/v1/query"
    try:
        response = requests.get(url, params={"query": query}, timeout=HTTP_TIMEOUT)
        body = response.json()
    except (requests.RequestException, ValueError) as err:
        raise RolloutError(f"Prometheus query at {url} failed: {err}") from err
    if response.status_code != 200 or body.get("status") != "success":
        raise RolloutError(
            f"Prometheus query at {url} failed: HTTP {response.status_code}: "
            f"{body.get('error', body)}"
        )
    result = body["data"]["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if value != value else value  # NaN: no data


def health_from_prometheus(deploy: DeploySettings) -> Health:
    """Judge the canary from Prometheus' query API over `deploy.rollback.window`."""
    cfg = deploy
    sel, window = cfg.prometheus_selector, cfg.rollback.window
    outcomes = "|".join(re.escape(o) for o in cfg.rollback.error_outcomes)
    total = _prom_query(
        cfg.prometheus_url, f"sum(increase({REQUESTS_METRIC}_total{{{sel}}}[{window}]))"
    )
    errors = _prom_query(
        cfg.prometheus_url,
        f'sum(increase({REQUESTS_METRIC}_total{{{sel}, outcome=~"{outcomes}"}}[{window}]))',
    )
    p99 = _prom_query(
        cfg.prometheus_url,
        f"histogram_quantile(0.99, sum by (le) (rate({LATENCY_METRIC}_bucket{{{sel}}}[{window}])))",
    )
    return _judge(deploy, total or 0.0, errors or 0.0, p99, f"Prometheus {cfg.prometheus_url}")


def canary_health(deploy: DeploySettings) -> Health:
    """The canary's health from Prometheus if configured, else from its /metrics endpoint."""
    cfg = deploy
    if cfg.prometheus_url:
        return health_from_prometheus(deploy)
    if cfg.metrics_url:
        try:
            response = requests.get(cfg.metrics_url, timeout=HTTP_TIMEOUT)
        except requests.RequestException as err:
            raise RolloutError(f"cannot read canary metrics at {cfg.metrics_url}: {err}") from err
        if response.status_code != 200:
            raise RolloutError(
                f"cannot read canary metrics at {cfg.metrics_url}: HTTP {response.status_code}"
            )
        return health_from_metrics_text(deploy, response.text, cfg.metrics_url)
    raise RolloutError("set deploy.prometheus_url or deploy.metrics_url to judge the canary")
