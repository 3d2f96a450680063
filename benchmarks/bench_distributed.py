"""Distributed training's cost (issue 12): vaekit.train.fit in one plain process against the
same fit under torchrun with 1 process (the DistributedDataParallel wrapper alone) and with 2
CPU processes (gloo), side by side.

Same model for every arm (MLP D-512-256-16, Bernoulli, the vaekit model of bench_train), the
same data, global batch 128, Adam lr 1e-3, 1 torch thread per process. Arms run alternately
(A B C A B C ...) for --rounds rounds, each in fresh processes; samples/s come from fit's
per-epoch seconds (process start-up and the process group's rendezvous are not counted).
Test -ELBO is computed afterwards by common.test_neg_elbo for every arm.

    python benchmarks/bench_distributed.py --data mnist --rounds 5   # distributed_mnist.{md,json}
    python benchmarks/bench_distributed.py --data digits --epochs 30
    python benchmarks/bench_distributed.py --device cuda --arms plain,torchrun-1   # one GPU (nccl),
                                                                   # distributed_mnist_gpu
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import common as bc

ARMS = {"plain": 0, "torchrun-1": 1, "torchrun-2": 2}  # processes under torchrun (0: none)


def worker(args: argparse.Namespace) -> None:
    """One arm-round in this process (or on this rank); rank 0 writes the JSON record."""
    import torch.distributed as dist

    from vaekit.train import TrainConfig, fit

    torch.set_num_threads(1)
    launched = "RANK" in os.environ
    if launched:
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
    data = np.load(args.data_file)
    train_x, test_x = torch.from_numpy(data["train"]), torch.from_numpy(data["test"])
    torch.manual_seed(args.seed)
    model = bc.vaekit_model(train_x.shape[1])
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    history = fit(model, train_x, None, cfg, progress=False, device=args.device)
    model.cpu()
    if launched:
        rank = dist.get_rank()
        dist.destroy_process_group()
        if rank != 0:
            return
    seconds = [row["seconds"] for row in history]
    steady = seconds[1:] or seconds  # epoch 1 left out where there are more
    torch.manual_seed(0)
    record = {
        "samples_per_s": len(train_x) * len(seconds) / sum(seconds),
        "steady_samples_per_s": len(train_x) * len(steady) / sum(steady),
        "epoch_seconds": seconds,
        "test_neg_elbo": bc.test_neg_elbo(
            model.encode, bc.vaekit_decode_logits(model), test_x, samples=10
        ),
    }
    Path(args.result_file).write_text(json.dumps(record))


def run_arm(arm: str, rnd: int, args: argparse.Namespace, tmp: Path, data_file: Path) -> dict:
    result_file = tmp / f"{arm}_{rnd}.json"
    script = [str(Path(__file__).resolve()), "--worker", "--data-file", str(data_file),
              "--result-file", str(result_file), "--epochs", str(args.epochs),
              "--batch-size", str(args.batch_size), "--seed", str(args.seed + rnd),
              "--device", args.device]  # fmt: skip
    procs = ARMS[arm]
    if procs:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs),
               "--master-port", str(29600 + rnd), *script]  # fmt: skip
    else:
        cmd = [sys.executable, *script]
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not result_file.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"{arm} round {rnd} failed:\n  " + "\n  ".join(tail))
    return json.loads(result_file.read_text())


def summarise(records: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Medians per arm, and each arm's per-round ratios to plain (the same seed) with their
    median, and its median -ELBO difference."""
    summary = {arm: {key: statistics.median(r[key] for r in recs) for key in
                     ("samples_per_s", "steady_samples_per_s", "test_neg_elbo")}
               for arm, recs in records.items()}
    ratios: dict[str, Any] = {}
    for arm in (a for a in records if a != "plain"):
        pairs = list(zip(records[arm], records["plain"], strict=True))
        per_round = [a["steady_samples_per_s"] / b["steady_samples_per_s"] for a, b in pairs]
        ratios[f"{arm}/plain steady samples/s"] = statistics.median(per_round)
        ratios[f"{arm}/plain per round"] = per_round
        ratios[f"{arm}-plain test -ELBO (nats)"] = statistics.median(
            a["test_neg_elbo"] - b["test_neg_elbo"] for a, b in pairs)
    return summary, ratios


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"# Distributed training's cost, {cfg['data']} ({cfg['n_train']} train rows)",
        "",
        f"MLP {cfg['dim']}-512-256-16 VAE, global batch {cfg['batch_size']}, {cfg['epochs']} "
        f"epochs, 1 thread per process, {cfg['cpus']} CPUs"
        + (f", {result['env']['gpu']}" if result["env"]["gpu"] else "")
        + f", {cfg['rounds']} rounds run alternately; medians. Steady samples/s leave out "
        "epoch 1.",
        "",
        "| arm | samples/s | steady samples/s | test -ELBO (nats) |",
        "|---|---|---|---|",
    ]
    for arm, s in result["summary"].items():
        lines.append(f"| {arm} | {s['samples_per_s']:,.0f} | {s['steady_samples_per_s']:,.0f} | "
                     f"{s['test_neg_elbo']:.2f} |")  # fmt: skip
    lines += ["", "| comparison | value |", "|---|---|"]
    for key, val in result["ratios"].items():
        if isinstance(val, list):
            lines.append(f"| {key} | {', '.join(f'{v:.3f}' for v in val)} |")
        elif "ELBO" in key:
            lines.append(f"| {key} | {val:+.2f} |")
        else:
            lines.append(f"| {key} | {val:.3f}x |")
    lines.append(f"\n1-min load average before each arm-round: max "
                 f"{max(result['loadavg_1min_before']):.2f}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=("digits", "mnist"), default="mnist")
    p.add_argument("--mnist-path", type=Path, default=bc.MNIST_TEST)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128, help="the global batch [128]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (each rank its own GPU) [cpu]")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma list from {list(ARMS)}")
    bc.add_out_dir(p)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data-file", help=argparse.SUPPRESS)
    p.add_argument("--result-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return

    arms = [a for a in args.arms.split(",") if a]
    if any(a not in ARMS for a in arms) or "plain" not in arms:
        p.error(f"--arms: a comma list from {list(ARMS)} that includes plain")
    train, test = bc.load_data(args.data, args.seed, args.mnist_path)
    print(f"{args.data}: train {train.shape}, test {test.shape}; {args.epochs} epochs, global "
          f"batch {args.batch_size}; arms {arms}; {args.rounds} rounds", flush=True)
    records: dict[str, list[dict]] = {arm: [] for arm in arms}
    loads = []
    with tempfile.TemporaryDirectory(prefix="bench_distributed_") as tmp:
        data_file = Path(tmp) / "data.npz"
        np.savez(data_file, train=train, test=test)
        for rnd in range(args.rounds):
            for arm in arms:
                loads.append(os.getloadavg()[0])
                rec = run_arm(arm, rnd, args, Path(tmp), data_file)
                records[arm].append(rec)
                print(f"round {rnd} {arm:11s} {rec['samples_per_s']:8,.0f} samples/s  steady "
                      f"{rec['steady_samples_per_s']:8,.0f}  -ELBO {rec['test_neg_elbo']:.2f}",
                      flush=True)  # fmt: skip
    summary, ratios = summarise(records)
    result = {
        "benchmark": "bench_distributed",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": {"data": args.data, "n_train": len(train), "n_test": len(test),
                   "dim": int(train.shape[1]), "epochs": args.epochs, "rounds": args.rounds,
                   "batch_size": args.batch_size, "threads_per_process": 1,
                   "cpus": os.cpu_count()},
        "env": {"torch": torch.__version__, "device": args.device,
                "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None},
        "summary": summary,
        "ratios": ratios,
        "loadavg_1min_before": loads,
        "records": records,
    }
    name = f"distributed_{args.data}" + ("_gpu" if args.device != "cpu" else "")
    bc.write_result(args.out_dir / name, markdown(result), result)


if __name__ == "__main__":
    main()
