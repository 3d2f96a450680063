"""Run directories: a `RunConfig` (`config`), and a run trained, loaded back, evaluated and
drawn (`run`). Loading never unpickles: tensors from safetensors, the rest from JSON."""

from vaekit.runs.config import RunConfig, check_objective, load_run_config, save_json
from vaekit.runs.run import (
    ARTIFACTS,
    CONFIG,
    EVALUATION,
    PICTURES,
    PREPROCESSING,
    REPORT,
    Run,
    draw,
    evaluate_split,
    train_run,
)

__all__ = [
    "ARTIFACTS",
    "CONFIG",
    "EVALUATION",
    "PICTURES",
    "PREPROCESSING",
    "REPORT",
    "Run",
    "RunConfig",
    "check_objective",
    "draw",
    "evaluate_split",
    "load_run_config",
    "save_json",
    "train_run",
]
