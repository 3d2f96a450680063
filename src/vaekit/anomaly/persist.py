"""A `VAEDetector`'s file: one safetensors file (format `FORMAT`) holding the VAE's weights, the
training scores and latent-knn's reference codes as tensors, and the parameters, model config,
preprocessing, threshold and training precision (and a mixed table's schema) as JSON in its
header. Older files (without
reference codes, or without the precision) still load. The parameter `scoring` is stored under
its old name "score", so files keep one format across the rename (old releases read new files,
and new ones old files)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.anomaly.scores import resolve_score
from vaekit.core.config import ConfigError, ModelConfig, from_dict, to_dict
from vaekit.core.io import CheckpointError, load_tensors, save_tensors
from vaekit.core.model import VAE, load_state

FORMAT = "vaekit.anomaly-detector/1"


def save_detector(det: Any, path: str | Path) -> None:
    """Write the fitted detector `det` to `path` (see the module docstring)."""
    det._check_fitted()
    tensors = {f"model.{k}": v for k, v in det.model_.state_dict().items()}
    tensors["decision_scores"] = torch.from_numpy(det.decision_scores_)
    tensors["reference"] = det.reference_.contiguous()
    meta = {
        "format": FORMAT,
        "params": _jsonable(_renamed(det.get_params(), "scoring", "score")),
        "model": to_dict(det.model_.config),
        "preprocessor": det.preprocessor_.to_dict(),
        "kind": det.kind_,
        "threshold": det.threshold_,
        "precision": det.precision_,
    }
    if getattr(det, "schema_", None) is not None:  # fitted on a mixed table
        meta["schema"] = det.schema_.to_dict()
    save_tensors(Path(path), tensors, meta)


def load_detector(cls: Any, path: str | Path) -> Any:
    """A detector of class `cls` read from a file `save_detector` wrote; refuses other or
    damaged files with a clear message."""
    from vaekit.data import DataError, Preprocessor
    from vaekit.data.schema import Schema

    tensors, meta = load_tensors(Path(path))
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a vaekit anomaly detector file (format {meta.get('format')!r})"
        )
    try:
        params = _renamed(dict(meta["params"]), "score", "scoring")
        known = cls().get_params()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise CheckpointError(f"{path}: unknown detector parameter(s) {unknown}")
        for key in ("hidden", "conv_channels"):
            if isinstance(params.get(key), list):
                params[key] = tuple(params[key])
        det = cls(**params)
        config = from_dict(ModelConfig, meta["model"], strict=True, where="model config")
        det.preprocessor_ = Preprocessor.from_dict(meta["preprocessor"])
        det.kind_ = str(meta["kind"])
        det.threshold_ = float(meta["threshold"])
        # files saved before precision="auto" trained in the precision they name
        det.precision_ = str(meta.get("precision", det.precision))
        det.schema_ = None if meta.get("schema") is None else Schema.from_dict(meta["schema"])
    except (KeyError, TypeError, ConfigError, DataError) as e:
        raise CheckpointError(f"{path}: damaged detector file: {e}") from None
    model = VAE.from_config(config)
    model_tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    load_state(model, model_tensors, str(path))
    det.model_ = model.eval()
    det.event_shape_ = tuple(config.event_shape)
    det.n_features_in_ = math.prod(config.event_shape)
    det.decision_scores_ = tensors["decision_scores"].double().numpy()
    if "reference" in tensors:  # files saved before latent-knn have none
        det.reference_ = tensors["reference"].float()
    det.score_ = resolve_score(det.scoring, model)
    det.labels_ = (det.decision_scores_ > det.threshold_).astype(np.int64)
    return det


def _renamed(params: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """params with the key `old` renamed `new` (where it is there)."""
    return {new if k == old else k: v for k, v in params.items()}


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
