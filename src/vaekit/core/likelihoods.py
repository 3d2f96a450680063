"""Likelihoods p(x|z): turn decoder outputs into a density over x, independent per dimension.

`log_prob(params, x)`: params (S, batch, *event_shape) from the decoder, x (batch, *event_shape)
-> (S, batch), summed over the event dimensions, in nats. Never a softmax across pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.core.config import ModelConfig

LOG_2PI = math.log(2 * math.pi)
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -7.0, 5.0  # keeps a learned sigma from collapsing to 0


def check_finite(x: torch.Tensor) -> None:
    """A one-line ValueError if x holds NaN or infinity."""
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"data holds {bad} NaN or infinite value(s); remove or impute them before training"
        )


def check_unit_interval(x: torch.Tensor, what: str, fix: str) -> None:
    """A one-line ValueError unless x is in [0, 1]: "`what` needs data in [0, 1], got values
    from lo to hi; `fix`"."""
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{what} needs data in [0, 1], got values from {lo:g} to {hi:g}; {fix}")


class Likelihood(nn.Module):
    name = "likelihood"

    def __init__(self, event_shape: tuple[int, ...]):
        super().__init__()
        self.event_shape = event_shape
        self.event_dims = len(event_shape)
        # the decoder's output per example: one parameter per data dimension here; a table's
        # composite likelihood takes more (K logits per categorical column)
        self.param_shape = event_shape

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z] in data space."""
        raise NotImplementedError

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoder sees of x: x itself (a table's likelihood encodes its columns)."""
        return x

    def check_support(self, x: torch.Tensor) -> None:
        """Raise ValueError naming the problem and the fix if x is outside the support."""
        check_finite(x)

    def _sum_event(self, t: torch.Tensor) -> torch.Tensor:
        return t.flatten(-self.event_dims).sum(-1)


class Bernoulli(Likelihood):
    """Bernoulli on logits; x in [0, 1] (binary, or grey levels read as probabilities)."""

    name = "bernoulli"

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if params.requires_grad or params.dim() != x.dim() + 1:
            # training: BCE-with-logits has one fused backward kernel
            nll = F.binary_cross_entropy_with_logits(params, x.expand_as(params), reduction="none")
            return -self._sum_event(nll)
        # evaluation over S samples (log-likelihood, scores): the same value written as
        # x.l - softplus(l), with x.l a batched matmul that never expands x to params' shape
        # (softplus is linear beyond 20: exact in fp32)
        logits = params.flatten(-self.event_dims)
        xs = x.flatten(-self.event_dims).to(logits.dtype)
        return torch.einsum("sbd,bd->sb", logits, xs) - F.softplus(logits).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(params), generator=generator)

    def check_support(self, x: torch.Tensor) -> None:
        super().check_support(x)
        check_unit_interval(
            x,
            "the Bernoulli likelihood",
            "scale the data to [0, 1] (e.g. divide 8-bit images by 255) or use "
            "--likelihood gaussian for real-valued data",
        )


class Gaussian(Likelihood):
    """N(x; mean, sigma^2) per dimension with a fixed sigma: MSE / (2 sigma^2) up to constants."""

    name = "gaussian"

    def __init__(self, event_shape: tuple[int, ...], sigma: float = 1.0):
        super().__init__(event_shape)
        self.register_buffer("log_sigma", torch.tensor(math.log(sigma)))

    def _log_sigma(self) -> torch.Tensor:
        return self.log_sigma

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        log_sigma = self._log_sigma()
        z = (x - params) * torch.exp(-log_sigma)
        return -self._sum_event(0.5 * z**2 + log_sigma + 0.5 * LOG_2PI)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        eps = torch.randn(
            params.shape, generator=generator, dtype=params.dtype, device=params.device
        )
        return params + torch.exp(self._log_sigma()) * eps


class LearnedGaussian(Gaussian):
    """Gaussian with a learned sigma, one per data dimension or one shared.

    A learned sigma lets the model balance reconstruction against the rate instead of a
    hand-picked sigma doing it (sigma-VAE, Rybkin et al. 2021).
    """

    name = "gaussian-learned"

    def __init__(self, event_shape: tuple[int, ...], sigma: float = 1.0, per_dim: bool = True):
        super().__init__(event_shape, sigma)
        shape = event_shape if per_dim else ()
        del self.log_sigma
        self.log_sigma = nn.Parameter(torch.full(shape, math.log(sigma)))

    def _log_sigma(self) -> torch.Tensor:
        return self.log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)


def build_likelihood(cfg: ModelConfig) -> Likelihood:
    """The likelihood of a config whose outputs are one parameter per data dimension (a
    table's, likelihood "composite": `vaekit.core.composite.build_likelihood`)."""
    if cfg.likelihood == "composite":
        raise ValueError("a table's likelihood is built by vaekit.core.composite.build_likelihood")
    if cfg.likelihood == "bernoulli":
        return Bernoulli(cfg.event_shape)
    if cfg.likelihood == "gaussian":
        return Gaussian(cfg.event_shape, cfg.sigma)
    return LearnedGaussian(cfg.event_shape, cfg.sigma, per_dim=cfg.learned_sigma == "per-dim")
