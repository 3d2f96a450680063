"""Small torch helpers every layer uses: a module's device, and an RNG fork that covers it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def device_of(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (the CPU for one without parameters)."""
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@contextlib.contextmanager
def fork_rng(device: torch.device) -> Iterator[None]:
    """torch.random.fork_rng covering the CPU and, for CUDA, `device`'s generator."""
    if device.type == "cuda":
        with torch.random.fork_rng(devices=[device.index or 0], device_type="cuda"):
            yield
    else:
        with torch.random.fork_rng(devices=[]):
            yield
