"""Cheap random views of a batch for the encoder-only model's training step (vaekit.core.critic),
and the moved copies of images for the semi-supervised classifier's consistency term (`moved`,
`vaekit.core.objectives.consistency_loss`).

Two views, both channels x -> x~ (so data processing keeps every MI estimate a lower bound):

  * the critic's view, x + s * eps (`unit_noise_like`: eps of mean 0 and variance 1);
  * the encoder's view (`ModelConfig.augment`): a Bernoulli sample of x (pixel intensities
    read as probabilities, the channel a Bernoulli likelihood describes), translated by up to
    p pixels. The code z then has to survive both, which is what makes the posterior means
    linearly separable features (the docs' features benchmark page).

Why a noise table. The encoder-only model's point is a step cheaper than the VAE's, and on a
CPU drawing fresh random numbers is a visible part of that step. So on the CPU (eager) the
uniforms are a window of a fixed table of 2^22 pre-drawn U[0, 1) numbers at a random offset,
turned into noise or a Bernoulli sample in one pass. Every step reads another window, so a
pixel meets another number each time; the offsets come from torch's seeded CPU generator (so
runs repeat and resume exactly), and the table itself is drawn once from a fixed seed, the
same in every process.
Elsewhere (a GPU, or inside torch.compile, where a Python offset would recompile) the numbers
are drawn fresh with torch.rand_like, which costs little there.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from vaekit.core.config import ModelConfig
from vaekit.core.likelihoods import check_unit_interval

TABLE_SIZE = 1 << 22  # 16 MiB of float32: 40 batches of 128 MNIST images
_TABLE_SEED = 20261130
_UNIT = math.sqrt(12.0)  # U[0, 1) has variance 1/12


@functools.cache
def _uniform_table(dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(_TABLE_SEED)
    return torch.rand(TABLE_SIZE, generator=g).to(dtype)


def _eager_cpu(x: torch.Tensor) -> bool:
    """Whether x is on the CPU outside torch.compile: where a Python number (an offset into
    the table, a translation) may steer the work without a host sync or a recompile."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def uniform_like(x: torch.Tensor) -> torch.Tensor:
    """U[0, 1) numbers shaped like x: a window of the noise table at a random offset on the
    CPU (eager), torch.rand_like elsewhere (see the module docstring). Read-only on the CPU:
    the window is a view of the table."""
    n = x.numel()
    if not _eager_cpu(x) or n > TABLE_SIZE:
        return torch.rand_like(x)
    table = _uniform_table(x.dtype)
    start = int(torch.randint(TABLE_SIZE - n + 1, ()))
    return table[start : start + n].view(x.shape)


def unit_noise_like(x: torch.Tensor) -> torch.Tensor:
    """Noise of mean 0 and variance 1 shaped like x (uniform on [-sqrt 3, sqrt 3)). The critic
    is linear in x, so what it sees of the noise, A eps, is a sum of many of them: Gaussian in
    all but name (central limit), at a sixth of randn's cost on the CPU."""
    return (uniform_like(x) - 0.5).mul_(_UNIT)


def bernoulli_sample(x: torch.Tensor) -> torch.Tensor:
    """A Bernoulli(x) sample of x: (batch, ...) in [0, 1] (a view, contiguous or not), a new
    contiguous tensor of 0. and 1.: 1 where u < x for u ~ U[0, 1), i.e. ceil(x - u) clipped at
    0 (two in-place ops on the difference: a quarter of torch.bernoulli's cost)."""
    return (x - uniform_like(x)).ceil_().clamp_(min=0.0)


def translate(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """x: (batch, C, H, W) translated by a random (dy, dx) in [-pixels, pixels]^2, zeros shifted
    in; one offset for the whole batch. The offset stays a tensor (no host sync, nothing for
    torch.compile to specialise on): it picks one of the padded batch's (2p+1)^2 windows."""
    if pixels <= 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (pixels, pixels, pixels, pixels))
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (batch, C, 2p+1, 2p+1, H, W), a view
    dy, dx = torch.randint(0, 2 * pixels + 1, (2,), device=x.device)
    return windows[:, :, dy, dx]


def encoder_view(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """The encoder's training view of images x: (batch, C, H, W) in [0, 1]: a Bernoulli sample
    of x translated by up to `pixels` (>= 0) pixels (one offset for the batch), zeros shifted
    in. On the CPU (eager) the sample is written straight into the shifted window of a zeroed
    batch, two passes fewer than `translate` then `bernoulli_sample`; elsewhere exactly those
    two."""
    if pixels <= 0 or not _eager_cpu(x):
        return bernoulli_sample(translate(x, pixels))
    h, w = x.shape[-2:]
    dy, dx = (torch.randint(0, 2 * pixels + 1, (2,)) - pixels).tolist()
    out = torch.zeros_like(x)
    target = out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
    source = x[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    torch.sub(source, uniform_like(source), out=target)
    return out.ceil_().clamp_(min=0.0)


def encoder_pixels(cfg: ModelConfig) -> int | None:
    """How the config's encoder-only model augments its encoder's input in training: None for
    not at all, else the Bernoulli sample's translation in pixels, round(min(H, W) / 28): one
    pixel on MNIST's 28 x 28, and none under 15 pixels a side, where a pixel is too
    much of the image (on the 8 x 8 digits a shift cost the features). "auto" and "on" augment
    images (only "on" insists: it is an error for tables), "off" nothing."""
    if cfg.decoder or cfg.augment == "off" or len(cfg.event_shape) != 3:
        return None
    return round(min(cfg.event_shape[1:]) / 28)


def check_range(x: torch.Tensor) -> None:
    """Raise ValueError unless x is in [0, 1], where a Bernoulli sample of it is defined."""
    check_unit_interval(
        x,
        "the encoder's augmentation (a Bernoulli sample of each image)",
        "scale the images to [0, 1] or set augment='off' (--augment off)",
    )


# The semi-supervised classifier's moved copies (`moved`): up to this many degrees of rotation
# and a shift of up to max(1, round(side / MOVE_SIDES_PER_PIXEL)) pixels per axis (2 on MNIST's
# 28 x 28, 1 on the 8 x 8 digits). Larger moves (3 pixels and 15 degrees on MNIST) scored lower.
MOVE_DEGREES = 10.0
MOVE_SIDES_PER_PIXEL = 14


def move_pixels(side: int) -> int:
    """The largest shift of `moved` along an axis of `side` pixels."""
    return max(1, round(side / MOVE_SIDES_PER_PIXEL))


def moved(x: torch.Tensor) -> torch.Tensor:
    """Copies of images x: (batch, C, H, W), each rotated about its centre by a random angle
    in [-MOVE_DEGREES, MOVE_DEGREES] and shifted by a random (dy, dx) of up to `move_pixels`
    per axis before the turn (fractions of a pixel too: bilinear sampling, zeros shifted in);
    a new move per row, drawn from torch's generator on x's device (no host sync). Values stay
    in x's range."""
    n, _, h, w = x.shape
    angle = (torch.rand(n, device=x.device, dtype=x.dtype) * 2 - 1) * math.radians(MOVE_DEGREES)
    # affine_grid's coordinates run from -1 to 1 across a side: a pixel is 2 / side of them
    reach = torch.tensor(
        [2 * move_pixels(w) / w, 2 * move_pixels(h) / h], device=x.device, dtype=x.dtype
    )
    shift = (torch.rand(n, 2, device=x.device, dtype=x.dtype) * 2 - 1) * reach
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], -1), torch.stack([sin, cos, shift[:, 1]], -1)], 1
    )
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
