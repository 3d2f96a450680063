"""One training step of MLP 784-512-256-16 (batch 128, fused Adam): fp32, bf16 under
torch.autocast, and bf16 on vaekit's LowPrecision copies, alternated in one process.

    python benchmarks/bench_precision.py --rounds 3

--sweep: fp32 against vaekit's bf16 copies over MLPs of several input and hidden sizes, one
thread, the rule behind `precision="auto"` (`vaekit.models.resolve_precision`); writes
benchmarks/results/precision_sweep.md.

    python benchmarks/bench_precision.py --sweep --rounds 3
"""

from __future__ import annotations

import argparse
import time

import torch

from vaekit import VAE, ModelConfig
from vaekit.models import LowPrecision
from vaekit.train import step_optimizer


def ms_per_step(
    mode: str, x: torch.Tensor, steps: int, warmup: int = 30, hidden: tuple[int, ...] = (512, 256)
) -> float:
    torch.manual_seed(0)
    config = ModelConfig(event_shape=(x.shape[1],), latent_dim=16, hidden=hidden)
    model = VAE.from_config(config)
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


SWEEP_D = (30, 64, 196, 784, 3072)
SWEEP_HIDDEN = ((64, 32), (256, 128), (512, 256), (1024, 512))


def sweep(rounds: int, steps: int) -> None:
    """fp32 vs bf16 copies per step, one thread, alternated; median over rounds."""
    from datetime import datetime, timezone
    from pathlib import Path
    from statistics import median

    from vaekit.models import BF16_MIN_WEIGHTS, native_bf16

    torch.set_num_threads(1)
    lines = [
        "# fp32 or bf16: one training step by network size",
        "",
        f"`python benchmarks/bench_precision.py --sweep --rounds {rounds} --steps {steps}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d}, torch {torch.__version__}, one thread, "
        f"AMX: {native_bf16(torch.device('cpu'))}. MLP VAE D-hidden-16 (Bernoulli), batch 128, "
        "fused Adam; bf16 = vaekit's LowPrecision copies (fp32 master weights). Milliseconds "
        f"per step, median of {rounds} alternated rounds; `precision=\"auto\"` picks bf16 "
        f"from {BF16_MIN_WEIGHTS:,} weights on an AMX CPU.",
        "",
        "| D | hidden | weights | fp32 ms | bf16 ms | fp32 / bf16 |",
        "|---|---|---|---|---|---|",
    ]
    for hidden in SWEEP_HIDDEN:
        for d in SWEEP_D:
            x = torch.rand(4096, d).bernoulli()
            times: dict[str, list[float]] = {"fp32": [], "bf16 copies": []}
            for _ in range(rounds):
                for mode in times:
                    times[mode].append(ms_per_step(mode, x, steps, warmup=20, hidden=hidden))
            cfg = ModelConfig(event_shape=(d,), latent_dim=16, hidden=hidden)
            weights = sum(p.numel() for p in VAE.from_config(cfg).parameters())
            a, b = median(times["fp32"]), median(times["bf16 copies"])
            row = f"| {d} | {hidden} | {weights:,} | {a:.2f} | {b:.2f} | {a / b:.2f} |"
            print(row, flush=True)
            lines.append(row)
    out = Path(__file__).resolve().parent / "results" / "precision_sweep.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--sweep", action="store_true", help="fp32 vs bf16 over network sizes")
    args = p.parse_args()
    torch.set_flush_denormal(True)
    if args.sweep:
        sweep(args.rounds, args.steps)
        return
    x = torch.rand(8000, 784)
    for r in range(args.rounds):
        times = {m: ms_per_step(m, x, args.steps) for m in ("fp32", "bf16 autocast", "bf16 copies")}
        print(f"round {r}: " + "  ".join(f"{m} {t:.2f} ms" for m, t in times.items())
              + f"  copies/autocast {times['bf16 autocast'] / times['bf16 copies']:.2f}x")


if __name__ == "__main__":
    main()
