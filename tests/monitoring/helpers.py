"""Synthetic reference and window frames with the model's feature columns; a champion with
its reference in MLflow, and payload parts to the serving contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlstack.config import Settings
from mlstack.features.definitions import feature_list, feature_names
from mlstack.models.candidates import make_model
from mlstack.monitoring.drift import PREDICTION
from mlstack.registry import models, tracking
from mlstack.registry.reference import build_reference, log_reference


def feature_frame(settings: Settings, rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Every feature column: counts for int features, log-normal amounts for floats, a few
    missing values; `shift` moves every distribution by that many of its stds."""
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for i, feature in enumerate(feature_list(settings)):
        if feature.kind == "int":
            values = rng.poisson(3 + i % 5, rows).astype(float)
            values += shift * np.sqrt(3 + i % 5)
            data[feature.name] = np.round(values).astype(np.int64)
        else:
            values = rng.lognormal(1.0 + 0.1 * i, 0.5, rows)
            values = values + shift * values.std()
            values[rng.random(rows) < 0.02] = np.nan
            data[feature.name] = values
    frame = pd.DataFrame(data)
    frame[PREDICTION] = np.clip(rng.beta(2, 5, rows) + 0.3 * shift, 0, 1)
    return frame


def register_champion(settings: Settings) -> tuple[str, Any]:
    """Fit a small model on synthetic rows, log it with its reference, make it champion."""
    rows = feature_frame(settings, 3000, seed=11).drop(columns="probability")
    rng = np.random.default_rng(0)
    label = (rng.random(len(rows)) < 1 / (1 + np.exp(-(rows["orders_total"] - 4)))).astype(int)
    features = feature_names(settings)
    model = make_model("gradient_boosting", {"max_iter": 20}, features).fit(rows, label)
    client = tracking.configure(settings.mlflow)
    with tracking.training_run(settings.mlflow, "champion-for-monitoring"):
        info = tracking.log_model(
            model,
            tracking.MODEL_NAME,
            rows[features].head(5),
            registered_model=settings.mlflow.registered_model,
        )
        log_reference(build_reference(model, rows, settings, {"pr_auc": 0.6}))
    version = models.register(client, settings.mlflow, info.model_uri, metrics={"pr_auc": 0.6})
    models.promote(client, settings.mlflow, version.version, "test champion")
    return str(version.version), model


def write_payloads(settings: Settings, model, shift: float, when: datetime, rows: int) -> Path:
    """One payload part per the serving contract, logged at `when`: customers "1" to "900"."""
    frame = feature_frame(settings, rows, seed=int(shift * 10) + 21, shift=shift)
    features = feature_names(settings)
    frame = frame[features].astype(float)
    frame["probability"] = model.predict_proba(frame)[:, 1]
    frame.insert(0, "request_id", [str(uuid.uuid4()) for _ in range(rows)])
    frame.insert(1, "logged_at", pd.Timestamp(when))
    frame.insert(2, "model_name", "propensity")
    frame.insert(3, "model_version", "1")
    frame.insert(4, "customer_id", [str(i % 900 + 1) for i in range(rows)])
    frame.insert(5, "features_found", True)
    folder = Path(settings.payload_uri()) / f"date={when:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{uuid.uuid4()}.parquet"
    frame.to_parquet(path, index=False)
    return path
