"""Training speed: vaekit vs Pythae vs the plain hand-written loop, side by side (issue 4).

Same model for every arm (MLP D-512-256-16, ReLU, encoder head 2*16 = mean/logvar, decoder of
D Bernoulli logits), same data, ELBO with analytic KL, Adam lr 1e-3, batch 128. Arms run
alternately (A B C A B C ...) for --rounds rounds, each arm-round in its own subprocess (so
peak RSS, VmHWM read by the child, is per arm-round) with a fresh model. Round r uses seed + r
for every arm: -ELBO differences then compare the same initialisations over several seeds.

    python benchmarks/bench_train.py --data mnist            # 5 rounds x 20 epochs
    python benchmarks/bench_train.py --data digits --rounds 3
    make bench-gpu   # on a CUDA GPU: batch 128 and 1024, eager and graphed (issue 11)

Arms:
  plain        the minimal expert loop (benchcommon.train_plain): one tensor, randperm index
               batches, torch.optim.Adam (not fused), no flush-denormal, no tricks
  pythae       pythae.pipelines.TrainingPipeline with BaseTrainerConfig (skipped if pythae is
               not importable); progress bars and console logging switched off
  vaekit       vaekit.train.fit(model, x_train, None, TrainConfig(...)) (skipped until it exists)
               with compile="off": the eager step
  vaekit-bf16  the same with TrainConfig(precision="bf16")
  vaekit-graphed  compile="on": the step through torch.compile(mode="reduce-overhead"), which
               captures it in CUDA graphs on a GPU (vaekit.steps)

--device cuda runs every arm on the GPU (data resident there; Pythae with no_cuda=False); the
test -ELBO is computed on the CPU afterwards, and the GPU's name goes into the results.

No arm evaluates a validation set during training. Test -ELBO is computed afterwards by one
function (benchcommon.test_neg_elbo) for all arms.
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

import benchcommon as bc

ARMS = ("plain", "pythae", "vaekit", "vaekit-bf16", "vaekit-graphed")
DEFAULT_EPOCHS = {"mnist": 20, "digits": 100}  # 1,260 / 1,200 optimizer steps at batch 128
RESULTS = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------------- workers


class Skip(Exception):
    """The arm cannot run here (optional peer missing); the message says why."""


def run_plain(train_x: torch.Tensor, test_x: torch.Tensor, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    model = bc.MLPVAE(train_x.shape[1]).to(args.device)
    t0 = time.perf_counter()
    epoch_s = bc.train_plain(model, train_x.to(args.device), args.epochs, args.batch_size, args.lr)
    total = time.perf_counter() - t0
    model.eval().cpu()
    return {
        "epoch_seconds": epoch_s,
        "total_seconds": total,
        "timing": "perf_counter around each epoch",
        "encode": model.encode,
        "decode_logits": model.decode_logits,
    }


def run_pythae(train_x: torch.Tensor, test_x: torch.Tensor, args: argparse.Namespace) -> dict:
    try:
        from pythae.pipelines import TrainingPipeline
        from pythae.trainers import BaseTrainerConfig
        from pythae.trainers.training_callbacks import TrainingCallback
    except Exception as exc:
        raise Skip(f"pythae not importable ({type(exc).__name__}: {exc})") from exc
    bc.quiet_pythae()

    class EpochTimer(TrainingCallback):
        """Times on_epoch_begin -> on_epoch_end: the train loop over the DataLoader plus
        Pythae's per-epoch best-model deepcopy (part of its epoch); not the final save."""

        def __init__(self) -> None:
            self.t0 = 0.0
            self.seconds: list[float] = []

        def on_epoch_begin(self, training_config: Any, **kwargs: Any) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, training_config: Any, **kwargs: Any) -> None:
            self.seconds.append(time.perf_counter() - self.t0)

    d = train_x.shape[1]
    torch.manual_seed(args.seed)
    ref = bc.MLPVAE(d)
    model = bc.make_pythae_vae(d, ref.enc, ref.dec)
    timer = EpochTimer()
    with tempfile.TemporaryDirectory(prefix="bench_pythae_") as out:
        config = BaseTrainerConfig(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            num_epochs=args.epochs,
            learning_rate=args.lr,
            optimizer_cls="Adam",
            steps_saving=None,
            steps_predict=None,
            seed=args.seed,
            no_cuda=args.device == "cpu",
        )
        pipeline = TrainingPipeline(model=model, training_config=config)
        t0 = time.perf_counter()
        pipeline(train_data=train_x, callbacks=[timer])
        total = time.perf_counter() - t0
    model.eval().cpu()  # evaluate the last-epoch weights, as for every other arm
    enc, dec = model.encoder, model.decoder
    return {
        "epoch_seconds": timer.seconds,
        "total_seconds": total,
        "timing": "TrainingCallback on_epoch_begin->on_epoch_end (total_seconds is the whole "
        "pipeline call incl. data checks and final save)",
        "encode": lambda x: (lambda o: (o.embedding, o.log_covariance))(enc(x)),
        "decode_logits": dec.net,
    }


