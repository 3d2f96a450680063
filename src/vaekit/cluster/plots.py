"""Pictures of a clustering VAE: samples generated from each cluster, and the latent space
coloured by cluster beside the same points coloured by their real labels (where known)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SAMPLES = "cluster_samples.png"
LATENT = "cluster_latent.png"
LATENT_LABELS = "cluster_latent_labels.png"


def draw_clusters(
    source: Any,
    x: Any = None,
    y: Any = None,
    out_dir: str | Path | None = None,
    *,
    per_cluster: int = 10,
    max_points: int = 5000,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the clustering figures; return {name: path}.

    source: a fitted `VAEClusterer` or a `vaekit cluster` run directory (its data are read
        again when x is None). x: (n, ...) data as the clusterer takes it; y: (n,) real
        labels or None. out_dir: where to write (default: the run directory).
    Figures: cluster_samples.png (images only: a row of `per_cluster` samples per cluster,
    row k generated from p(z|y=k); for an encoder-only clusterer, which cannot generate, the
    first `per_cluster` inputs of x assigned to each cluster instead); cluster_latent.png
    (latent means coloured by cluster); cluster_latent_labels.png (the same points coloured
    by the real labels, where y exists).
    At most `max_points` points are drawn (a seeded random subset).
    """
    est, x, y, out = _source(source, x, y, out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    samples = _samples_figure(est, x, out / SAMPLES, per_cluster, seed)
    if samples is not None:
        written["cluster_samples"] = samples
    if x is not None:
        written.update(_latent_figures(est, np.asarray(x), y, out, max_points, seed))
    return written


def _source(source: Any, x: Any, y: Any, out_dir: str | Path | None) -> tuple[Any, Any, Any, Path]:
    """(the clusterer, x, y, the output folder) of `draw_clusters`' arguments: a run directory's
    clusterer, with its data read again when x is None and the run directory as the default
    output folder."""
    from vaekit.cluster.estimator import VAEClusterer

    if isinstance(source, VAEClusterer):
        if out_dir is None:
            raise ValueError("out_dir is required when drawing a clusterer (not a run directory)")
        return source, x, y, Path(out_dir)
    from vaekit.cluster.rundir import load_run
    from vaekit.data import load_source

    est, info = load_run(Path(source))
    if x is None:
        if not info.get("data"):
            raise ValueError(f"{source}: the run does not say its data; pass x")
        ds = load_source(
            info["data"],
            image_shape=info.get("image_shape"),
            label_column=info.get("label_column"),
        )
        x, y = ds.x, ds.y
    return est, x, y, Path(source) if out_dir is None else Path(out_dir)


def _samples_figure(est: Any, x: Any, path: Path, per_cluster: int, seed: int) -> Path | None:
    """cluster_samples.png (images only): `per_cluster` samples from each cluster's p(z|y=k),
    or, without a decoder, the first inputs of x assigned to each cluster; None if neither."""
    from vaekit import viz as plots

    k = est.n_clusters
    shape = tuple(est.model_.config.event_shape)
    images = plots.as_images(np.zeros((1, *shape), np.float32), shape)
    rows, title = None, ""
    if images is not None and est.model_.has_decoder:
        clusters = np.repeat(np.arange(k), per_cluster)
        rows = est.sample(len(clusters), cluster=clusters, random_state=seed)
        title = f"samples from each cluster (row k: p(z|y=k)), K={k}"
    elif images is not None and x is not None:  # no decoder: show members, not samples
        rows = _members(np.asarray(x), est.predict(np.asarray(x)), k, per_cluster)
        title = f"inputs assigned to each cluster (row k: cluster k; blank: fewer), K={k}"
    if rows is None:
        return None
    grid = plots.as_images(rows.reshape(len(rows), *shape), shape)
    return plots.image_grid(np.clip(grid, 0, 1), path, nrow=per_cluster, title=title)


def _latent_figures(
    est: Any, x: np.ndarray, y: Any, out: Path, max_points: int, seed: int
) -> dict[str, Path]:
    """cluster_latent.png (latent means coloured by cluster) and, where y exists,
    cluster_latent_labels.png (coloured by y), of at most `max_points` rows of x (a seeded
    random subset)."""
    from vaekit import viz as plots

    idx = np.arange(len(x))
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
    xs = x[idx]
    means = est.transform(xs)
    assigned = est.predict(xs)
    written = {
        "cluster_latent": plots.latent_scatter(
            means, assigned, out / LATENT, title="latent means, coloured by cluster (q(y|x))"
        )
    }
    if y is not None:
        written["cluster_latent_labels"] = plots.latent_scatter(
            means,
            np.asarray(y)[idx],
            out / LATENT_LABELS,
            title="the same points, coloured by their real labels",
        )
    return written


def _members(x: np.ndarray, assigned: np.ndarray, k: int, per_cluster: int) -> np.ndarray:
    """The first `per_cluster` rows of x in each cluster, cluster by cluster; zeros where a
    cluster has fewer: (k * per_cluster, ...) in x's units."""
    out = np.zeros((k * per_cluster, *x.shape[1:]), dtype=np.float32)
    for c in range(k):
        rows = x[assigned == c][:per_cluster]
        out[c * per_cluster : c * per_cluster + len(rows)] = rows
    return out
