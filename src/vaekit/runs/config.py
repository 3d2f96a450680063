"""A run's configuration: model + data + training, stored as `config.json` in the run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaekit.core.config import ConfigError, ModelConfig, from_dict, to_dict
from vaekit.core.io import atomic_write_text
from vaekit.data.config import DataConfig
from vaekit.train.config import TrainConfig


@dataclass
class RunConfig:
    """Everything needed to repeat a run: stored as `config.json` in the run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_objective(self.model, self.train)


def check_objective(model: ModelConfig, train: TrainConfig) -> None:
    """The objective fits the model: infomax trains an encoder-only model, and only it does."""
    if (train.objective == "infomax") == model.decoder:
        raise ConfigError(
            "objective infomax trains an encoder-only model (decoder=False) and the ELBO/IWAE "
            "objectives need a decoder; on the command line --objective infomax sets both"
        )



def save_json(config: Any, path: str | Path) -> None:
    """Write a dataclass as indented JSON (atomically: temp file, then rename)."""
    atomic_write_text(Path(path), json.dumps(to_dict(config), indent=2) + "\n")


def read_config_data(path: str | Path) -> dict[str, Any]:
    """The parsed JSON or TOML of a config file, before it becomes a `RunConfig`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"config {path} is not valid {path.suffix[1:] or 'JSON'}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a JSON object, got {type(data).__name__}")
    return data


def load_run_config(path: str | Path, *, strict: bool = True) -> RunConfig:
    """Read a `RunConfig` from JSON or TOML (TOML and partial files only with strict=False)."""
    path = Path(path)
    return from_dict(RunConfig, read_config_data(path), strict=strict, where=path.name)
