"""`vaekit train`: train a VAE into a run directory (flags over a --config over the defaults)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vaekit.cli.commands import figures_text
from vaekit.cli.common import add_device, hidden_sizes, ints

NAME = "train"

EPILOG = """examples:
  vaekit train --data digits --out runs/digits --latent-dim 2
  vaekit train --data ../shared/data/mnist --out runs/mnist --arch conv --epochs 20
  vaekit train --data frey_rawface.mat --image-shape 28,20 --likelihood gaussian-learned \\
      --standardize --out runs/frey
  vaekit train --out runs/digits --resume --epochs 60      # continue a run
  vaekit train --data examples/penguins.csv --out runs/penguins   # a mixed table, gaps too
  vaekit train --data table.csv --schema schema.json --out runs/t  # kinds/levels as given
  vaekit train --data table.csv --out runs/fill --select impute    # the better imputer of two
  vaekit train --data digits --out runs/cvae --conditional --conditional-prior class
  vaekit train --data ../shared/data/mnist --out runs/cvae --conditional --binarize dynamic \\
      --conditional-prior class-full --objective iwae --samples 5 --epochs 300 --patience 30
  vaekit train --data ../shared/data/mnist --out runs/gpu --device cuda --compile off
  torchrun --nproc-per-node 2 -m vaekit train --data digits --out runs/ddp   # 2 processes
      (--batch-size is the global batch; README, "Several processes and machines")"""


def add_parser(sub: Any) -> None:
    t = sub.add_parser(
        NAME,
        help="train a VAE into a run directory",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    add_model_flags(t.add_argument_group("model"))
    add_data_flags(t.add_argument_group("data"))
    add_training_flags(t.add_argument_group("training"))
    t.add_argument(
        "--select", choices=["impute"],
        help="a table: train the table defaults and a lower-rate recipe (beta 0.1, latent 16, "
        "hidden 256,128), keep the one that fills the validation rows' hidden cells better "
        "(selection.json gives both); for tables whose rows have near copies",
    )


def add_model_flags(g: Any) -> None:
    """The model: networks, likelihood, prior, conditional."""
    g.add_argument("--latent-dim", type=int, help="latent dimensions [16; a table: 8]")
    g.add_argument("--arch", choices=["mlp", "conv"], help="network type [mlp]")
    g.add_argument(
        "--hidden",
        type=hidden_sizes,
        help="MLP hidden sizes, e.g. 512,256 [512,256; a table: 128,64]",
    )
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
        "data (full covariance; the best conditional samples) [class-full]",
    )


def add_data_flags(g: Any) -> None:
    """How the source is read, prepared and split."""
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
    g.add_argument(
        "--table",
        choices=["auto", "on", "off"],
        help="read a CSV as a mixed table (continuous, integer, categorical, binary columns; "
        "empty cells are missing): auto = a CSV with a text cell or a gap, or with --schema; "
        "on = also an all-numeric CSV; off = numbers only [auto]",
    )
    g.add_argument(
        "--schema",
        type=Path,
        help="a table's schema as JSON (the 'schema' of a table run's config.json, or a "
        "hand-written one: columns with name and kind; levels and transform are fitted where "
        "left out)",
    )


def add_training_flags(g: Any) -> None:
    """The objective, the optimiser, the final evaluation, and where and how it runs."""
    g.add_argument(
        "--epochs", type=int, help="[30; a table: enough for 3,000 optimizer steps, >= 30; "
        "a table of <= 512 training rows: 500 full-batch steps]"
    )
    g.add_argument("--batch-size", type=int, help="[128; a table of <= 512 training rows: 512]")
    g.add_argument("--lr", type=float,
                   help="Adam learning rate [1e-3; a table of <= 512 training rows: 3e-3]")
    g.add_argument("--seed", type=int, help="seed of initialisation and training noise [0]")
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value")
    g.add_argument(
        "--patience", type=int, help="early stopping: epochs without validation improvement [off]"
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
    g.add_argument("--beta", type=float, help="weight of the rate (KL) term [1.0; a table: 0.5]")
    g.add_argument("--warmup-epochs", type=int, help="ramp beta from 0 over this many epochs [0]")
    g.add_argument(
        "--mc-kl", action="store_true", default=None, help="Monte-Carlo KL even where analytic"
    )
    g.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        help="bf16: networks in bf16, master weights and loss in fp32 (CPU AMX / GPU) [fp32]",
    )
    g.add_argument(
        "--k",
        type=int,
        help="importance samples for the final log-likelihood [100]; vaekit evaluate --k 1000 "
        "for the figure papers report",
    )
    g.add_argument(
        "--compile",
        choices=["auto", "on", "off"],
        help="the step through torch.compile (CUDA graphs on a GPU): auto = on a CUDA GPU "
        "only; off = eager everywhere [auto]",
    )
    add_device(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--no-pictures", action="store_true", help="skip the pictures and report")


TRAIN_FLAGS = {  # flag -> (config section, field)
    "data": ("data", "source"),
    "binarize": ("data", "binarize"),
    "standardize": ("data", "standardize"),
    "label_column": ("data", "label_column"),
    "image_shape": ("data", "image_shape"),
    "val_fraction": ("data", "val_fraction"),
    "test_fraction": ("data", "test_fraction"),
    "split_seed": ("data", "split_seed"),
    "mmap": ("data", "mmap"),
    "table": ("data", "table"),
    "latent_dim": ("model", "latent_dim"),
    "arch": ("model", "arch"),
    "hidden": ("model", "hidden"),
    "conv_channels": ("model", "conv_channels"),
    "activation": ("model", "activation"),
    "likelihood": ("model", "likelihood"),
    "sigma": ("model", "sigma"),
    "learned_sigma": ("model", "learned_sigma"),
    "prior": ("model", "prior"),
    "components": ("model", "mixture_components"),
    "conditional": ("model", "conditional"),
    "conditional_prior": ("model", "prior"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"),
    "seed": ("train", "seed"),
    "grad_clip": ("train", "grad_clip"),
    "patience": ("train", "patience"),
    "objective": ("train", "objective"),
    "samples": ("train", "samples"),
    "beta": ("train", "beta"),
    "warmup_epochs": ("train", "warmup_epochs"),
    "mi_estimator": ("train", "mi_estimator"),
    "mi_weight": ("train", "mi_weight"),
    "critic_noise": ("model", "critic_noise"),
    "augment": ("model", "augment"),
    "precision": ("train", "precision"),
    "compile": ("train", "compile"),
    "k": ("train", "eval_k"),
}


def run_config_from_args(args: argparse.Namespace) -> Any:
    """Defaults, then --config, then explicit flags; validated by the dataclasses."""
    from vaekit.core.config import from_dict, to_dict
    from vaekit.runs.config import RunConfig, load_run_config

    base = RunConfig()
    if args.config:
        base = load_run_config(args.config, strict=False)
    elif args.resume and (args.out / "config.json").is_file():
        base = load_run_config(args.out / "config.json")  # keep its epochs unless --epochs
    merged = to_dict(base)
    for flag, (section, name) in TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            merged[section][name] = list(value) if isinstance(value, tuple) else value
    if args.mc_kl:
        merged["train"]["analytic_kl"] = False
    if args.schema is not None:
        from vaekit.data.schema import Schema

        merged["data"]["schema"] = Schema.load(args.schema).to_dict()
    if args.objective is not None:  # infomax trains an encoder-only model, the rest a VAE
        merged["model"]["decoder"] = args.objective != "infomax"
    if _prior_left_to_default(args):  # a conditional model's default prior: ModelConfig's auto
        merged["model"]["prior"] = "auto"
    if not args.config and not args.resume:
        _table_defaults(args, merged)
    return from_dict(RunConfig, merged, strict=True)


def _table_defaults(args: argparse.Namespace, merged: dict[str, Any]) -> None:
    """A table's defaults (vaekit.data.mixed.table_defaults: a per-step floor on the epochs,
    a smaller network, beta 0.5, full-batch steps for a small table) for --epochs / --hidden /
    --latent-dim / --batch-size / --lr / --beta not given, where the data are read as a table."""
    from vaekit.core.config import from_dict
    from vaekit.data.config import DataConfig
    from vaekit.data.mixed import table_defaults, table_rows

    flags = {"epochs": ("train", "epochs"), "hidden": ("model", "hidden"),
             "latent_dim": ("model", "latent_dim"), "batch_size": ("train", "batch_size"),
             "lr": ("train", "lr"), "beta": ("train", "beta")}
    if all(getattr(args, flag) is not None for flag in flags):
        return
    data = from_dict(DataConfig, merged["data"], strict=True)
    n_rows = table_rows(data)
    if n_rows is None:
        return
    full_batch = args.batch_size is None and args.lr is None
    auto = table_defaults(n_rows, data, int(merged["train"]["batch_size"]),
                          full_batch=full_batch)
    for flag, (section, name) in flags.items():
        if getattr(args, flag) is None and flag in auto:
            value = auto[flag]
            merged[section][name] = list(value) if isinstance(value, tuple) else value


def _prior_left_to_default(args: argparse.Namespace) -> bool:
    """Whether neither a flag, nor the --config file, nor the resumed run chose the prior."""
    if args.prior is not None or args.conditional_prior is not None:
        return False
    if args.resume and not args.config:
        return False  # a resumed run keeps the prior it was trained with
    if args.config:
        from vaekit.runs.config import read_config_data

        return "prior" not in read_config_data(args.config).get("model", {})
    return True


def cmd_train(args: argparse.Namespace) -> int:
    from vaekit.runs.run import train_run
    from vaekit.train import distributed
    from vaekit.train.devices import describe

    config = run_config_from_args(args)
    if args.select is not None:
        return _train_selected(args, config)
    run, figures = train_run(
        config,
        args.out,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
        pictures=not args.no_pictures,
        device=args.device,
    )
    if distributed.launched_rank() != 0:  # under torchrun, rank 0 reports
        return 0
    print(figures_text(figures))
    print(f"device: {describe(run.device)}")
    report = run.path / "report.html"
    print(f"run directory: {run.path}" + (f"\nreport: {report}" if report.exists() else ""))
    return 0


def _train_selected(args: argparse.Namespace, config: Any) -> int:
    """`--select impute`: vaekit.tables.select.train_selected, after the flags' checks."""
    from vaekit.cli.common import UserError
    from vaekit.runs.tables import SELECTION
    from vaekit.tables.select import train_selected
    from vaekit.train import distributed

    chosen = [f for f in ("--resume", "--config", "--beta", "--latent-dim", "--hidden")
              if getattr(args, f[2:].replace("-", "_")) not in (None, False)]
    if chosen:
        raise UserError(f"--select impute starts from the table defaults and chooses beta, "
                        f"latent size and hidden sizes itself; drop {', '.join(chosen)}")
    if distributed.launched():
        raise UserError("--select impute trains in one process (a table trains in seconds to "
                        "minutes); run it without torchrun")
    run, figures = train_selected(config, args.out, force=args.force, progress=not args.quiet,
                                  pictures=not args.no_pictures, device=args.device)
    print(figures_text(figures))
    kept = json.loads((run.path / SELECTION).read_text())
    print("kept: the " + kept["kept"] + " recipe (masked-cell loss " + ", ".join(
        f"{k} {v:.3f}" for k, v in kept["losses"].items()) + ")")
    print(f"run directory: {run.path}")
    return 0
