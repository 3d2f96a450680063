"""What `VAEClusterer` accepts: its parameters (`check_params`) and its data (`validate`: an
array, tensor or DataFrame to float32 (n, *event_shape), with scikit-learn's checks and
messages, images kept as images)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vaekit.data.estimators import estimator_rows as validate  # noqa: F401 (X, re-exported)

# The `vaekit cluster` flag of each parameter a user may get wrong, named beside it.
FLAGS = {
    "n_clusters": "--k",
    "pretrain_epochs": "--pretrain-epochs",
    "pull_epochs": "--pull-epochs",
    "epochs": "--epochs",
    "n_init": "--n-init",
    "latent_dim": "--latent-dim",
}


def _named(name: str) -> str:
    """'n_clusters (--k)': the Python name and the flag a CLI user types."""
    return f"{name} ({FLAGS[name]})" if name in FLAGS else name


def check_params(est: Any) -> None:
    """Refuse a `VAEClusterer`'s parameters that cannot work, in one line each."""
    k = est.n_clusters
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{_named('n_clusters')} must be an integer >= 2, got {k!r}")
    if k < 2:
        raise ValueError(f"{_named('n_clusters')} must be >= 2, got {k}")
    for name in ("pretrain_epochs", "pull_epochs", "epochs"):
        v = getattr(est, name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{_named(name)} must be an integer >= 0, got {v!r}")
    for name in ("n_init", "batch_size", "latent_dim"):
        v = getattr(est, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{_named(name)} must be an integer >= 1, got {v!r}")
    if est.init not in ("tsne", "gmm"):
        raise ValueError(f"init must be 'tsne' or 'gmm', got {est.init!r}")
    if est.init_space not in ("auto", "pooled", "input", "codes"):
        raise ValueError(
            f"init_space must be 'auto', 'pooled', 'input' or 'codes', got {est.init_space!r}"
        )
    if est.objective not in ("elbo", "infomax"):
        raise ValueError(f"objective must be 'elbo' or 'infomax', got {est.objective!r}")
    if est.arch not in ("auto", "mlp", "conv"):
        raise ValueError(f"arch must be 'auto', 'mlp' or 'conv', got {est.arch!r}")
    if not est.lr > 0 or not est.pull_beta >= 0 or not est._joint_beta() >= 0:
        raise ValueError("lr must be > 0, and pull_beta and joint_beta >= 0")
