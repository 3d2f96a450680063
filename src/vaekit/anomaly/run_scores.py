"""Anomaly scores from a trained run's own splits (`vaekit.runs.Run`, trained on normal data):
latent-knn's reference codes (`run_reference`) and a threshold (`run_threshold`), as
`vaekit score` and `vaekit plot --data` use them. The scores: `vaekit.anomaly.scores`.
"""

from __future__ import annotations

from typing import Any

import torch

from vaekit.anomaly.scores import (
    DEFAULT_NEIGHBORS,
    latent_knn_distance,
    posterior_means,
    score_samples,
)


def _whole(x: Any) -> torch.Tensor:
    """A split's rows as one tensor (a memory-mapped split is read whole)."""
    return x if isinstance(x, torch.Tensor) else x[torch.arange(len(x))]


def run_reference(run: Any, precision: str = "fp32") -> torch.Tensor:
    """latent-knn's reference codes for a run: the posterior means of its training split,
    (n, latent). run: a `vaekit.runs.Run` trained on normal data."""
    from vaekit.data import prepare

    x = prepare(run.config.data).train.x
    if len(x) == 0:
        raise ValueError("the run has no training data to take reference codes from")
    return posterior_means(run.model, _whole(x), precision=precision)


def run_threshold(
    run: Any,
    score: str,
    contamination: float = 0.1,
    *,
    samples: int | None = None,
    precision: str = "fp32",
    seed: int = 0,
    reference: torch.Tensor | None = None,
    neighbors: int = DEFAULT_NEIGHBORS,
) -> tuple[float, str]:
    """The (1 - contamination) quantile of `score` on a run's held-out normal data: its
    validation split, or its training split when it has none. Returns (threshold, the split).

    run: a `vaekit.runs.Run` trained on normal data. reference, neighbors: as in
    `score_samples` (latent-knn; the training split's own rows are not their own neighbours).
    """
    from vaekit.data import prepare

    if not 0 < contamination <= 0.5:
        raise ValueError(f"contamination must be in (0, 0.5], got {contamination:g}")
    splits = prepare(run.config.data)
    for name in ("val", "train"):
        x = getattr(splits, name).x
        if len(x):
            x = _whole(x)
            if score == "latent-knn" and name == "train" and reference is not None:
                s = latent_knn_distance(
                    run.model, x, reference, k=neighbors, exclude_self=True, precision=precision
                )
            else:
                s = score_samples(
                    run.model, x, score, samples=samples, precision=precision, seed=seed,
                    reference=reference, neighbors=neighbors,
                )
            return float(torch.quantile(s.double(), 1.0 - contamination)), name
    raise ValueError("the run has no training data to set a threshold from; give a threshold")
