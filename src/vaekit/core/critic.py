"""Features without a decoder: the "prior + mutual information" view of the VAE.

For the best possible decoder the VAE's loss is, up to a constant,

    E_x[ KL(q(z|x) || p(z)) ]  -  I_q(x; z),

so the decoder is only a variational bound on I_q(x; z). Replace the bound by a direct estimate
of the mutual information and the decoder is gone:

    loss = beta * E_x[KL(q(z|x) || p(z))]  -  mi_weight * MI_hat(x; z).

Since E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || p(z)), only the excess of mi_weight over
beta rewards information (mi_weight / beta is the exchange rate between nats kept and nats of
rate paid).

The estimators: a critic T(x, z) scores every pair of a batch, scores[i, j] = T(x_i, z_j) with
z_j a reparameterized draw of q(z|x_j); the diagonal holds draws of the joint, the rest of the
product of marginals. InfoNCE (`mi_infonce`) is a lower bound on I(x; z) in nats, never above
log B; the Jensen-Shannon form of Deep InfoMax (`mi_jsd`) bounds 2 * JSD and its critic's
matched-pair mean (`mi_matched`) estimates I(x; z) in nats.

Which information counts. I(x; z) does not care which features of x are kept, so in training
the critic scores z against a noisy view x + s * std(x) * sqrt(D) * eps (s = `critic_noise`):
by data processing only information that survives pixel noise of that scale is rewarded, as a
likelihood's noise does for a VAE; sqrt(D) makes s independent of the resolution. The encoder
of an image model may see a Bernoulli sample of x shifted by round(side / 28) pixels
(`ModelConfig.augment`, `vaekit.core.augment`): a channel x -> x' -> z, so every estimate stays
a bound on the augmented encoder's I(x; z), and what is worth keeping is the shape. Evaluation
(eval mode) uses clean x on both sides.

Units: `Loss.distortion` holds minus the MI estimate in nats (the decoder-free analogue of
-E log p(x|z)). The critic is separable (`build_critic`), so one (B, k) x (k, B) product scores
all B^2 pairs. The defaults, their sweeps and the speed against the VAE are on the docs'
features benchmark page.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.core import augment
from vaekit.core.config import ModelConfig
from vaekit.core.nets import mlp
from vaekit.core.objectives import Loss

ESTIMATORS = ("jsd", "infonce")
LOG4 = math.log(4.0)


class SeparableCritic(nn.Module):
    """T(x, z) = f(x) . g(z) / sqrt(k) for every pair of a batch.

    f: flattened x (D,) -> x_hidden... -> k; g: z (latent,) -> z_hidden... -> k (activations
    between layers). forward(x: (batch, *event_shape), z: (batch, latent)) -> (batch, batch)
    with scores[i, j] = T(x_i, z_j). The 1/sqrt(k) keeps a fresh critic's scores near unit
    scale whatever k is.
    """

    def __init__(
        self,
        x_dim: int,
        latent: int,
        x_hidden: tuple[int, ...],
        z_hidden: tuple[int, ...],
        dim: int,
        activation: str,
    ):
        super().__init__()
        self.f = mlp([x_dim, *x_hidden, dim], activation)
        self.g = mlp([latent, *z_hidden, dim], activation)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return (self.f(x.flatten(1)) * self.scale) @ self.g(z).T


def build_critic(cfg: ModelConfig) -> nn.Module:
    """The critic T(x, z) an encoder-only config describes: forward(x: (batch, *event_shape),
    z: (batch, latent)) -> (batch, batch) scores, scores[i, j] = T(x_i, z_j).

    Separable, T(x, z) = (A x) . g(z) / sqrt(k): A one linear map of the flattened x to
    k = `critic_dim`, g an MLP of z through `critic_hidden` to k (`activation` between).
    Linear in x on purpose: T is then x . d(z) with d(z) = A^T g(z) / sqrt(k) a template in
    data space, the same form as a Gaussian decoder's log-likelihood up to terms that InfoNCE
    cancels (-|x - d(z)|^2 / 2 s^2 = x . d(z) / s^2 - |d(z)|^2 / 2 s^2 - |x|^2 / 2 s^2): a
    decoder scored by contrast instead of by likelihood, one narrow layer over x, so a step
    costs little more than the encoder. `SeparableCritic` also takes an MLP over x.
    For either `arch` (the critic only checks the pairing; it need not see images as the
    encoder does).
    """
    return SeparableCritic(
        math.prod(cfg.event_shape),
        cfg.latent_dim,
        (),
        cfg.critic_hidden,
        cfg.critic_dim,
        cfg.activation,
    )


def _check_scores(scores: torch.Tensor) -> None:
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(
            f"critic scores must be a square (batch, batch) matrix, got {tuple(scores.shape)}"
        )


def mi_jsd(scores: torch.Tensor) -> torch.Tensor:
    """The Jensen-Shannon MI objective of Deep InfoMax from scores (B, B) (diagonal: matched
    pairs, off the diagonal: shuffled pairs): E_joint[-softplus(-T)] - E_product[softplus(T)] +
    log 4, a scalar lower bound on 2 * JSD(joint || product) in nats, in [.., log 4]; 0 for a
    critic that scores every pair 0. With B = 1 there is no shuffled pair: returns 0 (with a
    graph, so a trainer's last one-example batch steps harmlessly)."""
    _check_scores(scores)
    b = scores.shape[0]
    if b < 2:
        return scores.sum() * 0.0
    pos = -F.softplus(-scores.diagonal()).mean()
    # all B^2 softplus terms minus the diagonal's, divided by the B(B-1) off-diagonal pairs
    neg_all = F.softplus(scores).sum()
    neg = (neg_all - F.softplus(scores.diagonal()).sum()) / (b * (b - 1))
    return pos - neg + LOG4


def mi_infonce(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE from scores (B, B): mean_i [T_ii - logsumexp_j T_ij] + log B, a scalar lower
    bound on I(x; z) in nats, never above log B. Each x_i picks its own z among the batch's.

    Computed as log B minus the cross-entropy of row i's scores against class i: the same
    number through one fused log_softmax, which is faster than diagonal - logsumexp and has no
    slow path for scores that span many nats."""
    _check_scores(scores)
    b = scores.shape[0]
    matched = torch.arange(b, device=scores.device)
    return math.log(b) - F.cross_entropy(scores, matched)


def mi_matched(scores: torch.Tensor) -> torch.Tensor:
    """E_joint[T]: the mean matched-pair score, nats. For a critic trained with `mi_jsd` (whose
    optimum is the log density ratio) an estimate of I(x; z) that log B does not cap."""
    _check_scores(scores)
    return scores.diagonal().mean()


def check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"mi estimator {estimator!r} is not one of {', '.join(ESTIMATORS)}")


def _critic_scores(model: Any, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return model.run_critic(x, z).float()


def critic_noise(model: Any) -> float:
    """The critic's input noise s (units of the batch's standard deviation times sqrt(D)):
    `ModelConfig.critic_noise`."""
    return float(model.config.critic_noise)


def critic_view(model: Any, x: torch.Tensor) -> torch.Tensor:
    """What the critic sees of x: (batch, *event_shape). In training mode the noisy view x + s *
    std(x) * sqrt(D) * eps (see the module docstring); in eval mode x itself."""
    s = critic_noise(model)
    if not model.training or s <= 0 or len(x) < 2:
        return x
    sigma = s * math.sqrt(x[0].numel()) * x.detach().std()
    return x + sigma * augment.unit_noise_like(x)


def encoder_input(model: Any, x: torch.Tensor) -> torch.Tensor:
    """What the encoder sees of x: (batch, *event_shape). In training mode, where the config
    asks for it (`augment.encoder_pixels`), a Bernoulli sample of the images translated by a
    pixel or so; otherwise x itself."""
    pixels = augment.encoder_pixels(model.config)
    if not model.training or pixels is None:
        return x
    return augment.encoder_view(x, pixels)


def infomax_terms(
    model: Any, x: torch.Tensor, y: torch.Tensor | None = None, *, estimator: str = "infonce"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rate, mi, mi_nats) for a batch x: (batch, *event_shape), scalars, means over the batch.

    rate: E KL(q(z|x) || p(z)) in nats (analytic where the prior allows, else Monte Carlo with
    the same draw); mi: the estimator's objective (InfoNCE in nats, or the JSD bound);
    mi_nats: the MI estimate in nats (InfoNCE; for jsd the matched-pair mean score).
    z is one reparameterized draw of q(z|x) per example; the critic scores it against
    `critic_view(model, x)` (noisy in training mode).
    """
    check_estimator(estimator)
    q = model.posterior(encoder_input(model, x), y)
    z = q.rsample(1)[0]  # (batch, latent)
    y_prior = model.prior_labels(y)
    kl = model.prior.kl(q, y_prior)
    if kl is None:
        kl = q.log_prob(z[None])[0] - model.prior.log_prob(z, y_prior)
    scores = _critic_scores(model, critic_view(model, x), z)
    if estimator == "infonce":
        mi = mi_infonce(scores)
        return kl.mean(), mi, mi
    return kl.mean(), mi_jsd(scores), mi_matched(scores)


def infomax_loss(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    beta: float = 1.0,
    mi_weight: float = 200.0,
    estimator: str = "infonce",
) -> Loss:
    """The decoder-free loss for a batch x: (batch, *event_shape).

    Loss(total = beta * rate - mi_weight * mi, rate = mean KL(q(z|x) || p(z)) in nats,
    distortion = -(MI estimate in nats)): the distortion slot holds minus the MI estimate,
    the decoder-free analogue of -E log p(x|z) >= H(x) - I(x; z), so metrics.csv, progress and
    curves keep their columns. mi is `mi_jsd` or `mi_infonce` of the critic's scores on one
    reparameterized draw z of q(z|x) per example against z shuffled across the batch.
    """
    rate, mi, nats = infomax_terms(model, x, y, estimator=estimator)
    return Loss(beta * rate - mi_weight * mi, rate, -nats.detach())


@torch.no_grad()
def infomax_figures(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    estimator: str = "infonce",
    mi_weight: float = 200.0,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float | str | int]:
    """Figures over x: (n, *event_shape) (a tensor or row source) for `evaluate`, beta = 1.

    The critic's negatives are the other examples of a batch, so x is cut into near-equal
    batches of at most `batch_size` (no small remainder batch), the figures averaged over
    examples. Seeded (the z draws); the caller's RNG is left untouched. Returns:
      loss         rate - mi_weight * mi (the training loss at beta = 1)
      rate         E KL(q(z|x) || p(z)), nats
      mi           the training estimator's value (InfoNCE nats, or the JSD bound in nats)
      mi_estimator its name
      mi_nats      InfoNCE at this batch size, nats: a lower bound on I(x; z), capped at
                   log(batch) = `mi_nats_cap` (a figure near the cap means "at least this")
      mi_nats_cap  log of the smallest batch used
      mi_matched   the matched-pair mean score E_joint[T], nats: the I(x; z) estimate of a
                   JSD-trained critic (not a bound, not capped); meaningless for an
                   InfoNCE-trained one, whose scores are free up to any function of x
      mi_jsd, mi_infonce  both estimators' values
    """
    check_estimator(estimator)
    n = len(x)
    if n < 2:
        raise ValueError("MI figures need at least 2 examples (the critic compares pairs)")
    was_training = model.training
    model.eval()
    sums = dict.fromkeys(("rate", "jsd", "infonce", "matched"), 0.0)
    parts = torch.arange(n).tensor_split(math.ceil(n / batch_size))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for idx in parts:
            xb = x[idx]
            yb = None if y is None else y[idx]
            q = model.posterior(xb, yb)
            z = q.rsample(1)[0]
            y_prior = model.prior_labels(yb)
            kl = model.prior.kl(q, y_prior)
            if kl is None:
                kl = q.log_prob(z[None])[0] - model.prior.log_prob(z, y_prior)
            scores = _critic_scores(model, xb, z)
            m = len(idx)
            sums["rate"] += float(kl.sum())
            sums["jsd"] += float(mi_jsd(scores)) * m
            sums["infonce"] += float(mi_infonce(scores)) * m
            sums["matched"] += float(mi_matched(scores)) * m
    model.train(was_training)
    f = {k: v / n for k, v in sums.items()}
    mi = f[estimator]
    return {
        "loss": f["rate"] - mi_weight * mi,
        "rate": f["rate"],
        "mi": mi,
        "mi_estimator": estimator,
        "mi_nats": f["infonce"],
        "mi_nats_cap": math.log(min(len(p) for p in parts)),
        "mi_matched": f["matched"],
        "mi_jsd": f["jsd"],
        "mi_infonce": f["infonce"],
        "mi_batch": len(parts[0]),
    }
