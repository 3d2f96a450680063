"""A `vaekit cluster` run directory: the fitted clusterer and a description of its data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vaekit.cluster.estimator import VAEClusterer

ESTIMATOR = "clusterer.safetensors"
SOURCE = "cluster.json"


def load_run(run_dir: Path) -> tuple[VAEClusterer, dict[str, Any]]:
    """(the fitted VAEClusterer, the run's data description) of a cluster run directory."""
    path = Path(run_dir) / ESTIMATOR
    if not path.is_file():
        raise ValueError(
            f"{run_dir} is not a cluster run (no {ESTIMATOR}); train one with "
            "vaekit cluster --data SOURCE --out RUN_DIR"
        )
    try:
        source = json.loads((Path(run_dir) / SOURCE).read_text())
    except (OSError, ValueError):
        source = {"data": None, "image_shape": None, "label_column": None}
    return VAEClusterer.load(path), source
