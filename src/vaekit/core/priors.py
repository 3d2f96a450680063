"""The priors p(z).

Every density is summed over the latent dimension and returned per example, in nats.
A prior offers `log_prob(z)`, `sample(n)` and `kl(posterior)`; `kl` returns None where no
closed form exists, and the objective then falls back to Monte Carlo (log q - log p).
A new prior is one more subclass of `Prior`; nothing else changes.

Priors over a class variable y take an optional `y` (observed labels, (batch,) int64) in
`log_prob`, `sample` and `kl`; priors without one ignore it. `ClassGaussian` serves the
conditional VAE (y observed, selects N(mu_y, I)) and the clustering VAE (y inferred under
q(y|x), learnable weights and variances) alike; a semi-supervised model mixes the two per row.
`ClassFullGaussian` is the conditional VAE's class prior refit after training to each class's
aggregate posterior (full covariance): a prior with `fit_to_posterior` is refit so by the
trainer once training ends (`vaekit.train.fit`).
"""


from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from vaekit.core.posterior import LOG_2PI, LOGVAR_MAX, LOGVAR_MIN, DiagonalGaussian


class Prior(nn.Module):
    """p(z). Subclasses implement log_prob and sample; kl where a closed form exists."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z: (..., latent) -> (...); y: (batch,) labels where the prior is class-indexed."""
        raise NotImplementedError

    def sample(
        self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(n, latent) draws from the prior (from p(z|y) where y is given)."""
        raise NotImplementedError

    def kl(self, q: DiagonalGaussian, y: torch.Tensor | None = None) -> torch.Tensor | None:
        """Closed-form KL(q || p) per example, (batch,), or None to ask for Monte Carlo."""
        return None


class StandardNormal(Prior):
    """p(z) = N(0, I)."""

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        # Not saved; only tells sample() which device and dtype to draw on.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return -0.5 * (z**2 + LOG_2PI).sum(-1)

    def sample(
        self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        a = self._anchor
        return torch.randn(n, self.latent_dim, generator=generator, device=a.device, dtype=a.dtype)

    def kl(self, q: DiagonalGaussian, y: torch.Tensor | None = None) -> torch.Tensor:
        # 0.5 * sum(mu^2 + sigma^2 - log sigma^2 - 1); tests check it against torch.distributions.
        return 0.5 * (q.mean**2 + torch.exp(q.logvar) - q.logvar - 1).sum(-1)


class ClassGaussian(Prior):
    """p(y) p(z|y): one diagonal Gaussian per class y in 0..K-1.

    Parameters: means (K, latent), log-variances (K, latent), mixture logits (K,); variances
    and weights are learnable or fixed (buffers), per flag. Fixed: unit variances and uniform
    weights, i.e. the conditional VAE's class prior p(z|y) = N(mu_y, I).

    Observed y (`y` given): p(z|y) is one component; KL(q(z|x) || p(z|y)) is closed form.

    Inferred y (`y` None, the clustering VAE). With q(z, y|x) = q(z|x) q(y|x),
        log p(x) >= E_q[log p(x|z)] - E_q(y|x)[KL(q(z|x) || p(z|y))] - KL(q(y|x) || p(y)),
    since log p(x, z, y) - log q(z, y|x) = log p(x|z) + [log p(z|y) - log q(z|x)]
    + [log p(y) - log q(y|x)] and the expectation of each bracket is minus a KL. The
    rate returned by `kl` is the last two terms. For a given q(z|x) the bound is highest at
        q(y=k|x) = p(k) exp(E_q(z|x)[log p(z|k)]) / sum_j p(j) exp(E_q(z|x)[log p(z|j)]),
    the responsibilities of the whole posterior under the mixture (with a vanishing posterior
    variance, those of its mean), which `class_log_posterior` gives in closed form:
        E_q[log N(z; m_k, s_k^2)] = -1/2 sum_d [log 2 pi s_kd^2 + (v_d + (mu_d - m_kd)^2) / s_kd^2]
    for q = N(mu, diag v). Then the rate simplifies to
        E_q[log q(z|x)] - log sum_k p(k) exp(E_q[log p(z|k)]),
    computed as such (one logsumexp; no sampling noise). The test checks it against a
    Monte-Carlo estimate of the same bound.
    """

    def __init__(
        self,
        latent_dim: int,
        classes: int,
        *,
        learn_variance: bool = False,
        learn_weights: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__(latent_dim)
        self.classes = classes
        # Spread-out initial means, so components do not start identical (they would stay so).
        self.means = nn.Parameter(torch.randn(classes, latent_dim, generator=generator))
        logvars, logits = torch.zeros(classes, latent_dim), torch.zeros(classes)
        if learn_variance:
            self.logvars = nn.Parameter(logvars)
        else:
            self.register_buffer("logvars", logvars)
        if learn_weights:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)

    def _logvars(self) -> torch.Tensor:
        return self.logvars.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def log_weights(self) -> torch.Tensor:
        """log p(y): (K,)."""
        return torch.log_softmax(self.logits, -1)

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mu_k, sigma_k) for every component k: z (..., latent) -> (..., K)."""
        logvars = self._logvars()
        d = z.unsqueeze(-2) - self.means
        return -0.5 * (d**2 * torch.exp(-logvars) + logvars + LOG_2PI).sum(-1)

    def log_prob(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z|y) for observed y (z: (S, batch, latent) or (batch, latent), y: (batch,)),
        else log sum_k p(k) p(z|k); rows with y = -1 (not observed) take the latter."""
        comp = self.component_log_prob(z)
        marginal = torch.logsumexp(comp + self.log_weights(), dim=-1)
        if y is None:
            return marginal
        index = y.clamp(min=0).expand(comp.shape[:-1]).unsqueeze(-1)
        return torch.where(y >= 0, comp.gather(-1, index).squeeze(-1), marginal)

    @torch.no_grad()
    def sample(
        self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(n, latent) draws from p(z|y) for the given y ((n,) labels), else from p(z)."""
        if y is None:
            y = torch.multinomial(
                torch.softmax(self.logits, -1).cpu(), n, replacement=True, generator=generator
            ).to(self.means.device)
        std = torch.exp(0.5 * self._logvars())
        eps = torch.randn(n, self.latent_dim, generator=generator).to(self.means)
        return self.means[y] + std[y] * eps

    def expected_log_prob(self, q: DiagonalGaussian) -> torch.Tensor:
        """E_q(z|x)[log p(z|k)] for every k: (batch, K), closed form."""
        logvars = self._logvars()
        d2 = (q.mean.unsqueeze(-2) - self.means) ** 2 + torch.exp(q.logvar).unsqueeze(-2)
        return -0.5 * (d2 * torch.exp(-logvars) + logvars + LOG_2PI).sum(-1)

    def class_log_posterior(self, q: DiagonalGaussian) -> torch.Tensor:
        """log q(y|x): (batch, K), the optimal responsibilities for q(z|x) (class docstring)."""
        return torch.log_softmax(self.expected_log_prob(q) + self.log_weights(), dim=-1)

    def kl(self, q: DiagonalGaussian, y: torch.Tensor | None = None) -> torch.Tensor:
        """(batch,): KL(q(z|x) || p(z|y)) for observed y; for inferred y the rate
        E_q(y|x)[KL(q(z|x) || p(z|y))] + KL(q(y|x) || p(y)) (class docstring). y may mix the
        two per row (semi-supervised): -1 marks a row whose y is inferred, summed out exactly
        over the K classes under q(y|x)."""
        neg_entropy = -0.5 * (q.logvar + 1 + LOG_2PI).sum(-1)  # E_q[log q(z|x)]
        expected = self.expected_log_prob(q)
        inferred = neg_entropy - torch.logsumexp(expected + self.log_weights(), dim=-1)
        if y is None:
            return inferred
        observed = neg_entropy - expected.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return torch.where(y >= 0, observed, inferred)

    @torch.no_grad()
    def set_mixture(self, means: Any, variances: Any, weights: Any | None = None) -> None:
        """Set the components (e.g. from a fitted diagonal GaussianMixture): means and
        variances (K, latent), weights (K,) summing to 1. Fixed variances/weights stay fixed
        unless given."""
        self.means.copy_(torch.as_tensor(means, dtype=self.means.dtype))
        self.logvars.copy_(torch.log(torch.as_tensor(variances, dtype=self.means.dtype)))
        if weights is not None:
            self.logits.copy_(torch.log(torch.as_tensor(weights, dtype=self.means.dtype)))


class MixturePrior(ClassGaussian):
    """A learnable mixture of K diagonal Gaussians (TFP's VAE example prior), y never observed.

    The same parameters as the clustering prior, but its KL is left to Monte Carlo on
    log q(z|x) - log p(z): an unbiased estimate of KL(q(z|x) || p(z)) itself, a tighter
    bound than the class-variable rate, which adds E_q KL(q(y|x) || p(y|z)).
    """

    def __init__(self, latent_dim: int, components: int, generator: torch.Generator | None = None):
        super().__init__(
            latent_dim, components, learn_variance=True, learn_weights=True, generator=generator
        )

    def kl(self, q: DiagonalGaussian, y: torch.Tensor | None = None) -> None:
        return None


class ClassFullGaussian(Prior):
    """p(z|y) = N(mu_y, Sigma_y) with a full covariance, for observed y (prior "class-full").

    Trained as the class prior N(mu_y, I): the means are learned and the Cholesky factors
    L_y (Sigma_y = L_y L_y^T, buffers) stay at the identity, so training is that of prior
    "class". After training, `fit_to_posterior` sets each class's Gaussian to the moments of
    its aggregate posterior q(z|y) = mean over the class's x of q(z|x,y): for a fixed encoder
    that is the Gaussian that maximises the ELBO's prior term sum_x E_q(z|x,y)[log p(z|y)],
        mu_y = E[m(x)],   Sigma_y = Cov[m(x)] + E[diag s^2(x)]   (over the class's rows),
    so the ELBO can only rise, and samples come from where the encoder puts the class's data
    instead of the tails of N(mu_y, I) (figures: the docs' conditional benchmark page).

    The KL to a diagonal q = N(m, diag s^2) is closed form:
        KL = 1/2 [tr(Sigma^-1 diag s^2) + (m - mu)^T Sigma^-1 (m - mu) - d + log|Sigma|
                  - sum log s^2].
    """

    def __init__(self, latent_dim: int, classes: int):
        super().__init__(latent_dim)
        self.classes = classes
        # drawn like ClassGaussian's means, so a seed gives both priors the same start
        self.means = nn.Parameter(torch.randn(classes, latent_dim))
        self.register_buffer("scale_tril", torch.eye(latent_dim).repeat(classes, 1, 1))
        # Whether the covariances are refit (not the identity). While training they are the
        # identity and `kl`/`log_prob` take the class prior's closed forms, without triangular
        # solves: conditioning then costs what it costs with prior "class". A Python flag, not
        # a tensor, so no step waits on the device to read it; set again whenever weights load.
        self.refit = False
        self.register_load_state_dict_post_hook(ClassFullGaussian._after_load)

    @staticmethod
    def _after_load(module: ClassFullGaussian, incompatible_keys: Any) -> None:
        eye = torch.eye(module.latent_dim, dtype=module.scale_tril.dtype)
        module.refit = not torch.equal(module.scale_tril.detach().cpu(), eye.expand_as(
            module.scale_tril))

    def _inverse_tril(self) -> torch.Tensor:
        """L_y^-1 for every class: (K, latent, latent)."""
        eye = torch.eye(self.latent_dim, dtype=self.scale_tril.dtype, device=self.scale_tril.device)
        return torch.linalg.solve_triangular(self.scale_tril, eye.expand_as(self.scale_tril),
                                             upper=False)

    def _log_det(self) -> torch.Tensor:
        """log|Sigma_y|: (K,)."""
        return 2 * self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    def log_prob(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z|y) (z: (S, batch, latent) or (batch, latent), y: (batch,)); without y the
        equal-weight mixture over classes."""
        if y is not None and not self.refit:  # Sigma_y = I (see __init__)
            return -0.5 * ((z - self.means[y]) ** 2 + LOG_2PI).sum(-1)
        inv, log_det = self._inverse_tril(), self._log_det()
        if y is not None:
            white = torch.einsum("bij,...bj->...bi", inv[y], z - self.means[y])
            return -0.5 * ((white**2).sum(-1) + log_det[y] + self.latent_dim * LOG_2PI)
        d = z.unsqueeze(-2) - self.means  # (..., K, latent)
        white = torch.einsum("kij,...kj->...ki", inv, d)
        comp = -0.5 * ((white**2).sum(-1) + log_det + self.latent_dim * LOG_2PI)
        return torch.logsumexp(comp, -1) - math.log(self.classes)

    @torch.no_grad()
    def sample(
        self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(n, latent) draws mu_y + L_y eps for the given y ((n,) labels), else y uniform."""
        if y is None:
            y = torch.randint(self.classes, (n,), generator=generator).to(self.means.device)
        eps = torch.randn(n, self.latent_dim, generator=generator).to(self.means)
        return self.means[y] + (self.scale_tril[y] @ eps.unsqueeze(-1)).squeeze(-1)

    def kl(self, q: DiagonalGaussian, y: torch.Tensor | None = None) -> torch.Tensor | None:
        """(batch,): KL(q(z|x,y) || p(z|y)) in closed form (class docstring); None (Monte
        Carlo) without y."""
        if y is None:
            return None
        if not self.refit:  # Sigma_y = I (see __init__): the class prior's KL
            d2 = (q.mean - self.means[y]) ** 2
            return 0.5 * (d2 + torch.exp(q.logvar) - q.logvar - 1).sum(-1)
        inv = self._inverse_tril()[y]  # (batch, latent, latent)
        trace = (inv**2 * torch.exp(q.logvar).unsqueeze(-2)).sum((-2, -1))
        white = (inv @ (q.mean - self.means[y]).unsqueeze(-1)).squeeze(-1)
        return 0.5 * (
            trace + (white**2).sum(-1) - self.latent_dim + self._log_det()[y] - q.logvar.sum(-1)
        )

    @torch.no_grad()
    def fit_to_posterior(self, mean: torch.Tensor, var: torch.Tensor, y: torch.Tensor) -> None:
        """Set each class's Gaussian to its aggregate posterior's moments (class docstring).

        mean, var: (n, latent) posterior means and variances of the training rows, y: (n,)
        their labels. Moments in float64, normalised by n (the maximiser, not the unbiased
        estimate); a class without rows keeps its Gaussian.
        """
        mean, var = mean.double(), var.double()
        for c in range(self.classes):
            rows = y == c
            if not rows.any():
                continue
            m = mean[rows]
            centred = m - m.mean(0)
            cov = centred.T @ centred / len(m) + torch.diag(var[rows].mean(0))
            self.means[c] = m.mean(0).to(self.means)
            self.scale_tril[c] = torch.linalg.cholesky(cov).to(self.scale_tril)
            self.refit = True


def build_prior(name: str, latent_dim: int, components: int, classes: int = 0) -> Prior:
    """normal: N(0, I); mixture: learnable mixture (Monte-Carlo KL); class: N(mu_y, I) for
    observed y; class-full: N(mu_y, I) while training, then each class's aggregate posterior
    (full covariance); cluster: p(y) N(mu_y, diag sigma_y^2), all learnable, y inferred."""
    if name == "mixture":
        return MixturePrior(latent_dim, components)
    if name == "class":
        return ClassGaussian(latent_dim, classes)
    if name == "class-full":
        return ClassFullGaussian(latent_dim, classes)
    if name == "cluster":
        return ClassGaussian(latent_dim, classes, learn_variance=True, learn_weights=True)
    return StandardNormal(latent_dim)
