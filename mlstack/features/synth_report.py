"""How far a synthetic log (`mlstack synth`) is from CDNOW: the label rate side by side, and
each feature's distribution as the two-sample Kolmogorov-Smirnov statistic (scipy's
``ks_2samp``: the largest gap between the two empirical distribution functions, 0 for the
same distribution, 1 for disjoint ones).

Both logs go through the pipeline's own cleaning rules, `build_features` and `build_labels`
with the config's feature settings; the comparison is over the labelled (customer,
snapshot) rows, the rows a model trains on. A log of more customers than CDNOW is compared
on a seeded sample of as many customers as CDNOW has (the report says so): like for like,
and the report's time and memory stay flat at any scale.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from mlstack.config import Settings
from mlstack.data.clean import clean
from mlstack.data.resample import Purchases, Synthetic, cdnow_source
from mlstack.data.synth import stage
from mlstack.features.build import build_features, build_labels
from mlstack.features.definitions import feature_list, label_name

logger = logging.getLogger(__name__)

REPORT_FILE = "synth_report.json"
SHOWN = 8  # features in the printed table, the farthest first


@dataclass(frozen=True)
class FeatureDistance:
    """One feature on CDNOW and on the synthetic log."""

    name: str
    ks: float  # on the values that are not missing
    cdnow_mean: float
    synthetic_mean: float
    cdnow_missing: float  # share of rows
    synthetic_missing: float


@dataclass(frozen=True)
class SynthReport:
    """The label rates and the feature distances of a synthetic log against CDNOW."""

    customers: int  # synthetic customers in the log
    compared_customers: int  # synthetic customers compared (a seeded sample, or all)
    seed: int
    label: str
    cdnow_label_rate: float
    synthetic_label_rate: float
    cdnow_rows: int  # labelled (customer, snapshot) rows
    synthetic_rows: int
    features: list[FeatureDistance] = field(default_factory=list)

    @property
    def label_rate_gap(self) -> float:
        return self.synthetic_label_rate - self.cdnow_label_rate

    @property
    def worst(self) -> FeatureDistance:
        return max(self.features, key=lambda f: f.ks)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["label_rate_gap"] = self.label_rate_gap
        out["worst_feature"] = {"name": self.worst.name, "ks": self.worst.ks}
        return out

    def write_json(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def table(self) -> str:
        """The report as a few lines a person reads."""
        sampled = (
            f"a seeded sample of {self.compared_customers:,} of the {self.customers:,}"
            if self.compared_customers < self.customers
            else f"all {self.customers:,}"
        )
        lines = [
            f"synthetic vs CDNOW, on {sampled} synthetic customers "
            f"({self.synthetic_rows:,} vs {self.cdnow_rows:,} labelled snapshot rows):",
            f"  label rate ({self.label}): CDNOW {self.cdnow_label_rate:.4f}, "
            f"synthetic {self.synthetic_label_rate:.4f}, gap {self.label_rate_gap:+.4f}",
            "  feature distributions (KS: largest gap between the two CDFs, 0 = same):",
            f"  {'feature':<24} {'KS':>6} {'mean CDNOW':>12} {'mean synth':>12}",
        ]
        ranked = sorted(self.features, key=lambda f: -f.ks)
        for f in ranked[:SHOWN]:
            lines.append(
                f"  {f.name:<24} {f.ks:>6.3f} {f.cdnow_mean:>12.2f} {f.synthetic_mean:>12.2f}"
            )
        if len(ranked) > SHOWN:
            lines.append(
                f"  ... {len(ranked) - SHOWN} more features at KS <= {ranked[SHOWN].ks:.3f}"
                f" (all in {REPORT_FILE})"
            )
        return "\n".join(lines)


def labelled_rows(purchases: Purchases, settings: Settings) -> pd.DataFrame:
    """The labelled feature rows of a log, as the pipeline makes them."""
    cleaned = clean(purchases.frame(), settings.validation, settings.source).frame
    return build_labels(cleaned, build_features(cleaned, settings), settings)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sided KS statistic, as the larger of the two one-sided ones: the two-sided
    p-value ``ks_2samp`` computes along (Kolmogorov's exact distribution) takes seconds
    per feature at a million rows, the one-sided ones a closed form."""
    if not (len(a) and len(b)):
        return float("nan")
    return max(float(ks_2samp(a, b, alternative=side).statistic) for side in ("less", "greater"))


def distance(name: str, cdnow: pd.Series, synthetic: pd.Series) -> FeatureDistance:
    """One feature's KS statistic, means and missing shares (KS and means over values)."""
    a, b = cdnow.dropna().to_numpy(float), synthetic.dropna().to_numpy(float)
    ks = ks_statistic(a, b)
    return FeatureDistance(
        name=name,
        ks=ks,
        cdnow_mean=float(a.mean()) if len(a) else float("nan"),
        synthetic_mean=float(b.mean()) if len(b) else float("nan"),
        cdnow_missing=float(cdnow.isna().mean()),
        synthetic_missing=float(synthetic.isna().mean()),
    )


def compare(synthetic: Synthetic, settings: Settings, seed: int) -> SynthReport:
    """Compare the synthetic log (a seeded sample of as many customers as CDNOW has, when
    it has more) with the CDNOW log it was drawn from."""
    settings = settings.model_copy(update={"source": cdnow_source("")})  # CDNOW's columns
    label = label_name(settings.features)
    customers, sample = len(synthetic.purchases.ids), len(synthetic.cdnow.ids)
    compared = synthetic.purchases
    if customers > sample:
        rng = np.random.default_rng([seed, 2])
        compared = compared.subset(rng.choice(customers, size=sample, replace=False))
    with stage("report: CDNOW's features and labels", logger):
        cdnow = labelled_rows(synthetic.cdnow, settings)
    with stage(f"report: features and labels of {len(compared.ids):,} synthetic customers", logger):
        synth = labelled_rows(compared, settings)
    with stage("report: distances", logger):
        features = [distance(f.name, cdnow[f.name], synth[f.name]) for f in feature_list(settings)]
    return SynthReport(
        customers=customers,
        compared_customers=len(compared.ids),
        seed=seed,
        label=label,
        cdnow_label_rate=float(cdnow[label].mean()),
        synthetic_label_rate=float(synth[label].mean()),
        cdnow_rows=len(cdnow),
        synthetic_rows=len(synth),
        features=features,
    )
