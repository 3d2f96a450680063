"""Objectives: ELBO (beta, S samples, analytic or Monte-Carlo KL), IWAE, and log p(x) by
importance sampling. One path through the model serves all three.

Conventions: per-example values in nats; a batch `Loss` holds means over the batch.
`elbo` and `log_likelihood` are log-probabilities (normally negative); `Loss.total` is a loss
(a negated bound), so lower is better. rate = KL(q(z|x) || p(z)); distortion = -E_q[log p(x|z)].
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

import torch

from vaekit.core.augment import moved
from vaekit.core.posterior import DiagonalGaussian

# `consistency_loss` trusts the class q(y|x) gives an unlabelled row (its pseudo-label) from this
# probability on (FixMatch's threshold; 0.8 scored lower on MNIST with 100 labels).
CONFIDENCE = 0.95


class Composed(Protocol):
    """What an objective needs of a model: its parts and the path of a batch through them
    (`vaekit.core.model.VAE` is one)."""

    likelihood: Any
    prior: Any
    config: Any

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiagonalGaussian: ...

    def decoder_params(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...

    def prior_labels(self, y: torch.Tensor | None) -> torch.Tensor | None: ...


class Loss(NamedTuple):
    """Scalars, mean over the batch, nats per example."""

    total: torch.Tensor  # the minimized quantity: distortion + beta * rate (ELBO), or -IWAE bound
    rate: torch.Tensor  # KL(q(z|x) || p(z))
    distortion: torch.Tensor  # -E_q[log p(x|z)]


class Terms(NamedTuple):
    """Per-example terms, each (batch,), nats."""

    log_px_z: torch.Tensor  # E_q[log p(x|z)] over the S samples
    rate: torch.Tensor  # KL(q || p), analytic or Monte Carlo


def elbo_terms(
    model: Composed,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    samples: int = 1,
    analytic_kl: bool = True,
    q: DiagonalGaussian | None = None,
) -> Terms:
    """ELBO parts per example. x: (batch, *event_shape), y: (batch,) labels of a model that
    observes them (then the bound is on log p(x|y); -1: not observed, for the clustering
    prior). q: q(z|x) where the caller has it already. ELBO = log_px_z - rate."""
    q = model.posterior(x, y) if q is None else q
    z = q.rsample(samples)  # (S, batch, latent)
    log_px_z = model.likelihood.log_prob(model.decoder_params(z, y), x)  # (S, batch)
    y_prior = model.prior_labels(y)
    kl = model.prior.kl(q, y_prior) if analytic_kl else None
    if kl is None:  # Monte Carlo with the same samples: log q(z|x) - log p(z)
        kl = (q.log_prob(z) - model.prior.log_prob(z, y_prior)).mean(0)
    return Terms(log_px_z.mean(0), kl)


def elbo_loss(
    model: Composed,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    samples: int = 1,
    beta: float = 1.0,
    analytic_kl: bool = True,
    label_weight: float = 0.0,
    consistency_weight: float = 0.0,
) -> Loss:
    """-ELBO with a beta-weighted rate, as a training loss. x: (batch, *event_shape).

    label_weight alpha > 0 (semi-supervised, M2 of Kingma et al. 2014): the total adds
    alpha * `classification_loss`, the mean -log q(y|x) over the batch's labelled rows
    (y >= 0), and with consistency_weight > 0 (images) `consistency_loss` too; rate and
    distortion stay the bound's."""
    q = model.posterior(x, y)
    t = elbo_terms(model, x, y, samples=samples, analytic_kl=analytic_kl, q=q)
    distortion, rate = -t.log_px_z.mean(), t.rate.mean()
    total = distortion + beta * rate
    if label_weight and y is not None:
        total = total + label_weight * classification_loss(model.prior, q, y)
        if consistency_weight:
            total = total + consistency_loss(model, x, y, q, consistency_weight)
    return Loss(total, rate, distortion)


def classification_loss(prior: Any, q: DiagonalGaussian, y: torch.Tensor) -> torch.Tensor:
    """Mean -log q(y|x) in nats over the rows with an observed label (y >= 0; 0 when none),
    q(y|x) the clustering prior's responsibilities (`ClassGaussian.class_log_posterior`).
    No host sync: the count of labelled rows stays a tensor."""
    log_q = prior.class_log_posterior(q)  # (batch, K)
    labelled = y >= 0
    nll = -log_q.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (nll * labelled).sum() / labelled.sum().clamp(min=1)


