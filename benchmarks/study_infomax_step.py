"""Where an encoder-only (infomax) training step spends its time, against the VAE's (issue 10).

Issue 10 asks the encoder-only model for 1.5x the VAE's samples/s at the same encoder. MNIST
meets it; the 8 x 8 digits do not (1.17-1.27x). This study takes the step apart: it times, in
one process, alternated round by round, the training step of

  vae             the VAE (encoder, decoder, Bernoulli likelihood, analytic KL, Adam)
  infomax         the package's encoder-only step (augmented encoder input, noisy critic view,
                  InfoNCE, Adam over encoder and critic)
  infomax-lse     the same with InfoNCE written as diagonal - logsumexp (the package's form
                  before it became log B - cross_entropy)
  no-augment      the infomax step without the encoder's augmentation
  no-critic-noise the infomax step with the critic scoring clean x
  encoder-alone   the floor of any decoder-free objective: the encoder, its posterior draw and
                  KL, and Adam over the encoder only (the loss is KL + mean z^2, no critic)

each for `--steps` steps of batch 128 per round, and reports ms per step and the VAE's time
over each arm's (median of per-round ratios, robust to a round slowed by other load).

  python benchmarks/study_infomax_step.py --data digits --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vaekit import infomax
from vaekit.config import DataConfig, ModelConfig
from vaekit.data import prepare
from vaekit.denormals import set_flush_denormal
from vaekit.models import VAE
from vaekit.steps import make_optimizer, step_optimizer

RESULTS = Path(__file__).parent / "results"
MNIST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"
BATCH = 128
MI_WEIGHT = 200.0


def infonce_lse(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE as the package computed it before: mean(diagonal - logsumexp) + log B."""
    return (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean() + math.log(len(scores))


def infomax_step_loss(*, augment: bool = True, noise: bool = True,
                      estimator: Callable[[torch.Tensor], torch.Tensor] = infomax.mi_infonce):
    """The infomax loss with parts switched off (the package's own pieces otherwise)."""

    def loss(model: VAE, x: torch.Tensor) -> torch.Tensor:
        q = model.posterior(infomax.encoder_input(model, x) if augment else x)
        z = q.rsample(1)[0]
        kl = model.prior.kl(q, None)
        scores = model.run_critic(infomax.critic_view(model, x) if noise else x, z)
        return kl.mean() - MI_WEIGHT * estimator(scores)

    return loss


def encoder_alone(model: VAE, x: torch.Tensor) -> torch.Tensor:
    q = model.posterior(x)
    z = q.rsample(1)[0]
    return model.prior.kl(q, None).mean() + z.square().mean()


def vae_loss(model: VAE, x: torch.Tensor) -> torch.Tensor:
    return model(x, None, beta=1.0).total


ARMS: dict[str, Callable[[VAE, torch.Tensor], torch.Tensor]] = {
    "vae": vae_loss,
    "infomax": infomax_step_loss(),
    "infomax-lse": infomax_step_loss(estimator=infonce_lse),
    "no-augment": infomax_step_loss(augment=False),
    "no-critic-noise": infomax_step_loss(noise=False),
    "encoder-alone": encoder_alone,
}


def build(arm: str, event_shape: tuple[int, ...]) -> tuple[VAE, torch.optim.Optimizer]:
    torch.manual_seed(0)
    extra = {} if arm == "vae" else {"decoder": False}
    model = VAE.from_config(ModelConfig(event_shape=event_shape, latent_dim=16,
                                        hidden=(512, 256), **extra))
    model.train()
    trained = model.encoder if arm == "encoder-alone" else model
    return model, make_optimizer(trained, 1e-3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["mnist", "digits"], default="digits")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=300, help="steps per arm per round")
    p.add_argument("--warmup", type=int, default=300, help="steps per arm before timing")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    set_flush_denormal(True)  # as fit does
    if args.data == "mnist" and not MNIST.is_dir():
        sys.exit(f"no MNIST data at {MNIST} (../shared/data/mnist beside the repo)")
    source = str(MNIST) if args.data == "mnist" else "digits"
    x = prepare(DataConfig(source=source, val_fraction=0.0, test_fraction=0.2)).train.x
    built = {arm: build(arm, tuple(x.shape[1:])) for arm in ARMS}
    gen = torch.Generator().manual_seed(0)

    def run(arm: str, steps: int) -> float:
        model, opt = built[arm]
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(len(x), (BATCH,), generator=gen)
            step_optimizer(model, opt, ARMS[arm](model, x[idx]))
        return (time.perf_counter() - t0) / steps * 1e3

    for arm in ARMS:  # trained a while, so the critic's scores have their working spread
        run(arm, args.warmup)
    ms: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for r in range(args.rounds):
        for arm in ARMS:
            ms[arm].append(run(arm, args.steps))
        print(f"round {r}: " + ", ".join(f"{a} {v[-1]:.2f} ms" for a, v in ms.items()),
              flush=True)
    rows = {arm: {"ms_per_step": statistics.median(v),
                  "vae_over_this": statistics.median(
                      b / a for a, b in zip(v, ms["vae"], strict=True)),
                  "range": [min(b / a for a, b in zip(v, ms["vae"], strict=True)),
                            max(b / a for a, b in zip(v, ms["vae"], strict=True))]}
            for arm, v in ms.items()}
    command = "python benchmarks/study_infomax_step.py " + " ".join(sys.argv[1:])
    lines = [
        f"# The infomax training step taken apart ({args.data})", "",
        f"`{command}` on {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, "
        f"{args.threads} thread(s). {len(x)} training examples, encoder MLP D-512-256, latent "
        f"16, batch {BATCH}, mi_weight {MI_WEIGHT}; each arm warmed up {args.warmup} steps, then "
        f"{args.rounds} alternated rounds of {args.steps} steps. See the script's docstring "
        "for the arms.", "",
        "| step | ms per step (median) | VAE's time / this (median of rounds) | range |",
        "|---|---|---|---|",
    ]
    for arm, row in rows.items():
        lo, hi = row["range"]
        lines.append(f"| {arm} | {row['ms_per_step']:.2f} | {row['vae_over_this']:.2f}x | "
                     f"{lo:.2f}-{hi:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"infomax_step_{args.data}.md"
    out.write_text("\n".join(lines) + "\n")
    (RESULTS / f"infomax_step_{args.data}.json").write_text(
        json.dumps({"command": command, "rows": rows, "ms": ms}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
