"""The posterior family q(z|x) and the priors p(z).

Every density is summed over the latent dimension and returned per example, in nats.
A prior offers `log_prob(z)`, `sample(n)` and `kl(posterior)`; `kl` returns None where no
closed form exists, and the objective then falls back to Monte Carlo (log q - log p).
A new prior (e.g. the clustering VAE's) is one more subclass of `Prior`; nothing else changes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)
# Keeps exp(logvar) away from 0 and overflow; sigma spans about 3e-4 .. 150.
LOGVAR_MIN, LOGVAR_MAX = -16.0, 10.0


class DiagonalGaussian:
    """q(z|x) = N(mean, diag(exp(logvar))). mean, logvar: (batch, latent)."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean
        self.logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    @classmethod
    def from_encoder(cls, h: torch.Tensor) -> DiagonalGaussian:
        """Split an encoder output (batch, 2 * latent) into mean and log-variance."""
        mean, logvar = h.chunk(2, dim=-1)
        return cls(mean, logvar)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterized z = mean + std * eps, eps ~ N(0, I). Returns (samples, batch, latent)."""
        shape = (samples, *self.mean.shape)
        eps = torch.randn(
            shape, dtype=self.mean.dtype, device=self.mean.device, generator=generator
        )
        return self.mean + self.std * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) for z: (S, batch, latent) -> (S, batch)."""
        return -0.5 * (
            ((z - self.mean) ** 2) * torch.exp(-self.logvar) + self.logvar + LOG_2PI
        ).sum(-1)


class Prior(nn.Module):
    """p(z). Subclasses implement log_prob and sample; kl where a closed form exists."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """z: (..., latent) -> (...)."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, latent) draws from the prior."""
        raise NotImplementedError

    def kl(self, q: DiagonalGaussian) -> torch.Tensor | None:
        """Closed-form KL(q || p) per example, (batch,), or None to ask for Monte Carlo."""
        return None


class StandardNormal(Prior):
    """p(z) = N(0, I)."""

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        # Not saved; only tells sample() which device and dtype to draw on.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z**2 + LOG_2PI).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        a = self._anchor
        return torch.randn(n, self.latent_dim, generator=generator, device=a.device, dtype=a.dtype)

    def kl(self, q: DiagonalGaussian) -> torch.Tensor:
        # 0.5 * sum(mu^2 + sigma^2 - log sigma^2 - 1); tests check it against torch.distributions.
        return 0.5 * (q.mean**2 + torch.exp(q.logvar) - q.logvar - 1).sum(-1)


class MixturePrior(Prior):
    """A learnable mixture of K diagonal Gaussians (TFP's VAE example prior).

    Parameters: component means (K, latent), log-variances (K, latent), mixture logits (K,).
    No closed-form KL: the objective uses Monte Carlo.
    """

    def __init__(self, latent_dim: int, components: int, generator: torch.Generator | None = None):
        super().__init__(latent_dim)
        # Spread-out initial means, so components do not start identical (they would stay so).
        self.means = nn.Parameter(torch.randn(components, latent_dim, generator=generator))
        self.logvars = nn.Parameter(torch.zeros(components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mu_k, sigma_k) for every component k: z (..., latent) -> (..., K)."""
        logvars = self.logvars.clamp(LOGVAR_MIN, LOGVAR_MAX)
        d = z.unsqueeze(-2) - self.means
        return -0.5 * (d**2 * torch.exp(-logvars) + logvars + LOG_2PI).sum(-1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        log_w = torch.log_softmax(self.logits, -1)
        return torch.logsumexp(self.component_log_prob(z) + log_w, dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            k = torch.multinomial(
                torch.softmax(self.logits, -1), n, replacement=True, generator=generator
            )
            std = torch.exp(0.5 * self.logvars.clamp(LOGVAR_MIN, LOGVAR_MAX))
            eps = torch.randn(n, self.latent_dim, generator=generator, device=self.means.device)
            return self.means[k] + std[k] * eps


def build_prior(name: str, latent_dim: int, components: int) -> Prior:
    if name == "mixture":
        return MixturePrior(latent_dim, components)
    return StandardNormal(latent_dim)
