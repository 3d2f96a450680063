"""The latent space drawn: posterior means projected to 2-D, coloured by class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: must precede the pyplot import

import matplotlib.pyplot as plt
import numpy as np

from vaekit.viz.images import _DPI, ArrayLike, _to_numpy, save_figure


def latent_projection(means: ArrayLike) -> tuple[np.ndarray, tuple[str, str]]:
    """(batch, latent) posterior means -> (batch, k) plotting coordinates and axis labels.

    latent == 1 or 2: the coordinates themselves (z1, z2); latent > 2: the first two principal
    components, labelled with their share of the variance ("PC1 (42.0% var)").
    """
    m = _to_numpy(means).astype(np.float64)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2 or m.shape[0] == 0:
        raise ValueError(f"means must be (batch, latent) with batch > 0, got shape {m.shape}")
    if m.shape[1] <= 2:
        return m, ("z1", "z2")
    centred = m - m.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    var = sv**2
    share = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    return coords, (f"PC1 ({100 * share[0]:.1f}% var)", f"PC2 ({100 * share[1]:.1f}% var)")


def _classes(labels: ArrayLike) -> tuple[np.ndarray, np.ndarray] | None:
    """(class values, index per point) for discrete labels with <= 20 classes, else None."""
    lab = _to_numpy(labels).ravel()
    values, inverse = np.unique(lab, return_inverse=True)
    discrete = lab.dtype.kind in "biuUSO" or (
        lab.dtype.kind == "f" and np.all(np.isfinite(lab)) and np.all(lab == np.round(lab))
    )
    if discrete and len(values) <= 20:
        return values, inverse
    return None


def _fmt_class(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def latent_scatter(
    means: ArrayLike, labels: ArrayLike | None, path: str | Path, *, title: str | None = None
) -> Path:
    """Scatter of posterior means coloured by label (PCA to 2-D when latent > 2).

    Discrete labels with up to 20 classes get tab10/tab20 colours and a legend; continuous or
    many-valued labels a viridis colour bar; no labels a single colour. A 1-D latent space is
    drawn as a histogram of z1 (stacked by class).
    """
    coords, (xlabel, ylabel) = latent_projection(means)
    if labels is not None and len(_to_numpy(labels).ravel()) != len(coords):
        raise ValueError(f"{len(_to_numpy(labels).ravel())} labels for {len(coords)} points")
    classes = _classes(labels) if labels is not None else None
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=_DPI, layout="constrained")
    if coords.shape[1] == 1:
        bins = np.histogram_bin_edges(coords[:, 0], bins=min(50, max(10, len(coords) // 20)))
        if classes is not None:
            values, inverse = classes
            cmap = plt.get_cmap("tab10" if len(values) <= 10 else "tab20")
            ax.hist(
                [coords[inverse == k, 0] for k in range(len(values))],
                bins=bins,
                stacked=True,
                color=[cmap(k) for k in range(len(values))],
                label=[_fmt_class(v) for v in values],
            )
            ax.legend(
                title="label",
                fontsize=9,
                title_fontsize=9,
                frameon=False,
                loc="center left",
                bbox_to_anchor=(1.0, 0.5),
            )
        else:
            ax.hist(coords[:, 0], bins=bins, color="tab:blue", alpha=0.8)
        ax.set_xlabel("z1 (posterior mean)")
        ax.set_ylabel("count")
    else:
        x, y = coords[:, 0], coords[:, 1]
        style: dict[str, Any] = {"s": 8, "alpha": 0.75, "linewidths": 0, "rasterized": True}
        if labels is None:
            ax.scatter(x, y, color="tab:blue", **style)
        elif classes is not None:
            values, inverse = classes
            cmap = plt.get_cmap("tab10" if len(values) <= 10 else "tab20")
            for k, v in enumerate(values):
                sel = inverse == k
                ax.scatter(x[sel], y[sel], color=cmap(k), label=_fmt_class(v), **style)
            leg = ax.legend(
                title="label",
                fontsize=9,
                title_fontsize=9,
                markerscale=2.5,
                frameon=False,
                loc="center left",
                bbox_to_anchor=(1.0, 0.5),
            )
            for handle in leg.legend_handles:
                if handle is not None:
                    handle.set_alpha(1.0)
        else:
            sc = ax.scatter(
                x, y, c=_to_numpy(labels).ravel().astype(float), cmap="viridis", **style
            )
            fig.colorbar(sc, ax=ax, label="label")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.25, lw=0.5)
    return save_figure(fig, path)

