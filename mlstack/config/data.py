"""Settings of the data: the source log and its columns, the cleaning rules, the features and
the feature store."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mlstack.config.base import Section, compiles


class ColumnMapping(Section):
    """Source column names for each canonical column; optional ones may be left out.

    Mapping `invoice_id` makes an order an invoice rather than a (customer, day);
    `product_id` adds product-variety features; `country` and the `categoricals` are
    customer attributes (their value on the customer's latest purchase) that the evaluation
    slices by and the drift checks test as categories.
    """

    customer_id: str
    timestamp: str
    amount: str | None = None
    quantity: str | None = None
    unit_price: str | None = None
    invoice_id: str | None = None
    product_id: str | None = None
    country: str | None = None
    categoricals: dict[str, str] = Field(
        default_factory=dict, description="more categorical attributes: canonical name: column"
    )

    @model_validator(mode="after")
    def _amount_is_derivable(self) -> ColumnMapping:
        if self.amount is None and not (self.quantity and self.unit_price):
            raise ValueError("map `amount`, or both `quantity` and `unit_price` to compute it")
        taken = set(type(self).model_fields) - {"categoricals"}
        clash = sorted(taken & set(self.categoricals))
        if clash:
            raise ValueError(f"categoricals {clash} reuse canonical column names; rename them")
        return self

    def attributes(self) -> dict[str, str]:
        """Canonical name → source column of every categorical attribute (country first)."""
        named = {"country": self.country} if self.country else {}
        return {**named, **self.categoricals}


class SourceSettings(Section):
    """Where the raw transaction log is and how to parse it."""

    uri: str = "data/cdnow_master.txt.gz"
    format: Literal["csv", "parquet"] = "csv"
    delimiter: str = Field(",", description="CSV delimiter; a regex such as '\\s+' is allowed")
    timestamp_format: str | None = Field(None, description="strftime format, e.g. %Y%m%d")
    columns: ColumnMapping = ColumnMapping(
        customer_id="customer_id", timestamp="date", amount="dollar_value", quantity="number_of_cds"
    )
    return_invoice_pattern: str | None = Field(
        None,
        description="a regex matched at the start of invoice_id that marks a return (e.g. "
        "'C' for cancellations); negative quantities and amounts mark returns anyway",
    )
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("return_invoice_pattern")
    @classmethod
    def _patterncompiles(cls, value: str | None) -> str | None:
        return compiles(value, "source.return_invoice_pattern")


class Policy(StrEnum):
    """What a cleaning rule does with the rows that break it."""

    stop = "stop"  # fail validation: nothing downstream runs
    drop = "drop"  # remove them, counted by reason in the report and the run summary
    keep = "keep"  # keep them and report a warning


# rule -> the policies it accepts; rows that cannot be attributed or read cannot be kept
RULE_POLICIES: dict[str, tuple[Policy, ...]] = {
    "missing_customer_id": (Policy.stop, Policy.drop),
    "unparseable_timestamp": (Policy.stop, Policy.drop),
    "unparseable_amount": (Policy.stop, Policy.drop),
    "excluded_customer": (Policy.stop, Policy.drop, Policy.keep),
    "exact_duplicate": (Policy.stop, Policy.drop, Policy.keep),
    "timestamp_out_of_range": (Policy.stop, Policy.drop, Policy.keep),
    "zero_amount": (Policy.stop, Policy.drop, Policy.keep),
}


class ValidationSettings(Section):
    """The cleaning rules, each with a policy, and the limits that stop a run."""

    min_rows: int = Field(1000, ge=0, description="rows left after cleaning, at least")
    max_dropped_share: float = Field(
        0.5, ge=0, le=1, description="stop when cleaning drops more than this share of rows"
    )
    earliest_timestamp: date = date(1990, 1, 1)
    latest_timestamp: date | None = Field(None, description="defaults to today")
    excluded_customers: str | None = Field(
        None, description="a regex; customer ids it matches in full are internal or test accounts"
    )
    policies: dict[str, Policy] = Field(
        default_factory=lambda: {
            "missing_customer_id": Policy.drop,
            "unparseable_timestamp": Policy.stop,
            "unparseable_amount": Policy.stop,
            "excluded_customer": Policy.drop,
            "exact_duplicate": Policy.drop,
            "timestamp_out_of_range": Policy.stop,
            "zero_amount": Policy.keep,
        }
    )

    @model_validator(mode="before")
    @classmethod
    def _no_severities(cls, data: Any) -> Any:
        if isinstance(data, dict) and "severities" in data:
            raise ValueError(
                "validation.severities was replaced by validation.policies (stop, drop or keep "
                f"per rule; rules: {', '.join(RULE_POLICIES)})"
            )
        return data

    @field_validator("policies", mode="after")
    @classmethod
    def _policies_fit_rules(cls, value: dict[str, Policy]) -> dict[str, Policy]:
        defaults = cls.model_fields["policies"].default_factory()  # type: ignore[misc]
        merged = {**defaults, **value}
        for rule, policy in merged.items():
            if rule not in RULE_POLICIES:
                raise ValueError(
                    f"validation.policies.{rule}: no such rule; rules: {', '.join(RULE_POLICIES)}"
                )
            if policy not in RULE_POLICIES[rule]:
                allowed = " or ".join(RULE_POLICIES[rule])
                raise ValueError(f"validation.policies.{rule}={policy}: must be {allowed}")
        return merged

    @field_validator("excluded_customers")
    @classmethod
    def _excludedcompiles(cls, value: str | None) -> str | None:
        return compiles(value, "validation.excluded_customers")


class Peak(Section):
    name: str
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)


class FeatureSettings(Section):
    """Snapshot grid, windows and label definition."""

    snapshot_frequency_days: int = Field(7, ge=1)
    first_snapshot: date | None = Field(None, description="defaults to first purchase + 1 window")
    windows_days: list[int] = Field(default_factory=lambda: [30, 90, 180, 365])
    trend_window_days: int = 90
    horizon_days: int = Field(30, ge=1)
    return_features: bool = Field(
        False, description="add returns_total and return_value_share (logs with returns)"
    )
    shards: int = Field(
        1,
        ge=1,
        description="customer shards: a stable hash of the customer id (blake2b, "
        "`mlstack.features.shards`) picks each customer's shard; feature building, labelling "
        "and the training set's Feast join run per shard (processes locally, one per core; "
        "pods through dsl.ParallelFor on a cluster) and the offline source is a Parquet "
        "dataset partitioned by shard. 1: one table, one process (the results are the same)",
    )
    peaks: list[Peak] = Field(
        default_factory=lambda: [
            Peak(name="valentines", month=2, day=14),
            Peak(name="mothers_day", month=5, day=10),
            Peak(name="back_to_school", month=9, day=1),
            Peak(name="black_friday", month=11, day=27),
            Peak(name="christmas", month=12, day=25),
        ]
    )


class FeastSettings(Section):
    """The Feast repo and the names that training and serving share."""

    repo_path: Path = Path("feature_repo")
    config_file: str = "feature_store.yaml"
    feature_service: str = "customer_propensity_v1"
    entity_key: str = "customer_id"
    data_dir: Path | None = Field(
        None,
        description="the folder DuckDB reads the offline source from (default: <repo>/data); "
        "with a remote `state_uri` a pod-local copy of the state store's offline data",
    )
    registry: str | None = Field(
        None, description="the registry (a path or s3:// URI); none: the Feast config file's"
    )
    redis: str | None = Field(
        None,
        description="Feast's Redis connection string (host:port[,password=...]); none: the "
        "Feast config file's",
    )
