"""What the infomax critic sees (issue 10): other noisy views of x than the default Gaussian.

By data processing, I(x~; z) <= I(x; z) for any channel x -> x~, so the critic's view decides
which information about x counts (see `vaekit.infomax`). This study swaps the view inside
`vaekit.infomax.critic_view` (a patch for the study, not an option of the package) and runs
bench_infomax.py's infomax arm (or any of its arms) with its flags:

  VIEW=gauss  the package's view: x + s * std(x) * sqrt(D) * eps (s = --critic-noise)
  VIEW=bern   x~ ~ Bernoulli(x) first (the channel of a Bernoulli likelihood: pixel
              intensities read as probabilities of a binary image), then the Gaussian noise
  VIEW=shift  the Gaussian view, then a random translation by up to SHIFT pixels (zeros
              shifted in), independently per example
  VIEW=bern+shift  both

CRITIC=siamese scores the pair through the encoder itself (also a patch for the study): T(x,
z) = g(mu(x~)) . g(z) / sqrt(k), mu(x~) the posterior mean of the view (gradient through both
branches, as SimCLR trains) and g the critic's z-side MLP; CRITIC=siamese+linear adds the
package's linear critic (A x~) . g(z) / sqrt(k) to it (a sum of critics is a critic, so both
are still InfoNCE bounds on I(x; z)). Either costs an encoder pass over the view each step.

ENCODER=bern+shift (or bern, or shift) augments what the *encoder* sees in training, the
critic keeping its own view (a third patch): a Bernoulli sample of x and a translation by up
to SHIFT pixels, each block of 16 rows its own. Both are drawn cheaply, because the step's
speed is a target: the Bernoulli sample compares x with random bytes (four per 32-bit draw,
so P(1) is x to 1/256) instead of torch.bernoulli (0.36 ms against 1.7 ms for a batch of 128
MNIST images, one thread), and a block-wise shift is a slice (0.14 ms; per row 0.5-1.4 ms).
CHEAP_NOISE=1 draws the critic's noise as uniform bytes scaled to unit variance instead of
normals (the critic is linear in x, so A eps is near Gaussian either way). Then z comes from
an augmented x and the critic scores a noisy x: data processing still makes InfoNCE a lower
bound on I(x; z) for the encoder the augmentation is part of.

Results go to /tmp (bench_infomax's own files are left alone); the figures are collected in
results/infomax_views.md. Since the package augments the encoder's input itself
(`ModelConfig.augment`, from the ENCODER finding below), the rows measured before it are
reproduced with `--augment off` added; without patches the script runs the package's default.

    VIEW=bern+shift .venv/bin/python benchmarks/study_infomax_views.py --data mnist \\
        --epochs 30 --arms infomax-infonce --speed-rounds 0 --threads 1 --critic-noise 0.1
    CRITIC=siamese+linear VIEW=bern+shift SHIFT=2 .venv/bin/python \
        benchmarks/study_infomax_views.py --data mnist --epochs 30 --arms infomax-infonce \
        --speed-rounds 0 --threads 1 --critic-noise 0.1
    ENCODER=bern+shift CHEAP_NOISE=1 .venv/bin/python benchmarks/study_infomax_views.py \
        --data mnist --speed-only --speed-rounds 5 --speed-epochs 2 --threads 1
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import torch

import bench_infomax
import vaekit.infomax as infomax
from vaekit.models import VAE

VIEW = set(os.environ.get("VIEW", "gauss").split("+"))
SHIFT = int(os.environ.get("SHIFT", "1"))
CRITIC = os.environ.get("CRITIC", "linear")
_gaussian_view = infomax.critic_view
_linear_scores = infomax._critic_scores


def shifted(x: torch.Tensor, p: int) -> torch.Tensor:
    """x: (b, c, h, w), each example translated by a random (dy, dx) in [-p, p]^2."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    rows = torch.randint(0, 2 * p + 1, (b, 1)) + torch.arange(h)  # (b, h)
    cols = torch.randint(0, 2 * p + 1, (b, 1)) + torch.arange(w)  # (b, w)
    out = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)  # advanced indexing put the channel last


