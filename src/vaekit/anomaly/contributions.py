"""Per-feature parts of a decoding anomaly score (`feature_contributions`): which pixels or
columns make an input abnormal. The scores themselves, and what each is: `vaekit.anomaly.scores`.
"""

from __future__ import annotations

import math

import torch

from vaekit.anomaly.scores import (
    DEFAULT_SAMPLES,
    FEATURE_SCORES,
    _batched,
    _residual,
    check_samples,
    check_score,
    check_table_score,
    gaussian_smooth,
    smoothing_width,
)
from vaekit.core.model import VAE


def _per_feature_nll(model: VAE, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x_d | z) per data dimension: params (S, b, *event), x (b, *event) -> (S, b, *event).

    The core likelihoods sum over the event dimensions; this is the same density left
    unsummed (a test checks that it sums to `model.likelihood.log_prob`).
    """
    lik = model.likelihood
    if lik.name == "composite":  # a table: each column's nats, 0 for a missing cell
        return -lik.log_prob_columns(params, x)
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
    smooth-error: (G * (x - E[x | z = mean]))_d^2, the smoothed residual's square at pixel d
    (sums to the score exactly).
    recon-prob, elbo, iwae: mean over L draws z_l ~ q(z|x) of -log p(x_d | z_l), nats per
    feature (sums to the recon-prob score; for elbo and iwae it is their reconstruction part:
    the KL term belongs to no single feature). A table run (composite likelihood): one part per
    column, nats, 0 for a missing cell.
    """
    check_score(score)
    check_table_score(model, score)
    if score in FEATURE_SCORES:
        raise ValueError(
            f"{score} is a distance between codes and belongs to no single feature; explain "
            "with a score that decodes (recon-error, smooth-error, recon-prob, elbo, iwae)"
        )
    if score == "recon-error":

        def one(xb: torch.Tensor) -> torch.Tensor:
            return _residual(model, xb).pow(2)

    elif score == "smooth-error":
        width = smoothing_width(model.config.event_shape)

        def one(xb: torch.Tensor) -> torch.Tensor:
            return gaussian_smooth(_residual(model, xb), width).pow(2)

    else:
        s = DEFAULT_SAMPLES["recon-prob"] if samples is None or score == "iwae" else int(samples)
        check_samples(s)

        def one(xb: torch.Tensor) -> torch.Tensor:
            z = model.posterior(xb).rsample(s)
            return _per_feature_nll(model, model.decoder_params(z), xb).mean(0)

    return _batched(model, x, one, batch_size=batch_size, precision=precision, seed=seed)
