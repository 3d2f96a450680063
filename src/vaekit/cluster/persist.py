"""A `VAEClusterer`'s file: one safetensors file (format `FORMAT`) holding the VAE's weights, the
preprocessing (shift, scale) and the training labels as tensors, and the parameters, model
config, input shape and the fit's records (epochs, re-seeded clusters, initial restarts) as
JSON in its header."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.core.config import ConfigError, ModelConfig, from_dict, to_dict
from vaekit.core.io import CheckpointError, load_tensors, save_tensors
from vaekit.core.model import VAE, load_state

FORMAT = "vaekit.cluster/1"


def save_clusterer(est: Any, path: str | Path) -> None:
    """Write the fitted clusterer `est` to `path` (see the module docstring)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "model_")
    tensors = {f"model.{k}": v for k, v in est.model_.state_dict().items()}
    tensors["shift"] = torch.from_numpy(est._shift)
    tensors["scale"] = torch.from_numpy(est._scale)
    tensors["labels"] = torch.from_numpy(np.asarray(est.labels_, dtype=np.int64))
    meta = {
        "format": FORMAT,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in est.get_params().items()},
        "model": to_dict(est.model_.config),
        "event_shape": list(est._event_shape),
        "n_iter": est.n_iter_,
        "reseeded": list(est.reseeded_),
        "init_restarts": est.init_restarts_,
        "init_chosen": est.init_chosen_,
        "final_agreement": est.final_agreement_,
    }
    save_tensors(Path(path), tensors, meta)


def load_clusterer(cls: Any, path: str | Path) -> Any:
    """A clusterer of class `cls` read from a file `save_clusterer` wrote; refuses other or
    damaged files with a clear message."""
    tensors, meta = load_tensors(Path(path))
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a vaekit clusterer file (format {meta.get('format')!r})"
        )
    try:
        params = dict(meta["params"])
        unknown = sorted(set(params) - set(cls().get_params()))
        if unknown:
            raise CheckpointError(f"{path}: unknown clusterer parameter(s) {unknown}")
        for key in ("hidden", "conv_channels", "image_shape"):
            if isinstance(params.get(key), list):
                params[key] = tuple(params[key])
        est = cls(**params)
        config = from_dict(ModelConfig, meta["model"], strict=True, where="model config")
        est._event_shape = tuple(int(s) for s in meta["event_shape"])
        est.n_iter_ = int(meta["n_iter"])
        est.reseeded_ = [int(c) for c in meta["reseeded"]]
        est.init_restarts_ = list(meta["init_restarts"])
        est.init_chosen_ = int(meta["init_chosen"])
        if "final_agreement" in meta:  # files written before it was recorded lack it
            est.final_agreement_ = float(meta["final_agreement"])
        est._shift = tensors["shift"].numpy()
        est._scale = tensors["scale"].numpy()
        est.labels_ = tensors["labels"].numpy()
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise CheckpointError(f"{path}: damaged clusterer file: {e}") from None
    model = VAE.from_config(config)
    load_state(
        model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path)
    )
    est.model_ = model.eval()
    est.n_features_in_ = math.prod(est._event_shape)
    est._set_mixture_attributes()
    return est
