"""One training step of MLP 784-512-256-16 (batch 128, fused Adam): fp32, bf16 under
torch.autocast, and bf16 on vaekit's LowPrecision copies, alternated in one process.

    python benchmarks/bench_precision.py --rounds 3
"""

from __future__ import annotations

import argparse
import time

import torch

from vaekit import VAE, ModelConfig
from vaekit.models import LowPrecision
from vaekit.train import step_optimizer


def ms_per_step(mode: str, x: torch.Tensor, steps: int, warmup: int = 30) -> float:
    torch.manual_seed(0)
    model = VAE.from_config(ModelConfig(event_shape=(784,), latent_dim=16, hidden=(512, 256)))
    opt = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    low = LowPrecision(model) if mode == "bf16 copies" else None
    model.low_precision = low
    if low is not None:
        low.pull()
    perm = torch.randperm(len(x))
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        j = (i * 128) % (len(x) - 128)
        batch = x[perm[j : j + 128]]
        if mode == "bf16 autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model.loss(batch)
        else:
            loss = model.loss(batch)
        step_optimizer(model, opt, loss.total)
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=250)
    args = p.parse_args()
    torch.set_flush_denormal(True)
    x = torch.rand(8000, 784)
    for r in range(args.rounds):
        times = {m: ms_per_step(m, x, args.steps) for m in ("fp32", "bf16 autocast", "bf16 copies")}
        print(f"round {r}: " + "  ".join(f"{m} {t:.2f} ms" for m, t in times.items())
              + f"  copies/autocast {times['bf16 autocast'] / times['bf16 copies']:.2f}x")


if __name__ == "__main__":
    main()
