"""The training step's parts: the optimizer, one update, and the batch loss the trainer calls
(eager, compiled, or through DistributedDataParallel).

Compiling (`TrainConfig.compile`): on a GPU the small networks of a VAE are bound by kernel
launches and Python, so the loss's forward and backward are compiled with
``torch.compile(mode="reduce-overhead")``, which captures them in CUDA graphs. ``auto`` does
this on a CUDA GPU only (on the CPU it saves ~7% per step on the MNIST MLP but costs ~20 s of
compiling, which few CPU runs earn back). The posterior noise is drawn by the same random
ops as eager (inductor's ``fallback_random``), so a compiled run follows the eager run's noise
and matches its weights within float tolerance. Where compiling fails under ``auto`` (no C++
compiler, an unsupported op), the step falls back to eager with one warning.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from vaekit.core.model import VAE
from vaekit.core.objectives import Loss
from vaekit.train.config import TrainConfig

BatchLoss = Callable[[torch.Tensor, "torch.Tensor | None", float], Loss]


class CompileError(RuntimeError):
    """--compile on was asked for and torch.compile failed here."""


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam, fused where this torch build supports it (one kernel for all parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch or unsupported device
        return torch.optim.Adam(params, lr=lr, foreach=True)


def step_optimizer(
    model: VAE, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float | None = None
) -> None:
    """One update from a scalar loss. With `model.low_precision` set, the gradients are
    computed on the bf16 copies, handed to the fp32 parameters, and the updated weights copied
    back: the order that keeps the copies in step lives here only."""
    low = model.low_precision
    optimizer.zero_grad(set_to_none=True)
    if low is not None:
        low.zero_grad()
    loss.backward()
    if low is not None:
        low.push_grads()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
    optimizer.step()
    if low is not None:
        low.pull()


def compiles(cfg: TrainConfig, device: torch.device, distributed: bool = False) -> bool:
    """Whether the step is compiled: cfg.compile "on", or "auto" on a CUDA GPU in one process
    (under DistributedDataParallel only when asked for: that pairing is not measured yet)."""
    if cfg.compile == "auto":
        return device.type == "cuda" and not distributed
    return cfg.compile == "on"


@contextlib.contextmanager
def compile_settings(enabled: bool) -> Iterator[None]:
    """For the duration of fit: compiled random ops call the eager ones (same noise stream)."""
    if not enabled:
        yield
        return
    import torch._inductor.config as inductor_config

    with inductor_config.patch(fallback_random=True):
        yield


def batch_loss(
    net: torch.nn.Module, cfg: TrainConfig, device: torch.device, distributed: bool = False
) -> BatchLoss:
    """The function the trainer calls per batch: (x, y, beta) -> Loss.

    net: the VAE, or its DistributedDataParallel wrapper (whose forward is VAE.loss). Options
    that stay fixed for the run are bound here; beta varies during the warm-up.
    """
    options: dict[str, Any] = {
        "samples": cfg.samples,
        "analytic_kl": cfg.analytic_kl,
        "objective": cfg.objective,
        "mi_weight": cfg.mi_weight,
        "mi_estimator": cfg.mi_estimator,
        "consistency_weight": cfg.consistency_weight,
    }

    def eager(x: torch.Tensor, y: torch.Tensor | None, beta: float) -> Loss:
        return net(x, y, beta=beta, **options)

    if not compiles(cfg, device, distributed):
        return eager
    return _Compiled(eager, strict=cfg.compile == "on", cuda=device.type == "cuda")


class _Compiled:
    """torch.compile(mode="reduce-overhead") of a batch loss, eager again if compiling fails
    (a one-line CompileError instead where compiling was asked for explicitly)."""

    def __init__(self, eager: BatchLoss, *, strict: bool, cuda: bool):
        self.eager = eager
        self.compiled: Callable[..., Loss] | None = torch.compile(eager, mode="reduce-overhead")
        self.strict = strict
        self.cuda = cuda

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None, beta: float) -> Loss:
        if self.compiled is None:
            return self.eager(x, y, beta)
        if self.cuda:  # a new training step: CUDA-graph outputs of the last one may be reused
            torch.compiler.cudagraph_mark_step_begin()
        try:
            return self.compiled(x, y, beta)
        except Exception as e:  # torch.compile fails in many ways (compiler, op, backend)
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            if self.strict:
                raise CompileError(
                    f"torch.compile failed here ({reason}); train with --compile off"
                ) from None
            warnings.warn(f"torch.compile failed ({reason}); training eagerly", stacklevel=2)
            self.compiled = None
            return self.eager(x, y, beta)
