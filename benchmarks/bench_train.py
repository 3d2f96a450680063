"""Training speed: vaekit vs Pythae vs the plain hand-written loop, side by side (issue 4).

Every arm trains the same MLP D-512-256-16 (Bernoulli, analytic KL, Adam 1e-3, batch 128) on
the same data. Arms alternate (A B C A B C ...) for --rounds rounds, each arm-round in a fresh
subprocess (peak RSS per arm-round); round r uses seed + r for every arm. No validation during
training; test -ELBO afterwards by one function (common.test_neg_elbo) for all arms.
  plain        the minimal expert loop (common.train_plain): one tensor, randperm index
               batches, torch.optim.Adam (not fused), no flush-denormal
  pythae       pythae's TrainingPipeline (skipped where pythae is not installed), console quiet
  vaekit       vaekit.train.fit with its defaults, compile="off"; vaekit-bf16: precision="bf16"
  vaekit-graphed  compile="on": torch.compile(mode="reduce-overhead"), CUDA graphs on a GPU
--device cuda runs every arm on the GPU (test -ELBO on the CPU afterwards).

    python benchmarks/bench_train.py --data mnist            # train_mnist.{md,json}
    python benchmarks/bench_train.py --data digits           # train_digits
    python benchmarks/bench_train.py --device cuda --batch-size 1024   # train_mnist_gpu_b1024
    python benchmarks/bench_train.py --precision-ab          # fp32 / autocast / bf16 copies
    python benchmarks/bench_train.py --precision-sweep       # train_precision.md
    python benchmarks/bench_train.py --scaling               # train_scaling.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

ARMS = ("plain", "pythae", "vaekit", "vaekit-bf16", "vaekit-graphed")
DEFAULT_EPOCHS = {"mnist": 20, "digits": 100}  # 1,260 / 1,200 optimizer steps at batch 128

# ----------------------------------------------------------------------------------- workers


class Skip(Exception):  # the arm cannot run here (optional peer missing); the message says why
    pass


def run_plain(train_x: torch.Tensor, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    model = bc.MLPVAE(train_x.shape[1]).to(args.device)
    epoch_s = bc.train_plain(model, train_x.to(args.device), args.epochs, args.batch_size, args.lr)
    model.eval().cpu()
    return {"epoch_seconds": epoch_s, "timing": "perf_counter around each epoch",
            "encode": model.encode, "decode_logits": model.decode_logits}


def run_pythae(train_x: torch.Tensor, args: argparse.Namespace) -> dict:
    if bc.peer_version("pythae") is None:
        raise Skip("pythae is not installed; make bench installs it")
    model, seconds = bc.train_pythae(train_x, args.epochs, args.batch_size, args.lr, args.seed,
                                     args.device)
    model.eval().cpu()  # evaluate the last-epoch weights, as for every other arm
    enc = model.encoder
    return {"epoch_seconds": seconds, "timing": "TrainingCallback on_epoch_begin->on_epoch_end",
            "encode": lambda x: (lambda o: (o.embedding, o.log_covariance))(enc(x)),
            "decode_logits": model.decoder.net}


def run_vaekit(train_x: torch.Tensor, args: argparse.Namespace, precision: str = "fp32",
               compile: str = "off") -> dict:
    """`vaekit.train.fit` with its defaults; epoch times from its history's 'seconds'."""
    from vaekit.train import TrainConfig, fit

    torch.manual_seed(args.seed)
    model = bc.vaekit_model(train_x.shape[1])
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, precision=precision, compile=compile)
    history = fit(model, train_x, None, cfg, run_dir=None, progress=False, device=args.device)
    model.eval().cpu()
    return {"epoch_seconds": [float(row["seconds"]) for row in history],
            "timing": "fit() history['seconds']", "encode": model.encode,
            "decode_logits": bc.vaekit_decode_logits(model)}


RUNNERS = {"plain": run_plain, "pythae": run_pythae, "vaekit": run_vaekit,
           "vaekit-bf16": lambda x, a: run_vaekit(x, a, precision="bf16"),
           "vaekit-graphed": lambda x, a: run_vaekit(x, a, compile="on")}


def late_over_early(es: list[float]) -> float | None:
    """Median time of the last 3 epochs over epochs 2-4: > 1 means epochs got slower."""
    if len(es) < 7:
        return None
    return statistics.median(es[-3:]) / statistics.median(es[1:4])


