"""The `vaekit` command: argument parsing only; every command calls the Python API (the
commands themselves are in `vaekit.cli.commands`, and in a module each for cluster, score and
serve).

A user mistake is one line on stderr and a non-zero exit, never a traceback, and never an
overwritten file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaekit.cli.commands import (
    cmd_encode,
    cmd_evaluate,
    cmd_plot,
    cmd_reconstruct,
    cmd_sample,
    cmd_train,
)
from vaekit.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Parser,
    UserError,
    add_device,
    hidden_sizes,
    ints,
)

EXAMPLES = {
    "train": """examples:
  vaekit train --data digits --out runs/digits --latent-dim 2
  vaekit train --data ../shared/data/mnist --out runs/mnist --arch conv --epochs 20
  vaekit train --data frey_rawface.mat --image-shape 28,20 --likelihood gaussian-learned \\
      --standardize --out runs/frey
  vaekit train --out runs/digits --resume --epochs 60      # continue a run
  vaekit train --data digits --out runs/cvae --conditional --conditional-prior class
  vaekit train --data ../shared/data/mnist --out runs/cvae --conditional --binarize dynamic \\
      --conditional-prior class-full --objective iwae --samples 5 --epochs 300 --patience 30
  vaekit train --data ../shared/data/mnist --out runs/gpu --device cuda --compile off
  torchrun --nproc-per-node 2 -m vaekit train --data digits --out runs/ddp   # 2 processes
      (--batch-size is the global batch; README, "Several processes and machines")""",
    "evaluate": """examples:
  vaekit evaluate runs/digits                 # the run's own held-out test split
  vaekit evaluate runs/digits --k 5000 --json
  vaekit evaluate runs/mnist --data ../shared/data/mnist""",
    "sample": """examples:
  vaekit sample runs/digits -n 64 --out samples.png
  vaekit sample runs/cvae --label 7 -n 16 --out sevens.png     # a conditional run: the class
  vaekit sample runs/faces --label smiling -n 16 --out s.npz   # a class name of the run""",
    "reconstruct": "example:\n  vaekit reconstruct runs/digits --data digits --out recon.png",
    "encode": "example:\n  vaekit encode runs/digits --data digits --out codes.npz",
    "plot": """examples:
  vaekit plot runs/digits     # pictures + report.html in the run directory
  vaekit plot runs/normal --data new.csv --contamination 0.05   # + the anomaly pictures
  vaekit plot runs/digits-clusters   # a cluster run: samples per cluster, latents by cluster""",
}


