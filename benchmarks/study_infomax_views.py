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

Results go to /tmp (bench_infomax's own files are left alone); the figures are collected in
results/infomax_views.md.

    VIEW=bern+shift .venv/bin/python benchmarks/study_infomax_views.py --data mnist \\
        --epochs 30 --arms infomax-infonce --speed-rounds 0 --threads 1 --critic-noise 0.1
"""

from __future__ import annotations

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


def siamese_scores(model: VAE, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """scores[i, j] = g(mu(x~_i)) . g(z_j) / sqrt(k) (+ the linear critic's for
    CRITIC=siamese+linear): (batch, batch), fp32."""
    g = model.critic.g
    scores = (g(model.posterior(x, None).mean) * model.critic.scale) @ g(z).T
    if CRITIC == "siamese+linear":
        scores = scores + model.critic(x, z)
    return scores.float()


if __name__ == "__main__":
    infomax.critic_view = view
    if CRITIC != "linear":
        infomax._critic_scores = siamese_scores
    bench_infomax.RESULTS = Path(tempfile.gettempdir()) / "vaekit_study_infomax_views"
    sys.argv[0] = "bench_infomax.py"
    raise SystemExit(bench_infomax.main())
