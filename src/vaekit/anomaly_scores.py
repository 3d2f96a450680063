"""Anomaly scores of a VAE: per example, oriented alike (**higher = more abnormal**), densities
in nats (summed over the data dimensions, as everywhere in vaekit).

    score          function                     what it is
    elbo           `neg_elbo`                   -ELBO = -E_q log p(x|z) + KL(q(z|x) || p(z))
    iwae           `neg_log_likelihood`         -log p(x), importance-sampled with K samples
    recon-prob     `reconstruction_probability` mean over L draws z_l ~ q(z|x) of -log p(x|z_l)
                                                (An & Cho, 2015)
    recon-error    `reconstruction_error`       sum over features of (x - E[x|z=mean(q)])^2

`feature_contributions` splits a score into per-feature parts (which pixels or columns make
an input abnormal). All score functions take a `vaekit.models.VAE` and x: (n, *event_shape) in
the model's space (already preprocessed), run batched under no_grad, are seeded (the caller's
RNG state is untouched) and take precision="bf16" to run the networks in bfloat16. The
detector over them is `vaekit.anomaly.VAEDetector`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from vaekit.devices import device_of, fork_rng
from vaekit.models import VAE, networks_in
from vaekit.objectives import elbo_terms, log_likelihood

SCORES = ("elbo", "iwae", "recon-prob", "recon-error")
DEFAULT_SAMPLES = {"elbo": 10, "iwae": 100, "recon-prob": 10, "recon-error": 1}


# --- scores ---------------------------------------------------------------------------------


def _batched(
    model: VAE,
    x: torch.Tensor,
    per_batch: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int,
    precision: str,
    seed: int,
) -> torch.Tensor:
    """Run `per_batch` over x in batches: checked input, eval mode, no_grad, seeded, precision.
    Batches go to the model's device and results come back to the CPU."""
    if getattr(model.config, "conditional", False):
        raise ValueError(
            "anomaly scores need a model that does not observe labels y (this one is "
            "conditional); train one without --conditional"
        )
    model.require_decoder("give anomaly scores (each one decodes)")
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


def score_samples(
    model: VAE,
    x: torch.Tensor,
    score: str = "recon-error",
    *,
    samples: int | None = None,
    batch_size: int = 256,
    precision: str = "fp32",
    seed: int = 0,
) -> torch.Tensor:
    """The score named `score` (one of SCORES) per example, (n,); higher = more abnormal.

    samples: L for elbo and recon-prob, K for iwae (defaults in DEFAULT_SAMPLES); unused by
    recon-error.
    """
    check_score(score)
    s = DEFAULT_SAMPLES[score] if samples is None else int(samples)
    common = {"batch_size": batch_size, "precision": precision, "seed": seed}
    if score == "elbo":
        return neg_elbo(model, x, samples=s, **common)
    if score == "iwae":
        return neg_log_likelihood(model, x, k=s, **common)
    if score == "recon-prob":
        return reconstruction_probability(model, x, samples=s, **common)
    return reconstruction_error(model, x, **common)


def run_threshold(
    run: Any,
    score: str,
    contamination: float = 0.1,
    *,
    samples: int | None = None,
    precision: str = "fp32",
    seed: int = 0,
) -> tuple[float, str]:
    """The (1 - contamination) quantile of `score` on a run's held-out normal data: its
    validation split, or its training split when it has none. Returns (threshold, the split).

    run: a `vaekit.runs.Run` trained on normal data.
    """
    from vaekit.data import prepare

    if not 0 < contamination <= 0.5:
        raise ValueError(f"contamination must be in (0, 0.5], got {contamination:g}")
    splits = prepare(run.config.data)
    for name in ("val", "train"):
        x = getattr(splits, name).x
        if len(x):
            if not isinstance(x, torch.Tensor):  # a memory-mapped split: read it whole
                x = x[torch.arange(len(x))]
            s = score_samples(run.model, x, score, samples=samples, precision=precision, seed=seed)
            return float(torch.quantile(s.double(), 1.0 - contamination)), name
    raise ValueError("the run has no training data to set a threshold from; give a threshold")


def check_score(score: Any) -> None:
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")


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
