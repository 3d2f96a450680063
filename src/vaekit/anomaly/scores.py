"""Anomaly scores of a VAE: per example, oriented alike (**higher = more abnormal**), densities
in nats (summed over the data dimensions, as everywhere in vaekit).

    score          function                     what it is
    elbo           `neg_elbo`                   -ELBO = -E_q log p(x|z) + KL(q(z|x) || p(z))
    iwae           `neg_log_likelihood`         -log p(x), importance-sampled with K samples
    recon-prob     `reconstruction_probability` mean over L draws z_l ~ q(z|x) of -log p(x|z_l)
                                                (An & Cho, 2015)
    recon-error    `reconstruction_error`       sum over features of (x - E[x|z=mean(q)])^2
    smooth-error   `smoothed_error`             sum over pixels of (G * (x - E[x|z=mean(q)]))^2,
                                                G a Gaussian window (images only)
    latent-knn     `latent_knn_distance`        distance from the posterior mean of x to its
                                                k-th nearest reference code (the posterior
                                                means of the normal training rows)

The first five decode (SCORES); latent-knn needs only the encoder (FEATURE_SCORES), so it
also scores with an encoder-only model (objective infomax, `vaekit.core.critic`), and it needs the
reference codes.

`feature_contributions` (`vaekit.anomaly.contributions`) splits a decoding score into
per-feature parts (which pixels or columns make an input abnormal); `run_reference` and
`run_threshold` (`vaekit.anomaly.run_scores`) take latent-knn's reference codes and a threshold
from a trained run's own splits. All score functions take a `vaekit.core.model.VAE` and x:
(n, *event_shape) in the model's space (already preprocessed), run batched under no_grad, are
seeded (the caller's RNG state is untouched) and take precision="bf16" to run the networks in
bfloat16. The Monte Carlo scores (elbo, iwae, recon-prob) draw common random numbers
(`vaekit.core.posterior.CommonNoise`): the l-th draw z_l = mean + std * eps_l uses the same
eps_l for every row, and every block of rows is padded to `batch_size` rows (`full_block`), so
the networks see one shape: a row's score depends on the row, the seed and batch_size alone (not
on the other rows of the call, its position or their number), to the last bit, and rows are
ranked on the same draws. The detector over them is `vaekit.anomaly.VAEDetector`;
`default_score` says which score it takes unless told.

Why smooth the residual (smooth-error). A digit the model knows is reconstructed with its
strokes a little off: the residual x - x_hat is thin pairs of + and - along the edges, which a
window of about a stroke's width averages away. A digit it does not know leaves whole strokes
missing or extra: blobs of one sign, which survive the window. So the squared error of the
smoothed residual, r^T G^T G r, weighs the coarse part of the residual; the plain squared
error, r^T r, counts the edge noise alike. The window is a Gaussian of std side / 28 pixels
along each image axis (1 pixel on MNIST's 28 x 28, a third of a stroke): it matters where
images have pixels finer than their strokes (figures: the docs' anomaly benchmark page).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from vaekit.core.model import VAE, common_noise
from vaekit.core.objectives import elbo_terms, log_likelihood
from vaekit.core.precision import networks_in
from vaekit.core.utils import device_of, fork_rng

SCORES = ("elbo", "iwae", "recon-prob", "recon-error", "smooth-error")  # each decodes
IMAGE_SCORES = ("smooth-error",)  # smooths over neighbouring pixels: images only
FEATURE_SCORES = ("latent-knn",)  # the encoder's features only
# L (elbo, recon-prob) or K (iwae): 100 each. The draws are common to every row (CommonNoise),
# so the ranking moves with them; 100 keeps that small (figures: the docs' anomaly benchmark page).
DEFAULT_SAMPLES = {"elbo": 100, "iwae": 100, "recon-prob": 100, "recon-error": 1, "smooth-error": 1}
SMOOTHING_SIDE = 28  # smooth-error's window: std = image side / 28 pixels (1 pixel on MNIST)
DEFAULT_NEIGHBORS = 5  # k of latent-knn, as PyOD's KNN detector


# --- scores ---------------------------------------------------------------------------------


def _batched(
    model: VAE,
    x: torch.Tensor,
    per_batch: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int,
    precision: str,
    seed: int,
    decodes: bool = True,
) -> torch.Tensor:
    """Run `per_batch` over x in blocks of `batch_size` rows (the last one padded,
    `full_block`): checked input, eval mode, no_grad, seeded, precision. Blocks go to the
    model's device and results come back to the CPU."""
    if getattr(model.config, "conditional", False):
        raise ValueError(
            "anomaly scores need a model that does not observe labels y (this one is "
            "conditional); train one without --conditional"
        )
    if decodes and not model.has_decoder:
        raise ValueError(
            "this model has no decoder (an encoder-only infomax model), so it cannot give "
            "scores that decode; score it by latent-knn (--score latent-knn)"
        )
    model.check_input(x)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        device = device_of(model)
        with (
            torch.no_grad(),
            fork_rng(device),
            networks_in(model, precision),
            common_noise(model, seed),  # a row's score does not depend on its batch
        ):
            torch.manual_seed(seed)
            return torch.cat(
                [per_batch(full_block(xb, batch_size).to(device))[: len(xb)].cpu()
                 for xb in x.split(batch_size)]
            )
    finally:
        model.train(was_training)


