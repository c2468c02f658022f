"""Typed settings: the one place that reads config files and the environment.

Precedence, highest first: explicit overrides (CLI ``--set key=value``), environment variables
(``MLSTACK_FEATURES__HORIZON_DAYS=14``), the YAML config file, the defaults in the section modules.
Relative paths are resolved against the project root (the current directory unless the
config sets ``root``), so the settings handed to a pipeline step are self-contained.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from mlstack.config.data import FeastSettings, FeatureSettings, SourceSettings, ValidationSettings
from mlstack.config.modelling import (
    EvaluationSettings,
    GateSettings,
    KatibSettings,
    MlflowSettings,
    SplitSettings,
    TuningSettings,
)
from mlstack.config.operations import (
    DeploySettings,
    KfpSettings,
    MonitoringSettings,
    PipelineSettings,
)
from mlstack.config.serving import ObjectStoreSettings, ServingSettings

DEFAULT_CONFIG = Path("configs/cdnow.yaml")
ENV_PREFIX = "MLSTACK_"

_yaml_file: ContextVar[Path | None] = ContextVar("mlstack_yaml_file", default=None)


class Settings(BaseSettings):
    """Everything mlstack reads, in one typed tree."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    root: Path = Field(default_factory=Path.cwd)
    artifacts_dir: Path = Path("artifacts")
    mode: Literal["local", "cluster"] = Field(
        "local", description="local: Optuna, KFP local runner; cluster: Katib, kfp.Client"
    )
    cache: bool = Field(True, description="reuse a step's outputs when nothing it reads changed")
    state_uri: str | None = Field(
        None,
        description="where state that outlives a step is kept (the Feast offline data, the "
        "payload log, drift decisions): a folder or an object store prefix "
        "(s3://bucket/prefix); none: artifacts_dir",
    )
    object_store: ObjectStoreSettings = ObjectStoreSettings()
    source: SourceSettings = SourceSettings()
    validation: ValidationSettings = ValidationSettings()
    features: FeatureSettings = FeatureSettings()
    feast: FeastSettings = FeastSettings()
    split: SplitSettings = SplitSettings()
    tuning: TuningSettings = TuningSettings()
    katib: KatibSettings = KatibSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    gate: GateSettings = GateSettings()
    mlflow: MlflowSettings = MlflowSettings()
    serving: ServingSettings = ServingSettings()
    pipeline: PipelineSettings = PipelineSettings()
    kfp: KfpSettings = KfpSettings()
    deploy: DeploySettings = DeploySettings()
    monitoring: MonitoringSettings = MonitoringSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_file = _yaml_file.get()
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _object_store_endpoint(self) -> Settings:
        """An `s3://` source is read from the configured object store unless its own
        storage options name an endpoint."""
        endpoint = self.object_store.endpoint_url
        options = self.source.storage_options
        if endpoint and self.source.uri.startswith(("s3://", "s3a://")):
            client = options.setdefault("client_kwargs", {})
            client.setdefault("endpoint_url", endpoint)
        return self

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        self.root = self.root.resolve()
        self.artifacts_dir = self.root / self.artifacts_dir
        self.feast.repo_path = self.root / self.feast.repo_path
        if self.feast.data_dir is not None:
            self.feast.data_dir = self.root / self.feast.data_dir
        if self.state_uri is not None and "://" not in self.state_uri:
            self.state_uri = str(self.root / self.state_uri)
        if self.serving.batch_output_dir is not None:
            self.serving.batch_output_dir = self.root / self.serving.batch_output_dir
        payloads = self.serving.payload_dir
        if payloads is not None and "://" not in payloads:
            self.serving.payload_dir = str(self.root / payloads)
        self.kfp.package_path = self.root / self.kfp.package_path
        if "://" not in self.source.uri and not Path(self.source.uri).is_absolute():
            self.source.uri = str(self.root / self.source.uri)
        self.mlflow.tracking_uri = _sqlite_under(self.root, self.mlflow.tracking_uri)
        if not urlparse(self.mlflow.artifact_location).scheme:
            self.mlflow.artifact_location = (self.root / self.mlflow.artifact_location).as_uri()
        return self

    # -- derived locations -------------------------------------------------------------
    def state(self, *parts: str) -> str:
        """A location in the state store (`state_uri`, else `artifacts_dir`)."""
        root = (self.state_uri or str(self.artifacts_dir)).rstrip("/")
        return "/".join([root, *(p.strip("/") for p in parts)])

    def data_dir(self, data_version: str) -> Path:
        return self.artifacts_dir / "data" / data_version

    def features_dir(self, feature_version: str) -> Path:
        return self.artifacts_dir / "features" / feature_version

    def payload_uri(self) -> str:
        """Where the predictor logs served requests and the drift check reads them."""
        return self.serving.payload_dir or self.state("payloads")

    @property
    def reports_dir(self) -> Path:
        return self.artifacts_dir / "reports"

    def to_json(self) -> str:
        """Serialise for a pipeline parameter; `from_json` restores it exactly."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls.model_validate(json.loads(text))


def _sqlite_under(root: Path, uri: str) -> str:
    """Anchor a relative `sqlite:///file.db` URI at the project root."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(root / uri[len(prefix) :])
    return uri


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["features.horizon_days=14", ...]`` into a nested dict; values are YAML scalars."""
    tree: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"override {pair!r} is not of the form section.key=value")
        node = tree
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return tree


def load_settings(
    config: Path | str | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> Settings:
    """Load settings from a YAML file (the bundled default if none), env vars and overrides."""
    path = Path(config) if config is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    init = parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {})
    token = _yaml_file.set(path)
    try:
        return Settings(**init)
    finally:
        _yaml_file.reset(token)
