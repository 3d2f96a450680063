"""Features without a decoder: the "prior + mutual information" view of the VAE.

The derivation. Write the data distribution p~(x) and the encoder q(z|x); the VAE minimizes

    KL(p~(x) q(z|x) || p(z) p(x|z))
      = E_x[ KL(q(z|x) || p(z)) ]  -  E_{x,z}[ log p(x|z) ]  -  H(x).

Under the joint q(x, z) = p~(x) q(z|x), the reconstruction term is bounded by the conditional
entropy, -E log p(x|z) >= H(x|z) = H(x) - I_q(x; z), with equality when the decoder is the
exact posterior q(x|z). So, for the best possible decoder,

    VAE loss  =  E_x[ KL(q(z|x) || p(z)) ]  -  I_q(x; z)          (+ a constant),
                 `------- prior term ----'    `- information term -'

and the decoder is only the *variational bound* on I_q(x; z). Replace the bound by a direct
estimate of I(x; z) and the decoder is gone. With weights (beta on the prior term, mi_weight on
the information term) the loss here is

    loss = beta * E_x[KL(q(z|x) || p(z))]  -  mi_weight * MI_hat(x; z).

What each term does. Since E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || p(z)) (q(z) the
aggregate posterior), the loss with an exact estimate is

    loss = beta * KL(q(z) || p(z))  -  (mi_weight - beta) * I_q(x; z).

  * the prior term (beta) keeps the codes where the prior is: each q(z|x) is pulled toward
    p(z), and over the data the aggregate posterior q(z) toward p(z), so the features are
    centred, on a common scale and noise-robust (z is a noisy sample; a feature must survive
    the posterior's noise to count as information);
  * the information term (mi_weight) rewards keeping information about x in z. Only its excess
    over beta rewards information: at mi_weight = beta the exact objective is KL(q(z) || p(z))
    alone, which a z that forgets x minimizes. So mi_weight > beta (in nats: the InfoNCE
    estimate is in nats, and then mi_weight / beta is the exchange rate between nats of
    information kept and nats of rate paid).

The estimators. A critic T(x, z) scores every pair of a batch: scores[i, j] = T(x_i, z_j), z_j a
reparameterized draw of q(z|x_j). The diagonal holds draws of the joint q(x, z); off the
diagonal z is shuffled across the batch, draws of the product p~(x) q(z). Two forms:

  * InfoNCE (van den Oord et al. 2018): mean_i [T_ii - logsumexp_j T_ij] + log B, a lower bound
    on I(x; z) in nats for any critic, never above log B (B the batch size); tight when
    I << log B and T is the log density ratio up to a function of x.
  * Jensen-Shannon (the f-GAN form Deep InfoMax uses): E_joint[-softplus(-T)] -
    E_product[softplus(T)] + log 4, a lower bound on 2 * JSD(q(x, z) || p~(x) q(z)) in nats
    (0 at independence, at most log 4). Not I(x; z) itself, but its critic's optimum is the log
    density ratio T* = log q(x, z) / (p~(x) q(z)), so the matched-pair mean E_joint[T] of a
    well-trained JSD critic estimates I(x; z) in nats (an estimate, not a bound: it can land on
    either side of the truth; no log B cap). It is steadier to train than InfoNCE (Hjelm et
    al. 2019), at the price of not being in nats, so its mi_weight is on another scale.

What information counts: the critic sees a noisy view. Information about x alone does not
pick features: I(x; z) is unchanged by any invertible map of z, so an encoder that keeps "which
example is this" by any feature at all (a pixel pattern no class shares) scores as well as one
that keeps the digit's shape. The VAE's decoder breaks that tie through its likelihood: a
Bernoulli or Gaussian p(x|z) only rewards information at the scale of its own noise, so the
code spends its nats on the large, common variations of x. The critic does the same here:
during training it scores z against x~ = x + s * std(x) * sqrt(D) * eps (eps of mean 0 and
variance 1 per feature, uniform because that is cheaper to draw on a CPU (`vaekit.augment`;
the critic sees A eps, Gaussian by the central limit), std(x) the batch's overall standard
deviation, D the number of features, s = `critic_noise`), and

    I(x~; z) <= I(x; z)                   (data processing: z <- x -> x~),

so maximizing the estimate of I(x~; z) rewards exactly the information about x that survives
pixel noise of that scale: coarse structure first, as the likelihood's noise does in a VAE and
input noise does in Linsker's infomax (where it makes the linear solution principal
components). The sqrt(D) makes the noise resolution-free: a feature that averages a region of
pixels sees the same noise whether the image has 8x8 or 28x28 of them (s = 0.2 suits both the
8x8 digits and 28x28 MNIST; without noise the 5-NN accuracy on the digits' posterior means
fell from 0.97 to 0.77). Evaluation (eval mode) scores clean x.

What the code comes from: the encoder's view. The other side of each pair can be made coarse
too. In training (`ModelConfig.augment`, "auto" by default) the encoder of an image model
sees x' = a Bernoulli sample of x (pixels read as probabilities, the channel a Bernoulli
likelihood describes), translated by up to round(side / 28) pixels, and z ~ q(z|x'). That is
a channel x -> x' -> z, so the augmented encoder, q(z|x) = E_{x'|x} q(z|x'), is an encoder like
any other and every estimate stays a lower bound on its I(x; z). What changes is which
information is worth keeping: only what survives resampling the pixels and moving the image
by a pixel, i.e. shape, which is what a linear read-out of the class wants. MNIST, 30 epochs,
seeds 0-3: linear probe 0.900-0.910 without the VAE's decoder (0.862-0.871 with no
augmentation; the VAE 0.889-0.905), 5-NN 0.948-0.955. The 8 x 8 digits get no shift
(round(8 / 28) = 0: a pixel is an eighth of the image, and a shift cost the probe 0.03 there),
only the Bernoulli sample: linear probe 0.969-0.978 over seeds 0-3 (0.944-0.967 unaugmented,
the VAE 0.942-0.978, PCA 0.961, the raw pixels 0.972), at some cost to the neighbours (5-NN
0.981-0.989, against 0.992-0.994 unaugmented and PCA's 0.992). Not for tables ("auto"
leaves them alone). Evaluation (eval mode) encodes x itself.

Units: `Loss.distortion` holds minus the MI estimate in nats (the decoder-free analogue of
-E log p(x|z) >= H(x) - I(x; z), so lower is better, as for a VAE): the InfoNCE bound for
`estimator="infonce"`, the JSD critic's matched-pair mean E_joint[T] for `estimator="jsd"`.

Cost: the critic is separable, T(x, z) = (A x) . g(z) / sqrt(critic_dim), A one linear layer
and g a small MLP of z: one (B, k) x (k, B) matrix product scores all B^2 pairs, so a step costs
the encoder plus one narrow layer over x instead of the encoder plus a full decoder and its
likelihood. One CPU thread, batch 128, the encoder's augmentation included: MNIST 1.49-1.58x
the VAE's samples/s; the 8 x 8 digits 1.17-1.27x. On the digits the steps are so short that
what every step has (the encoder, Adam) weighs more: even the encoder alone, with its
posterior, KL and Adam and no critic at all, steps only 1.8x as fast as the VAE, and the
critic's dozen small matrix products (forward and backward, 12-50 us each on one thread) and
their Adam update add about 1 ms to that (benchmarks/study_infomax_step.py).

The recipe (the defaults; benchmarks/results/infomax_{digits,mnist}.md, latent 16, encoder
D-512-256, batch 128, beta 1): InfoNCE, mi_weight 200, critic_noise 0.2, critic_dim 64,
critic_hidden (256,) on the z side, augment "auto". Linear-probe / 5-NN accuracy of the
posterior means (seed 0):

    MNIST test set (8,000 / 2,000), 30 epochs   infomax 0.910 / 0.955   VAE 0.893 / 0.940
                                                PCA-16  0.862 / 0.946   pixels 0.902 / 0.948
    digits (1,438 / 359), 100 epochs            infomax 0.972 / 0.989   VAE 0.942 / 0.950
                                                PCA-16  0.961 / 0.992   pixels 0.972 / 0.992

Why these settings, one line each (the sweeps, their seeds and the settings they ran under:
benchmarks/results/infomax_views.md and benchmarks/study_infomax_views.py; "before" marks a
sweep run before the encoder's augmentation, with Gaussian critic noise):
  * InfoNCE, not JSD: JSD's neighbours are worse (MNIST 0.897 / 0.926, digits 0.972 / 0.983).
  * mi_weight 200: 50-100 lose neighbours; 500-1000 buy rate (21 -> 34 nats), not accuracy
    (before).
  * beta 1: beta 2-8 trades neighbours for linear separability and never reached the VAE's
    probe (beta 4, the VAE's rate: 0.884 / 0.934; before).
  * critic_noise 0.2: without noise the digits' 5-NN fell from 0.97 to 0.77; 0.1 helps the
    digits (0.969 / 0.992, mean of seeds 0-3) but loses on MNIST (0.899 / 0.944 at seed 0).
  * a linear x side: an MLP over x was worse on MNIST (0.841 / 0.868 against 0.849 / 0.906 at
    15 epochs; before) and slower (1.3x the VAE's speed instead of 1.5-1.8x).
  * the encoder's augmentation rather than a two-view critic (g(mu(x~)) . g(z), SimCLR's
    form): the same MNIST probe (0.906 over three seeds), but the critic's second encoder
    pass makes a step slower than the VAE's (0.78x its samples/s).
  * the augmentation's random numbers from a noise table (`vaekit.augment`): fresh ones cost
    0.9 ms a step (1.3x the VAE's speed), the table 0.3 ms.

What the encoder-only model does not reach, on the digits: PCA's 5-NN accuracy (0.987 mean
over seeds 0-3 against 0.992, one to four test digits of 359; the unaugmented model's 0.993
passes it, at a linear probe of 0.954, below PCA's), and 1.5x the VAE's speed (above).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from vaekit import augment
from vaekit.config import ModelConfig
from vaekit.nets import mlp
from vaekit.objectives import Loss

if TYPE_CHECKING:
    from vaekit.models import VAE

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
    costs little more than the encoder. An MLP over x made the features worse on MNIST and the
    steps slower (see the module docstring); `SeparableCritic` takes one for Python users.
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
    number through one fused log_softmax, forward and backward 0.11 ms for 128 x 128 scores
    on one CPU thread against 0.18 ms for diagonal - logsumexp. And it stays fast where
    torch.logsumexp does not: on the CPU its exp of arguments below about -87 (where float32
    underflows) takes a slow path, 1.3 ms for scores that span a hundred nats or more (a
    trained digits critic's rows span about 15)."""
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


def _critic_scores(model: VAE, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return model.run_critic(x, z).float()


def critic_noise(model: VAE) -> float:
    """The critic's input noise s (units of the batch's standard deviation times sqrt(D)):
    `ModelConfig.critic_noise`."""
    return float(model.config.critic_noise)


def critic_view(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """What the critic sees of x: (batch, *event_shape). In training mode the noisy view x + s *
    std(x) * sqrt(D) * eps (see the module docstring); in eval mode x itself."""
    s = critic_noise(model)
    if not model.training or s <= 0 or len(x) < 2:
        return x
    sigma = s * math.sqrt(x[0].numel()) * x.detach().std()
    return x + sigma * augment.unit_noise_like(x)


def encoder_input(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """What the encoder sees of x: (batch, *event_shape). In training mode, where the config
    asks for it (`augment.encoder_pixels`), a Bernoulli sample of the images translated by a
    pixel or so; otherwise x itself."""
    pixels = augment.encoder_pixels(model.config)
    if not model.training or pixels is None:
        return x
    return augment.encoder_view(x, pixels)


def infomax_terms(
    model: VAE, x: torch.Tensor, y: torch.Tensor | None = None, *, estimator: str = "infonce"
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
    model: VAE,
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
    model: VAE,
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
