"""Scaling of vaekit's trainer: epoch time against dataset size and batch size, and training
from a memory-mapped .npy against the same data in memory (issue 4).

Model: MLP 784-512-256-16, Bernoulli, Adam 1e-3, on the real MNIST test-set images
(../shared/data/mnist). Each configuration trains a fresh model for --epochs epochs; the
figure is the median epoch time after the first epoch (ms per epoch, samples/s).

    python benchmarks/bench_scaling.py            # writes benchmarks/results/scaling.{json,md}
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vaekit import VAE, ModelConfig, TrainConfig
from vaekit.config import DataConfig
from vaekit.data import prepare
from vaekit.train import fit

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"


def load_mnist(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    return (np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784) / 255).astype(np.float32)


def epoch_seconds(x_train, batch_size: int, epochs: int, seed: int = 0) -> float:
    """Median seconds per epoch (epochs 2..E) of vaekit's fit on x_train."""
    torch.manual_seed(seed)
    model = VAE.from_config(ModelConfig(event_shape=(784,), latent_dim=16, hidden=(512, 256)))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed)
    history = fit(model, x_train, None, cfg, progress=False)
    return statistics.median(row["seconds"] for row in history[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", type=Path, default=MNIST)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    if not args.mnist.is_file():
        raise SystemExit(f"MNIST not found at {args.mnist}; pass --mnist PATH")
    x = torch.from_numpy(load_mnist(args.mnist))

    rows = []
    for n in (1000, 2000, 4000, 8000):
        for batch in (64, 128, 256, 512):
            s = epoch_seconds(x[:n], batch, args.epochs)
            rows.append({"n": n, "batch_size": batch, "epoch_ms": 1000 * s, "samples_per_s": n / s})
            print(f"n={n:5d} batch={batch:4d}  {1000 * s:8.1f} ms/epoch  {n / s:9,.0f} samples/s",
                  flush=True)

    # The same 8000 rows from a .npy on disk, read a batch at a time (--mmap), against memory.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mnist.npy"
        np.save(path, x[:10000].numpy())
        cfg = DataConfig(source=str(path), val_fraction=0.0, test_fraction=0.2)
        mapped, in_memory = prepare(dataclasses.replace(cfg, mmap=True)), prepare(cfg)
        mmap_rows = []
        for name, splits in (("in memory", in_memory), ("memory-mapped .npy", mapped)):
            t0 = time.perf_counter()
            s = epoch_seconds(splits.train.x, 128, args.epochs)
            n = len(splits.train.x)
            mmap_rows.append({"source": name, "n": n, "epoch_ms": 1000 * s,
                              "samples_per_s": n / s, "wall_s": time.perf_counter() - t0})
            print(f"{name:20s} {1000 * s:8.1f} ms/epoch  {n / s:9,.0f} samples/s", flush=True)

    env = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "scaling.json").write_text(
        json.dumps({"env": env, "epochs": args.epochs, "grid": rows, "mmap": mmap_rows}, indent=2)
    )
    lines = [
        "# Scaling: vaekit epoch time against dataset size and batch size",
        "",
        f"MNIST test-set images, MLP 784-512-256-16, Bernoulli, Adam 1e-3; median epoch time over "
        f"epochs 2-{args.epochs}; torch {env['torch']}, {env['threads']} threads.",
        "",
        "| samples | " + " | ".join(f"batch {b}" for b in (64, 128, 256, 512)) + " |",
        "|---|---|---|---|---|",
    ]
    for n in (1000, 2000, 4000, 8000):
        cells = [r for r in rows if r["n"] == n]
        lines.append(f"| {n} | " + " | ".join(
            f"{r['epoch_ms']:.0f} ms ({r['samples_per_s']:,.0f}/s)" for r in cells) + " |")
    lines += [
        "",
        "Epoch time grows linearly with the number of samples (constant samples/s per batch "
        "size); larger batches use the CPU better.",
        "",
        "## Training from a memory-mapped .npy (`--mmap`)",
        "",
        "| source | train samples | ms per epoch | samples/s |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['source']} | {r['n']} | {r['epoch_ms']:.0f} | {r['samples_per_s']:,.0f} |"
              for r in mmap_rows]
    (args.out_dir / "scaling.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out_dir / 'scaling.md'}")


if __name__ == "__main__":
    main()
