"""Conditional VAE: does it generate the class asked for, how well does it model the data, and
what does conditioning cost? Side by side in one run:

  vae          the unconditional VAE (prior N(0, I))
  cvae         q(z|x,y), p(x|z,y), prior N(0, I)
  cvae-class   q(z|x,y), p(x|z,y), class prior p(z|y) = N(mu_y, I)
  cvae-class-full  the same, trained so; then p(z|y) refit to each class's aggregate
               posterior, full covariance (prior "class-full", vaekit.core.priors)

Every arm: MLP D-512-256 (latent 16 by default), Bernoulli, Adam 1e-3, batch 128, dynamic
binarization of the training images (a fresh draw every epoch), trained on the IWAE bound with
K=5 by default (`--objective elbo` for the plain ELBO), the same seeded split (MNIST: 7,000
train / 1,000 validation / 2,000 test of the 10,000 test-set images; early stopping on the
validation loss keeps each arm's best epoch).

Figures per arm (results/cvae_<data>.md and .json):
  -log p(x) or -log p(x|y)  importance sampling with K samples (1000), on one fixed binarized
                            draw of the test split, nats per example
  conditional accuracy      the fraction of --per-class samples per class (decoder means at
                            prior draws) that an MLPClassifier, trained on the real training
                            split only, assigns to the requested class; its accuracy on the
                            real test split beside it
  samples/s                 training speed, from a separate timing phase: vae and --speed-arm
                            alternate (A B A B ...) for --speed-rounds rounds of --speed-epochs
                            epochs each; the ratio is the median of per-round ratios

  .venv/bin/python benchmarks/bench_cvae.py --data mnist --speed-rounds 0   # cvae_mnist
  .venv/bin/python benchmarks/bench_cvae.py --data digits --epochs 100 --objective elbo
  .venv/bin/python benchmarks/bench_cvae.py --data mnist --speed-only       # cvae_mnist_speed.json
  .venv/bin/python benchmarks/bench_cvae.py --data mnist --defaults          # cvae_mnist_defaults

--defaults: what a user gets from `vaekit train --data MNIST --conditional --binarize dynamic
--epochs E --seed S` and nothing else (the package's default prior, objective, network, split
and end-of-training evaluation), at E = 10, 30, 100 and seeds 0-2, beside the same command
with --conditional-prior normal: the conditional accuracy the run itself reports (an MLP judge
trained on the run's training split, `vaekit.train.evaluate.conditional_accuracy`).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import torch

import common as bc
from vaekit.core import VAE, ModelConfig
from vaekit.data import DataConfig, prepare
from vaekit.train import TrainConfig, fit
from vaekit.train.evaluate import conditional_accuracy

DEFAULT_EPOCHS = (10, 30, 100)
DEFAULT_SEEDS = (0, 1, 2)

ARMS = {
    "vae": {},
    "cvae": {"conditional": True},
    "cvae-class": {"conditional": True, "prior": "class"},
    "cvae-class-full": {"conditional": True, "prior": "class-full"},
}


def build(arm: str, splits, latent: int, seed: int) -> VAE:
    torch.manual_seed(seed)
    classes = int(splits.train.y.max()) + 1
    extra = dict(ARMS[arm])
    if extra:
        extra["num_classes"] = classes
    cfg = ModelConfig(event_shape=splits.event_shape, latent_dim=latent, hidden=(512, 256), **extra)
    return VAE.from_config(cfg)


def train(
    model: VAE,
    splits,
    epochs: int,
    seed: int,
    patience: int | None = None,
    objective: str = "elbo",
    samples: int = 1,
) -> tuple[float, int]:
    """Train; return samples/s over the whole run (fit's own per-epoch seconds) and the epochs
    run. With a validation split and patience, early stopping keeps the best epoch's weights."""
    labelled = model.observes_labels
    val = splits.val.x if len(splits.val.x) else None
    history = fit(
        model, splits.train.x, val,
        TrainConfig(epochs=epochs, batch_size=128, seed=seed, patience=patience,
                    objective=objective, samples=samples),
        y_train=splits.train.y if labelled else None,
        y_val=splits.val.y if labelled and val is not None else None,
        progress=False, dynamic_binarize=True,
    )
    speed = len(splits.train.x) * len(history) / sum(r["seconds"] for r in history)
    return speed, len(history)


def quality(args: argparse.Namespace, splits) -> dict[str, dict[str, float]]:
    x_test = torch.bernoulli(splits.test.x, generator=torch.Generator().manual_seed(1234))
    results = {}
    for arm in args.arms:
        t0 = time.perf_counter()
        model = build(arm, splits, args.latent, args.seed)
        speed, epochs = train(model, splits, args.epochs, args.seed, args.patience,
                              args.objective, args.samples)
        y = splits.test.y if model.observes_labels else None
        torch.manual_seed(args.seed + 1)
        ll = model.log_likelihood(x_test, y, k=args.k)
        row = {
            "neg_log_likelihood": float(-ll.mean()),
            "conditional": y is not None,
            "train_samples_per_s": speed,
            "epochs_run": epochs,
            "wall_s": time.perf_counter() - t0,
        }
        if model.observes_labels:
            row.update(
                conditional_accuracy(
                    model, splits.train.x, splits.train.y, splits.test.x, splits.test.y,
                    per_class=args.per_class, seed=args.seed,
                )
            )
        results[arm] = row
        print(arm, json.dumps(row), flush=True)
    return results


def speed(args: argparse.Namespace, splits) -> dict[str, object]:
    """vae vs a conditional arm (--speed-arm, cvae by default), alternated rounds of a few
    epochs each: samples/s and the ratio."""
    new = args.speed_arm
    t = bc.alternated_speed(
        {arm: (lambda r, arm=arm: train(build(arm, splits, args.latent, r), splits,
                                         args.speed_epochs, r)[0]) for arm in ("vae", new)},
        args.speed_rounds, new=new, base="vae",
    )
    return {
        "arm": new,
        "samples_per_s": {("cvae" if k == new else k): v for k, v in t["samples_per_s"].items()},
        "cvae_over_vae_median": t["ratio_median"],
        "cvae_over_vae_range": t["ratio_range"],
        "rounds": t["rounds"],
        "epochs_per_round": args.speed_epochs,
    }


def write(args: argparse.Namespace, splits, results, timing) -> None:
    meta = {
        "data": args.data,
        "train": len(splits.train.x),
        "val": len(splits.val.x),
        "patience": args.patience,
        "threads": torch.get_num_threads(),
        "test": len(splits.test.x),
        "epochs": args.epochs,
        "latent": args.latent,
        "k": args.k,
        "objective": f"{args.objective} (S/K={args.samples})",
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d"),
    }
    lines = [
        f"# Conditional VAE on {args.data}",
        "",
        f"`python benchmarks/bench_cvae.py {' '.join(sys.argv[1:])}` on {meta['date']}, "
        f"torch {meta['torch']}, {meta['machine']}. {meta['train']} training / {meta['val']} "
        f"validation / {meta['test']} test images, MLP D-512-256, latent {args.latent}, up to "
        f"{args.epochs} epochs (early stopping: patience {args.patience} on the validation "
        f"loss, best epoch kept), batch 128, objective {meta['objective']}, dynamic "
        "binarization; log-likelihoods on one "
        f"fixed binarized draw of the test split, K={args.k}; conditional accuracy on "
        f"{args.per_class} samples per class.",
        "",
        "| arm | -log p(x) or -log p(x\\|y), nats | conditional accuracy | judge on real test "
        "| epochs run |",
        "|---|---|---|---|---|",
    ]
    for arm, r in results.items():
        what = "-log p(x\\|y)" if r["conditional"] else "-log p(x)"
        acc = f"{r['conditional_accuracy']:.3f}" if "conditional_accuracy" in r else "—"
        judge = f"{r['classifier_test_accuracy']:.4f}" if "conditional_accuracy" in r else "—"
        lines.append(
            f"| {arm} | {r['neg_log_likelihood']:.2f} ({what}) | {acc} | {judge} "
            f"| {r['epochs_run']} |"
        )
    if timing:
        lo, hi = timing["cvae_over_vae_range"]
        lines += [
            "",
            f"Cost of conditioning (alternated, {timing['rounds']} rounds of "
            f"{timing['epochs_per_round']} epochs): {timing['arm']} "
            f"{timing['samples_per_s']['cvae']:.0f} "
            f"vs VAE {timing['samples_per_s']['vae']:.0f} samples/s, ratio "
            f"{timing['cvae_over_vae_median']:.3f} (median of per-round ratios; range "
            f"{lo:.3f}-{hi:.3f}).",
        ]
    bc.write_result(args.out_dir / f"cvae_{args.data}", "\n".join(lines),
                    {"meta": meta, "quality": results, "speed": timing})


def defaults(args: argparse.Namespace, source: str) -> None:
    """The conditional accuracy of `vaekit train --conditional` with the package's defaults
    (and with --conditional-prior normal) after 10, 30 and 100 epochs, over seeds."""
    import statistics
    import tempfile

    from vaekit.runs import RunConfig, train_run

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for prior in ("default", "normal"):
            for epochs in DEFAULT_EPOCHS:
                for seed in DEFAULT_SEEDS:
                    chosen = {} if prior == "default" else {"prior": prior}
                    model = ModelConfig(conditional=True, **chosen)
                    config = RunConfig(
                        model=model,
                        data=DataConfig(source=source, binarize="dynamic"),
                        train=TrainConfig(epochs=epochs, seed=seed),
                    )
                    t0 = time.perf_counter()
                    run, f = train_run(config, f"{tmp}/{prior}-{epochs}-{seed}", progress=False,
                                       pictures=False, device="cpu")
                    rows.append({"prior": run.config.model.prior, "epochs": epochs, "seed": seed,
                                 "conditional_accuracy": f["conditional_accuracy"],
                                 "judge_test_accuracy": f["classifier_test_accuracy"],
                                 "neg_log_likelihood": -f["log_likelihood"], "k": f["k"],
                                 "seconds": time.perf_counter() - t0})
                    print(json.dumps(rows[-1]), flush=True)
    lines = [
        f"# Conditional VAE on {args.data}: the defaults after 10, 30 and 100 epochs",
        "",
        f"`python benchmarks/bench_cvae.py --data {args.data} --defaults` on "
        f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {torch.get_num_threads()} "
        "threads. Each row: `vaekit train --data SOURCE --conditional --binarize dynamic "
        "--epochs E --seed S` (the package's defaults otherwise), seeds "
        f"{', '.join(map(str, DEFAULT_SEEDS))}; conditional accuracy as the run reports it "
        "(samples judged the asked class by an MLP trained on the run's training split).",
        "",
        "| prior | epochs | conditional accuracy, mean (min-max) | -log p(x\\|y), nats (K=100) "
        "| seconds per run |",
        "|---|---|---|---|---|",
    ]
    for prior in dict.fromkeys(r["prior"] for r in rows):
        for epochs in DEFAULT_EPOCHS:
            sel = [r for r in rows if r["prior"] == prior and r["epochs"] == epochs]
            acc = [r["conditional_accuracy"] for r in sel]
            nll = statistics.mean(r["neg_log_likelihood"] for r in sel)
            sec = statistics.mean(r["seconds"] for r in sel)
            lines.append(f"| {prior} | {epochs} | {statistics.mean(acc):.3f} ({min(acc):.3f}-"
                         f"{max(acc):.3f}) | {nll:.2f} | {sec:.0f} |")
    bc.write_result(args.out_dir / f"cvae_{args.data}_defaults", "\n".join(lines) + "\n",
                    {"argv": sys.argv[1:], "rows": rows})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["mnist", "digits"], default="mnist")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--speed-rounds", type=int, default=5)
    p.add_argument("--speed-epochs", type=int, default=5)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=30)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--speed-only", action="store_true", help="only the alternated speed phase")
    p.add_argument("--defaults", action="store_true",
                   help="conditional accuracy of the CLI's defaults at 10, 30, 100 epochs")
    p.add_argument("--objective", choices=["elbo", "iwae"], default="iwae")
    p.add_argument("--samples", type=int, help="S for elbo, K for iwae [elbo 1, iwae 5]")
    p.add_argument("--per-class", type=int, default=1000, help="samples judged per class")
    p.add_argument("--speed-arm", default="cvae-class-full",
                   choices=[a for a in ARMS if a != "vae"],
                   help="the conditional arm timed against vae [cvae-class-full]")
    bc.add_out_dir(p)
    args = p.parse_args()
    if args.samples is None:
        args.samples = 5 if args.objective == "iwae" else 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data == "mnist" and not bc.MNIST_DIR.is_dir():
        sys.exit(f"no MNIST data at {bc.MNIST_DIR} (../shared/data/mnist beside the repo)")
    source = str(bc.MNIST_DIR) if args.data == "mnist" else "digits"
    if args.defaults:
        defaults(args, source)
        return
    splits = prepare(DataConfig(source=source, val_fraction=args.val_fraction,
                                test_fraction=0.2, binarize="dynamic"))
    timing = speed(args, splits) if args.speed_rounds else {}
    if args.speed_only:  # written beside the quality results, not over them
        out = args.out_dir / f"cvae_{args.data}_speed.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"argv": sys.argv[1:], "threads": torch.get_num_threads(),
                                   "date": time.strftime("%Y-%m-%d %H:%M"), **timing}, indent=2))
        print(json.dumps(timing, indent=2) + f"\nwrote {out}")
        return
    results = quality(args, splits)
    write(args, splits, results, timing)
    assert all(math.isfinite(r["neg_log_likelihood"]) for r in results.values())


if __name__ == "__main__":
    main()
