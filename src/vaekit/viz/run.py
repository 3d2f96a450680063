"""Every figure that applies to a trained model (`plot_run`): samples, reconstructions, the
latent space, the manifold of a 2-D latent, class figures of a conditional model, curves.

It drives a model (a `vaekit.core.model.VAE`, or anything with its encode, decode, sample and
reconstruct) through the array-level figures of `images`, `latent`, `classes` and `curves`,
writing only the figures that apply to the data: image figures only when the events are images
(see `as_images`), the manifold only for a 2-D latent space, the curves only when a
metrics.csv exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: must precede the pyplot import

import numpy as np
import torch

from vaekit.core.utils import fork_rng
from vaekit.viz.classes import conditional_figures
from vaekit.viz.curves import training_curves
from vaekit.viz.images import (
    ArrayLike,
    _image_shape,
    _to_numpy,
    as_images,
    image_grid,
    manifold_grid,
    reconstruction_grid,
)
from vaekit.viz.latent import latent_scatter

_MAX_ENCODE = 2000  # posterior means plotted in the latent figure
_ENCODE_BATCH = 1000


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
    x = torch.as_tensor(x)
    if x.shape[1:] != event_shape:
        raise ValueError(f"x has shape {tuple(x.shape)}, expected (batch, *{event_shape})")
    device = _device(model)
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
            paths.update(_model_figures(model, xs, ys, display, out, n_samples))
    finally:
        model.train(was_training)
    if metrics_csv is not None and Path(metrics_csv).is_file():
        paths["curves"] = training_curves(metrics_csv, out / "curves.png")
    return paths


def _model_figures(
    model: Any,
    xs: torch.Tensor,
    ys: np.ndarray | None,
    display: Callable[[torch.Tensor], np.ndarray],
    out: Path,
    n_samples: int,
) -> dict[str, Path]:
    """The figures that need the model, in the order that keeps a seed's pictures the same:
    samples, class figures, reconstructions, the latent space, the manifold. xs: (m,
    *event_shape) on the model's device; ys: (m,) labels or None."""
    event_shape = tuple(int(s) for s in model.config.event_shape)
    decodes = bool(getattr(model, "has_decoder", True))  # an encoder-only model: latents only
    image_shape = _image_shape(event_shape) if decodes else None
    conditional = bool(getattr(model.config, "conditional", False))
    yt = None
    if conditional:
        if ys is None:
            raise ValueError("a conditional model is drawn with labels: give y")
        yt = torch.as_tensor(ys, dtype=torch.int64, device=xs.device)
    paths: dict[str, Path] = {}
    if image_shape is not None and n_samples > 0:
        paths["samples"] = _samples(model, display, out, n_samples, event_shape, conditional)
    if image_shape is not None and conditional:
        paths.update(conditional_figures(model, xs, yt, display, out, event_shape))
    if image_shape is not None and len(xs) > 0:
        paths["reconstructions"] = _reconstructions(model, xs, yt, display, out, event_shape)
    if len(xs) > 0:
        paths["latent"] = _latent(model, xs, yt, ys, out)
    if image_shape is not None and int(model.config.latent_dim) == 2 and not conditional:
        paths["manifold"] = manifold_grid(
            lambda z: display(model.decode(z.to(xs.device))),
            out / "manifold.png",
            n=20,
            image_shape=image_shape,
        )
    return paths


def _samples(
    model: Any,
    display: Callable[[torch.Tensor], np.ndarray],
    out: Path,
    n_samples: int,
    event_shape: tuple[int, ...],
    conditional: bool,
) -> Path:
    """samples.png: prior draws decoded; for a conditional model every class in turn, a
    column each."""
    if conditional:
        classes = int(model.config.num_classes)
        asked = torch.arange(n_samples, device=_device(model)) % classes
        drawn, per_row = model.sample(n_samples, y=asked), classes
    else:
        drawn, per_row = model.sample(n_samples), None
    samples = as_images(display(drawn), event_shape)
    return image_grid(samples, out / "samples.png", nrow=per_row)


def _reconstructions(
    model: Any,
    xs: torch.Tensor,
    yt: torch.Tensor | None,
    display: Callable[[torch.Tensor], np.ndarray],
    out: Path,
    event_shape: tuple[int, ...],
) -> Path:
    """reconstructions.png: up to 16 held-out inputs above their reconstructions."""
    k = min(16, len(xs))
    x_hat = model.reconstruct(xs[:k]) if yt is None else model.reconstruct(xs[:k], yt[:k])
    return reconstruction_grid(
        as_images(display(xs[:k]), event_shape),
        as_images(display(x_hat), event_shape),
        out / "reconstructions.png",
        n=k,
    )


def _latent(
    model: Any,
    xs: torch.Tensor,
    yt: torch.Tensor | None,
    ys: np.ndarray | None,
    out: Path,
) -> Path:
    """latent.png: the posterior means of the held-out inputs, coloured by label."""
    chunks = xs.split(_ENCODE_BATCH)
    if yt is None:
        means = torch.cat([model.encode(c)[0].float().cpu() for c in chunks])
    else:
        pairs = zip(chunks, yt.split(_ENCODE_BATCH), strict=True)
        means = torch.cat([model.encode(c, yc)[0].float().cpu() for c, yc in pairs])
    return latent_scatter(
        means,
        ys,
        out / "latent.png",
        title=f"posterior means of {len(means)} held-out examples",
    )
