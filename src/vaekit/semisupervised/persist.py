"""A `VAEClassifier`'s file: one safetensors file (format `FORMAT`) holding the VAE's weights,
the preprocessing (shift, scale), the first guesses and the classes' aggregate posteriors
as tensors, and the parameters, model
config and input shape as JSON in its header. Nothing is unpickled."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.core.config import ConfigError, ModelConfig, from_dict, to_dict
from vaekit.core.io import CheckpointError, load_tensors, save_tensors
from vaekit.core.model import VAE, load_state

FORMAT = "vaekit.classifier/2"


def save_classifier(est: Any, path: str | Path) -> None:
    """Write the fitted classifier `est` to `path` (atomically)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "model_")
    tensors = {f"model.{k}": v for k, v in est.model_.state_dict().items()}
    tensors["shift"] = torch.from_numpy(np.ascontiguousarray(est._shift))
    tensors["scale"] = torch.from_numpy(np.ascontiguousarray(est._scale))
    tensors["initial_labels"] = torch.from_numpy(np.asarray(est.initial_labels_, np.int64))
    tensors["class_latent_means"] = torch.from_numpy(est.class_latent_means_)
    tensors["class_latent_covariances"] = torch.from_numpy(est.class_latent_covariances_)
    meta = {
        "format": FORMAT,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in est.get_params().items()},
        "model": to_dict(est.model_.config),
        "event_shape": list(est._event_shape),
        "n_iter": est.n_iter_,
        "classes": np.asarray(est.classes_).tolist(),
    }
    save_tensors(Path(path), tensors, meta)


def load_classifier(cls: Any, path: str | Path) -> Any:
    """A classifier of class `cls` from a file `save_classifier` wrote."""
    tensors, meta = load_tensors(Path(path))
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a vaekit classifier file of this version (format "
            f"{meta.get('format')!r}, expected {FORMAT!r}); train it again with this vaekit"
        )
    try:
        params = dict(meta["params"])
        unknown = sorted(set(params) - set(cls().get_params()))
        if unknown:
            raise CheckpointError(f"{path}: unknown classifier parameter(s) {unknown}")
        for key in ("hidden", "conv_channels", "image_shape"):
            if isinstance(params.get(key), list):
                params[key] = tuple(params[key])
        est = cls(**params)
        config = from_dict(ModelConfig, meta["model"], strict=True, where="model config")
        est._event_shape = tuple(int(s) for s in meta["event_shape"])
        est.n_iter_ = int(meta["n_iter"])
        est._shift = tensors["shift"].numpy()
        est._scale = tensors["scale"].numpy()
        est.initial_labels_ = tensors["initial_labels"].numpy()
        est.class_latent_means_ = tensors["class_latent_means"].numpy()
        est.class_latent_covariances_ = tensors["class_latent_covariances"].numpy()
        est.classes_ = np.asarray(meta["classes"])
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise CheckpointError(f"{path}: damaged classifier file: {e}") from None
    model = VAE.from_config(config)
    load_state(
        model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path)
    )
    est.model_ = model.eval()
    est.n_features_in_ = math.prod(est._event_shape)
    return est
