"""Configuration: one strict pydantic model per stage, read from YAML with `key=value` overrides."""

from splade.config.loading import StrictModel, apply_override, load_yaml_model, validate
from splade.config.train import (
    DataConfig,
    DevConfig,
    FocusConfig,
    LossConfig,
    ModelConfig,
    NeighbourConfig,
    OutputConfig,
    PhaseConfig,
    TeacherConfig,
    TrainConfig,
    TrainingConfig,
    config_from_dict,
    load_config,
)

__all__ = [
    "DataConfig",
    "DevConfig",
    "FocusConfig",
    "LossConfig",
    "ModelConfig",
    "NeighbourConfig",
    "OutputConfig",
    "PhaseConfig",
    "StrictModel",
    "TeacherConfig",
    "TrainConfig",
    "TrainingConfig",
    "apply_override",
    "config_from_dict",
    "load_config",
    "load_yaml_model",
    "validate",
]
