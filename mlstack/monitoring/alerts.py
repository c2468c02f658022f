"""Alerts: a JSON POST to the configured webhook, and always a log record (the default sink)."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from mlstack.config import MonitoringSettings

log = logging.getLogger("mlstack.alerts")


def alert_payload(assessment: Any) -> dict[str, Any]:
    """What an alert says: the action, the reasons, the window and the model."""
    return {
        "source": "mlstack drift check",
        "action": assessment.decision.action,
        "reasons": assessment.decision.reasons,
        "drifted_share": round(assessment.drifted_share, 4),
        "window": assessment.window,
        "model": assessment.model,
        "text": f"mlstack drift check: {assessment.decision.action}: "
        + "; ".join(assessment.decision.reasons),
    }


def send(monitoring: MonitoringSettings, assessment: Any) -> bool:
    """Log the alert and POST it to `monitoring.alert_webhook` when set; True when the
    webhook accepted it. A failing webhook is logged as an error, never raised: the
    decision is already recorded."""
    payload = alert_payload(assessment)
    log.warning("ALERT %s", payload["text"])
    url = monitoring.alert_webhook
    if not url:
        return False
    try:
        response = httpx.post(url, json=payload, timeout=monitoring.alert_timeout_seconds)
        response.raise_for_status()
    except httpx.HTTPError as err:
        log.error("alert webhook %s failed: %s", url, err)
        return False
    return True