def worker(spec_file: str) -> None:
    """One arm, one round, in this (fresh) process: the parent's settings come as JSON (with
    the arm, round and seed); the record goes to the spec's result file."""
    args = argparse.Namespace(**json.loads(Path(spec_file).read_text()))
    if args.threads:
        torch.set_num_threads(args.threads)
    data = np.load(args.data_file)
    train_x, test_x = torch.from_numpy(data["train"]), torch.from_numpy(data["test"])
    rss_start = bc.current_rss_mb()
    record: dict[str, Any] = {"arm": args.arm, "round": args.round}
    try:
        out = RUNNERS[args.arm](train_x, args)
    except Skip as exc:
        record.update(status="skipped", note=str(exc))
    else:
        n, es = train_x.shape[0], out["epoch_seconds"]
        record.update(
            status="ok", timing=out["timing"], epoch_seconds=[round(s, 5) for s in es],
            samples_per_s=n * len(es) / sum(es),
            steady_samples_per_s=n * (len(es) - 1) / sum(es[1:]) if len(es) > 1 else None,
            median_epoch_samples_per_s=n / statistics.median(es),
            late_over_early=late_over_early(es),
        )
        torch.manual_seed(0)
        record["test_neg_elbo"] = bc.test_neg_elbo(
            out["encode"], out["decode_logits"], test_x, samples=args.eval_samples
        )
    record["rss_at_start_mb"] = round(rss_start, 1)
    record["peak_rss_mb"] = round(bc.peak_rss_mb(), 1)
    Path(args.result_file).write_text(json.dumps(record))


# ----------------------------------------------------------------------------------- parent


def run_arm(arm: str, rnd: int, args: argparse.Namespace, tmp: Path) -> dict:
    """One arm-round in a fresh subprocess; its JSON record (status error if it failed)."""
    result_file, spec = tmp / f"{arm}_{rnd}.json", tmp / f"{arm}_{rnd}.spec.json"
    spec.write_text(json.dumps({**vars(args), "out_dir": None, "mnist_path": None, "arm": arm,
                                "round": rnd, "seed": args.seed + rnd, "result_file":
                                str(result_file), "data_file": str(tmp / "data.npz")}))
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec)],
                          capture_output=True, text=True, env=dict(os.environ, TQDM_DISABLE="1"))
    if proc.returncode != 0 or not result_file.exists():
        err = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        rec = {"arm": arm, "round": rnd, "status": "error", "error": " | ".join(err)}
        print(f"round {rnd} {arm}: ERROR\n  " + "\n  ".join(err), flush=True)
    else:
        rec = json.loads(result_file.read_text())
        if rec["status"] == "skipped":
            print(f"{arm}: skipped ({rec['note']})", flush=True)
        else:
            print(f"round {rnd} {arm:14s} {rec['samples_per_s']:9,.0f} samples/s  "
                  f"median-epoch {rec['median_epoch_samples_per_s']:9,.0f}  "
                  f"-ELBO {rec['test_neg_elbo']:8.2f}  peak RSS {rec['peak_rss_mb']:6.0f} MB",
                  flush=True)  # fmt: skip
    rec["loadavg_1min_before"] = round(load, 2)
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"  note: 1-min load average {load:.1f} before this run: timings distorted")
    return rec


RATIOS = [("vaekit-graphed", "pythae"), ("vaekit-graphed", "plain"), ("vaekit-graphed", "vaekit"),
          ("vaekit", "pythae"), ("vaekit", "plain"), ("vaekit-bf16", "pythae"),
          ("vaekit-bf16", "plain"), ("plain", "pythae"), ("vaekit-bf16", "vaekit")]
STATS = ("samples_per_s", "steady_samples_per_s", "median_epoch_samples_per_s", "test_neg_elbo",
         "peak_rss_mb", "late_over_early")


