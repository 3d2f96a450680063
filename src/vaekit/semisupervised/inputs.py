"""What `VAEClassifier` accepts: its parameters (`check_params`), its data (`validate`: an
array, tensor or DataFrame to float32 (n, *event_shape), images kept as images) and its labels
(`check_targets`: integers 0..C-1, -1 where a row has no label, as in
`sklearn.semi_supervised`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vaekit.data.estimators import estimator_rows as validate  # noqa: F401 (X, re-exported)

# The `vaekit classify` flag of each parameter a user may get wrong, named beside it.
FLAGS = {
    "n_classes": "--classes",
    "pretrain_epochs": "--pretrain-epochs",
    "pull_epochs": "--pull-epochs",
    "epochs": "--epochs",
    "latent_dim": "--latent-dim",
    "label_weight": "--label-weight",
    "augment": "--augment",
    "consistency_weight": "--consistency-weight",
}


def named(name: str) -> str:
    """'n_classes (--classes)': the Python name and the flag a CLI user types."""
    return f"{name} ({FLAGS[name]})" if name in FLAGS else name


def _int_at_least(name: str, v: Any, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{named(name)} must be an integer >= {low}, got {v!r}")


def check_params(est: Any) -> None:
    """Refuse a `VAEClassifier`'s parameters that cannot work, in one line each."""
    if est.n_classes is not None:
        _int_at_least("n_classes", est.n_classes, 2)
    for name in ("pretrain_epochs", "pull_epochs", "epochs"):
        if getattr(est, name) is not None:
            _int_at_least(name, getattr(est, name), 0)
    for name in ("batch_size", "latent_dim", "n_neighbors"):
        _int_at_least(name, getattr(est, name), 1)
    if est.init_space not in ("auto", "codes", "input"):
        raise ValueError(f"init_space must be 'auto', 'codes' or 'input', got {est.init_space!r}")
    if est.arch not in ("auto", "mlp", "conv"):
        raise ValueError(f"arch must be 'auto', 'mlp' or 'conv', got {est.arch!r}")
    if not est.lr > 0 or not est.pull_beta >= 0 or not est.joint_beta >= 0:
        raise ValueError("lr must be > 0, and pull_beta and joint_beta >= 0")
    for name in ("label_weight", "consistency_weight"):
        if not getattr(est, name) >= 0:
            raise ValueError(f"{named(name)} must be >= 0, got {getattr(est, name)!r}")
    if est.augment not in ("auto", "on", "off"):
        raise ValueError(f"{named('augment')} must be 'auto', 'on' or 'off', got {est.augment!r}")
    if not 0 <= est.labelled_fraction < 1:
        raise ValueError(f"labelled_fraction must be in [0, 1), got {est.labelled_fraction!r}")


def check_targets(y: Any, n: int, n_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(y as (n,) int64 class indices with -1 for unlabelled rows, classes_): -1 (or the text
    "-1" or "") marks a row without a label, as in `sklearn.semi_supervised`. classes_ are the
    labels seen (sorted), or with n_classes = C given the integers 0..C-1, each of which needs
    a labelled row. One-line ValueError otherwise (scikit-learn's wording where it has one)."""
    if y is None:
        raise ValueError(
            "VAEClassifier requires y to be passed, but the target y is None: a label per row, "
            "-1 where unknown (for no labels at all, cluster with VAEClusterer / vaekit cluster)"
        )
    arr = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        from sklearn.utils.validation import column_or_1d

        arr = column_or_1d(arr, warn=True)  # scikit-learn's DataConversionWarning
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"y must hold one label per row of X ({n}), got shape {arr.shape}")
    if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or (arr != np.round(arr)).any()):
        raise ValueError(
            "Unknown label type: continuous (labels must be classes: whole numbers or names, "
            "-1 where unknown)"
        )
    if arr.dtype.kind in "iuf":
        unlabelled = arr == -1
    elif arr.dtype.kind in "US" or (
        arr.dtype.kind == "O" and all(isinstance(v, str) for v in arr.tolist())
    ):
        arr = arr.astype(str)
        unlabelled = np.isin(np.char.strip(arr), ["-1", ""])
    else:
        raise ValueError(
            f"Unknown label type: {arr.dtype} (labels must be integers or strings, -1 where "
            "unknown)"
        )
    known = arr[~unlabelled]
    if len(known) == 0:
        raise ValueError(
            "no row has a label (all -1): to group unlabelled data use VAEClusterer "
            "(vaekit cluster)"
        )
    if n_classes is not None:
        classes = np.arange(int(n_classes))
        if arr.dtype.kind not in "iuf" or known.min() < 0 or known.max() >= n_classes:
            raise ValueError(
                f"label {known.max() if arr.dtype.kind in 'iuf' else known[0]!r} is not a "
                f"class: with {named('n_classes')} = {n_classes} labels are 0..{n_classes - 1} "
                "(-1: unlabelled)"
            )
        missing = sorted(set(range(int(n_classes))) - set(known.astype(np.int64).tolist()))
        if missing:
            raise ValueError(
                f"class(es) {missing[:5]} of 0..{n_classes - 1} have no labelled row; label at "
                "least one row of each class or lower n_classes (--classes)"
            )
    else:
        classes = np.unique(known)
    if len(classes) < 2:
        raise ValueError(
            f"the labelled rows hold 1 class ({classes[0]!r}); a classifier needs at least two"
        )
    codes = np.full(n, -1, dtype=np.int64)
    codes[~unlabelled] = np.searchsorted(classes, known)
    return codes, classes