def full_block(xb: torch.Tensor, size: int) -> torch.Tensor:
    """xb (b <= size rows) padded to `size` rows with copies of its first row (valid input).
    Every block then has one shape, so the networks and reductions run the same kernels for a
    row whatever rows share its call: float32 results that depend on the batch shape (a row
    alone and in a batch of 20 can differ in the last bits) cannot differ."""
    if len(xb) == size:
        return xb
    return torch.cat([xb, xb[:1].expand(size - len(xb), *xb.shape[1:])])


def check_samples(samples: int) -> None:
    if int(samples) < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")


def neg_elbo(
    model: VAE,
    x: torch.Tensor,
    *,
    samples: int = 100,
    batch_size: int = 256,
    precision: str = "fp32",
    seed: int = 0,
) -> torch.Tensor:
    """-ELBO per example, (n,), nats: -E_q[log p(x|z)] (L=`samples` draws) + KL(q || p).

    An upper bound on -log p(x); analytic KL where the prior allows it.
    """
    check_samples(samples)

    def one(xb: torch.Tensor) -> torch.Tensor:
        t = elbo_terms(model, xb, samples=samples)
        return t.rate - t.log_px_z

    return _batched(model, x, one, batch_size=batch_size, precision=precision, seed=seed)


def neg_log_likelihood(
    model: VAE,
    x: torch.Tensor,
    *,
    k: int = 100,
    batch_size: int = 64,
    precision: str = "fp32",
    seed: int = 0,
) -> torch.Tensor:
    """-log p(x) per example, (n,), nats: importance sampling with K draws from q(z|x)."""
    check_samples(k)
    return _batched(
        model,
        x,
        lambda xb: -log_likelihood(model, xb, k, batch_size=batch_size),
        batch_size=batch_size,
        precision=precision,
        seed=seed,
    )


def reconstruction_probability(
    model: VAE,
    x: torch.Tensor,
    *,
    samples: int = 100,
    batch_size: int = 256,
    precision: str = "fp32",
    seed: int = 0,
) -> torch.Tensor:
    """Reconstruction probability of An & Cho (2015) as a score, (n,), nats:
    the mean over L=`samples` draws z_l ~ q(z|x) of -log p(x|z_l) (the ELBO's distortion)."""
    check_samples(samples)
    return _batched(
        model,
        x,
        lambda xb: -elbo_terms(model, xb, samples=samples).log_px_z,
        batch_size=batch_size,
        precision=precision,
        seed=seed,
    )


def _residual(model: VAE, xb: torch.Tensor) -> torch.Tensor:
    """x - E[x | z = mean of q(z|x)] for a batch: (b, *event_shape)."""
    return xb - model.likelihood.mean(model.decoder_params(model.posterior(xb).mean))


