"""`vaekit classify`: a semi-supervised classifier from a few labels (vaekit.semisupervised)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from vaekit.cli.common import UserError, add_device, hidden_sizes, ints

NAME = "classify"

EPILOG = """examples:
  vaekit classify --data digits --labels-per-class 5 --out runs/digits-ssl
  vaekit classify --data ../shared/data/mnist --labels-per-class 10 --out runs/mnist-ssl
  vaekit classify --data table.csv --label-column kind --out runs/kinds   # empty cell: no label
  vaekit predict runs/mnist-ssl --data new.npz --out predictions.csv
  vaekit sample runs/mnist-ssl --label 3 -n 16 --out threes.png

Labels come with the data as for 'vaekit train' (npz y, a CSV label column, image folders);
-1 (or an empty CSV cell, or the name -1) marks a row without a label. --labels-per-class N
keeps N labels per class of a fully labelled source (seeded) and hides the rest, for trying it
out. 20% of the rows (seeded) are held out: their labels only score the model.

A run directory gets what 'vaekit train' writes (config.json, preprocessing.json,
model.safetensors: sample, encode, evaluate and serve work on it) and:
  classifier.safetensors  the fitted VAEClassifier
  evaluation.json         held-out accuracy on the held-out labelled rows
  confusion.png, classes.png, latent_known.png, latent_predicted.png, report.html"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="train a semi-supervised classifier from a few labels and many unlabelled rows",
        description="Train a VAE whose class variable is observed where a row has a label and "
        "inferred where it has none (Kingma et al. 2014), into a run directory.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="'digits' (built in) or a path vaekit reads")
    p.add_argument("--out", type=Path, required=True, help="run directory to create")
    p.add_argument("--label-column", help="CSV column / array name holding the labels")
    p.add_argument("--image-shape", type=ints, help="read flat rows as (H, W) or (C, H, W)")
    p.add_argument("--labels-per-class", type=int, help="keep N labels per class, hide the rest")
    p.add_argument("--classes", type=int, help="number of classes C [the largest label + 1]")
    g = p.add_argument_group("model and recipe")
    g.add_argument("--latent-dim", type=int, default=20, help="[20]")
    g.add_argument("--arch", choices=["auto", "mlp", "conv"], default="auto",
                   help="[auto: conv for images of at least 16x16 pixels, else mlp]")
    g.add_argument("--hidden", type=hidden_sizes, default=(512, 256), help="MLP sizes [512,256]")
    g.add_argument("--pretrain-epochs", type=int, help="autoencoder epochs [>= 50, 2000 steps]")
    g.add_argument("--pull-epochs", type=int, help="first-guess epochs [>= 20, 400 steps]")
    g.add_argument("--epochs", type=int, help="semi-supervised epochs [>= 100, 4000 steps]")
    g.add_argument("--label-weight", type=float, default=None, help="alpha of -log q(y|x)")
    g.add_argument("--init-space", choices=["auto", "codes", "input"], default="auto",
                   help="where labels spread for the first guesses: the inputs (PCA to 50 "
                   "when wider) or the autoencoder's codes [auto: input]")  # fmt: skip
    g.add_argument("--augment", choices=["auto", "on", "off"], default="auto",
                   help="train q(y|x) to keep its class when an image moves a pixel or two and "
                   "turns up to 10 degrees [auto: on for images]")  # fmt: skip
    g.add_argument("--consistency-weight", type=float, default=50.0,
                   help="weight of that term on unlabelled rows [50]")
    g.add_argument("--seed", type=int, default=0, help="[0]")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device(p, "where training runs")


def run(args: argparse.Namespace) -> int:
    from vaekit.data import DataConfig
    from vaekit.data.splits import prepare
    from vaekit.semisupervised.rundir import hide_labels, write_run
    from vaekit.train.devices import resolve_device

    device = str(resolve_device(args.device))
    out: Path = args.out
    if out.suffix:
        raise UserError(f"--out must be a run directory (no suffix), got {out}")
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or args.force)):
        raise UserError(
            f"{out} exists; pass --force to overwrite its files or choose another --out"
        )
    if args.labels_per_class is not None and args.labels_per_class < 1:
        raise UserError(f"--labels-per-class must be >= 1, got {args.labels_per_class}")
    data = DataConfig(
        source=args.data, image_shape=args.image_shape, label_column=args.label_column,
        val_fraction=0.0, test_fraction=0.2, split_seed=args.seed,
    )
    splits = prepare(data)
    if splits.schema is not None:
        raise UserError(
            f"{args.data} reads as a mixed table (text cells or gaps): vaekit classify takes "
            "numeric data and a label column; encode or drop those columns, or fill the gaps"
        )
    if splits.train.y is None:
        raise UserError(
            f"{args.data} has no labels: give them with the data (npz y, --label-column, class "
            "folders), or cluster unlabelled data with vaekit cluster"
        )
    y = _unlabelled_as_minus_one(splits.train.y.numpy(), splits.classes)
    if args.labels_per_class is not None:
        y = hide_labels(y, args.labels_per_class, args.seed)
    y_test = None
    if splits.test.y is not None:
        y_test = _named(_unlabelled_as_minus_one(splits.test.y.numpy(), splits.classes), splits)
    y = _named(y, splits)
    est = _fit(args, splits.train.x.numpy(), y, device)
    figures = write_run(out, est, data, splits, y, y_test)
    accuracy = figures.get("held-out accuracy")
    said = "" if accuracy is None else f"; held-out accuracy {accuracy:.4f}"
    print(f"wrote {out}: {figures['labelled training rows']} labelled and "
          f"{figures['unlabelled training rows']} unlabelled training rows{said}")
    return 0


def _unlabelled_as_minus_one(y: Any, classes: list[str] | None) -> Any:
    """Label codes with the names '' and '-1' (empty CSV cells, or -1 written as text) as -1,
    the other classes renumbered 0..C-1 in order."""
    import numpy as np

    if not classes:
        return y
    blank = [i for i, name in enumerate(classes) if name.strip() in ("", "-1")]
    if not blank:
        return y
    keep = [i for i in range(len(classes)) if i not in blank]
    mapping = np.full(len(classes), -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    return mapping[y]


def _named(codes: Any, splits: Any) -> Any:
    """Label codes as the source's class names where it has them ("-1": no label), so the run's
    classes carry their names; codes as they are otherwise."""
    import numpy as np

    if not splits.classes:
        return codes
    names = np.array([c for c in splits.classes if c.strip() not in ("", "-1")], dtype=object)
    return np.where(codes >= 0, names[codes.clip(0)], "-1").astype(str)


def _fit(args: argparse.Namespace, x: Any, y: Any, device: str) -> Any:
    from vaekit.semisupervised import VAEClassifier

    options = {} if args.label_weight is None else {"label_weight": args.label_weight}
    est = VAEClassifier(
        args.classes,
        latent_dim=args.latent_dim,
        arch=args.arch,
        hidden=tuple(args.hidden),
        image_shape=args.image_shape,
        pretrain_epochs=args.pretrain_epochs,
        pull_epochs=args.pull_epochs,
        epochs=args.epochs,
        init_space=args.init_space,
        augment=args.augment,
        consistency_weight=args.consistency_weight,
        random_state=args.seed,
        verbose=not args.quiet,
        device=device,
        **options,
    )
    try:
        return est.fit(x, y)
    except ValueError as e:  # name the flags a CLI user types
        raise UserError(re.sub(r"\b[a-z_]+ \((--[a-z-]+)\)", r"\1", str(e))) from None