def view(model: VAE, x: torch.Tensor) -> torch.Tensor:
    if model.training and "bern" in VIEW:
        x = torch.bernoulli(x.clamp(0, 1))
    x = _gaussian_view(model, x)
    if model.training and "shift" in VIEW and x.dim() == 4:
        x = shifted(x, SHIFT)
    return x


ENCODER = set(os.environ.get("ENCODER", "").split("+")) - {""}
CHEAP_NOISE = os.environ.get("CHEAP_NOISE") == "1"
_infomax_terms = infomax.infomax_terms


def random_bytes(like: torch.Tensor) -> torch.Tensor:
    """Uniform random bytes shaped like `like`, four from each 32-bit draw."""
    n = like.numel()
    r = torch.randint(-(2**31), 2**31 - 1, ((n + 3) // 4,), dtype=torch.int32, device=like.device)
    return r.view(torch.uint8)[:n].view(like.shape)


def cheap_bernoulli(x: torch.Tensor) -> torch.Tensor:
    return (random_bytes(x) < (x * 256).clamp(max=255.999).to(torch.uint8)).to(x.dtype)


def block_shifted(x: torch.Tensor, p: int, rows: int = 16) -> torch.Tensor:
    """x: (b, c, h, w), each block of `rows` examples translated by its own random (dy, dx)."""
    h, w = x.shape[-2:]
    blocks = torch.nn.functional.pad(x, (p, p, p, p)).split(rows)
    offsets = torch.randint(0, 2 * p + 1, (len(blocks), 2)).tolist()
    pairs = zip(blocks, offsets, strict=True)
    return torch.cat([b[..., dy : dy + h, dx : dx + w] for b, (dy, dx) in pairs])


def cheap_noise_view(model: VAE, x: torch.Tensor) -> torch.Tensor:
    s = infomax.critic_noise(model)
    if not model.training or s <= 0 or len(x) < 2:
        return x
    eps = random_bytes(x).to(x.dtype).sub_(127.5).mul_(1 / 73.9)  # mean 0, variance 1
    return x + s * math.sqrt(x[0].numel()) * x.detach().std() * eps


class AugmentedEncoder:
    """model.posterior with the encoder's input augmented in training (ENCODER)."""

    def __init__(self, posterior):
        self.posterior = posterior

    def __call__(self, x: torch.Tensor, y=None):
        if x.dim() == 4:
            if "bern" in ENCODER:
                x = cheap_bernoulli(x)
            if "shift" in ENCODER:
                x = block_shifted(x, SHIFT)
        return self.posterior(x, y)


def encoder_augmented_terms(model: VAE, x: torch.Tensor, y=None, **kw):
    """infomax_terms with the encoder's input augmented (training only; the critic's view is
    taken from x itself, as before)."""
    if not model.training:
        return _infomax_terms(model, x, y, **kw)
    plain = model.posterior
    model.posterior = AugmentedEncoder(plain)  # an instance attribute, removed below
    try:
        return _infomax_terms(model, x, y, **kw)
    finally:
        del model.posterior


def siamese_scores(model: VAE, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """scores[i, j] = g(mu(x~_i)) . g(z_j) / sqrt(k) (+ the linear critic's for
    CRITIC=siamese+linear): (batch, batch), fp32."""
    g = model.critic.g
    scores = (g(model.posterior(x, None).mean) * model.critic.scale) @ g(z).T
    if CRITIC == "siamese+linear":
        scores = scores + model.critic(x, z)
    return scores.float()


if __name__ == "__main__":
    infomax.critic_view = cheap_noise_view if CHEAP_NOISE else view
    if ENCODER:
        infomax.infomax_terms = encoder_augmented_terms
    if CRITIC != "linear":
        infomax._critic_scores = siamese_scores
    bench_infomax.RESULTS = Path(tempfile.gettempdir()) / "vaekit_study_infomax_views"
    sys.argv[0] = "bench_infomax.py"
    raise SystemExit(bench_infomax.main())
