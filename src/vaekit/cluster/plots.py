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
    from vaekit import plots
    from vaekit.cluster import VAEClusterer

    if isinstance(source, VAEClusterer):
        est = source
        if out_dir is None:
            raise ValueError("out_dir is required when drawing a clusterer (not a run directory)")
    else:
        from vaekit.cli.cluster import load_run
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
        out_dir = Path(source) if out_dir is None else out_dir
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

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
    if rows is not None:
        grid = plots.as_images(rows.reshape(len(rows), *shape), shape)
        written["cluster_samples"] = plots.image_grid(
            np.clip(grid, 0, 1), out / SAMPLES, nrow=per_cluster, title=title
        )
    if x is not None:
        x = np.asarray(x)
        idx = np.arange(len(x))
        if len(idx) > max_points:
            idx = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        xs = x[idx]
        means = est.transform(xs)
        assigned = est.predict(xs)
        written["cluster_latent"] = plots.latent_scatter(
            means, assigned, out / LATENT, title="latent means, coloured by cluster (q(y|x))"
        )
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