def reconstruction_error(
    model: VAE,
    x: torch.Tensor,
    *,
    batch_size: int = 512,
    precision: str = "fp32",
    seed: int = 0,
) -> torch.Tensor:
    """Squared error of the decoded posterior mean, (n,): sum over features of
    (x - E[x | z = mean of q(z|x)])^2, in squared units of x as the model sees it (pixel
    intensities for images in [0, 1]; standardised units for tables). Not a density."""
    return _batched(
        model, x, lambda xb: _residual(model, xb).pow(2).flatten(1).sum(1),
        batch_size=batch_size, precision=precision, seed=seed,
    )


def smoothing_width(event_shape: tuple[int, ...]) -> tuple[float, float]:
    """smooth-error's window for images of event_shape (C, H, W): the Gaussian's std in pixels
    along (H, W), each side / `SMOOTHING_SIDE` (see the module docstring). Refuses other
    shapes (a table's columns have no neighbours to smooth over)."""
    if len(event_shape) != 3:
        raise ValueError(
            f"smooth-error smooths over neighbouring pixels, so it needs images; this model's "
            f"inputs have shape {tuple(event_shape)}: use recon-error"
        )
    return event_shape[1] / SMOOTHING_SIDE, event_shape[2] / SMOOTHING_SIDE


def gaussian_smooth(r: torch.Tensor, width: tuple[float, float]) -> torch.Tensor:
    """r: (n, C, H, W) convolved per channel with a normalised Gaussian window of std `width`
    pixels along (H, W) (zeros outside the image), same shape. Separable: one 1-D pass per
    axis, each window cut at 3 std."""
    c = r.shape[1]
    for axis, w in ((2, float(width[0])), (3, float(width[1]))):
        if w <= 0:
            continue
        radius = max(1, math.ceil(3 * w))
        t = torch.arange(-radius, radius + 1, dtype=r.dtype, device=r.device)
        k = torch.exp(-0.5 * (t / w) ** 2)
        k = (k / k.sum()).view(1, 1, -1, 1).repeat(c, 1, 1, 1)  # (C, 1, 2 radius + 1, 1)
        if axis == 2:
            r = torch.nn.functional.conv2d(r, k, padding=(radius, 0), groups=c)
        else:
            r = torch.nn.functional.conv2d(r, k.transpose(2, 3), padding=(0, radius), groups=c)
    return r


def smoothed_error(
    model: VAE,
    x: torch.Tensor,
    *,
    width: tuple[float, float] | None = None,
    batch_size: int = 512,
    precision: str = "fp32",
    seed: int = 0,
) -> torch.Tensor:
    """Squared error of the smoothed residual, (n,): sum over pixels of (G * (x - E[x | z =
    mean of q(z|x)]))^2, G a Gaussian window of std `width` pixels along (H, W) (None:
    `smoothing_width`, side / 28). Images (C, H, W) only; squared pixel units. Not a density.
    Why it beats recon-error on MNIST: the module docstring."""
    width = smoothing_width(model.config.event_shape) if width is None else width
    return _batched(
        model, x, lambda xb: gaussian_smooth(_residual(model, xb), width).pow(2).flatten(1).sum(1),
        batch_size=batch_size, precision=precision, seed=seed,
    )


def default_score(model: VAE) -> str:
    """The score `VAEDetector(scoring="auto")` and `vaekit score` take unless told: the one that
    wins on this kind of data in the benchmarks: smooth-error for images, elbo for tables,
    latent-knn for an encoder-only model (the only one it has). Figures: the docs' anomaly
    benchmark page."""
    if not model.has_decoder:
        return "latent-knn"
    return "smooth-error" if len(model.config.event_shape) == 3 else "elbo"


def resolve_score(score: str, model: VAE) -> str:
    """`score` checked, with "auto" replaced by `default_score(model)`."""
    if score == "auto":
        return default_score(model)
    if score not in (*SCORES, *FEATURE_SCORES):
        names = ", ".join(("auto", *SCORES, *FEATURE_SCORES))
        raise ValueError(f"unknown score {score!r}; choose one of {names}")
    return score


def posterior_means(
    model: VAE, x: torch.Tensor, *, batch_size: int = 512, precision: str = "fp32"
) -> torch.Tensor:
    """The posterior means of x, (n, latent): the features latent-knn compares."""
    return _batched(
        model, x, lambda xb: model.posterior(xb).mean, batch_size=batch_size,
        precision=precision, seed=0, decodes=False,
    )