def build_parser() -> Parser:
    parser = Parser(
        prog="vaekit",
        description="Train variational autoencoders and use them: generate, encode, evaluate.",
        epilog="Run 'vaekit COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    fmt = argparse.RawDescriptionHelpFormatter

    t = sub.add_parser(
        "train",
        help="train a VAE into a run directory",
        epilog=EXAMPLES["train"],
        formatter_class=fmt,
    )
    t.add_argument(
        "--data",
        help="'digits' (built in) or a path: IDX folder, .npz, .npy, .csv, "
        "image folder, .mat  [digits]",
    )
    t.add_argument("--out", required=True, type=Path, help="run directory to create")
    t.add_argument("--config", type=Path, help="a JSON or TOML RunConfig; flags override it")
    t.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    t.add_argument(
        "--force", action="store_true", help="replace the vaekit files of an existing --out"
    )
    g = t.add_argument_group("model")
    g.add_argument("--latent-dim", type=int, help="latent dimensions [16]")
    g.add_argument("--arch", choices=["mlp", "conv"], help="network type [mlp]")
    g.add_argument("--hidden", type=hidden_sizes, help="MLP hidden sizes, e.g. 512,256 [512,256]")
    g.add_argument("--conv-channels", type=ints, help="conv channels per stride-2 layer [32,64]")
    g.add_argument("--activation", help="relu, gelu, elu, tanh, softplus, leaky_relu, silu [relu]")
    g.add_argument(
        "--likelihood",
        choices=["bernoulli", "gaussian", "gaussian-learned"],
        help="p(x|z): bernoulli for [0,1] data, gaussian for real values [bernoulli]",
    )
    g.add_argument(
        "--sigma", type=float, help="fixed (gaussian) or initial (gaussian-learned) sigma [1.0]"
    )
    g.add_argument(
        "--learned-sigma", choices=["per-dim", "shared"], help="one sigma per dimension or one"
    )
    g.add_argument("--prior", choices=["normal", "mixture"], help="p(z) [normal]")
    g.add_argument("--components", type=int, help="mixture prior components [10]")
    g.add_argument(
        "--conditional",
        action="store_true",
        default=None,
        help="a conditional VAE, q(z|x,y) and p(x|z,y), on the source's labels",
    )
    g.add_argument(
        "--conditional-prior",
        choices=["normal", "class", "class-full"],
        help="p(z) of a conditional VAE: normal N(0, I); class N(mu_y, I); class-full: N(mu_y, "
        "I) while training, then each class's Gaussian refit to where the encoder puts its "
        "data (full covariance; the best conditional samples) [normal]",
    )
    g = t.add_argument_group("data")
    g.add_argument(
        "--binarize", choices=["none", "static", "dynamic"], help="binarize [0,1] data [none]"
    )
    g.add_argument(
        "--standardize", action="store_true", default=None, help="z-score the data (gaussian)"
    )
    g.add_argument("--label-column", help="CSV column (or .npz/.mat array) holding labels")
    g.add_argument(
        "--image-shape", type=ints, help="reshape flat rows to images, e.g. 28,20 or 1,28,28"
    )
    g.add_argument("--val-fraction", type=float, help="validation fraction [0.1]")
    g.add_argument("--test-fraction", type=float, help="test fraction [0.2]")
    g.add_argument("--split-seed", type=int, help="seed of the train/val/test split [0]")
    g.add_argument("--mmap", action="store_true", default=None, help="memory-map a large .npy")
    g = t.add_argument_group("training")
    g.add_argument("--epochs", type=int, help="[30]")
    g.add_argument("--batch-size", type=int, help="[128]")
    g.add_argument("--lr", type=float, help="Adam learning rate [1e-3]")
    g.add_argument("--seed", type=int, help="seed of initialisation and training noise [0]")
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value")
    g.add_argument(
        "--patience", type=int, help="early stopping: epochs without validation improvement [10]"
    )
    g.add_argument(
        "--objective",
        choices=["elbo", "iwae", "infomax"],
        help="elbo, iwae, or infomax: an encoder-only model, prior + mutual information [elbo]",
    )
    g.add_argument(
        "--mi-estimator", choices=["infonce", "jsd"], help="infomax: MI estimator [infonce]"
    )
    g.add_argument("--mi-weight", type=float, help="infomax: weight of the MI term [200]")
    g.add_argument(
        "--critic-noise",
        type=float,
        help="infomax: noise on x the critic sees in training, in std(x)*sqrt(D) [0.2]",
    )
    g.add_argument(
        "--augment",
        choices=["auto", "on", "off"],
        help="infomax: in training the encoder sees a Bernoulli sample of each image, shifted "
        "by round(side/28) pixels; auto = on for images, off for tables [auto]",
    )
    g.add_argument("--samples", type=int, help="samples per input: S for elbo, K for iwae [1]")
    g.add_argument("--beta", type=float, help="weight of the rate (KL) term [1.0]")
    g.add_argument("--warmup-epochs", type=int, help="ramp beta from 0 over this many epochs [0]")
    g.add_argument(
        "--mc-kl", action="store_true", default=None, help="Monte-Carlo KL even where analytic"
    )
    g.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        help="bf16: networks in bf16, master weights and loss in fp32 (CPU AMX / GPU) [fp32]",
    )
    g.add_argument("--k", type=int, help="importance samples for the final log-likelihood [1000]")
    g.add_argument(
        "--compile",
        choices=["auto", "on", "off"],
        help="the step through torch.compile (CUDA graphs on a GPU): auto = on a CUDA GPU "
        "only; off = eager everywhere [auto]",
    )
    add_device(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--no-pictures", action="store_true", help="skip the pictures and report")

    e = sub.add_parser(
        "evaluate",
        help="ELBO, rate, distortion and IS log-likelihood of a run",
        epilog=EXAMPLES["evaluate"],
        formatter_class=fmt,
    )
    e.add_argument("run", type=Path, help="run directory")
    e.add_argument("--data", help="evaluate on this source instead of the run's own split")
    e.add_argument("--split", default="test", choices=["train", "val", "test"], help="[test]")
    e.add_argument("--k", type=int, default=1000, help="importance samples [1000]")
    e.add_argument("--seed", type=int, default=0, help="[0]")
    e.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="networks in bfloat16: ~2x faster log p(x) on CPUs with AMX, figures move by a few "
        "hundredths of a nat [fp32]",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")
    add_device(e)

    s = sub.add_parser(
        "sample", help="generate new examples", epilog=EXAMPLES["sample"], formatter_class=fmt
    )
    s.add_argument("run", type=Path)
    s.add_argument("-n", type=int, default=64, help="how many [64]")
    s.add_argument(
        "--out", type=Path, required=True, help="FILE.png (a grid) or FILE.npz (array x)"
    )
    s.add_argument("--seed", type=int, default=0, help="[0]")
    s.add_argument(
        "--label",
        help="the class to generate (an index, or a class name where the run has names); "
        "a conditional run without --label generates every class in turn",
    )
    s.add_argument("--force", action="store_true", help="overwrite --out")
    add_device(s)

    r = sub.add_parser(
        "reconstruct",
        help="inputs beside their reconstructions",
        epilog=EXAMPLES["reconstruct"],
        formatter_class=fmt,
    )
    r.add_argument("run", type=Path)
    r.add_argument("--data", required=True, help="source, prepared like the run's data")
    r.add_argument("--out", type=Path, required=True, help="FILE.png")
    r.add_argument("-n", type=int, default=16, help="how many [16]")
    r.add_argument("--force", action="store_true", help="overwrite --out")
    add_device(r)

    c = sub.add_parser(
        "encode",
        help="posterior means and log-variances of data",
        epilog=EXAMPLES["encode"],
        formatter_class=fmt,
    )
    c.add_argument("run", type=Path)
    c.add_argument("--data", required=True, help="source, prepared like the run's data")
    c.add_argument("--out", type=Path, required=True, help="FILE.npz (mean, logvar, y) or FILE.csv")
    c.add_argument("--force", action="store_true", help="overwrite --out")
    add_device(c)

    p = sub.add_parser(
        "plot",
        help="(re)draw a run's pictures and report.html",
        epilog=EXAMPLES["plot"],
        formatter_class=fmt,
    )
    p.add_argument("run", type=Path)
    p.add_argument(
        "--data",
        help="also score this source for anomalies against the run (trained on normal data): "
        "the most and least anomalous inputs, and the score histogram with the threshold",
    )
    p.add_argument(
        "--score",
        default="auto",
        help="anomaly score with --data: elbo, iwae, recon-prob, recon-error, smooth-error "
        "(images), or latent-knn (no decoder needed: an encoder-only run's score) [auto: "
        "smooth-error for images, elbo for tables, latent-knn for an encoder-only run]",
    )
    t = p.add_mutually_exclusive_group()
    t.add_argument("--contamination", type=float, help="with --data: the expected outlier share")
    t.add_argument("--threshold", type=float, help="with --data: the score threshold")
    add_device(p, "where the model runs for the pictures (a cluster run's: the CPU)")
    for module in command_modules():
        module.add_parser(sub)
    return parser


# Command groups that live in modules of their own: each has add_parser(sub) and run(args).
COMMAND_MODULES = ("cluster", "score", "serve")


def command_modules() -> list[Any]:
    import importlib

    found = []
    for name in COMMAND_MODULES:
        try:
            found.append(importlib.import_module(f"vaekit.cli.{name}"))
        except ModuleNotFoundError as e:  # not written yet
            if e.name != f"vaekit.cli.{name}":
                raise
    return found


def _version() -> str:
    from vaekit import __version__

    return f"vaekit {__version__}"


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "encode": cmd_encode,
    "plot": cmd_plot,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = dict(COMMANDS)
    for module in command_modules():
        commands[module.NAME] = module.run
    from vaekit.config import ConfigError
    from vaekit.data import DataError
    from vaekit.distributed import label, launched
    from vaekit.io import CheckpointError, Terminated, terminate_as_interrupt
    from vaekit.train import TrainingError, TrainingInterrupted

    name = f"{args.command}{label()}"  # under torchrun: which rank says it
    try:
        with terminate_as_interrupt():  # SIGTERM: the same clean exit as Ctrl-C
            return commands[args.command](args)
    except TrainingInterrupted as e:
        print(f"vaekit {name}: {e}", file=sys.stderr)
        return 128 + e.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    except Terminated:
        print(f"vaekit {name}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + Terminated.signum
    except KeyboardInterrupt:
        print(f"vaekit {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (
        UserError,
        ConfigError,
        DataError,
        CheckpointError,
        TrainingError,
        ValueError,
        FileExistsError,
        FileNotFoundError,
        PermissionError,
    ) as e:
        print(f"vaekit {name}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except RuntimeError as e:
        if not launched():
            raise
        # another rank failed or was stopped, and this one's collective broke off
        print(f"vaekit {name}: stopped: {_one_line(e)[:300]}", file=sys.stderr)
        return EXIT_ERROR


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
