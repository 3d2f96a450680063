"""Anomaly scores of a VAE: per example, oriented alike (**higher = more abnormal**), densities
in nats (summed over the data dimensions, as everywhere in vaekit).

    score          function                     what it is
    elbo           `neg_elbo`                   -ELBO = -E_q log p(x|z) + KL(q(z|x) || p(z))
    iwae           `neg_log_likelihood`         -log p(x), importance-sampled with K samples
    recon-prob     `reconstruction_probability` mean over L draws z_l ~ q(z|x) of -log p(x|z_l)
                                                (An & Cho, 2015)
    recon-error    `reconstruction_error`       sum over features of (x - E[x|z=mean(q)])^2
    latent-knn     `latent_knn_distance`        distance from the posterior mean of x to its
                                                k-th nearest reference code (the posterior
                                                means of the normal training rows)

The first four decode (SCORES); latent-knn needs only the encoder (FEATURE_SCORES), so it
also scores with an encoder-only model (objective infomax, `vaekit.infomax`), and it needs the
reference codes.

`feature_contributions` splits a decoding score into per-feature parts (which pixels or
columns make an input abnormal). All score functions take a `vaekit.models.VAE` and x:
(n, *event_shape) in the model's space (already preprocessed), run batched under no_grad, are
seeded (the caller's RNG state is untouched) and take precision="bf16" to run the networks in
bfloat16. The detector over them is `vaekit.anomaly.VAEDetector`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from vaekit.devices import device_of, fork_rng
from vaekit.models import VAE, networks_in
from vaekit.objectives import elbo_terms, log_likelihood

SCORES = ("elbo", "iwae", "recon-prob", "recon-error")  # each decodes
FEATURE_SCORES = ("latent-knn",)  # the encoder's features only
DEFAULT_SAMPLES = {"elbo": 10, "iwae": 100, "recon-prob": 10, "recon-error": 1}
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
    """Run `per_batch` over x in batches: checked input, eval mode, no_grad, seeded, precision.
    Batches go to the model's device and results come back to the CPU."""
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
        with torch.no_grad(), fork_rng(device), networks_in(model, precision):
            torch.manual_seed(seed)
            return torch.cat([per_batch(xb.to(device)).cpu() for xb in x.split(batch_size)])
    finally:
        model.train(was_training)


def check_samples(samples: int) -> None:
    if int(samples) < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")


def neg_elbo(
    model: VAE,
    x: torch.Tensor,
    *,
    samples: int = 10,
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
        batch_size=max(batch_size, 1024),
        precision=precision,
        seed=seed,
    )


