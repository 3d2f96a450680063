"""Features without a decoder: are the encoder-only (infomax) model's posterior means as good
features as a VAE's, and is it faster to train? Side by side in one run:

  infomax-infonce  encoder-only, prior + InfoNCE MI (the default recipe; the encoder's input
                   augmented as --augment says, vaekit.core.augment)
  infomax-noaug    the same without the encoder's augmentation (augment="off")
  infomax-jsd      encoder-only, prior + Jensen-Shannon MI (Deep InfoMax's form)
  vae              the plain VAE, the same encoder (Bernoulli decoder mirrored)
  pca              PCA with as many components as the latent size
  raw              the pixels themselves (the reference line)

Every trained arm: MLP encoder D-512-256 -> latent 16 (mean and log-variance), Adam 1e-3, the
same seeded 80/20 split (vaekit.data.prepare, split_seed 0, no validation split: a fixed
number of epochs, the last epoch kept), the same epochs, trained by `vaekit.train.fit`.
Features are the posterior means (`model.encode(x)[0]`) of the training and test splits.

Figures per arm (results/infomax_<data>.md and .json):
  linear probe  scikit-learn LogisticRegression on standardized features of the training
                split, accuracy on the test split
  5-NN          KNeighborsClassifier(5), Euclidean on the features as they are
  samples/s     training speed, from a separate timing phase: VAE and infomax (InfoNCE) at
                batch 128 alternate for --speed-rounds rounds of --speed-epochs epochs; the
                ratio is the median of per-round ratios (fit's own per-epoch seconds); the
                no-augmentation arm joins the rounds, to show what the augmentation costs

  .venv/bin/python benchmarks/bench_infomax.py --data digits --epochs 100
  .venv/bin/python benchmarks/bench_infomax.py --data mnist --epochs 30
  .venv/bin/python benchmarks/bench_infomax.py --data mnist --speed-only   # re-time only
  .venv/bin/python benchmarks/bench_infomax.py --data digits --step-breakdown

--step-breakdown takes the training step apart instead (results infomax_<data>_step): in one
process, alternated round by round, the step of
  vae             the VAE (encoder, decoder, Bernoulli likelihood, analytic KL, Adam)
  infomax         the package's encoder-only step (augmented encoder input, noisy critic view,
                  InfoNCE, Adam over encoder and critic)
  infomax-lse     the same with InfoNCE written as diagonal - logsumexp
  no-augment      the infomax step without the encoder's augmentation
  no-critic-noise the infomax step with the critic scoring clean x
  encoder-alone   the floor of any decoder-free objective: the encoder, its posterior draw and
                  KL, and Adam over the encoder only (no critic)
each for --steps steps of batch 128 per round (after --warmup steps), in ms per step and as
the VAE's time over each arm's (median of per-round ratios).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
import warnings
from typing import Any

import numpy as np
import torch

import common as bc
from vaekit.core import VAE, ModelConfig
from vaekit.core.augment import encoder_pixels
from vaekit.core.critic import infomax_figures
from vaekit.data import DataConfig, prepare
from vaekit.train import TrainConfig, fit

TRAINED = ("infomax-infonce", "infomax-noaug", "infomax-jsd", "vae")
ARMS = (*TRAINED, "pca", "raw")
HIDDEN = (512, 256)


def build(arm: str, event_shape: tuple[int, ...], args: argparse.Namespace, seed: int) -> VAE:
    torch.manual_seed(seed)
    extra: dict[str, Any] = {}
    if arm != "vae":
        extra = {"decoder": False, "critic_hidden": tuple(args.critic_hidden),
                 "critic_dim": args.critic_dim, "critic_noise": args.critic_noise,
                 "augment": "off" if arm == "infomax-noaug" else args.augment}
    cfg = ModelConfig(event_shape=event_shape, latent_dim=args.latent, hidden=HIDDEN, **extra)
    return VAE.from_config(cfg)


def train_config(arm: str, args: argparse.Namespace, epochs: int, seed: int) -> TrainConfig:
    if arm == "vae":
        return TrainConfig(epochs=epochs, batch_size=128, seed=seed)
    return TrainConfig(
        epochs=epochs, batch_size=args.batch_size, seed=seed, objective="infomax",
        mi_estimator="jsd" if arm == "infomax-jsd" else "infonce", mi_weight=args.mi_weight,
        beta=args.beta,
    )


def train(model: VAE, cfg: TrainConfig, x: torch.Tensor) -> float:
    """Train on x (no validation); return samples/s over the run (fit's per-epoch seconds)."""
    history = fit(model, x, None, cfg, progress=False)
    return len(x) * len(history) / sum(r["seconds"] for r in history)


@torch.no_grad()
def means(model: VAE, x: torch.Tensor) -> np.ndarray:
    return torch.cat([model.encode(b)[0] for b in x.split(1024)]).numpy()


def probes(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray,
           threads: int) -> dict[str, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(), threadpool_limits(threads):
        warnings.simplefilter("ignore", ConvergenceWarning)
        linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        linear.fit(f_train, y_train)
        knn = KNeighborsClassifier(5).fit(f_train, y_train)
        return {
            "linear_probe": float(linear.score(f_test, y_test)),
            "knn5": float(knn.score(f_test, y_test)),
        }


def quality(args: argparse.Namespace, splits) -> dict[str, dict[str, Any]]:
    x_tr, x_te = splits.train.x, splits.test.x
    y_tr, y_te = splits.train.y.numpy(), splits.test.y.numpy()
    flat_tr, flat_te = x_tr.flatten(1).numpy(), x_te.flatten(1).numpy()
    results: dict[str, dict[str, Any]] = {}
    for arm in args.arms:
        t0 = time.perf_counter()
        row: dict[str, Any] = {}
        if arm in TRAINED:
            model = build(arm, splits.event_shape, args, args.seed)
            cfg = train_config(arm, args, args.epochs, args.seed)
            row["train_samples_per_s"] = train(model, cfg, x_tr)
            row["batch_size"] = cfg.batch_size
            f_tr, f_te = means(model, x_tr), means(model, x_te)
            if arm == "vae":
                with torch.no_grad():
                    row["test_rate"] = float(model.elbo(x_te).rate)
            else:
                fig = infomax_figures(model, x_te, estimator=cfg.mi_estimator,
                                      mi_weight=cfg.mi_weight)
                row.update({f"test_{k}": fig[k] for k in
                            ("rate", "mi_nats", "mi_nats_cap", "mi_matched")})
        elif arm == "pca":
            from sklearn.decomposition import PCA

            pca = PCA(args.latent, random_state=args.seed).fit(flat_tr)
            f_tr, f_te = pca.transform(flat_tr), pca.transform(flat_te)
        else:
            f_tr, f_te = flat_tr, flat_te
        row.update(probes(f_tr, y_tr, f_te, y_te, torch.get_num_threads()))
        row["features"] = int(f_tr.shape[1])
        row["wall_s"] = time.perf_counter() - t0
        results[arm] = row
        print(arm, json.dumps(row), flush=True)
    return results


def speed(args: argparse.Namespace, splits) -> dict[str, Any]:
    """VAE vs infomax (InfoNCE), both at batch 128, alternated rounds: samples/s, ratio."""

    def run(arm: str, r: int) -> float:
        cfg = dataclasses.replace(train_config(arm, args, args.speed_epochs, r), batch_size=128)
        return train(build(arm, splits.event_shape, args, r), cfg, splits.train.x)

    arms = {"vae": lambda r: run("vae", r), "infomax": lambda r: run("infomax-infonce", r),
            "infomax-noaug": lambda r: run("infomax-noaug", r)}
    t = bc.alternated_speed(arms, args.speed_rounds, new="infomax", base="vae")
    rates = t["samples_per_s"]
    return {
        "samples_per_s": rates,
        "infomax_over_vae_median": t["ratio_median"],
        "infomax_over_vae_range": t["ratio_range"],
        "noaug_over_vae_median_rate": rates["infomax-noaug"] / rates["vae"],
        "rounds": t["rounds"],
        "epochs_per_round": args.speed_epochs,
        "batch_size": 128,
    }


def augment_words(args: argparse.Namespace, event_shape: tuple[int, ...]) -> str:
    """What --augment means on this data, in words for the results file."""
    cfg = ModelConfig(event_shape=event_shape, decoder=False, augment=args.augment)
    pixels = encoder_pixels(cfg)
    if pixels is None:
        return f"no ({args.augment})"
    shift = f", translated by up to {pixels} pixel(s)" if pixels else " (no translation)"
    return f"a Bernoulli sample{shift} ({args.augment})"


LABELS = {
    "infomax-infonce": "infomax, InfoNCE (encoder only)",
    "infomax-noaug": "infomax, InfoNCE, encoder input not augmented",
    "infomax-jsd": "infomax, JSD (encoder only)",
    "vae": "VAE (same encoder + decoder)",
    "pca": "PCA",
    "raw": "raw pixels (reference)",
}


def write(args: argparse.Namespace, splits, results, timing) -> None:
    meta = {
        "data": args.data,
        "train": len(splits.train.x),
        "test": len(splits.test.x),
        "epochs": args.epochs,
        "latent": args.latent,
        "mi_weight": args.mi_weight,
        "beta": args.beta,
        "critic_hidden": args.critic_hidden,
        "critic_dim": args.critic_dim,
        "critic_noise": args.critic_noise,
        "augment": args.augment,
        "infomax_batch_size": args.batch_size,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python benchmarks/bench_infomax.py {' '.join(sys.argv[1:])}",
    }
    lines = [
        f"# Features without a decoder on {args.data}",
        "",
        f"`{meta['command']}` on {meta['date']}, torch {meta['torch']}, {meta['machine']}. "
        f"{meta['train']} training / {meta['test']} test examples (seeded 80/20 split), "
        f"encoder MLP D-512-256, latent {args.latent}, {args.epochs} epochs for every trained "
        f"arm (the last epoch kept), Adam 1e-3; VAE batch 128; infomax batch {args.batch_size}, "
        f"mi_weight {args.mi_weight}, beta {args.beta}, critic (A x) . g(z) with A linear to "
        f"{args.critic_dim} and g an MLP {args.critic_hidden} -> {args.critic_dim}, critic "
        f"noise {args.critic_noise} (times std(x) sqrt(D)), encoder input augmented: "
        f"{augment_words(args, splits.event_shape)}. Features: posterior means "
        f"({args.latent}), PCA components ({args.latent}), or pixels. Linear probe: "
        "LogisticRegression on standardized features; 5-NN: Euclidean on the features as "
        "they are; both fitted on the training split, accuracy on the test split.",
        "",
        "| features | linear probe | 5-NN | test rate, nats | test MI (InfoNCE bound), nats |",
        "|---|---|---|---|---|",
    ]
    for arm, r in results.items():
        rate = f"{r['test_rate']:.2f}" if "test_rate" in r else "—"
        mi = (f"{r['test_mi_nats']:.2f} (cap {r['test_mi_nats_cap']:.2f})"
              if "test_mi_nats" in r else "—")
        lines.append(f"| {LABELS[arm]} | {r['linear_probe']:.4f} | {r['knn5']:.4f} | {rate} "
                     f"| {mi} |")
    if timing:
        lo, hi = timing["infomax_over_vae_range"]
        lines += [
            "",
            f"Training speed (alternated, {timing['rounds']} rounds of "
            f"{timing['epochs_per_round']} epochs, batch 128 for both): infomax "
            f"{timing['samples_per_s']['infomax']:.0f} vs VAE "
            f"{timing['samples_per_s']['vae']:.0f} samples/s, ratio "
            f"{timing['infomax_over_vae_median']:.2f}x (median of per-round ratios; range "
            f"{lo:.2f}-{hi:.2f}). Without the encoder's augmentation "
            f"{timing['samples_per_s']['infomax-noaug']:.0f} samples/s "
            f"({timing['noaug_over_vae_median_rate']:.2f}x the VAE's, ratio of the medians).",
        ]
    bc.write_result(args.out_dir / f"infomax_{args.data}", "\n".join(lines),
                    {"meta": meta, "quality": results, "speed": timing})


# ---------------------------------------------------------------------- --step-breakdown

STEP_BATCH = 128


def step_losses(mi_weight: float) -> dict[str, Any]:
    """The arms of --step-breakdown: arm -> loss(model, x), the package's own pieces with
    parts switched off."""
    import math

    from vaekit.core import critic

    def lse(scores: torch.Tensor) -> torch.Tensor:  # InfoNCE as the package computed it once
        return (scores.diagonal() - torch.logsumexp(scores, 1)).mean() + math.log(len(scores))

    def infomax(augment: bool = True, noise: bool = True, estimator: Any = critic.mi_infonce):
        def loss(model: VAE, x: torch.Tensor) -> torch.Tensor:
            q = model.posterior(critic.encoder_input(model, x) if augment else x)
            z = q.rsample(1)[0]
            scores = model.run_critic(critic.critic_view(model, x) if noise else x, z)
            return model.prior.kl(q, None).mean() - mi_weight * estimator(scores)

        return loss

    def encoder_alone(model: VAE, x: torch.Tensor) -> torch.Tensor:
        q = model.posterior(x)
        return model.prior.kl(q, None).mean() + q.rsample(1)[0].square().mean()

    return {"vae": lambda model, x: model(x, None, beta=1.0).total, "infomax": infomax(),
            "infomax-lse": infomax(estimator=lse), "no-augment": infomax(augment=False),
            "no-critic-noise": infomax(noise=False), "encoder-alone": encoder_alone}


def step_breakdown(args: argparse.Namespace, x: torch.Tensor) -> None:
    """Milliseconds per training step of each arm of `step_losses`, alternated in one process."""
    from vaekit.train.denormals import set_flush_denormal
    from vaekit.train.steps import make_optimizer, step_optimizer

    set_flush_denormal(True)  # as fit does
    losses, built = step_losses(args.mi_weight), {}
    for arm in losses:
        torch.manual_seed(0)
        cfg = ModelConfig(event_shape=tuple(x.shape[1:]), latent_dim=args.latent, hidden=HIDDEN,
                          **({} if arm == "vae" else {"decoder": False}))
        model = VAE.from_config(cfg).train()
        built[arm] = model, make_optimizer(model.encoder if arm == "encoder-alone" else model,
                                           1e-3)
    gen = torch.Generator().manual_seed(0)

    def run(arm: str, steps: int) -> float:
        model, opt = built[arm]
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(len(x), (STEP_BATCH,), generator=gen)
            step_optimizer(model, opt, losses[arm](model, x[idx]))
        return (time.perf_counter() - t0) / steps * 1e3

    for arm in built:  # trained a while, so the critic's scores have their working spread
        run(arm, args.warmup)
    ms: dict[str, list[float]] = {arm: [] for arm in built}
    for r in range(args.speed_rounds):
        for arm in built:
            ms[arm].append(run(arm, args.steps))
        print(f"round {r}: " + ", ".join(f"{a} {v[-1]:.2f} ms" for a, v in ms.items()),
              flush=True)
    rows = {}
    for arm, v in ms.items():
        ratios = [b / a for a, b in zip(v, ms["vae"], strict=True)]
        rows[arm] = {"ms_per_step": statistics.median(v), "vae_over_this":
                     statistics.median(ratios), "range": [min(ratios), max(ratios)]}
    command = "python benchmarks/bench_infomax.py " + " ".join(sys.argv[1:])
    lines = [
        f"# The infomax training step taken apart ({args.data})", "",
        f"`{command}` on {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s). {len(x)} training examples, encoder MLP "
        f"D-512-256, latent {args.latent}, batch {STEP_BATCH}, mi_weight {args.mi_weight}; each "
        f"arm warmed up {args.warmup} steps, then {args.speed_rounds} alternated rounds of "
        f"{args.steps} steps. The arms: the script's docstring.", "",
        "| step | ms per step (median) | VAE's time / this (median of rounds) | range |",
        "|---|---|---|---|",
    ]
    lines += [f"| {arm} | {r['ms_per_step']:.2f} | {r['vae_over_this']:.2f}x | "
              f"{r['range'][0]:.2f}-{r['range'][1]:.2f} |" for arm, r in rows.items()]
    bc.write_result(args.out_dir / f"infomax_{args.data}_step", "\n".join(lines),
                    {"command": command, "rows": rows, "ms": ms})


# ---------------------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["mnist", "digits"], default="digits")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--mi-weight", type=float, default=200.0)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=128, help="infomax arms' batch")
    p.add_argument("--critic-hidden", type=int, nargs="*", default=[256])
    p.add_argument("--critic-dim", type=int, default=64)
    p.add_argument("--critic-noise", type=float, default=0.2)
    p.add_argument("--augment", choices=["auto", "on", "off"], default="auto",
                   help="the infomax-infonce and -jsd arms' encoder augmentation")
    p.add_argument("--speed-rounds", type=int, help="alternated rounds [3; step breakdown 15]")
    p.add_argument("--speed-epochs", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--speed-only", action="store_true",
                      help="time again and replace only the speed figures of the results file")
    what.add_argument("--step-breakdown", action="store_true",
                      help="time the training step's parts (results infomax_DATA_step)")
    p.add_argument("--steps", type=int, default=300, help="step breakdown: steps per round")
    p.add_argument("--warmup", type=int, default=300, help="step breakdown: steps before")
    bc.add_out_dir(p)
    args = p.parse_args()
    if args.speed_rounds is None:
        args.speed_rounds = 15 if args.step_breakdown else 3
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data == "mnist" and not bc.MNIST_DIR.is_dir():
        sys.exit(f"no MNIST data at {bc.MNIST_DIR} (../shared/data/mnist beside the repo)")
    source = str(bc.MNIST_DIR) if args.data == "mnist" else "digits"
    splits = prepare(DataConfig(source=source, val_fraction=0.0, test_fraction=0.2))
    if args.step_breakdown:
        step_breakdown(args, splits.train.x)
        return
    timing = speed(args, splits) if args.speed_rounds else {}
    if args.speed_only:  # keep the quality figures (and their settings) of the last full run
        old = json.loads((args.out_dir / f"infomax_{args.data}.json").read_text())
        results = old["quality"]
        for key in ("epochs", "latent", "mi_weight", "beta", "critic_dim", "critic_noise",
                    "augment"):
            setattr(args, key, old["meta"][key])
        args.critic_hidden = old["meta"]["critic_hidden"]
        args.batch_size = old["meta"]["infomax_batch_size"]
        sys.argv += ["(speed figures; quality from the run before:", old["meta"]["command"] + ")"]
    else:
        results = quality(args, splits)
    write(args, splits, results, timing)


if __name__ == "__main__":
    main()
