"""Encoder and decoder networks: plain tensor-to-tensor modules, no distributions.

Encoders map x: (batch, *event_shape) -> (batch, 2 * latent) (mean and log-variance, stacked).
Decoders map z: (n, latent) -> (n, *event_shape), one likelihood parameter per data dimension
(logits for Bernoulli, the mean for Gaussians): outputs are independent per dimension. A table
(likelihood "composite") is the exception: its encoder reads (batch, feature_dim), the
likelihood's `encoder_input(x)`, and its decoder emits (n, param_dim), a block per column.

The condition part: built with `classes` > 0, a network also takes c: (batch, classes), the
one-hot class y (the conditional VAE's q(z|x,y) and p(x|z,y)). It is joined where it adds the
least work: to the flattened input of an MLP encoder, to the features after the convolutional
trunk of a conv encoder (a per-pixel class map would cost a full channel per class), and to z
at every decoder. With classes = 0 the networks are exactly the unconditional ones.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from vaekit.core.config import ModelConfig, table_widths

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given sizes with an activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def join(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """Features h: (n, F) with the condition c: (n, classes) appended (h itself if c is None)."""
    return h if c is None else torch.cat([h, c.to(h.dtype)], dim=-1)


class MLPEncoder(nn.Module):
    """x: (batch, *event_shape), c: (batch, classes) or None -> (batch, 2 * latent)."""

    def __init__(
        self,
        event_shape: tuple[int, ...],
        hidden: tuple[int, ...],
        latent: int,
        activation: str,
        classes: int = 0,
    ):
        super().__init__()
        self.net = mlp([math.prod(event_shape) + classes, *hidden, 2 * latent], activation)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(join(x.flatten(1), c))


class MLPDecoder(nn.Module):
    """z: (n, latent), c: (n, classes) or None -> (n, *event_shape). Hidden sizes mirror the
    encoder's."""

    def __init__(
        self,
        event_shape: tuple[int, ...],
        hidden: tuple[int, ...],
        latent: int,
        activation: str,
        classes: int = 0,
    ):
        super().__init__()
        self.event_shape = event_shape
        self.net = mlp([latent + classes, *reversed(hidden), math.prod(event_shape)], activation)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(join(z, c)).unflatten(-1, self.event_shape)


def _halve(size: int) -> int:
    # Output size of a 5x5 convolution with stride 2 and padding 2.
    return (size - 1) // 2 + 1


class ConvEncoder(nn.Module):
    """Stride-2 5x5 convolutions, then a dense head (the condition joins its input).
    x: (batch, C, H, W), c: (batch, classes) or None -> (batch, 2 * latent)."""

    def __init__(
        self,
        event_shape: tuple[int, ...],
        channels: tuple[int, ...],
        latent: int,
        activation: str,
        classes: int = 0,
    ):
        super().__init__()
        c, h, w = event_shape
        layers: list[nn.Module] = []
        for c_out in channels:
            layers += [nn.Conv2d(c, c_out, 5, stride=2, padding=2), ACTIVATIONS[activation]()]
            c, h, w = c_out, _halve(h), _halve(w)
        self.convs = nn.Sequential(*layers)
        self.head = nn.Linear(c * h * w + classes, 2 * latent)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(join(self.convs(x).flatten(1), c))


class ConvDecoder(nn.Module):
    """A dense layer, then stride-2 5x5 transposed convolutions back to exactly (C, H, W).

    z: (n, latent), c: (n, classes) or None -> (n, C, H, W). Any H, W: output_padding is
    chosen per layer so the sizes retrace the encoder's (e.g. 28 -> 14 -> 7 and back; 20 -> 10
    -> 5 and back).
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        channels: tuple[int, ...],
        latent: int,
        activation: str,
        classes: int = 0,
    ):
        super().__init__()
        c, h, w = event_shape
        sizes = [(h, w)]
        for _ in channels:
            sizes.append((_halve(sizes[-1][0]), _halve(sizes[-1][1])))
        self.start = (channels[-1], *sizes[-1])
        self.dense = nn.Sequential(
            nn.Linear(latent + classes, math.prod(self.start)), ACTIVATIONS[activation]()
        )
        outs = [*reversed(channels[:-1]), c]
        layers: list[nn.Module] = []
        c_in = channels[-1]
        for i, c_out in enumerate(outs):
            (h_in, w_in), (h_out, w_out) = sizes[-1 - i], sizes[-2 - i]
            pad = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
            layers.append(
                nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=pad)
            )
            if i < len(outs) - 1:
                layers.append(ACTIVATIONS[activation]())
            c_in = c_out
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.deconvs(self.dense(join(z, c)).unflatten(-1, self.start))


def build_networks(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """The (encoder, decoder) pair a config describes (conditioned on y when cfg.conditional)."""
    classes = cfg.num_classes if cfg.conditional else 0
    if cfg.arch == "conv":
        args = (cfg.event_shape, cfg.conv_channels, cfg.latent_dim, cfg.activation, classes)
        return ConvEncoder(*args), ConvDecoder(*args)
    rest = (cfg.hidden, cfg.latent_dim, cfg.activation, classes)
    if cfg.likelihood == "composite":  # a table: encoded columns in, per-column blocks out
        features, params = table_widths(cfg.column_kinds)
        return MLPEncoder((features,), *rest), MLPDecoder((params,), *rest)
    return MLPEncoder(cfg.event_shape, *rest), MLPDecoder(cfg.event_shape, *rest)
