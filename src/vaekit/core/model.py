"""The VAE: an encoder, a posterior family, a prior, a decoder with its likelihood.

Variants swap parts; they are not subclasses that copy this one. The class variable y is one
of them (DESIGN.md): a conditional VAE (`config.conditional`) feeds one-hot y to the encoder
and decoder; a class prior (`prior="class"`) makes p(z|y) = N(mu_y, I) (`"class-full"`: refit
after training to each class's aggregate posterior, full covariance); the clustering prior
(`prior="cluster"`) infers y. Methods take an optional `y`: (batch,) int64 class indices,
required where the model observes y and refused where it does not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaekit.core import augment, objectives
from vaekit.core.composite import build_likelihood
from vaekit.core.config import (
    CLASS_PRIORS,
    ConfigError,
    ModelConfig,
    check_buildable,
    from_dict,
    to_dict,
)
from vaekit.core.critic import build_critic, infomax_loss
from vaekit.core.io import CheckpointError, load_tensors, save_tensors
from vaekit.core.likelihoods import Likelihood, check_finite
from vaekit.core.nets import build_networks
from vaekit.core.posterior import CommonNoise, DiagonalGaussian
from vaekit.core.precision import LowPrecision, networks_in
from vaekit.core.priors import Prior, build_prior

FORMAT = "vaekit.model/1"


class VAE(nn.Module):
    """A variational autoencoder assembled from parts.

    Shapes: x (batch, *event_shape); z (S, batch, latent) or (n, latent).
    """

    def __init__(
        self,
        config: ModelConfig,
        encoder: nn.Module,
        decoder: nn.Module | None,
        prior: Prior,
        likelihood: Likelihood | None,
        critic: nn.Module | None = None,
    ):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.decoder = decoder  # None: an encoder-only model, trained with its critic
        self.prior = prior
        self.likelihood = likelihood
        self.critic = critic  # T(x, z) of the infomax objective (vaekit.core.critic)
        # Set by the trainer for --precision bf16: low-precision copies of the networks that
        # the forward pass runs through; densities, KL and the loss stay in fp32.
        self.low_precision: LowPrecision | None = None
        # Set while scoring (`common_noise`): the posterior's draws share one noise stream.
        self.common_noise: CommonNoise | None = None

    @classmethod
    def from_config(cls, config: ModelConfig) -> VAE:
        check_buildable(config)
        encoder, decoder = build_networks(config)
        prior = build_prior(
            config.prior, config.latent_dim, config.mixture_components, config.num_classes
        )
        if not config.decoder:  # encoder-only: the prior + mutual information objective
            return cls(config, encoder, None, prior, None, critic=build_critic(config))
        return cls(config, encoder, decoder, prior, build_likelihood(config))

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    def require_decoder(self, what: str) -> None:
        """A one-line refusal of `what` for an encoder-only model."""
        if self.decoder is None:
            raise ValueError(
                f"this model has no decoder (an encoder-only infomax model), so it cannot "
                f"{what}; it encodes (posterior means and log-variances). Train a VAE for that"
            )

    @property
    def observes_labels(self) -> bool:
        """Whether y is observed: given to the networks (and to a class prior p(z|y))."""
        return self.config.conditional

    # --- the path of a batch ---------------------------------------------------------------

    def condition(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """The networks' condition: one-hot y (batch, classes) for a conditional model."""
        if not self.config.conditional or y is None:
            return None
        return torch.nn.functional.one_hot(y, self.config.num_classes).float()

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiagonalGaussian:
        """q(z|x) (q(z|x,y) for a conditional model) for x: (batch, *event_shape) (a table:
        NaN marks a missing cell; the encoder sees the likelihood's `encoder_input(x)`)."""
        c = self.condition(y)
        if self.likelihood is not None:
            x = self.likelihood.encoder_input(x)
        low = self.low_precision
        if low is None:
            h = self.encoder(x) if c is None else self.encoder(x, c)
        else:
            x = x.to(low.dtype)
            h = low.encoder(x) if c is None else low.encoder(x, c.to(low.dtype))
        return DiagonalGaussian.from_encoder(h.float(), self.common_noise)

    def decoder_params(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihood parameters for z: (..., batch, latent) -> (..., batch, *param_shape) (the
        likelihood's: event_shape, or (param_dim,) for a table); y: (batch,) labels of a
        conditional model (the same for every leading sample)."""
        lead = z.shape[:-1]
        c = self.condition(y)
        if c is not None:
            c = c.expand(*lead, c.shape[-1]).reshape(-1, c.shape[-1])
        z = z.reshape(-1, z.shape[-1])
        low = self.low_precision
        decoder = self.decoder if low is None else low.decoder
        if low is not None:
            z, c = z.to(low.dtype), None if c is None else c.to(low.dtype)
        out = decoder(z) if c is None else decoder(z, c)
        return out.float().reshape(*lead, *self.likelihood.param_shape)

    def run_critic(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The infomax critic's scores T(x_i, z_j): (batch, batch), through the bf16 copy when
        the networks run in bf16; scores in fp32."""
        low = self.low_precision
        if low is None or low.critic is None:
            return self.critic(x, z)
        return low.critic(x.to(low.dtype), z.to(low.dtype)).float()

    def prior_labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """The labels the prior sees: y where p(z|y) is class-indexed, else None."""
        return y if self.config.prior in (*CLASS_PRIORS, "cluster") else None

    def condition_labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """The labels the networks see: y for a conditional model, else None."""
        return y if self.config.conditional else None

    def loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        samples: int = 1,
        beta: float = 1.0,
        analytic_kl: bool = True,
        objective: str | None = None,
        mi_weight: float = 1.0,
        mi_estimator: str = "jsd",
        consistency_weight: float = 0.0,
    ) -> objectives.Loss:
        """The training loss for a batch (no input checks: the trainer checks the data once).
        objective: elbo | iwae | infomax; None: infomax for an encoder-only model, else elbo.
        consistency_weight: of a semi-supervised model's `objectives.consistency_loss` (elbo)."""
        if objective is None:
            objective = "elbo" if self.has_decoder else "infomax"
        if objective == "infomax":
            return infomax_loss(self, x, y, beta=beta, mi_weight=mi_weight, estimator=mi_estimator)
        self.require_decoder(f"be trained with the {objective} objective")
        if objective == "iwae":
            return objectives.iwae_loss(self, x, y, k=samples)
        return objectives.elbo_loss(
            self,
            x,
            y,
            samples=samples,
            beta=beta,
            analytic_kl=analytic_kl,
            label_weight=self.config.label_weight,
            consistency_weight=consistency_weight,
        )

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, **options: Any
    ) -> objectives.Loss:
        """The training loss (`loss`): what DistributedDataParallel and torch.compile call."""
        return self.loss(x, y=y, **options)

    # --- the public API ----------------------------------------------------------------------

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is a float batch of this model's shape in the support."""
        shape = tuple(self.config.event_shape)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != shape or x.dim() != len(shape) + 1:
            hint = ""
            if x.dim() >= 1 and x[0].numel() == torch.Size(shape).numel():
                hint = f"; reshape it with x.reshape(-1, {', '.join(map(str, shape))})"
            raise ValueError(
                f"this model takes inputs of shape (batch, {', '.join(map(str, shape))}), "
                f"got {tuple(x.shape)}{hint}"
            )
        if len(x) == 0:
            raise ValueError("got an empty batch (0 examples)")
        if not x.is_floating_point():
            raise ValueError(f"expected floating-point data, got {x.dtype}; convert with x.float()")
        if self.likelihood is None:
            check_finite(x)
            if augment.encoder_pixels(self.config) is not None:
                augment.check_range(x)
        else:
            self.likelihood.check_support(x)

    def check_labels(self, y: Any, n: int | None = None) -> torch.Tensor | None:
        """y as (n,) int64 class indices for a model that observes labels, None for one that
        does not (a clustering model takes y where given: observed clusters); a one-line
        ValueError for a missing, unexpected or malformed y."""
        if not self.observes_labels:
            if y is not None and self.config.prior == "cluster":
                # the clustering prior's y is inferred unless given: observed clusters (e.g.
                # pseudo-labels, or labelled rows of a semi-supervised model) pick p(z|y);
                # -1 marks a row whose y is inferred (semi-supervised)
                return as_labels(
                    y, self.config.num_classes, n, device=self.prior_device(), unlabelled=True
                )
            if y is not None:
                raise ValueError(
                    "this model is not conditional and takes no labels y; drop y (train with "
                    "conditional=True or prior='class' for a model that uses them)"
                )
            return None
        if y is None:
            raise ValueError(
                f"this model is conditional on a class y (0..{self.config.num_classes - 1}); "
                "pass y, one label per example"
            )
        return as_labels(y, self.config.num_classes, n, device=self.prior_device())

    def prior_device(self) -> torch.device:
        return next(self.parameters()).device

    def elbo(
        self,
        x: torch.Tensor,
        y: Any = None,
        *,
        samples: int = 1,
        analytic_kl: bool = True,
    ) -> objectives.Loss:
        """-ELBO and its parts for x: (batch, *event_shape) (given y, for a conditional model:
        the bound on log p(x|y)); nats per example (beta = 1)."""
        self.require_decoder("compute an ELBO")
        self.check_input(x)
        y = self.check_labels(y, len(x))
        return objectives.elbo_loss(self, x, y, samples=samples, analytic_kl=analytic_kl)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, each (batch, latent)."""
        self.check_input(x)
        q = self.posterior(x, self.check_labels(y, len(x)))
        return q.mean, q.logvar

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: Any = None) -> torch.Tensor:
        """E[x|z] (E[x|z,y]) in data space: z (..., batch, latent) -> (..., batch, *event_shape);
        y: (batch,) labels or one int for all."""
        self.require_decoder("decode")
        if z.shape[-1] != self.config.latent_dim:
            raise ValueError(
                f"z must end in the latent size {self.config.latent_dim}, got {tuple(z.shape)}"
            )
        y = self.check_labels(y, z.shape[-2] if z.dim() >= 2 else 1)
        return self.likelihood.mean(self.decoder_params(z, y))

    @torch.no_grad()
    def sample(
        self, n: int, y: Any = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n new examples (the likelihood's mean at prior draws): (n, *event_shape).

        y: the class to generate, an int or (n,) labels (required by a conditional model);
        for a clustering model it picks the cluster (None: clusters drawn from p(y)).
        """
        self.require_decoder("sample")
        if self.config.prior == "cluster" and y is not None:
            y = as_labels(y, self.config.num_classes, n, device=self.prior_device())
        else:
            y = self.check_labels(y, n)
        z = self.prior.sample(n, y=self.prior_labels(y), generator=generator)
        return self.likelihood.mean(self.decoder_params(z, self.condition_labels(y)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: Any = None) -> torch.Tensor:
        """E[x|z] at the posterior mean: (batch, *event_shape)."""
        self.require_decoder("reconstruct")
        self.check_input(x)
        y = self.check_labels(y, len(x))
        q = self.posterior(x, y)
        return self.likelihood.mean(self.decoder_params(q.mean, y))

    def log_likelihood(
        self,
        x: torch.Tensor,
        y: Any = None,
        k: int = 1000,
        *,
        batch_size: int = 64,
        precision: str = "fp32",
    ) -> torch.Tensor:
        """Importance-sampled log p(x) with K samples, per example: (batch,), nats; log p(x|y)
        for a model that observes y.

        precision="bf16" runs the networks in bfloat16 (densities stay fp32): faster on CPUs
        with AMX, and the estimate moves by a few hundredths of a nat (the docs' likelihood
        benchmark page); fp32 is the honest default.
        """
        self.require_decoder("estimate log p(x)")
        self.check_input(x)
        y = self.check_labels(y, len(x))
        with networks_in(self, precision):
            return objectives.log_likelihood(self, x, k, y=y, batch_size=batch_size)

    # --- files -------------------------------------------------------------------------------

    def save(self, path: str | Path, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Weights as safetensors with the config as JSON in the header; written atomically.
        weights: a state dict of this model to save instead of its current one (e.g. the best
        epoch's)."""
        state = self.state_dict() if weights is None else weights
        save_tensors(Path(path), state, {"format": FORMAT, "model": to_dict(self.config)})

    @classmethod
    def load(cls, path: str | Path) -> VAE:
        """Rebuild a saved model, refusing a damaged or mismatched file with a clear message."""
        tensors, meta = load_tensors(Path(path))
        if meta.get("format") != FORMAT:
            raise CheckpointError(
                f"{path}: not a vaekit model file (format {meta.get('format')!r})"
            )
        try:
            config = from_dict(ModelConfig, meta.get("model"), strict=True, where="model config")
        except ConfigError as e:
            raise CheckpointError(f"{path}: {e}") from None
        model = cls.from_config(config)
        load_state(model, tensors, str(path))
        return model.eval()


def as_labels(
    y: Any,
    classes: int,
    n: int | None = None,
    device: torch.device | None = None,
    *,
    unlabelled: bool = False,
) -> torch.Tensor:
    """Class indices as (n,) int64 on `device`: from an int (the same class n times), a
    sequence, an array or a tensor of integers in 0..classes-1 (unlabelled: or -1, a row
    without a label); a one-line ValueError otherwise (NaN, fractions, out of range, wrong
    length)."""
    if isinstance(y, bool):
        raise ValueError(f"labels must be integers in 0..{classes - 1}, got {y!r}")
    if isinstance(y, int):
        y = torch.full((1 if n is None else n,), y, dtype=torch.int64)
    t = torch.as_tensor(y)
    if t.dim() != 1:
        t = t.reshape(-1) if t.dim() == 0 else t
        if t.dim() != 1:
            raise ValueError(f"labels must be one per example, shape (n,), got {tuple(t.shape)}")
    if t.is_floating_point():
        if not torch.isfinite(t).all() or (t != t.round()).any():
            raise ValueError("labels must be whole numbers (class indices); got NaN or fractions")
    elif t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"labels must be integer class indices, got dtype {t.dtype}")
    t = t.to(torch.int64)
    if n is not None and len(t) != n:
        raise ValueError(f"got {len(t)} labels for {n} examples; give one label per example")
    low = -1 if unlabelled else 0
    if len(t) and (int(t.min()) < low or int(t.max()) >= classes):
        bad = int(t.min()) if int(t.min()) < low else int(t.max())
        raise ValueError(f"label {bad} is out of range: this model has classes 0..{classes - 1}")
    return t if device is None else t.to(device)


@contextlib.contextmanager
def common_noise(model: VAE, seed: int) -> Iterator[None]:
    """Within the block, every posterior of `model` draws common random numbers (the s-th
    draw of each row uses the same eps_s of a stream fixed by `seed`; `priors.CommonNoise`):
    Monte Carlo scores per row that do not depend on the batch a row is scored in."""
    previous = model.common_noise
    model.common_noise = CommonNoise(seed, model.config.latent_dim)
    try:
        yield
    finally:
        model.common_noise = previous


def load_state(module: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Load tensors into a module after checking names and shapes; name the first mismatch."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{where}: weights do not match the model config "
            f"(missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'})"
        )
    for name, t in expected.items():
        if tensors[name].shape != t.shape:
            raise CheckpointError(
                f"{where}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                f"the config needs {tuple(t.shape)}"
            )
    module.load_state_dict(tensors)