def knn_too_few(neighbors: int, n: int, training: bool) -> str:
    """The one-line message for latent-knn with fewer reference rows than it needs."""
    need = neighbors + int(training)
    rows = "training rows (a row is not its own neighbour)" if training else "reference codes"
    return (
        f"latent-knn with neighbors={neighbors} needs at least {need} {rows}, got {n} "
        "sample(s); fit on more rows or lower neighbors"
    )


def latent_knn_distance(
    model: VAE,
    x: torch.Tensor,
    reference: torch.Tensor,
    *,
    k: int = DEFAULT_NEIGHBORS,
    exclude_self: bool = False,
    batch_size: int = 512,
    precision: str = "fp32",
) -> torch.Tensor:
    """Distance from each posterior mean of x to its k-th nearest reference code, (n,), in
    latent units (Euclidean): the k-NN outlier score (Ramaswamy et al. 2000; PyOD's KNN) in the
    encoder's feature space. reference: (m, latent) posterior means of normal rows
    (`posterior_means` of the training data). exclude_self: x is the reference itself (the
    training scores), so each row's own zero distance is skipped. Needs no decoder."""
    check_samples(k)
    k = int(k) + int(exclude_self)
    if reference.dim() != 2 or reference.shape[1] != model.config.latent_dim:
        raise ValueError(
            f"reference codes must be (m, {model.config.latent_dim}), got {tuple(reference.shape)}"
        )
    if len(reference) < k:
        raise ValueError(knn_too_few(k - int(exclude_self), len(reference), exclude_self))
    ref = reference.to(device_of(model), torch.float32)

    def one(xb: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(model.posterior(xb).mean, ref)
        return d.topk(k, dim=1, largest=False).values[:, -1]

    return _batched(
        model, x, one, batch_size=batch_size, precision=precision, seed=0, decodes=False
    )


def score_samples(
    model: VAE,
    x: torch.Tensor,
    score: str = "recon-error",
    *,
    samples: int | None = None,
    batch_size: int = 256,
    precision: str = "fp32",
    seed: int = 0,
    reference: torch.Tensor | None = None,
    neighbors: int = DEFAULT_NEIGHBORS,
) -> torch.Tensor:
    """The score named `score` (one of SCORES or FEATURE_SCORES) per example, (n,); higher =
    more abnormal.

    samples: L for elbo and recon-prob, K for iwae (defaults in DEFAULT_SAMPLES); unused by
    recon-error and latent-knn. reference, neighbors: latent-knn's reference codes (required
    for it) and its k.
    """
    check_score(score)
    check_table_score(model, score)
    if score == "latent-knn":
        if reference is None:
            raise ValueError(
                "latent-knn needs reference codes: posterior_means(model, normal training data)"
            )
        return latent_knn_distance(
            model, x, reference, k=neighbors, batch_size=batch_size, precision=precision
        )
    s = DEFAULT_SAMPLES[score] if samples is None else int(samples)
    common = {"batch_size": batch_size, "precision": precision, "seed": seed}
    if score == "elbo":
        return neg_elbo(model, x, samples=s, **common)
    if score == "iwae":
        return neg_log_likelihood(model, x, k=s, **common)
    if score == "recon-prob":
        return reconstruction_probability(model, x, samples=s, **common)
    if score == "smooth-error":
        return smoothed_error(model, x, **common)
    return reconstruction_error(model, x, **common)


def check_table_score(model: VAE, score: str) -> None:
    """A one-line refusal of the squared-error scores for a table run: its columns share no
    unit (levels, 0/1, transformed numbers) and a missing cell has no error."""
    lik = getattr(model, "likelihood", None)
    if lik is not None and lik.name == "composite" and score in ("recon-error", "smooth-error"):
        raise ValueError(
            f"{score} is a squared error, and a table's columns share no unit; score a table "
            "run by elbo (the default), iwae, recon-prob or latent-knn"
        )


def check_score(score: Any) -> None:
    if score not in (*SCORES, *FEATURE_SCORES):
        raise ValueError(
            f"unknown score {score!r}; choose one of {', '.join((*SCORES, *FEATURE_SCORES))}"
        )