def reconstruction_probability(
    model: VAE,
    x: torch.Tensor,
    *,
    samples: int = 10,
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

    def one(xb: torch.Tensor) -> torch.Tensor:
        x_hat = model.likelihood.mean(model.decoder_params(model.posterior(xb).mean))
        return (xb - x_hat).pow(2).flatten(1).sum(1)

    return _batched(model, x, one, batch_size=batch_size, precision=precision, seed=seed)


def posterior_means(
    model: VAE, x: torch.Tensor, *, batch_size: int = 512, precision: str = "fp32"
) -> torch.Tensor:
    """The posterior means of x, (n, latent): the features latent-knn compares."""
    return _batched(
        model, x, lambda xb: model.posterior(xb).mean, batch_size=batch_size,
        precision=precision, seed=0, decodes=False,
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
        raise ValueError(f"latent-knn with k={k} needs at least {k} reference codes")
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
    return reconstruction_error(model, x, **common)


def _whole(x: Any) -> torch.Tensor:
    """A split's rows as one tensor (a memory-mapped split is read whole)."""
    return x if isinstance(x, torch.Tensor) else x[torch.arange(len(x))]


def run_reference(run: Any, precision: str = "fp32") -> torch.Tensor:
    """latent-knn's reference codes for a run: the posterior means of its training split,
    (n, latent). run: a `vaekit.runs.Run` trained on normal data."""
    from vaekit.data import prepare

    x = prepare(run.config.data).train.x
    if len(x) == 0:
        raise ValueError("the run has no training data to take reference codes from")
    return posterior_means(run.model, _whole(x), precision=precision)


def run_threshold(
    run: Any,
    score: str,
    contamination: float = 0.1,
    *,
    samples: int | None = None,
    precision: str = "fp32",
    seed: int = 0,
    reference: torch.Tensor | None = None,
    neighbors: int = DEFAULT_NEIGHBORS,
) -> tuple[float, str]:
    """The (1 - contamination) quantile of `score` on a run's held-out normal data: its
    validation split, or its training split when it has none. Returns (threshold, the split).

    run: a `vaekit.runs.Run` trained on normal data. reference, neighbors: as in
    `score_samples` (latent-knn; the training split's own rows are not their own neighbours).
    """
    from vaekit.data import prepare

    if not 0 < contamination <= 0.5:
        raise ValueError(f"contamination must be in (0, 0.5], got {contamination:g}")
    splits = prepare(run.config.data)
    for name in ("val", "train"):
        x = getattr(splits, name).x
        if len(x):
            x = _whole(x)
            if score == "latent-knn" and name == "train" and reference is not None:
                s = latent_knn_distance(
                    run.model, x, reference, k=neighbors, exclude_self=True, precision=precision
                )
            else:
                s = score_samples(
                    run.model, x, score, samples=samples, precision=precision, seed=seed,
                    reference=reference, neighbors=neighbors,
                )
            return float(torch.quantile(s.double(), 1.0 - contamination)), name
    raise ValueError("the run has no training data to set a threshold from; give a threshold")


def check_score(score: Any) -> None:
    if score not in (*SCORES, *FEATURE_SCORES):
        raise ValueError(
            f"unknown score {score!r}; choose one of {', '.join((*SCORES, *FEATURE_SCORES))}"
        )


def _per_feature_nll(model: VAE, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x_d | z) per data dimension: params (S, b, *event), x (b, *event) -> (S, b, *event).

    The core likelihoods sum over the event dimensions; this is the same density left
    unsummed (a test checks that it sums to `model.likelihood.log_prob`).
    """
    lik = model.likelihood
    if lik.name == "bernoulli":
        return torch.nn.functional.binary_cross_entropy_with_logits(
            params, x.expand_as(params), reduction="none"
        )
    log_sigma = lik._log_sigma()  # Gaussian, fixed or learned (clamped as in log_prob)
    z = (x - params) * torch.exp(-log_sigma)
    return 0.5 * z**2 + log_sigma + 0.5 * math.log(2 * math.pi)


def feature_contributions(
    model: VAE,
    x: torch.Tensor,
    score: str = "recon-error",
    *,
    samples: int | None = None,
    batch_size: int = 256,
    precision: str = "fp32",
    seed: int = 0,
) -> torch.Tensor:
    """Per-feature parts of a score, (n, *event_shape): which pixels or columns make x abnormal.

    recon-error: (x_d - E[x_d | z = mean])^2 (sums to the score exactly).
    recon-prob, elbo, iwae: mean over L draws z_l ~ q(z|x) of -log p(x_d | z_l), nats per
    feature (sums to the recon-prob score; for elbo and iwae it is their reconstruction part:
    the KL term belongs to no single feature).
    """
    check_score(score)
    if score in FEATURE_SCORES:
        raise ValueError(
            f"{score} is a distance between codes and belongs to no single feature; explain "
            "with a score that decodes (recon-error, recon-prob, elbo, iwae)"
        )
    if score == "recon-error":

        def one(xb: torch.Tensor) -> torch.Tensor:
            x_hat = model.likelihood.mean(model.decoder_params(model.posterior(xb).mean))
            return (xb - x_hat).pow(2)

    else:
        s = DEFAULT_SAMPLES["recon-prob"] if samples is None or score == "iwae" else int(samples)
        check_samples(s)

        def one(xb: torch.Tensor) -> torch.Tensor:
            z = model.posterior(xb).rsample(s)
            return _per_feature_nll(model, model.decoder_params(z), xb).mean(0)

    return _batched(model, x, one, batch_size=batch_size, precision=precision, seed=seed)
