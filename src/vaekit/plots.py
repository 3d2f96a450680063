"""Figures for a trained VAE: samples, reconstructions, latent space, manifold, training curves.

Two layers:

* array-level functions (`image_grid`, `reconstruction_grid`, `manifold_grid`,
  `latent_scatter`, `training_curves`) take tensors or arrays already in display space and
  write one PNG each; they need no model and are cheap to test;
* `plot_run` drives a model (a `vaekit.models.VAE`, or anything with its encode, decode,
  sample and reconstruct) through them and writes every figure
  that applies to the data: image figures only when the events are images (see `as_images`),
  the manifold only for a 2-D latent space, the curves only when a metrics.csv exists.

Images are (n, C, H, W) with C = 1 (gray) or 3 (RGB), values clipped to [0, 1]. A grid of
images is composed into one array (1-px gaps) and drawn by a single `imshow`, so 400 images
cost the same as one. matplotlib runs on the Agg backend; nothing is shown, every figure is
closed after saving.
"""

from __future__ import annotations

import csv
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

from vaekit.devices import fork_rng

__all__ = [
    "as_images",
    "image_grid",
    "latent_projection",
    "latent_scatter",
    "manifold_grid",
    "manifold_latents",
    "plot_run",
    "reconstruction_grid",
    "training_curves",
]

ArrayLike = Any  # torch.Tensor | np.ndarray

_DPI = 100
_GAP = 1  # pixels between tiles
_GAP_VALUE = 1.0  # white gaps: they vanish into the white page around the grid
_TARGET_PX = 600  # a grid is upscaled (by an integer factor) to about this many pixels
_MAX_ENCODE = 2000  # posterior means plotted in the latent figure
_ENCODE_BATCH = 1000


# --- arrays -----------------------------------------------------------------------------------


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


def _save(fig: Figure, path: str | Path) -> Path:
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
    return _save(fig, path)


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
    return _save(fig, path)


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
    return _save(fig, path)


# --- latent space -----------------------------------------------------------------------------


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
    return _save(fig, path)


# --- training curves --------------------------------------------------------------------------


def _read_metrics(metrics_csv: str | Path) -> dict[str, np.ndarray]:
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{metrics_csv} has no rows")

    def num(v: str | None) -> float:
        try:
            return float(v) if v not in (None, "") else math.nan
        except ValueError:
            return math.nan

    cols = {k: np.array([num(r.get(k)) for r in rows]) for k in rows[0] if k}
    if "epoch" not in cols:
        cols["epoch"] = np.arange(1, len(rows) + 1, dtype=float)
    return cols


def training_curves(metrics_csv: str | Path, path: str | Path) -> Path:
    """Panels for -ELBO, rate (KL) and distortion per epoch, train and validation.

    Reads metrics.csv (columns epoch, train_loss, train_rate, train_distortion, val_loss,
    val_rate, val_distortion, seconds); empty val_* cells (no validation split) are skipped.
    """
    cols = _read_metrics(metrics_csv)
    epoch = cols["epoch"]
    panels = [
        ("loss", "total loss (−ELBO)"),
        ("rate", "rate (KL)"),
        ("distortion", "distortion (−log p(x|z))"),
    ]
    panels = [p for p in panels if f"train_{p[0]}" in cols or f"val_{p[0]}" in cols]
    if not panels:
        raise ValueError(f"{metrics_csv} has none of the columns train_loss, train_rate, ...")
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.2 * len(panels), 3.3),
        dpi=_DPI,
        squeeze=False,
        layout="constrained",
    )
    marker = "o" if len(epoch) <= 30 else None
    for ax, (key, name) in zip(axes[0], panels, strict=True):
        for split, colour, ls in (("train", "tab:blue", "-"), ("val", "tab:orange", "--")):
            values = cols.get(f"{split}_{key}")
            if values is None or np.all(np.isnan(values)):
                continue
            ok = ~np.isnan(values)
            ax.plot(
                epoch[ok],
                values[ok],
                ls,
                color=colour,
                marker=marker,
                ms=3,
                lw=1.5,
                label="train" if split == "train" else "validation",
            )
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.grid(alpha=0.3, lw=0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize=9, frameon=False)
    return _save(fig, path)


