"""Mixed precision: bf16 copies of the networks over fp32 master weights, and the rule for
when bf16 pays (`precision="auto"`).

The densities, the KL and the loss stay in fp32 whatever the networks run in.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")
# bf16 pays on an AMX CPU only where matmuls dominate a step: a network of this many weights
# or more (the docs' precision benchmark page has the sweep behind it).
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


def resolve_precision(precision: str, model: Any, device: torch.device) -> str:
    """Precision "auto" -> "bf16" where it trains this model faster than fp32, else "fp32";
    "fp32" and "bf16" stay as they are.

    bf16 is faster where the hardware runs its matmuls natively (`native_bf16`) and they are
    most of a step: an MLP of at least BF16_MIN_WEIGHTS weights. Smaller networks lose more to
    the per-step weight and gradient copies than their small matmuls save; GPUs and conv nets
    are not measured, so they stay fp32 (figures: the docs' precision benchmark page).
    """
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of auto, {', '.join(PRECISIONS)}")
        return precision
    weights = sum(p.numel() for p in model.parameters())
    big = model.config.arch == "mlp" and weights >= BF16_MIN_WEIGHTS
    return "bf16" if big and native_bf16(device) else "fp32"


@contextlib.contextmanager
def networks_in(model: Any, precision: str) -> Iterator[None]:
    """Run the model's encoder and decoder in `precision` ("fp32" or "bf16") for the block.

    The model's own fp32 weights are untouched; bf16 runs through `LowPrecision` copies made
    on entry (so they equal the weights at that moment) and dropped on exit.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "bf16":
        warn_if_emulated(_device(model))
    previous = model.low_precision
    model.low_precision = LowPrecision(model) if precision == "bf16" else None
    try:
        yield
    finally:
        model.low_precision = previous


def warn_if_emulated(device: torch.device) -> None:
    """A warning where bf16 was asked for on a CPU that has no bf16 units: torch emulates it
    there, many times slower than fp32."""
    if device.type == "cpu" and not native_bf16(device):
        warnings.warn(
            "precision bf16 (--precision bf16) on a CPU without native bf16 (AMX) is emulated "
            "and much slower than fp32 here; use fp32, the default",
            stacklevel=4,
        )


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


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

    def __init__(self, model: Any, dtype: torch.dtype = torch.bfloat16):
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