def run_vaekit(
    train_x: torch.Tensor,
    test_x: torch.Tensor,
    args: argparse.Namespace,
    precision: str = "fp32",
    compile: str = "off",
) -> dict:
    """vaekit's own trainer, `vaekit.train.fit`, with its defaults (fused Adam, flush-to-zero
    in every thread, index batches); epoch times from its history's 'seconds'."""
    try:
        from vaekit.config import TrainConfig
        from vaekit.train import fit
    except Exception as exc:
        raise Skip(f"vaekit.train.fit not importable yet ({type(exc).__name__}: {exc})") from exc
    d = train_x.shape[1]
    torch.manual_seed(args.seed)
    model = bc.vaekit_model(d)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        precision=precision,
        compile=compile,
    )
    t0 = time.perf_counter()
    history = fit(model, train_x, None, cfg, run_dir=None, progress=False, device=args.device)
    total = time.perf_counter() - t0
    epoch_s = [float(row["seconds"]) for row in history]
    timing = "fit() history['seconds']"
    model.eval().cpu()
    return {
        "epoch_seconds": epoch_s,
        "total_seconds": total,
        "timing": timing,
        "encode": model.encode,
        "decode_logits": bc.vaekit_decode_logits(model),
    }


def worker(args: argparse.Namespace) -> None:
    """One arm, one round, in this (fresh) process; writes a JSON record to --result-file."""
    if args.threads:
        torch.set_num_threads(args.threads)
    data = np.load(args.data_file)
    train_x = torch.from_numpy(data["train"])
    test_x = torch.from_numpy(data["test"])
    rss_start = bc.current_rss_mb()
    record: dict[str, Any] = {"arm": args.worker, "round": args.round}
    runners = {
        "plain": run_plain,
        "pythae": run_pythae,
        "vaekit": run_vaekit,
        "vaekit-bf16": lambda a, b, c: run_vaekit(a, b, c, precision="bf16"),
        "vaekit-graphed": lambda a, b, c: run_vaekit(a, b, c, compile="on"),
    }
    try:
        out = runners[args.worker](train_x, test_x, args)
    except Skip as exc:
        record.update(status="skipped", note=str(exc))
    else:
        n = train_x.shape[0]
        es = out["epoch_seconds"]
        record.update(
            status="ok",
            timing=out["timing"],
            epoch_seconds=[round(s, 5) for s in es],
            total_seconds=round(out["total_seconds"], 4),
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


def late_over_early(es: list[float]) -> float | None:
    """Median time of the last 3 epochs over epochs 2-4: > 1 means epochs got slower."""
    if len(es) < 7:
        return None
    return statistics.median(es[-3:]) / statistics.median(es[1:4])


# ----------------------------------------------------------------------------------- parent


def summarize(records: list[dict], arms: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arm in arms:
        ok = [r for r in records if r["arm"] == arm and r["status"] == "ok"]
        if not ok:
            notes = {r.get("note") or r.get("error", "") for r in records if r["arm"] == arm}
            out[arm] = {"status": "skipped", "note": "; ".join(sorted(n for n in notes if n))}
            continue
        s: dict[str, Any] = {"status": "ok", "rounds": len(ok)}
        for key in (
            "samples_per_s",
            "steady_samples_per_s",
            "median_epoch_samples_per_s",
            "test_neg_elbo",
            "peak_rss_mb",
            "late_over_early",
        ):
            vals = [r[key] for r in ok if r.get(key) is not None]
            if vals:
                s[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
        s["timing"] = ok[0]["timing"]
        out[arm] = s
    ratios: dict[str, float] = {}
    pairs = [
        ("vaekit-graphed", "pythae"),
        ("vaekit-graphed", "plain"),
        ("vaekit-graphed", "vaekit"),
        ("vaekit", "pythae"),
        ("vaekit", "plain"),
        ("vaekit-bf16", "pythae"),
        ("vaekit-bf16", "plain"),
        ("plain", "pythae"),
    ]
    for a, b in pairs:
        if out.get(a, {}).get("status") == "ok" and out.get(b, {}).get("status") == "ok":
            for key in ("samples_per_s", "steady_samples_per_s", "median_epoch_samples_per_s"):
                ratios[f"{a}/{b} {key}"] = out[a][key]["median"] / out[b][key]["median"]
            ratios[f"{a}-{b} test_neg_elbo"] = (
                out[a]["test_neg_elbo"]["median"] - out[b]["test_neg_elbo"]["median"]
            )
            ratios[f"{a}/{b} peak_rss_mb"] = (
                out[a]["peak_rss_mb"]["median"] / out[b]["peak_rss_mb"]["median"]
            )
    if (
        out.get("vaekit-bf16", {}).get("status") == "ok"
        and out.get("vaekit", {}).get("status") == "ok"
    ):
        ratios["vaekit-bf16-vaekit test_neg_elbo"] = (
            out["vaekit-bf16"]["test_neg_elbo"]["median"] - out["vaekit"]["test_neg_elbo"]["median"]
        )
    return {"arms": out, "ratios": ratios}


def fmt(stat: dict | None, digits: int = 0) -> str:
    if not stat:
        return "-"
    m, lo, hi = stat["median"], stat["min"], stat["max"]
    return f"{m:,.{digits}f} [{lo:,.{digits}f}-{hi:,.{digits}f}]"


def markdown(result: dict) -> str:
    cfg, summ = result["config"], result["summary"]
    lines = [
        f"# Training speed, {cfg['data']} ({cfg['n_train']} train / {cfg['n_test']} test, "
        f"D={cfg['dim']})",
        "",
        f"MLP VAE {cfg['dim']}-512-256-16, Bernoulli, Adam lr {cfg['lr']}, batch "
        f"{cfg['batch_size']}, {cfg['epochs']} epochs, {cfg['rounds']} rounds run alternately; "
        f"on {result['env'].get('gpu') or 'the CPU'}, "
        f"torch {result['env']['torch']}, {result['env']['threads']} threads, "
        f"pythae {result['env']['pythae'] or 'not installed'}. "
        "Median [min-max] over rounds.",
        "",
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
            f"{fmt(s.get('median_epoch_samples_per_s'))} | "
            f"{fmt(s.get('test_neg_elbo'), 2)} | {fmt(s.get('peak_rss_mb'))} | "
            f"{fmt(s.get('late_over_early'), 2)} |"
        )
    if summ["ratios"]:
        lines += ["", "| comparison | value |", "|---|---|"]
        for key, val in summ["ratios"].items():
            text = f"{val:+.2f} nats" if "neg_elbo" in key else f"{val:.2f}x"
            lines.append(f"| {key} | {text} |")
    lines += [
        "",
        "Test -ELBO: one function for all arms (analytic KL + BCE-with-logits summed over "
        f"pixels, {cfg['eval_samples']} posterior samples, fixed seed), last-epoch weights. "
        "n / median epoch time: throughput robust to a few epochs slowed by other load. "
        "late/early: median of the last 3 epoch times over epochs 2-4 (denormal slow-down "
        "shows as > 1). Peak RSS: VmHWM of the arm's own process (imports, data, training, "
        "evaluation).",
    ]
    loads = [r["loadavg_1min_before"] for r in result["records"] if "loadavg_1min_before" in r]
    if loads:
        lines.append(
            f"1-min load average before each arm-round: median {statistics.median(loads):.2f}, "
            f"max {max(loads):.2f} ({result['env']['cpus']} CPUs); other load distorts timings."
        )
    timings = {arm: s["timing"] for arm, s in summ["arms"].items() if s["status"] == "ok"}
    for arm, timing in timings.items():
        lines.append(f"- {arm} epoch timing: {timing}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", choices=("digits", "mnist"), default="mnist")
    p.add_argument("--mnist-path", type=Path, default=bc.MNIST_TEST)
    p.add_argument("--epochs", type=int, default=None, help="default: mnist 20, digits 100")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--arms",
        help=f"comma list from {ARMS} [all but vaekit-graphed on the CPU; all but vaekit-bf16 "
        "on a GPU]",
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-samples", type=int, default=10, help="posterior samples for -ELBO")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where every arm trains [cpu]")
    p.add_argument("--tag", default="", help="suffix of the result files' names")
    p.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    p.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--data-file", help=argparse.SUPPRESS)
    p.add_argument("--result-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = DEFAULT_EPOCHS[args.data]
    if args.worker:
        worker(args)
        return

    if args.arms is None:
        skip = "vaekit-graphed" if args.device == "cpu" else "vaekit-bf16"
        args.arms = ",".join(a for a in ARMS if a != skip)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in arms if a not in ARMS]
    if bad:
        p.error(f"unknown arms {bad}; choose from {ARMS}")
    train, test = bc.load_data(args.data, args.seed, args.mnist_path)
    steps = args.epochs * -(-len(train) // args.batch_size)
    print(
        f"{args.data}: train {train.shape}, test {test.shape}; {args.epochs} epochs = "
        f"{steps} optimizer steps per arm-round; arms {arms}; {args.rounds} rounds",
        flush=True,
    )
    records: list[dict] = []
    skipped: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        data_file = Path(tmp) / "data.npz"
        np.savez(data_file, train=train, test=test)
        for rnd in range(args.rounds):
            for arm in arms:
                if arm in skipped:
                    continue
                result_file = Path(tmp) / f"{arm}_{rnd}.json"
                cmd = [
                    sys.executable, str(Path(__file__).resolve()), "--worker", arm,
                    "--round", str(rnd), "--data-file", str(data_file),
                    "--result-file", str(result_file), "--data", args.data,
                    "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                    "--lr", str(args.lr), "--seed", str(args.seed + rnd),
                    "--eval-samples", str(args.eval_samples), "--threads", str(args.threads),
                    "--device", args.device,
                ]  # fmt: skip
                env = dict(os.environ, TQDM_DISABLE="1")
                load = os.getloadavg()[0]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0 or not result_file.exists():
                    err = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
                    rec = {"arm": arm, "round": rnd, "status": "error", "error": " | ".join(err)}
                    print(f"round {rnd} {arm}: ERROR\n  " + "\n  ".join(err), flush=True)
                else:
                    rec = json.loads(result_file.read_text())
                    if rec["status"] == "skipped":
                        skipped.add(arm)
                        print(f"{arm}: skipped ({rec['note']})", flush=True)
                    else:
                        print(
                            f"round {rnd} {arm:12s} {rec['samples_per_s']:9,.0f} samples/s  "
                            f"steady {rec['steady_samples_per_s'] or 0:9,.0f}  "
                            f"median-epoch {rec['median_epoch_samples_per_s']:9,.0f}  "
                            f"-ELBO {rec['test_neg_elbo']:8.2f}  "
                            f"peak RSS {rec['peak_rss_mb']:6.0f} MB  "
                            f"late/early {rec['late_over_early'] or float('nan'):.2f}",
                            flush=True,
                        )
                rec["loadavg_1min_before"] = round(load, 2)
                if load > 0.5 * (os.cpu_count() or 1):
                    print(
                        f"  note: 1-min load average was {load:.1f} before this run; other "
                        "processes compete for the CPU and distort timings",
                        flush=True,
                    )
                records.append(rec)

    result = {
        "benchmark": "bench_train",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": {
            "data": args.data,
            "n_train": len(train),
            "n_test": len(test),
            "dim": int(train.shape[1]),
            "epochs": args.epochs,
            "optimizer_steps": steps,
            "rounds": args.rounds,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "eval_samples": args.eval_samples,
            "arms": arms,
        },
        "env": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pythae": bc.pythae_version(),
            "threads": args.threads or torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "device": args.device,
            "gpu": torch.cuda.get_device_name(args.device) if args.device != "cpu" else None,
        },
        "summary": summarize(records, arms),
        "records": records,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"train_{args.data}{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    stem.with_suffix(".md").write_text(md)
    print()
    print(md)
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
