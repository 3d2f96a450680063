"""Image figures from arrays: grids of images, reconstructions beside their inputs, the 2-D
latent manifold; and the shared helpers every picture module draws with.

Images are (n, C, H, W) with C = 1 (gray) or 3 (RGB), values clipped to [0, 1]. A grid of
images is composed into one array (1-px gaps) and drawn by a single `imshow`, so 400 images
cost the same as one. matplotlib runs on the Agg backend; nothing is shown, every figure is
closed after saving.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: must precede the pyplot import

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

ArrayLike = Any  # torch.Tensor | np.ndarray

_DPI = 100
_GAP = 1  # pixels between tiles
_GAP_VALUE = 1.0  # white gaps: they vanish into the white page around the grid
_TARGET_PX = 600  # a grid is upscaled (by an integer factor) to about this many pixels


def _to_numpy(a: ArrayLike) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu", torch.float32).numpy()
    return np.asarray(a)


def _image_shape(event_shape: Sequence[int]) -> tuple[int, int, int] | None:
    """(C, H, W) for events that can be drawn as images, else None."""
    shape = tuple(int(s) for s in event_shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3 and shape[0] in (1, 3):
        return shape  # type: ignore[return-value]
    return None


def as_images(x: ArrayLike, event_shape: Sequence[int]) -> np.ndarray | None:
    """`x` (n, *event_shape) as float32 (n, C, H, W) images, or None when events are not images.

    (C, H, W) with C in {1, 3} and (H, W) are images; (D,) rows (tabular data) and other
    channel counts are not. Values are not clipped here (the drawing functions clip).
    """
    shape = _image_shape(event_shape)
    if shape is None:
        return None
    arr = _to_numpy(x).astype(np.float32, copy=False)
    return arr.reshape(-1, *shape)


def _prepare(images: ArrayLike) -> np.ndarray:
    """(n, C, H, W) float32 in [0, 1], C in {1, 3}; (n, H, W) is taken as gray."""
    arr = _to_numpy(images).astype(np.float32, copy=False)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(f"images must be (n, C, H, W) with C = 1 or 3, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("no images to draw")
    return np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0)


def _tile(images: np.ndarray, ncol: int, gap: int = _GAP) -> np.ndarray:
    """Compose (n, C, H, W) into one (rows*(H+gap)-gap, ncol*(W+gap)-gap, C) array."""
    n, c, h, w = images.shape
    ncol = max(1, min(int(ncol), n))
    nrow = math.ceil(n / ncol)
    out = np.full((nrow * (h + gap) - gap, ncol * (w + gap) - gap, c), _GAP_VALUE, np.float32)
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = r * (h + gap), k * (w + gap)
        out[top : top + h, left : left + w] = images[i].transpose(1, 2, 0)
    return out


def _imshow(ax: Any, array: np.ndarray) -> None:
    if array.shape[-1] == 1:
        ax.imshow(array[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(array, interpolation="nearest")


def _scale(array: np.ndarray, target: int = _TARGET_PX) -> int:
    """Integer upscaling so the longest side is about `target` pixels (never below 1)."""
    return max(1, round(target / max(array.shape[:2])))


def _framed_axes(
    grid: np.ndarray, scale: int, *, left: float, bottom: float, right: float, top: float
) -> tuple[Figure, Any]:
    """A figure whose axes shows `grid` at exactly `scale` screen pixels per array pixel.

    Margins are in inches (multiples of 1/_DPI), so the image sits on whole pixels and
    nearest-neighbour upscaling keeps every tile and gap the same size (bbox_inches="tight"
    would shift it by a fraction of a pixel).
    """
    w, h = grid.shape[1] * scale / _DPI, grid.shape[0] * scale / _DPI
    fw, fh = w + left + right, h + bottom + top
    fig = plt.figure(figsize=(fw, fh), dpi=_DPI)
    ax = fig.add_axes((left / fw, bottom / fh, w / fw, h / fh))
    _imshow(ax, grid)
    return fig, ax


def save_figure(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=_DPI, facecolor="white")
    finally:
        plt.close(fig)
    return path


# --- image figures ----------------------------------------------------------------------------


def image_grid(
    images: ArrayLike, path: str | Path, *, nrow: int | None = None, title: str | None = None
) -> Path:
    """Write a tight grid of images (no axes) as PNG.

    nrow: images per row (as in torchvision's make_grid); default ceil(sqrt(n)), a square.
    """
    imgs = _prepare(images)
    ncol = nrow if nrow is not None else math.ceil(math.sqrt(len(imgs)))
    if ncol < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    grid = _tile(imgs, ncol)
    s = _scale(grid)
    w, h = grid.shape[1] * s / _DPI, grid.shape[0] * s / _DPI
    title_h = 0.35 if title else 0.0
    fig = plt.figure(figsize=(w, h + title_h), dpi=_DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, h / (h + title_h)))
    ax.set_axis_off()
    _imshow(ax, grid)
    if title:
        fig.text(
            0.5, 1.0 - 0.5 * title_h / (h + title_h), title, ha="center", va="center", fontsize=12
        )
    return save_figure(fig, path)


def reconstruction_grid(x: ArrayLike, x_hat: ArrayLike, path: str | Path, *, n: int = 16) -> Path:
    """Inputs on the top row(s), their reconstructions under them, labelled on the left.

    Up to 16 pairs per row; more pairs wrap into further rows (all inputs first, then all
    reconstructions in the same order).
    """
    a, b = _prepare(x), _prepare(x_hat)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"inputs {a.shape} and reconstructions {b.shape} differ in shape")
    n = max(1, min(n, len(a), len(b)))
    a, b = a[:n], b[:n]
    ncol = min(n, 16)
    top, bottom = _tile(a, ncol), _tile(b, ncol)
    sep = max(3, a.shape[2] // 4)  # a wider gap between the two blocks
    spacer = np.full((sep, top.shape[1], top.shape[2]), _GAP_VALUE, np.float32)
    grid = np.concatenate([top, spacer, bottom], axis=0)
    s = _scale(grid, 800)
    fig, ax = _framed_axes(grid, s, left=1.25, bottom=0.04, right=0.04, top=0.04)
    ax.set_xticks([])
    ax.set_yticks(
        [(top.shape[0] - 1) / 2, top.shape[0] + sep + (bottom.shape[0] - 1) / 2],
        ["input", "reconstruction"],
        fontsize=11,
    )
    ax.tick_params(axis="y", length=0, pad=4)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return save_figure(fig, path)


def manifold_latents(n: int = 20) -> tuple[torch.Tensor, np.ndarray]:
    """The (n*n, 2) latent points of the manifold figure and the n quantile values.

    Points sit at Gaussian quantiles norm.ppf(linspace(0.05, 0.95, n)) on both axes, in
    row-major order of the figure: rows run from the largest z2 (top) to the smallest, columns
    from the smallest z1 (left) to the largest.
    """
    from scipy.stats import norm

    if n < 2:
        raise ValueError(f"the manifold needs n >= 2 points per axis, got {n}")
    q = norm.ppf(np.linspace(0.05, 0.95, n))
    z1, z2 = np.meshgrid(q, q[::-1])  # z1 varies along columns, z2 decreases down the rows
    z = np.stack([z1.ravel(), z2.ravel()], axis=1)
    return torch.as_tensor(z, dtype=torch.float32), q


def manifold_grid(
    decode: Callable[[torch.Tensor], ArrayLike],
    path: str | Path,
    *,
    n: int = 20,
    image_shape: Sequence[int],
) -> Path:
    """The classic 2-D latent manifold: decode an n x n grid of Gaussian quantiles, one image.

    decode is called once, with a (n*n, 2) float32 tensor (see `manifold_latents` for the
    order), and must return (n*n, *image_shape) values in display space.
    """
    shape = _image_shape(image_shape)
    if shape is None:
        raise ValueError(f"image_shape {tuple(image_shape)} is not an image shape (C, H, W)")
    z, q = manifold_latents(n)
    with torch.no_grad():
        out = decode(z)
    imgs = _prepare(_to_numpy(out).reshape(n * n, *shape))
    grid = _tile(imgs, n)
    _, h, w = shape
    s = _scale(grid, 640)
    fig, ax = _framed_axes(grid, s, left=0.7, bottom=0.55, right=0.25, top=0.12)
    idx = np.unique(np.round(np.linspace(0, n - 1, 5)).astype(int))
    ax.set_xticks(idx * (w + _GAP) + (w - 1) / 2, [f"{q[i]:.2f}" for i in idx])
    ax.set_yticks(idx * (h + _GAP) + (h - 1) / 2, [f"{q[::-1][i]:.2f}" for i in idx])
    ax.set_xlabel("z1", fontsize=12)
    ax.set_ylabel("z2", fontsize=12)
    ax.tick_params(labelsize=10)
    return save_figure(fig, path)

