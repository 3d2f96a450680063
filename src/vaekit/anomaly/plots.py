"""Pictures of anomaly scores for a run: the most and least anomalous inputs beside their
reconstructions, and the score histogram with the threshold marked.

Called by `vaekit plot RUN_DIR --data SOURCE` through `draw_anomaly`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit import viz as plots
from vaekit.anomaly import estimator as anomaly
from vaekit.viz import classes as class_plots

UNITS = {
    "recon-error": "squared error of the reconstruction",
    "smooth-error": "squared error of the smoothed residual",
    "recon-prob": "mean -log p(x|z_l), nats",
    "elbo": "-ELBO, nats",
    "iwae": "-log p(x) (importance sampling), nats",
    "latent-knn": "to the 5th nearest training code, latent units",
}
FILES = {"anomalies": "anomalies.png", "scores": "anomaly_scores.png"}


def draw_anomaly(
    run: Any,
    x: torch.Tensor,
    out_dir: str | Path,
    *,
    score: str = "auto",
    contamination: float | None = None,
    threshold: float | None = None,
    n: int = 8,
) -> dict[str, Path]:
    """Write anomalies.png and anomaly_scores.png into out_dir; returns {name: path}.

    run: a `vaekit.runs.Run` trained on normal data; x: (m, *event_shape) prepared like the
    run's data (`run.data(source)`). score: a score's name, or "auto" for
    `anomaly.default_score` (smooth-error for images, elbo for tables, latent-knn for an
    encoder-only run). The threshold is `threshold`, or the (1 - contamination)
    quantile (contamination 0.1 when neither is given) of the scores of the run's held-out
    normal data (see `anomaly.run_threshold`).
    """
    score = anomaly.resolve_score(score, run.model)
    # latent-knn compares codes with the training split's (and needs no decoder)
    ref = {"reference": anomaly.run_reference(run)} if score in anomaly.FEATURE_SCORES else {}
    if threshold is None:
        threshold, split = anomaly.run_threshold(run, score, contamination or 0.1, **ref)
        how = f"threshold: {1 - (contamination or 0.1):.0%} quantile of the run's {split} split"
    else:
        how = "threshold: given"
    s = anomaly.score_samples(run.model, x, score, **ref).double().numpy()
    out = Path(out_dir)
    paths = {"scores": histogram(s, float(threshold), out / FILES["scores"], score, how)}
    order = np.argsort(-s, kind="stable")
    k = max(1, min(n, len(s) // 2 or 1))
    most, least = order[:k], order[::-1][:k]
    paths["anomalies"] = extremes(run, x, most, least, s, out / FILES["anomalies"], score)
    return paths


def histogram(scores: np.ndarray, threshold: float, path: Path, score: str, how: str = "") -> Path:
    """The distribution of scores with the threshold as a vertical line; flagged count shown."""
    import matplotlib.pyplot as plt

    flagged = int((scores > threshold).sum())
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    bins = min(60, max(10, len(scores) // 20))
    ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8)
    ax.axvline(
        threshold,
        color="tab:red",
        lw=1.5,
        ls="--",
        label=f"threshold {threshold:.4g}: {flagged} of {len(scores)} flagged",
    )
    ax.set_xlabel(f"{score} score ({UNITS[score]}); higher = more abnormal")
    ax.set_ylabel("inputs")
    ax.set_title(how, fontsize=10)
    ax.legend(frameon=False, fontsize=9)
    ax.grid(alpha=0.25, lw=0.5)
    return plots.save_figure(fig, path)


def extremes(
    run: Any,
    x: torch.Tensor,
    most: np.ndarray,
    least: np.ndarray,
    scores: np.ndarray,
    path: Path,
    score: str,
) -> Path:
    """Images: rows of the most anomalous inputs, their reconstructions, the least anomalous
    inputs, their reconstructions. Tables: each input's features (standardised as the model
    sees them) against its reconstruction, one panel per input. An encoder-only model has no
    reconstructions: the inputs alone."""
    shape = run.config.model.event_shape
    idx = torch.as_tensor(np.concatenate([most, least]))
    xs = x[idx]
    recon = run.model.reconstruct(xs) if run.model.has_decoder else None
    images = plots.as_images(run.to_display(xs).numpy(), shape)
    title = f"{score}: highest {scores[most[0]]:.4g} ... lowest {scores[least[0]]:.4g}"
    k = len(most)
    if images is not None and recon is None:
        grid = np.stack([images[:k], images[k:]])
        return class_plots.labelled_grid(
            grid, path, row_labels=["most anomalous", "least anomalous"], title=title
        )
    if images is not None:
        rec = plots.as_images(run.to_display(recon).numpy(), shape)
        grid = np.stack([images[:k], rec[:k], images[k:], rec[k:]])
        return class_plots.labelled_grid(
            grid,
            path,
            row_labels=["most anomalous", "reconstruction", "least anomalous", "reconstruction"],
            title=title,
        )
    return _table_extremes(
        xs.numpy(),
        None if recon is None else recon.numpy(),
        np.concatenate([most, least]),
        scores,
        k,
        path,
        score,
    )


def _table_extremes(
    xs: np.ndarray,
    recon: np.ndarray | None,
    idx: np.ndarray,
    scores: np.ndarray,
    k: int,
    path: Path,
    score: str,
) -> Path:
    import matplotlib.pyplot as plt

    rows = min(k, 4)
    picks = [*range(rows), *range(k, k + rows)]
    fig, axes = plt.subplots(
        2,
        rows,
        figsize=(3.2 * rows, 5.0),
        dpi=100,
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    feats = np.arange(xs.shape[1])
    for ax, i in zip(axes.ravel(), picks, strict=True):
        ax.plot(feats, xs[i].ravel(), "o", ms=3, color="tab:blue", label="input")
        if recon is not None:
            ax.plot(feats, recon[i].ravel(), "-", lw=1, color="tab:orange", label="reconstruction")
        kind = "most" if i < k else "least"
        ax.set_title(f"{kind} anomalous: row {idx[i]}\n{score} {scores[idx[i]]:.4g}", fontsize=9)
        ax.set_xlabel("feature")
        ax.grid(alpha=0.25, lw=0.5)
    axes[0, 0].set_ylabel("value (as the model sees it)")
    axes[1, 0].set_ylabel("value (as the model sees it)")
    axes[0, 0].legend(fontsize=8, frameon=False)
    return plots.save_figure(fig, path)
