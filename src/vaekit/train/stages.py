"""Helpers for recipes that train one model in stages (the clusterer, the semi-supervised
classifier): a stage is `vaekit.train.fit` with a changed `TrainConfig`, and between stages
the recipe reads the codes on the CPU in fixed-shape blocks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from vaekit.core.model import VAE
from vaekit.train.config import TrainConfig


def with_changes(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of `cfg` with some fields changed."""
    return dataclasses.replace(cfg, **changes)


def stage_epochs(given: int | None, min_steps: int, min_epochs: int, steps_per_epoch: int) -> int:
    """A stage's epochs: `given`, or when None at least `min_epochs` and `min_steps` optimizer
    steps (so small data sets get as many updates as MNIST-sized ones)."""
    if given is not None:
        return int(given)
    return max(min_epochs, math.ceil(min_steps / steps_per_epoch))


def train_stage(
    model: VAE,
    x: torch.Tensor,
    cfg: TrainConfig,
    verbose: bool,
    device: str,
    labels: np.ndarray | torch.Tensor | None = None,
) -> None:
    """One stage's training on `device` (labels: (n,) int64, observed y); the model comes back
    to the CPU, where the recipe's NumPy steps (codes, t-SNE, GMM, responsibilities) read it."""
    from vaekit.train.loop import fit

    y = torch.as_tensor(labels) if labels is not None else None
    fit(model, x, None, cfg, y_train=y, progress=verbose, device=device)
    model.cpu()


def blocks(x: torch.Tensor, size: int, fixed: bool) -> list[tuple[torch.Tensor, int]]:
    """x in blocks of `size` rows, as (block, rows of x in it). fixed: every block padded to
    `size` rows with copies of its first row, so the networks see one shape and a row's result
    does not depend on the rows evaluated with it, to the last bit (float32 kernels chosen by
    the batch shape round differently); estimators' predictions use it."""
    out = []
    for xb in x.split(size):
        n = len(xb)
        if fixed and n < size:
            xb = torch.cat([xb, xb[:1].expand(size - n, *xb.shape[1:])])
        out.append((xb, n))
    return out


@torch.no_grad()
def codes(
    model: VAE, x: torch.Tensor, batch_size: int = 1024, *, fixed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and variances, each (n, latent) float64 (fixed: see `blocks`)."""
    model.eval()
    means, variances = [], []
    for xb, n in blocks(x, batch_size, fixed):
        q = model.posterior(xb)
        means.append(q.mean[:n])
        variances.append(q.logvar[:n].exp())
    return torch.cat(means).double().numpy(), torch.cat(variances).double().numpy()


@torch.no_grad()
def responsibilities(
    model: VAE, x: torch.Tensor, batch_size: int = 1024, *, fixed: bool = False
) -> torch.Tensor:
    """q(y|x) of a model whose prior infers y (`class_log_posterior`): (n, K), rows summing to
    1 (fixed: see `blocks`)."""
    model.eval()
    out = [
        model.prior.class_log_posterior(model.posterior(xb)).exp()[:n]
        for xb, n in blocks(x, batch_size, fixed)
    ]
    return torch.cat(out).double()


def mixture_moments(
    z: np.ndarray, z_var: np.ndarray, labels: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means, variances (K, latent) and weights (K,) of the codes z per cluster (or class) of
    `labels`, for a class-indexed Gaussian prior (`ClassGaussian.set_mixture`).

    The variance floor adds the encoder's mean posterior variance and 1e-3 of each dimension's
    total variance: a latent dimension that hardly varies inside a cluster must not get a tiny
    prior variance, or its responsibilities swamp all others and every point joins one
    cluster. An empty cluster gets the global moments and a small weight."""
    floor = z_var.mean(0) + 1e-3 * z.var(0) + 1e-8
    means = np.tile(z.mean(0), (k, 1))
    variances = np.tile(z.var(0) + floor, (k, 1))
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    for c in range(k):
        zc = z[labels == c]
        if len(zc):
            means[c] = zc.mean(0)
            variances[c] = (zc.var(0) if len(zc) > 1 else 0.0) + floor
    weights = (counts + 1.0) / (counts + 1.0).sum()
    return means, variances, weights


# init_space "auto" of the staged recipes: start from the inputs themselves up to this many
# features (small inputs such as the 8x8 digits cluster and spread labels better as they are;
# figures: the docs' clustering and semi-supervised benchmark pages), else from the codes too.
AUTO_INPUT_FEATURES = 256


def input_features(x: np.ndarray, seed: int) -> np.ndarray:
    """The inputs as rows for a first clustering or label spreading: (n, <= 50), PCA-reduced
    when wider."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    if flat.shape[1] <= 50:
        return flat
    from sklearn.decomposition import PCA

    return PCA(min(50, len(flat)), random_state=seed).fit_transform(flat)


# arch "auto" of the staged recipes: convolutions for images of at least this many pixels a
# side (MNIST's 28x28), the MLP for smaller images (the 8x8 digits) and flat rows.
AUTO_CONV_SIDE = 16


def resolve_arch(arch: str, event_shape: tuple[int, ...]) -> str:
    """arch with "auto" resolved for inputs of event_shape ((C, H, W) images or (D,) rows)."""
    if arch != "auto":
        return arch
    image = len(event_shape) == 3 and min(event_shape[1:]) >= AUTO_CONV_SIDE
    return "conv" if image else "mlp"
