"""Preprocessing fitted on the training split only and stored with a run as JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vaekit.data.base import DataError
from vaekit.data.config import DataConfig


@dataclass
class Preprocessor:
    """Fitted on the train split only; stored with a run as JSON (`to_dict`/`from_dict`).

    standardize: z-score with `mean`/`std` (floats for images: one global value; lists of
    length prod(event_shape) for tabular: per feature). binarize: none | static | dynamic;
    `transform` applies only static (x > 0.5); dynamic is drawn by the trainer each epoch.
    """

    standardize: bool = False
    binarize: str = "none"
    mean: list[float] | float | None = None
    std: list[float] | float | None = None
    kind: str = "image"

    @classmethod
    def fit(cls, x_train: np.ndarray, cfg: DataConfig, kind: str) -> Preprocessor:
        """x_train: (n, *event_shape) float32, the training split only."""
        if cfg.binarize != "none":
            lo, hi = float(np.min(x_train)), float(np.max(x_train))
            if lo < 0 or hi > 1:
                raise DataError(
                    f"binarize={cfg.binarize} needs data in [0, 1] but it spans [{lo:g}, {hi:g}]; "
                    "use standardize or rescale the data"
                )
        mean = std = None
        if cfg.standardize:
            flat = np.asarray(x_train).reshape(len(x_train), -1)
            if kind == "image":  # one value: keeps pixels comparable across positions
                mean = float(flat.mean(dtype=np.float64))
                std = _safe_std(float(flat.std(dtype=np.float64)))
            else:
                m = flat.mean(axis=0, dtype=np.float64)
                s = flat.std(axis=0, dtype=np.float64)
                mean = [float(v) for v in m]
                std = [_safe_std(float(v)) for v in s]
        return cls(
            standardize=cfg.standardize, binarize=cfg.binarize, mean=mean, std=std, kind=kind
        )

    def _stats(self, event_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        if mean.ndim:
            if mean.size != math.prod(event_shape):
                raise DataError(
                    f"the run standardizes {mean.size} features but this data has "
                    f"{math.prod(event_shape)} per example ({event_shape}); give matching data"
                )
            mean, std = mean.reshape(event_shape), std.reshape(event_shape)
        return mean, std

    def transform(self, x: Any) -> Any:
        """x: (n, *event_shape) array (or tensor) -> float32 of the same shape and type."""
        if self.standardize:
            mean, std = self._stats(tuple(x.shape[1:]))
            if isinstance(x, torch.Tensor):
                return (x.float() - torch.from_numpy(mean).to(x.device)) / torch.from_numpy(std).to(
                    x.device
                )
            return ((np.asarray(x, dtype=np.float32) - mean) / std).astype(np.float32)
        if self.binarize == "static":
            if isinstance(x, torch.Tensor):
                return (x > 0.5).float()
            return (np.asarray(x) > 0.5).astype(np.float32)
        if isinstance(x, torch.Tensor):
            return x.float()
        return np.asarray(x, dtype=np.float32)

    def inverse(self, x: Any) -> Any:
        """Undo standardization (for display); same type as x. Binarization is not undone."""
        if not self.standardize:
            return x
        mean, std = self._stats(tuple(x.shape[1:]))
        if isinstance(x, torch.Tensor):
            return x * torch.from_numpy(std).to(x) + torch.from_numpy(mean).to(x)
        return (np.asarray(x) * std + mean).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "standardize": self.standardize,
            "binarize": self.binarize,
            "mean": self.mean,
            "std": self.std,
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        if not isinstance(d, dict):
            raise DataError(f"preprocessor: expected a JSON object, got {type(d).__name__}")
        known = {"standardize", "binarize", "mean", "std", "kind"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"preprocessor: unknown field(s) {', '.join(unknown)}")
        pre = cls(**d)
        if not isinstance(pre.standardize, bool) or pre.binarize not in (
            "none",
            "static",
            "dynamic",
        ):
            raise DataError(f"preprocessor: bad standardize/binarize in {d}")
        if pre.kind not in ("image", "tabular"):
            raise DataError(f"preprocessor: kind must be image or tabular, got {pre.kind!r}")
        if pre.standardize:
            ok = (isinstance(pre.mean, (int, float)) and isinstance(pre.std, (int, float))) or (
                isinstance(pre.mean, list)
                and isinstance(pre.std, list)
                and len(pre.mean) == len(pre.std)
            )
            if not ok:
                raise DataError("preprocessor: standardize needs mean and std of the same shape")
        return pre


def _safe_std(s: float) -> float:
    return s if s > 1e-8 else 1.0  # constant features (e.g. MNIST borders): shift, don't divide