def consistency_loss(
    model: Composed, x: torch.Tensor, y: torch.Tensor, q: DiagonalGaussian, weight: float
) -> torch.Tensor:
    """q(y|x) kept under small moves of the image (`vaekit.core.augment.moved`: a shift of a
    pixel or two and up to 10 degrees of rotation), in nats: on a moved copy x' of each
    unlabelled row whose q(y|x) names a class y_hat = argmax q(y|x) with probability above
    CONFIDENCE, -log q(y_hat|x') (the pseudo-labels of FixMatch, Sohn et al. 2020; no gradient
    through y_hat); weight times their sum over the batch's unlabelled rows (y = -1). The class
    of a digit does not change when it moves; the Gaussian mixture of the latent space cannot
    learn that from a few labels. (The same term on the labelled rows' moved copies scored
    lower on the digits and on MNIST.) The moved copy's posterior variance enters q(y|x') as a
    constant: the term moves where the encoder puts a moved image, and cannot lower its loss by
    widening the posterior toward a wider class Gaussian (with that gradient the posteriors and
    the class Gaussians grew wider and the class-conditional samples worse).
    x: (batch, C, H, W); q: q(z|x) of x; y: (batch,)."""
    if x.dim() != 4:
        raise ValueError(
            f"the consistency term moves images (batch, C, H, W), got a batch of {tuple(x.shape)}"
        )
    q_moved = model.posterior(moved(x), y)
    q_moved = DiagonalGaussian(q_moved.mean, q_moved.logvar.detach())
    log_q_moved = model.prior.class_log_posterior(q_moved)  # (batch, K)
    unlabelled = y < 0
    confidence, guess = model.prior.class_log_posterior(q).detach().max(-1)
    sure = unlabelled & (confidence > math.log(CONFIDENCE))
    nll = -log_q_moved.gather(-1, guess.unsqueeze(-1)).squeeze(-1)
    return weight * (nll * sure).sum() / unlabelled.sum().clamp(min=1)


def log_weights(
    model: Composed, x: torch.Tensor, k: int, y: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Importance weights with q(z|x) (q(z|x,y)) as proposal.

    Returns (log_w, log_px_z, log_q_minus_log_p), each (k, batch):
    log w = log p(x|z) + log p(z) - log q(z|x)  (each given y where the model observes it).
    """
    q = model.posterior(x, y)
    z = q.rsample(k)
    log_px_z = model.likelihood.log_prob(model.decoder_params(z, y), x)
    log_ratio = q.log_prob(z) - model.prior.log_prob(z, model.prior_labels(y))
    return log_px_z - log_ratio, log_px_z, log_ratio


def iwae_loss(model: Composed, x: torch.Tensor, y: torch.Tensor | None = None, *, k: int) -> Loss:
    """-IWAE bound with K samples (Burda et al. 2016); K=1 is the ELBO with Monte-Carlo KL.

    rate and distortion are reported as their single-sample Monte-Carlo means (diagnostics:
    here they do not add up to the total).
    """
    log_w, log_px_z, log_ratio = log_weights(model, x, k, y)
    bound = torch.logsumexp(log_w, 0) - math.log(k)
    return Loss(-bound.mean(), log_ratio.mean(), -log_px_z.mean())


@torch.no_grad()
def log_likelihood(
    model: Composed,
    x: torch.Tensor,
    k: int = 1000,
    *,
    y: torch.Tensor | None = None,
    batch_size: int = 64,
    max_elements: int = 2**19,
) -> torch.Tensor:
    """Importance-sampled log p(x) per example, (batch,), nats (log p(x|y) given labels y:
    (batch,) for a model that observes them).

    Batched over examples and samples; the K samples are drawn in chunks and combined with a
    running log-sum-exp, so memory stays bounded (about max_elements floats per chunk) for any K.
    The defaults keep a chunk's tensors in cache (640 decoder rows at 784 dims): larger chunks
    are bound by memory traffic.
    """
    d = math.prod(model.config.event_shape)
    out = []
    ys = [None] * math.ceil(len(x) / batch_size) if y is None else y.split(batch_size)
    for xb, yb in zip(x.split(batch_size), ys, strict=True):
        chunk = max(1, min(k, max_elements // (len(xb) * d)))
        q = model.posterior(xb, yb)
        y_prior = model.prior_labels(yb)
        total = torch.full((len(xb),), -math.inf, device=x.device)
        done = 0
        while done < k:
            s = min(chunk, k - done)
            z = q.rsample(s)
            log_w = (
                model.likelihood.log_prob(model.decoder_params(z, yb), xb)
                + model.prior.log_prob(z, y_prior)
                - q.log_prob(z)
            )
            total = torch.logaddexp(total, torch.logsumexp(log_w, 0))
            done += s
        out.append(total - math.log(k))
    return torch.cat(out)


def bits_per_dim(log_px: torch.Tensor | float, dims: int) -> float:
    """-log p(x) in nats per example -> bits per dimension."""
    return float(-log_px / (dims * math.log(2)))
