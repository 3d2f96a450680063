"""Pictures of the class variable y: a grid with a name on every row (and column), a row of
samples per class of a conditional model, and style transfer (one input's z decoded with every
label). Built on the array helpers of `vaekit.viz.images`; `plot_run` calls `conditional_figures`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.viz.images import (
    _DPI,
    _GAP,
    ArrayLike,
    _framed_axes,
    _prepare,
    _scale,
    _tile,
    _to_numpy,
    as_images,
    save_figure,
)


def labelled_grid(
    images: ArrayLike,
    path: str | Path,
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """A grid with a name on every row (and optionally every column).

    images: (rows, cols, C, H, W) in display space. Used for one row of samples per class of a
    conditional model (or per cluster), and for style transfer (a row per input, a column per
    label the input's z is decoded with).
    """
    arr = _to_numpy(images)
    if arr.ndim != 5:
        raise ValueError(f"images must be (rows, cols, C, H, W), got shape {arr.shape}")
    rows, cols = arr.shape[:2]
    if len(row_labels) != rows or (col_labels is not None and len(col_labels) != cols):
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows (or columns mismatch)")
    grid = _tile(_prepare(arr.reshape(rows * cols, *arr.shape[2:])), cols)
    s = _scale(grid, 640)
    h, w = arr.shape[3], arr.shape[4]
    top = 0.35 if col_labels is not None or title else 0.04
    top += 0.3 if col_labels is not None and title else 0.0
    left = min(2.0, 0.25 + 0.08 * max(len(str(r)) for r in row_labels))
    fig, ax = _framed_axes(grid, s, left=left, bottom=0.04, right=0.04, top=top)
    ax.set_yticks(np.arange(rows) * (h + _GAP) + (h - 1) / 2, [str(r) for r in row_labels])
    if col_labels is not None:
        ax.xaxis.tick_top()
        ax.set_xticks(np.arange(cols) * (w + _GAP) + (w - 1) / 2, [str(c) for c in col_labels])
    else:
        ax.set_xticks([])
    ax.tick_params(length=0, labelsize=10, pad=3)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11, y=1.0 - 0.05 / (grid.shape[0] * s / _DPI + top))
    return save_figure(fig, path)


def conditional_figures(
    model: Any,
    xs: torch.Tensor,
    ys: torch.Tensor,
    display: Callable[[torch.Tensor], np.ndarray],
    out: Path,
    event_shape: tuple[int, ...],
    per_class: int = 10,
    inputs: int = 8,
) -> dict[str, Path]:
    """classes.png: `per_class` samples of every class, a row each; style.png: `inputs` test
    inputs (first column), each decoded from its own z (posterior mean given its true label)
    with every label in turn (the other columns): same style, another class."""
    k = int(model.config.num_classes)
    names = list(model.config.class_names) or [str(c) for c in range(k)]
    shape = as_images(np.zeros((1, *event_shape)), event_shape).shape[1:]  # (C, H, W)
    asked = torch.arange(k, device=xs.device).repeat_interleave(per_class)
    samples = as_images(display(model.sample(len(asked), y=asked)), event_shape)
    paths = {
        "classes": labelled_grid(
            samples.reshape(k, per_class, *shape),
            out / "classes.png",
            row_labels=names,
            title="samples of each class, p(x|z,y) at prior draws",
        )
    }
    m = min(inputs, len(xs))
    if m:
        z = model.encode(xs[:m], ys[:m])[0]  # (m, latent)
        labels = torch.arange(k, device=xs.device)
        decoded = model.decode(z.repeat_interleave(k, 0), labels.repeat(m))  # (m*k, ...)
        originals = as_images(display(xs[:m]), event_shape)[:, None]
        transfers = as_images(display(decoded), event_shape).reshape(m, k, *shape)
        grid = np.concatenate([originals, transfers], axis=1)
        paths["style"] = labelled_grid(
            grid,
            out / "style.png",
            row_labels=[f"input ({names[int(c)]})" for c in ys[:m]],
            col_labels=["input", *names],
            title="style transfer: each input's z decoded with every label",
        )
    return paths
