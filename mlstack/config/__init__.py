"""Typed settings: the one place that reads config files and the environment (`settings`),
in sections by area (`data`, `modelling`, `serving`, `operations`).

The package's names are the ones the rest of mlstack uses; a section's other classes are
imported from its module.
"""

from mlstack.config.data import (
    RULE_POLICIES,
    FeatureSettings,
    Peak,
    Policy,
    SourceSettings,
    ValidationSettings,
)
from mlstack.config.modelling import (
    EvaluationSettings,
    GateSettings,
    ParamSpec,
    SplitSettings,
    TuningSettings,
)
from mlstack.config.operations import (
    CronJobSettings,
    DriftPolicySettings,
    MonitoringSettings,
    PipelineSettings,
)
from mlstack.config.settings import DEFAULT_CONFIG, Settings, load_settings, parse_overrides

__all__ = [
    "DEFAULT_CONFIG",
    "RULE_POLICIES",
    "CronJobSettings",
    "DriftPolicySettings",
    "EvaluationSettings",
    "FeatureSettings",
    "GateSettings",
    "MonitoringSettings",
    "ParamSpec",
    "Peak",
    "PipelineSettings",
    "Policy",
    "Settings",
    "SourceSettings",
    "SplitSettings",
    "TuningSettings",
    "ValidationSettings",
    "load_settings",
    "parse_overrides",
]
