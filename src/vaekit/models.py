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
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaekit import augment, objectives
from vaekit.config import (
    CLASS_PRIORS,
    ConfigError,
    ModelConfig,
    check_buildable,
    from_dict,
    to_dict,
)
from vaekit.io import CheckpointError, load_tensors, save_tensors
from vaekit.likelihoods import Likelihood, build_likelihood, check_finite
from vaekit.nets import build_networks
from vaekit.priors import CommonNoise, DiagonalGaussian, Prior, build_prior

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
        self.critic = critic  # T(x, z) of the infomax objective (vaekit.infomax)
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
            from vaekit.infomax import build_critic

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
        """q(z|x) (q(z|x,y) for a conditional model) for x: (batch, *event_shape)."""
        c = self.condition(y)
        low = self.low_precision
        if low is None:
            h = self.encoder(x) if c is None else self.encoder(x, c)
        else:
            x = x.to(low.dtype)
            h = low.encoder(x) if c is None else low.encoder(x, c.to(low.dtype))
        return DiagonalGaussian.from_encoder(h.float(), self.common_noise)

    def decoder_params(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihood parameters for z: (..., batch, latent) -> (..., batch, *event_shape); y:
        (batch,) labels of a conditional model (the same for every leading sample)."""
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
        return out.float().reshape(*lead, *self.config.event_shape)

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
    ) -> objectives.Loss:
        """The training loss for a batch (no input checks: the trainer checks the data once).
        objective: elbo | iwae | infomax; None: infomax for an encoder-only model, else elbo."""
        if objective is None:
            objective = "elbo" if self.has_decoder else "infomax"
        if objective == "infomax":
            from vaekit.infomax import infomax_loss

            return infomax_loss(self, x, y, beta=beta, mi_weight=mi_weight, estimator=mi_estimator)
        self.require_decoder(f"be trained with the {objective} objective")
        if objective == "iwae":
            return objectives.iwae_loss(self, x, y, k=samples)
        return objectives.elbo_loss(self, x, y, samples=samples, beta=beta, analytic_kl=analytic_kl)

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
                # pseudo-labels, or labelled rows of a semi-supervised model) pick p(z|y)
                return as_labels(y, self.config.num_classes, n, device=self.prior_device())
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

        precision="bf16" runs the networks in bfloat16 (densities stay fp32): about 2x faster
        on CPUs with AMX, and the estimate moves by a few hundredths of a nat (see
        benchmarks/results/nll_mnist.md); fp32 is the honest default.
        """
        self.require_decoder("estimate log p(x)")
        self.check_input(x)
        y = self.check_labels(y, len(x))
        with networks_in(self, precision):
            return objectives.log_likelihood(self, x, k, y=y, batch_size=batch_size)

    # --- files -------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Weights as safetensors with the config as JSON in the header; written atomically."""
        save_tensors(
            Path(path), self.state_dict(), {"format": FORMAT, "model": to_dict(self.config)}
        )

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
    y: Any, classes: int, n: int | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """Class indices as (n,) int64 on `device`: from an int (the same class n times), a
    sequence, an array or a tensor of integers in 0..classes-1; a one-line ValueError
    otherwise (NaN, fractions, out of range, wrong length)."""
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
    if len(t) and (int(t.min()) < 0 or int(t.max()) >= classes):
        bad = int(t.min()) if int(t.min()) < 0 else int(t.max())
        raise ValueError(f"label {bad} is out of range: this model has classes 0..{classes - 1}")
    return t if device is None else t.to(device)


PRECISIONS = ("fp32", "bf16")
# bf16 pays on an AMX CPU only where matmuls dominate a step: a network of this many weights
# or more (one thread, batch 128, a step's time fp32 / bf16: MLPs of 1.08M-7.4M weights
# 1.08-1.97x, of 10k-477k 0.56-1.21x; benchmarks/results/precision_sweep.md).
BF16_MIN_WEIGHTS = 500_000


def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 matmuls natively: a CPU with AMX tiles (Intel Sapphire Rapids
    and later). False elsewhere, GPUs included: bf16 on a GPU is not measured here."""
    if device.type != "cpu":
        return False
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.x
    try:
        return bool(amx()) if amx is not None else False
    except (RuntimeError, AttributeError):
        return False


def resolve_precision(precision: str, model: VAE, device: torch.device) -> str:
    """Precision "auto" -> "bf16" where it trains this model faster than fp32, else "fp32";
    "fp32" and "bf16" stay as they are.

    bf16 is faster where the hardware runs its matmuls natively (`native_bf16`) and they are
    most of a step: an MLP of at least BF16_MIN_WEIGHTS weights. Measured on an AMX Xeon, one
    thread, fit of VAEDetector's defaults: the MNIST MLP (784-512-256-16, 1.08M weights)
    1.25-1.41x as fast as fp32 (benchmarks/results/anomaly_mnist_speed_auto.md); the digits'
    (64-512-256-16, 342k) and a table's (30-64-32-8, 10k) slower in bf16, the per-step weight
    and gradient copies costing more than their small matmuls save. On a CPU without AMX
    bf16 was 12x slower; GPUs and conv nets are not measured: fp32 there.
    """
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of auto, {', '.join(PRECISIONS)}")
        return precision
    weights = sum(p.numel() for p in model.parameters())
    big = model.config.arch == "mlp" and weights >= BF16_MIN_WEIGHTS
    return "bf16" if big and native_bf16(device) else "fp32"


@contextlib.contextmanager
def networks_in(model: VAE, precision: str) -> Iterator[None]:
    """Run the model's encoder and decoder in `precision` ("fp32" or "bf16") for the block.

    The model's own fp32 weights are untouched; bf16 runs through `LowPrecision` copies made
    on entry (so they equal the weights at that moment) and dropped on exit.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    previous = model.low_precision
    model.low_precision = LowPrecision(model) if precision == "bf16" else None
    try:
        yield
    finally:
        model.low_precision = previous


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


class LowPrecision:
    """bf16 copies of a model's encoder and decoder (or critic), for mixed-precision training.

    The fp32 parameters stay the model's own (the optimizer, checkpoints and saved files see
    only them); the forward and backward passes run through these copies. Per step the trainer
    calls `zero_grad`, then after backward `push_grads` (bf16 gradients -> fp32 .grad), then
    after the optimizer step `pull` (fp32 weights -> bf16): two foreach copies, instead of
    autocast casting every weight and every weight gradient op by op. Not registered as
    submodules on purpose, so the model's state_dict is unchanged. The copies have no
    train/eval-dependent layers (none of vaekit's networks do).
    """

    def __init__(self, model: VAE, dtype: torch.dtype = torch.bfloat16):
        self.dtype = dtype

        def copied(net: nn.Module | None) -> nn.Module | None:
            return None if net is None else copy.deepcopy(net).to(dtype)

        self.encoder = copied(model.encoder)
        self.decoder = copied(model.decoder)
        self.critic = copied(model.critic)  # an encoder-only model's, else None
        pairs = [
            (m, c)
            for m, c in (
                (model.encoder, self.encoder),
                (model.decoder, self.decoder),
                (model.critic, self.critic),
            )
            if m is not None
        ]
        self.master = [p for m, _ in pairs for p in m.parameters()]
        self.low = [p for _, c in pairs for p in c.parameters()]
        self.grads = [torch.empty_like(p) for p in self.master]

    @torch.no_grad()
    def pull(self) -> None:
        """Copy the fp32 weights into the low-precision networks."""
        _copy_all(self.low, self.master)

    def zero_grad(self) -> None:
        for p in self.low:
            p.grad = None

    @torch.no_grad()
    def push_grads(self) -> None:
        """Hand the low-precision gradients to the fp32 parameters (as fp32)."""
        pairs = [
            (g, p.grad, m)
            for g, p, m in zip(self.grads, self.low, self.master, strict=True)
            if p.grad is not None
        ]
        if pairs:
            _copy_all([g for g, _, _ in pairs], [q for _, q, _ in pairs])
        for g, _, m in pairs:
            m.grad = g


def _copy_all(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    """dst[i].copy_(src[i]) for all i, in one foreach kernel where torch has it."""
    if hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(dst, src)
    else:  # older torch
        for d, s in zip(dst, src, strict=True):
            d.copy_(s)


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
