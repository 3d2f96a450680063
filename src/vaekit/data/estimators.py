"""What the estimators (`VAEClusterer`, `VAEClassifier`) read as X: an array, tensor or DataFrame
checked with scikit-learn's messages and shaped as the estimator's inputs, images kept as
images."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def estimator_rows(est: Any, X: Any, reset: bool) -> np.ndarray:
    """X -> float32 (n, *event_shape); one-line ValueError for what cannot be used (NaN or inf
    included). uint8 arrays are divided by 255; est.image_shape ((H, W) or (C, H, W)) reads flat
    rows as images. reset (fit): sets est._event_shape (and n_features_in_); otherwise X is
    checked against them."""
    from sklearn.utils.validation import validate_data

    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(X, np.ndarray) and X.dtype == np.uint8:
        X = X.astype(np.float32) / np.float32(255.0)  # 8-bit pixels -> [0, 1]
    shape: tuple[int, ...] | None = None
    if isinstance(X, np.ndarray) and X.ndim > 2:
        shape = tuple(X.shape[1:])
        X = X.reshape(len(X), -1)
    x = np.asarray(validate_data(est, X, reset=reset, dtype=[np.float32, np.float64]), np.float32)
    if reset:
        if est.image_shape is not None:
            shape = tuple(int(s) for s in est.image_shape)
            if math.prod(shape) != x.shape[1]:
                raise ValueError(
                    f"image_shape {shape} holds {math.prod(shape)} values but X has "
                    f"{x.shape[1]} features per sample"
                )
        if shape is not None and len(shape) == 2:
            shape = (1, *shape)
        est._event_shape = shape or (x.shape[1],)
    return x.reshape(len(x), *est._event_shape)
