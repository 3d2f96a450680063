"""The posterior family q(z|x): a diagonal Gaussian from the encoder's output, and the common
random numbers that make Monte Carlo scores independent of the batch a row is in.

Densities are summed over the latent dimension and returned per example, in nats.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)
# Keeps exp(logvar) away from 0 and overflow; sigma spans about 3e-4 .. 150.
LOGVAR_MIN, LOGVAR_MAX = -16.0, 10.0


class CommonNoise:
    """Common random numbers for the posterior's draws: eps_1, eps_2, ... ~ N(0, I) (latent,),
    one stream fixed by `seed`, and the s-th draw of every row of a posterior uses eps_s.

    For scores (`vaekit.anomaly.scores`): a row's Monte Carlo score is then a function of the
    row alone, the same whatever batch it is scored in, at whatever position and batch size.
    Each draw is still N(0, I), so every estimate keeps its expectation; the ranking as a
    whole moves more with the seed than under independent draws, which enough draws make up
    for (the docs' anomaly benchmark page). Not for training, where rows of a batch
    need independent draws. The stream is drawn in fixed blocks from one generator, so
    eps_s does not depend on how the draws are chunked.
    """

    BLOCK = 64

    def __init__(self, seed: int, latent_dim: int):
        self.generator = torch.Generator().manual_seed(int(seed))
        self.latent_dim = latent_dim
        self.bank = torch.empty(0, latent_dim)

    def eps(self, start: int, samples: int) -> torch.Tensor:
        """eps_start .. eps_{start + samples - 1}: (samples, latent), on the CPU."""
        while len(self.bank) < start + samples:
            block = torch.randn(self.BLOCK, self.latent_dim, generator=self.generator)
            self.bank = torch.cat([self.bank, block])
        return self.bank[start : start + samples]


class DiagonalGaussian:
    """q(z|x) = N(mean, diag(exp(logvar))). mean, logvar: (batch, latent).

    noise: common random numbers (`CommonNoise`) for rsample, or None for independent draws.
    """

    def __init__(
        self, mean: torch.Tensor, logvar: torch.Tensor, noise: CommonNoise | None = None
    ):
        self.mean = mean
        self.logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        self.noise = noise
        self.drawn = 0  # draws taken from `noise` so far

    @classmethod
    def from_encoder(cls, h: torch.Tensor, noise: CommonNoise | None = None) -> DiagonalGaussian:
        """Split an encoder output (batch, 2 * latent) into mean and log-variance."""
        mean, logvar = h.chunk(2, dim=-1)
        return cls(mean, logvar, noise)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterized z = mean + std * eps, eps ~ N(0, I). Returns (samples, batch, latent).
        With common noise, eps is the next `samples` of its stream, shared by every row."""
        if self.noise is not None:
            eps = self.noise.eps(self.drawn, samples).to(self.mean)
            self.drawn += samples
            return self.mean + self.std * eps[:, None, :]
        shape = (samples, *self.mean.shape)
        # generator only when given: torch.compile cannot trace generator=None with a
        # batch size that varies (the last batch of an epoch)
        extra = {} if generator is None else {"generator": generator}
        eps = torch.randn(shape, dtype=self.mean.dtype, device=self.mean.device, **extra)
        return self.mean + self.std * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) for z: (S, batch, latent) -> (S, batch)."""
        return -0.5 * (
            ((z - self.mean) ** 2) * torch.exp(-self.logvar) + self.logvar + LOG_2PI
        ).sum(-1)
