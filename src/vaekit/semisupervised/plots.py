"""The pictures of a semi-supervised run: the confusion matrix on held-out labelled rows, one
row of samples per class, the latent space coloured by known and by predicted labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def confusion_figure(
    y_true: np.ndarray, y_pred: np.ndarray, values: np.ndarray, names: Sequence[str], path: Path
) -> Path:
    """confusion.png: counts of (true, predicted) class pairs (classes `values`, shown as
    `names`), accuracy in the title."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    from vaekit.viz.images import save_figure

    k = len(names)
    cm = confusion_matrix(y_true, y_pred, labels=values)
    size = 1.6 + 0.45 * k
    fig, ax = plt.subplots(figsize=(size + 0.8, size), layout="constrained")
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            color = "white" if cm[i, j] > cm.max() / 2 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(k), names, rotation=90 if k > 10 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = float((y_true == y_pred).mean())
    ax.set_title(f"held-out labelled rows: accuracy {accuracy:.3f} (n = {len(y_true)})")
    return save_figure(fig, path)


def classifier_figures(
    model: Any,
    x: torch.Tensor,
    y_known: np.ndarray,
    y_pred: np.ndarray,
    samples: torch.Tensor,
    display: Callable[[torch.Tensor], np.ndarray],
    out: Path,
    names: Sequence[str],
) -> dict[str, Path]:
    """classes.png (samples: (C * per_class, ...) in x's units, per_class of each class in
    turn; images only), latent_known.png and latent_predicted.png (posterior means of x,
    coloured by the known labels (rows with y_known >= 0) and by the predictions)."""
    from vaekit.viz.classes import labelled_grid
    from vaekit.viz.images import as_images
    from vaekit.viz.latent import latent_scatter

    paths: dict[str, Path] = {}
    k = len(names)
    shown = as_images(display(samples), tuple(model.config.event_shape))
    if shown is not None:
        paths["classes"] = labelled_grid(
            shown.reshape(k, len(samples) // k, *shown.shape[1:]),
            out / "classes.png",
            row_labels=list(names),
            title="samples of each class, decoded from its aggregate posterior",
        )
    means = model.encode(x)[0].numpy()
    known = y_known >= 0
    if known.any():
        paths["latent_known"] = latent_scatter(
            means[known], np.asarray(names)[y_known[known]], out / "latent_known.png",
            title="latent means of the labelled rows, by their label",
        )
    paths["latent_predicted"] = latent_scatter(
        means, np.asarray(names)[y_pred], out / "latent_predicted.png",
        title="latent means of every row, by the predicted class",
    )
    return paths