# --- orchestrator -----------------------------------------------------------------------------


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def plot_run(
    model: Any,
    x: torch.Tensor,
    y: ArrayLike | None,
    out_dir: str | Path,
    *,
    metrics_csv: str | Path | None = None,
    to_display: Callable[[torch.Tensor], torch.Tensor] | None = None,
    n_samples: int = 64,
    seed: int = 0,
) -> dict[str, Path]:
    """Write every figure that applies to a trained model; return {name: path}.

    x: (batch, *event_shape) held-out examples in model space; y: (batch,) labels or None
    (required by a conditional model, which is shown with them).
    to_display maps model space to display space (e.g. undoes standardization); its output is
    clipped to [0, 1]. Figures: samples.png, reconstructions.png (image data only),
    latent.png, manifold.png (images and latent_dim == 2), curves.png (metrics_csv exists);
    for a conditional model of images also classes.png (a row of samples per class) and
    style.png (test inputs, each re-decoded with every label).

    Reproducible and side-effect free: sampling and the choice of the (at most 2000) encoded
    examples are seeded by `seed` inside a forked RNG, so torch's global RNG state is left as
    it was; the model runs in eval mode under no_grad and gets its train/eval mode back.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    show = to_display if to_display is not None else (lambda t: t)
    event_shape = tuple(int(s) for s in model.config.event_shape)
    latent_dim = int(model.config.latent_dim)
    decodes = bool(getattr(model, "has_decoder", True))  # an encoder-only model: latents only
    image_shape = _image_shape(event_shape) if decodes else None
    device = _device(model)
    x = torch.as_tensor(x)
    if x.shape[1:] != event_shape:
        raise ValueError(f"x has shape {tuple(x.shape)}, expected (batch, *{event_shape})")
    paths: dict[str, Path] = {}

    def display(t: torch.Tensor) -> np.ndarray:
        return _to_numpy(show(t.detach().float()))

    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        with torch.no_grad(), fork_rng(device):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            order = torch.randperm(len(x), generator=gen)[:_MAX_ENCODE]
            xs = x[order].to(device=device, dtype=torch.float32)
            ys = None if y is None else _to_numpy(y).ravel()[order.numpy()]

            conditional = bool(getattr(model.config, "conditional", False))
            yt = None
            if conditional:
                if ys is None:
                    raise ValueError("a conditional model is drawn with labels: give y")
                yt = torch.as_tensor(ys, dtype=torch.int64, device=device)
            if image_shape is not None and n_samples > 0:
                if conditional:  # every class in turn, a column each
                    classes = int(model.config.num_classes)
                    asked = torch.arange(n_samples, device=device) % classes
                    drawn, per_row = model.sample(n_samples, y=asked), classes
                else:
                    drawn, per_row = model.sample(n_samples), None
                samples = as_images(display(drawn), event_shape)
                paths["samples"] = image_grid(samples, out / "samples.png", nrow=per_row)
            if image_shape is not None and conditional:
                from vaekit.class_plots import conditional_figures

                paths.update(conditional_figures(model, xs, yt, display, out, event_shape))
            if image_shape is not None and len(xs) > 0:
                k = min(16, len(xs))
                x_hat = (
                    model.reconstruct(xs[:k]) if yt is None else model.reconstruct(xs[:k], yt[:k])
                )
                paths["reconstructions"] = reconstruction_grid(
                    as_images(display(xs[:k]), event_shape),
                    as_images(display(x_hat), event_shape),
                    out / "reconstructions.png",
                    n=k,
                )
            if len(xs) > 0:
                chunks = xs.split(_ENCODE_BATCH)
                if yt is None:
                    means = torch.cat([model.encode(c)[0].float().cpu() for c in chunks])
                else:
                    pairs = zip(chunks, yt.split(_ENCODE_BATCH), strict=True)
                    means = torch.cat([model.encode(c, yc)[0].float().cpu() for c, yc in pairs])
                paths["latent"] = latent_scatter(
                    means,
                    ys,
                    out / "latent.png",
                    title=f"posterior means of {len(means)} held-out examples",
                )
            if image_shape is not None and latent_dim == 2 and not conditional:
                paths["manifold"] = manifold_grid(
                    lambda z: display(model.decode(z.to(device))),
                    out / "manifold.png",
                    n=20,
                    image_shape=image_shape,
                )
    finally:
        model.train(was_training)
    if metrics_csv is not None and Path(metrics_csv).is_file():
        paths["curves"] = training_curves(metrics_csv, out / "curves.png")
    return paths