def summarize(records: list[dict], arms: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arm in arms:
        ok = [r for r in records if r["arm"] == arm and r["status"] == "ok"]
        if not ok:
            notes = {r.get("note") or r.get("error", "") for r in records if r["arm"] == arm}
            out[arm] = {"status": "skipped", "note": "; ".join(sorted(n for n in notes if n))}
            continue
        s: dict[str, Any] = {"status": "ok", "rounds": len(ok), "timing": ok[0]["timing"]}
        for key in STATS:
            vals = [r[key] for r in ok if r.get(key) is not None]
            if vals:
                s[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
        out[arm] = s
    ratios: dict[str, float] = {}
    ok = {arm for arm, s in out.items() if s["status"] == "ok"}
    for a, b in (pair for pair in RATIOS if set(pair) <= ok):
        m = {key: (out[a][key]["median"], out[b][key]["median"]) for key in STATS[:5]}
        if (a, b) != ("vaekit-bf16", "vaekit"):
            ratios.update({f"{a}/{b} {k}": x / y for k, (x, y) in m.items() if "elbo" not in k})
        ratios[f"{a}-{b} test_neg_elbo"] = m["test_neg_elbo"][0] - m["test_neg_elbo"][1]
    return {"arms": out, "ratios": ratios}


def fmt(stat: dict | None, digits: int = 0) -> str:
    if not stat:
        return "-"
    m, lo, hi = stat["median"], stat["min"], stat["max"]
    return f"{m:,.{digits}f} [{lo:,.{digits}f}-{hi:,.{digits}f}]"


def markdown(result: dict) -> str:
    cfg, summ, env = result["config"], result["summary"], result["env"]
    lines = [
        f"# Training speed, {cfg['data']} ({cfg['n_train']} train / {cfg['n_test']} test, "
        f"D={cfg['dim']})", "",
        f"MLP VAE {cfg['dim']}-512-256-16, Bernoulli, Adam lr {cfg['lr']}, batch "
        f"{cfg['batch_size']}, {cfg['epochs']} epochs, {cfg['rounds']} rounds run alternately; "
        f"on {env.get('gpu') or 'the CPU'}, torch {env['torch']}, {env['threads']} threads, "
        f"pythae {env['pythae'] or 'not installed'}. Median [min-max] over rounds.", "",
        "| arm | samples/s | steady samples/s (w/o epoch 1) | n / median epoch time | "
        "test -ELBO (nats) | peak RSS (MB) | late/early epoch time |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, s in summ["arms"].items():
        if s["status"] != "ok":
            lines.append(f"| {arm} | skipped: {s['note']} | | | | | |")
            continue
        lines.append(
            f"| {arm} | {fmt(s.get('samples_per_s'))} | {fmt(s.get('steady_samples_per_s'))} | "
            f"{fmt(s.get('median_epoch_samples_per_s'))} | {fmt(s.get('test_neg_elbo'), 2)} | "
            f"{fmt(s.get('peak_rss_mb'))} | {fmt(s.get('late_over_early'), 2)} |"
        )
    if summ["ratios"]:
        lines += ["", "| comparison | value |", "|---|---|"]
        for key, val in summ["ratios"].items():
            text = f"{val:+.2f} nats" if "neg_elbo" in key else f"{val:.2f}x"
            lines.append(f"| {key} | {text} |")
    loads = [r["loadavg_1min_before"] for r in result["records"]]
    lines += [
        "", "Test -ELBO: one function for all arms (analytic KL + BCE-with-logits summed over "
        f"pixels, {cfg['eval_samples']} posterior samples, fixed seed), last-epoch weights. "
        "n / median epoch time: throughput robust to a few epochs slowed by other load. "
        "late/early: median of the last 3 epoch times over epochs 2-4 (denormal slow-down "
        "shows as > 1). Peak RSS: VmHWM of the arm's own process.",
        f"1-min load average before each arm-round: median {statistics.median(loads):.2f}, "
        f"max {max(loads):.2f} ({env['cpus']} CPUs); other load distorts timings.",
    ]
    lines += [f"- {arm} epoch timing: {s['timing']}" for arm, s in summ["arms"].items()
              if s["status"] == "ok"]
    return "\n".join(lines) + "\n"


def compare(args: argparse.Namespace, arms: list[str]) -> None:
    """The side-by-side run: every arm-round in its own process, alternated; writes results."""
    train, test = bc.load_data(args.data, args.seed, args.mnist_path)
    steps = args.epochs * -(-len(train) // args.batch_size)
    print(f"{args.data}: train {train.shape}, test {test.shape}; {steps} optimizer steps per "
          f"arm-round; arms {arms}; {args.rounds} rounds", flush=True)
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        np.savez(Path(tmp) / "data.npz", train=train, test=test)
        for rnd in range(args.rounds):
            skipped = {r["arm"] for r in records if r["status"] == "skipped"}
            records += [run_arm(arm, rnd, args, Path(tmp)) for arm in arms if arm not in skipped]
    result = {
        "benchmark": "bench_train",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": {"data": args.data, "n_train": len(train), "n_test": len(test),
                   "dim": int(train.shape[1]), "epochs": args.epochs, "optimizer_steps": steps,
                   "rounds": args.rounds, "batch_size": args.batch_size, "lr": args.lr,
                   "seed": args.seed, "eval_samples": args.eval_samples, "arms": arms},
        "env": {"python": platform.python_version(), "torch": torch.__version__,
                "pythae": bc.peer_version("pythae"),
                "threads": args.threads or torch.get_num_threads(), "cpus": os.cpu_count(),
                "machine": platform.machine(), "device": args.device,
                "gpu": torch.cuda.get_device_name(args.device) if args.device != "cpu" else None},
        "summary": summarize(records, arms),
        "records": records,
    }
    name = f"train_{args.data}"
    if args.device != "cpu":
        name += "_gpu" + (f"_b{args.batch_size}" if args.batch_size != 128 else "")
    bc.write_result(args.out_dir / name, markdown(result), result)


# ------------------------------------------------------------- --precision-ab, --precision-sweep

PRECISION_MODES = ("fp32", "bf16 autocast", "bf16 copies")
SWEEP_D = (30, 64, 196, 784, 3072)
SWEEP_HIDDEN = ((64, 32), (256, 128), (512, 256), (1024, 512))


def ms_per_step(mode: str, x: torch.Tensor, steps: int, warmup: int = 30,
                hidden: tuple[int, ...] = bc.HIDDEN) -> float:
    """Milliseconds per training step (batch 128, fused Adam) of a fresh vaekit MLP VAE in
    fp32, under torch.autocast bf16, or on vaekit's bf16 copies (LowPrecision)."""
    from vaekit.core.precision import LowPrecision
    from vaekit.train.steps import step_optimizer

    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = bc.vaekit_model(x.shape[1], hidden)
    opt = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    model.low_precision = LowPrecision(model) if mode == "bf16 copies" else None
    if model.low_precision is not None:
        model.low_precision.pull()
    perm, start = torch.randperm(len(x)), 0.0
    for i in range(warmup + steps):
        start = time.perf_counter() if i == warmup else start
        j = (i * 128) % (len(x) - 128)
        batch = x[perm[j : j + 128]]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16 autocast"):
            loss = model.loss(batch)
        step_optimizer(model, opt, loss.total)
    return (time.perf_counter() - start) / steps * 1e3


def precision_ab(rounds: int, steps: int) -> None:
    """One step of MLP 784-512-256-16 in the three modes, alternated in this process."""
    for r in range(rounds):
        t = {m: ms_per_step(m, torch.rand(8000, 784), steps) for m in PRECISION_MODES}
        print(f"round {r}: " + "  ".join(f"{m} {v:.2f} ms" for m, v in t.items())
              + f"  copies/autocast {t['bf16 autocast'] / t['bf16 copies']:.2f}x", flush=True)


def precision_sweep(rounds: int, steps: int, out_dir: Path) -> None:
    """fp32 vs vaekit's bf16 copies per step by network size, one thread, alternated; the
    median over rounds. Writes train_precision.md."""
    from vaekit.core.precision import BF16_MIN_WEIGHTS, native_bf16

    torch.set_num_threads(1)
    lines = [
        "# fp32 or bf16: one training step by network size", "",
        f"`python benchmarks/bench_train.py --precision-sweep --rounds {rounds} --steps {steps}` "
        f"on {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, one thread, AMX: "
        f"{native_bf16(torch.device('cpu'))}. MLP VAE D-hidden-16 (Bernoulli), batch 128, "
        "fused Adam; bf16 = vaekit's LowPrecision copies (fp32 master weights). Milliseconds "
        f"per step, median of {rounds} alternated rounds; `precision=\"auto\"` picks bf16 "
        f"from {BF16_MIN_WEIGHTS:,} weights on an AMX CPU.", "",
        "| D | hidden | weights | fp32 ms | bf16 ms | fp32 / bf16 |", "|---|---|---|---|---|---|"]
    for hidden in SWEEP_HIDDEN:
        for d in SWEEP_D:
            x = torch.rand(4096, d).bernoulli()
            t: dict[str, list[float]] = {"fp32": [], "bf16 copies": []}
            for _ in range(rounds):
                for mode in t:
                    t[mode].append(ms_per_step(mode, x, steps, warmup=20, hidden=hidden))
            weights = sum(p.numel() for p in bc.vaekit_model(d, hidden).parameters())
            a, b = statistics.median(t["fp32"]), statistics.median(t["bf16 copies"])
            lines.append(f"| {d} | {hidden} | {weights:,} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
            print(lines[-1], flush=True)
    bc.write_result(out_dir / "train_precision", "\n".join(lines))


# ------------------------------------------------------------------------------- --scaling


def scaling(args: argparse.Namespace) -> None:
    """vaekit's epoch time against dataset size and batch size (MNIST test-set images), and
    training from a memory-mapped .npy against the same rows in memory."""
    import dataclasses

    from vaekit.data import DataConfig, prepare
    from vaekit.train import TrainConfig, fit

    def epoch_s(x: torch.Tensor, batch: int) -> float:  # median of epochs 2..E
        torch.manual_seed(0)
        cfg = TrainConfig(epochs=args.epochs, batch_size=batch, seed=0)
        history = fit(bc.vaekit_model(784), x, None, cfg, progress=False)
        return statistics.median(row["seconds"] for row in history[1:])

    x = torch.from_numpy(bc.load_all("mnist", args.mnist_path)[0])
    sizes, batches = (1000, 2000, 4000, 8000), (64, 128, 256, 512)
    grid = []
    for n in sizes:
        for b in batches:
            s = epoch_s(x[:n], b)
            grid.append({"n": n, "batch_size": b, "epoch_ms": 1000 * s, "samples_per_s": n / s})
            print(f"n={n:5d} batch={b:4d} {1000 * s:8.1f} ms/epoch {n / s:9,.0f}/s", flush=True)
    mmap = []
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "mnist.npy", x.numpy())
        cfg = DataConfig(source=str(Path(tmp) / "mnist.npy"), val_fraction=0.0,
                         test_fraction=0.2)
        for name, mapped in (("in memory", False), ("memory-mapped .npy", True)):
            rows = prepare(dataclasses.replace(cfg, mmap=mapped)).train.x
            s = epoch_s(rows, 128)
            mmap.append({"source": name, "n": len(rows), "epoch_ms": 1000 * s,
                         "samples_per_s": len(rows) / s})
    env = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    lines = ["# Scaling: vaekit epoch time against dataset size and batch size", "",
             "MNIST test-set images, MLP 784-512-256-16, Bernoulli, Adam 1e-3; median epoch time "
             f"over epochs 2-{args.epochs}; torch {env['torch']}, {env['threads']} threads.", "",
             "| samples | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|" + "---|" * len(batches)]
    for n in sizes:
        cells = [f"{r['epoch_ms']:.0f} ms ({r['samples_per_s']:,.0f}/s)" for r in grid
                 if r["n"] == n]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Training from a memory-mapped .npy (`--mmap`)", "",
              "| source | train samples | ms per epoch | samples/s |", "|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['n']} | {r['epoch_ms']:.0f} | {r['samples_per_s']:,.0f} |"
              for r in mmap]
    data = {"env": env, "epochs": args.epochs, "grid": grid, "mmap": mmap}
    bc.write_result(args.out_dir / "train_scaling", "\n".join(lines), data)


# ---------------------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--precision-ab", action="store_true",
                      help="one step: fp32, torch.autocast bf16, vaekit's bf16 copies (prints)")
    mode.add_argument("--precision-sweep", action="store_true", help="fp32 vs bf16 by size")
    mode.add_argument("--scaling", action="store_true", help="by dataset/batch size, --mmap")
    p.add_argument("--data", choices=("digits", "mnist"), default="mnist")
    p.add_argument("--mnist-path", type=Path, default=bc.MNIST_TEST)
    p.add_argument("--epochs", type=int, help="default: mnist 20, digits 100; --scaling 4")
    p.add_argument("--rounds", type=int, help="alternated rounds [5; precision: 3]")
    p.add_argument("--steps", type=int, default=250, help="precision: timed steps per mode")
    p.add_argument("--arms", help=f"comma list from {ARMS} [all but vaekit-graphed on the CPU; "
                   "all but vaekit-bf16 on a GPU]")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-samples", type=int, default=10, help="posterior samples for -ELBO")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where every arm trains [cpu]")
    bc.add_out_dir(p)
    p.add_argument("--worker", help=argparse.SUPPRESS)  # a JSON spec: one arm-round
    args = p.parse_args(argv)
    args.epochs = args.epochs or (4 if args.scaling else DEFAULT_EPOCHS[args.data])
    args.rounds = args.rounds or (3 if args.precision_ab or args.precision_sweep else 5)
    skip = "vaekit-graphed" if args.device == "cpu" else "vaekit-bf16"
    args.arms = args.arms or ",".join(a for a in ARMS if a != skip)
    bad = [a for a in args.arms.split(",") if a and a not in ARMS]
    if bad:
        p.error(f"unknown arms {bad}; choose from {ARMS}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        worker(args.worker)
    elif args.precision_ab:
        precision_ab(args.rounds, args.steps)
    elif args.precision_sweep:
        precision_sweep(args.rounds, args.steps, args.out_dir)
    elif args.scaling:
        scaling(args)
    else:
        compare(args, [a for a in args.arms.split(",") if a])


if __name__ == "__main__":
    main()
