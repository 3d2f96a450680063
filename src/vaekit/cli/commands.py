"""The commands that use a trained run: evaluate, sample, reconstruct, encode, plot (`vaekit
train` is in `vaekit.cli.train`). `add_parsers` registers their parsers; each command takes the
parsed arguments and calls the Python API; every user mistake is a `UserError` (or a ValueError
from the API), which `vaekit.cli.main` prints as one line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vaekit.cli.common import UserError, add_device, check_out, plots, write_atomic, write_images

FORMAT = argparse.RawDescriptionHelpFormatter
EXAMPLES = {
    "evaluate": """examples:
  vaekit evaluate runs/digits                 # the run's own held-out test split
  vaekit evaluate runs/digits --k 5000 --json
  vaekit evaluate runs/mnist --data ../shared/data/mnist""",
    "sample": """examples:
  vaekit sample runs/digits -n 64 --out samples.png
  vaekit sample runs/cvae --label 7 -n 16 --out sevens.png     # a conditional run: the class
  vaekit sample runs/faces --label smiling -n 16 --out s.npz   # a class name of the run
  vaekit sample runs/ssl --label 3 -n 16 --out threes.png     # a classify run: from the
                                                              # class's aggregate posterior
  vaekit sample runs/penguins -n 500 --out synthetic.csv      # a table run: a CSV of rows""",
    "reconstruct": "example:\n  vaekit reconstruct runs/digits --data digits --out recon.png",
    "encode": "example:\n  vaekit encode runs/digits --data digits --out codes.npz",
    "plot": """examples:
  vaekit plot runs/digits     # pictures + report.html in the run directory
  vaekit plot runs/normal --data new.csv --contamination 0.05   # + the anomaly pictures
  vaekit plot runs/digits-clusters   # a cluster run: samples per cluster, latents by cluster""",
}


def add_parsers(sub: Any) -> None:
    """The parsers of evaluate, sample, reconstruct, encode and plot, in that order."""
    add_evaluate(sub)
    add_sample(sub)
    add_reconstruct(sub)
    add_encode(sub)
    add_plot(sub)


def add_evaluate(sub: Any) -> None:
    """`vaekit evaluate`: a run's figures on one of its splits or on another source."""
    e = sub.add_parser(
        "evaluate",
        help="ELBO, rate, distortion and IS log-likelihood of a run",
        epilog=EXAMPLES["evaluate"],
        formatter_class=FORMAT,
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


def add_sample(sub: Any) -> None:
    """`vaekit sample`: new examples from a run's prior, as a picture grid or an array."""
    s = sub.add_parser(
        "sample", help="generate new examples", epilog=EXAMPLES["sample"], formatter_class=FORMAT
    )
    s.add_argument("run", type=Path)
    s.add_argument("-n", type=int, default=64, help="how many [64]")
    s.add_argument(
        "--out",
        type=Path,
        required=True,
        help="FILE.png (a grid) or FILE.npz (array x); FILE.csv for a table run (its columns)",
    )
    s.add_argument("--seed", type=int, default=0, help="[0]")
    s.add_argument(
        "--label",
        help="the class to generate (an index, or a class name where the run has names); "
        "a conditional run without --label generates every class in turn",
    )
    s.add_argument("--force", action="store_true", help="overwrite --out")
    add_device(s)


def add_reconstruct(sub: Any) -> None:
    """`vaekit reconstruct`: inputs beside their reconstructions, as a picture."""
    r = sub.add_parser(
        "reconstruct",
        help="inputs beside their reconstructions",
        epilog=EXAMPLES["reconstruct"],
        formatter_class=FORMAT,
    )
    r.add_argument("run", type=Path)
    r.add_argument("--data", required=True, help="source, prepared like the run's data")
    r.add_argument("--out", type=Path, required=True, help="FILE.png")
    r.add_argument("-n", type=int, default=16, help="how many [16]")
    r.add_argument("--force", action="store_true", help="overwrite --out")
    add_device(r)


def add_encode(sub: Any) -> None:
    """`vaekit encode`: posterior means and log-variances of a source, as arrays or a table."""
    c = sub.add_parser(
        "encode",
        help="posterior means and log-variances of data",
        epilog=EXAMPLES["encode"],
        formatter_class=FORMAT,
    )
    c.add_argument("run", type=Path)
    c.add_argument("--data", required=True, help="source, prepared like the run's data")
    c.add_argument("--out", type=Path, required=True, help="FILE.npz (mean, logvar, y) or FILE.csv")
    c.add_argument("--force", action="store_true", help="overwrite --out")
    add_device(c)


def add_plot(sub: Any) -> None:
    """`vaekit plot`: a run's pictures and report again (and anomaly pictures with --data)."""
    p = sub.add_parser(
        "plot",
        help="(re)draw a run's pictures and report.html",
        epilog=EXAMPLES["plot"],
        formatter_class=FORMAT,
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
    g = p.add_mutually_exclusive_group()
    g.add_argument("--contamination", type=float, help="with --data: the expected outlier share")
    g.add_argument("--threshold", type=float, help="with --data: the score threshold")
    add_device(p, "where the model runs for the pictures (a cluster run's: the CPU)")


# --- commands ----------------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vaekit.runs.run import Run
    from vaekit.train.evaluate import conditional_accuracy, evaluate

    run = Run.load(args.run, device=args.device)
    x, y = run.data(args.data, args.split)
    y = labels_for(run, y)
    train = run.config.train
    figures = evaluate(
        run.model,
        x,
        y,
        k=args.k,
        seed=args.seed,
        precision=args.precision,
        mi_estimator=train.mi_estimator,
        mi_weight=train.mi_weight,
    )
    figures = {"split": args.data or args.split, **figures}
    if y is not None:
        train = run.data(None, "train")
        figures.update(conditional_accuracy(run.model, *train, x, y, seed=args.seed))
    print(json.dumps(figures) if args.json else figures_text(figures))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.runs.run import Run

    if args.n < 1:
        raise UserError(f"-n is how many examples to generate, at least 1; got {args.n}")
    check_out(args.out, (".png", ".npz", ".csv"), args.force)
    run = Run.load(args.run, device=args.device)
    if run.config.data.table == "on" or args.out.suffix == ".csv":
        return sample_table_csv(run, args)
    y = sample_labels(run, args.label, args.n)
    x = sample_run(run, args.n, y, args.seed)
    x = run.to_display(x.cpu())
    if args.out.suffix == ".npz":
        arrays = {"x": x.numpy()} if y is None else {"x": x.numpy(), "y": y.numpy()}
        write_atomic(args.out, lambda f: np.savez(f, **arrays))
    else:
        per_row = None if y is None or args.label is not None else run.config.model.num_classes
        write_images(
            run, x, args.out, lambda imgs, path: plots().image_grid(imgs, path, nrow=per_row)
        )
    print(f"wrote {args.out}")
    return 0


def sample_run(run: Any, n: int, y: Any, seed: int) -> Any:
    """n examples of the run's model (y: (n,) class indices or None), in model units. A
    `vaekit classify` run draws them as its classifier does, from each class's aggregate
    posterior (`VAEClassifier.sample`); any other run from its prior."""
    import torch

    from vaekit.semisupervised.rundir import ESTIMATOR, load_classifier_run

    if (run.path / ESTIMATOR).is_file():
        est = load_classifier_run(run.path)
        return torch.from_numpy(est.sample(n, label=est.classes_[y.numpy()], random_state=seed))
    return run.model.sample(n, y=y, generator=torch.Generator().manual_seed(seed))


def sample_table_csv(run: Any, args: argparse.Namespace) -> int:
    """`vaekit sample` of a table run: a CSV of -n synthetic rows, the training table's columns
    in order and of their kinds (integers as integers, levels as their original values)."""
    from vaekit.data.tabular import write_table
    from vaekit.tables import sample_table

    if run.config.data.table != "on":
        raise UserError(f"{run.path} was not trained on a table: write --out FILE.png or .npz")
    if args.out.suffix != ".csv":
        raise UserError(f"{run.path} is a table run: write its rows to --out FILE.csv")
    sample_labels(run, args.label, args.n)  # --label: one line (a table run has no classes)
    rows = sample_table(run, args.n, seed=args.seed)
    write_atomic(args.out, lambda f: write_table(f, rows))
    print(f"wrote {args.out}: {args.n} synthetic rows x {len(rows)} columns")
    return 0


def sample_labels(run: Any, label: str | None, n: int) -> Any:
    """The labels to sample with: --label (an index or a class name) n times; every class in
    turn for a run with classes (conditional, or a semi-supervised classifier's) without
    --label; None for a run without classes."""
    import torch

    cfg = run.config.model
    if not (cfg.conditional or cfg.label_weight > 0):
        if label is not None:
            raise UserError(
                f"{run.path} is not a conditional model, so --label has no meaning; train one "
                "with 'vaekit train --conditional' or drop --label"
            )
        return None
    if label is None:
        return torch.arange(n) % cfg.num_classes
    return torch.full((n,), class_index(label, cfg.num_classes, cfg.class_names))


def class_index(label: str, classes: int, names: tuple[str, ...]) -> int:
    """A --label value as a class index: a class name of the run, or an integer 0..K-1."""
    if label in names:
        return names.index(label)
    try:
        index = int(label)
    except ValueError:
        known = f"; its classes are {', '.join(names)}" if names else ""
        raise UserError(f"--label {label!r} is not a class of this run{known}") from None
    if not 0 <= index < classes:
        named = f" ({', '.join(names)})" if names else ""
        raise UserError(
            f"--label {index} is out of range: this run has classes 0..{classes - 1}{named}"
        )
    return index


def labels_for(run: Any, y: Any) -> Any:
    """The data's labels where the run's model is conditional (an error if the data have
    none), None where it is not."""
    if not run.config.model.conditional:
        return None
    if y is None:
        raise UserError(
            "this run's model is conditional and the data have no labels; give labelled data "
            "(as for training: IDX labels, .npz y, the CSV's label column, class sub-folders)"
        )
    return y


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from vaekit.runs.run import Run

    check_out(args.out, (".png",), args.force)
    run = Run.load(args.run, device=args.device)
    x, y = run.data(args.data)
    y = labels_for(run, y)
    x, y = x[: args.n], None if y is None else y[: args.n]
    x_hat = run.model.reconstruct(x.to(run.device), y).cpu()
    pair = run.to_display(x), run.to_display(x_hat)
    images = [plots().as_images(t.numpy(), run.config.model.event_shape) for t in pair]
    if images[0] is None:
        raise UserError("this run's data are not images; use 'vaekit encode' or the Python API")
    write_atomic(args.out, lambda f: plots().reconstruction_grid(images[0], images[1], f, n=args.n))
    print(f"wrote {args.out}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.runs.run import Run

    check_out(args.out, (".npz", ".csv"), args.force)
    run = Run.load(args.run, device=args.device)
    x, y = run.data(args.data)
    mean, logvar = run.model.encode(x.to(run.device), labels_for(run, y))
    mean_np, logvar_np = mean.cpu().numpy(), logvar.cpu().numpy()
    if args.out.suffix == ".npz":
        arrays = {"mean": mean_np, "logvar": logvar_np}
        if y is not None:
            arrays["y"] = y.numpy()
        write_atomic(args.out, lambda f: np.savez(f, **arrays))
    else:
        d = mean_np.shape[1]
        header = [f"mean_{i}" for i in range(d)] + [f"logvar_{i}" for i in range(d)]
        rows = [[f"{v:.6g}" for v in r] for r in np.concatenate([mean_np, logvar_np], axis=1)]
        if y is not None:  # the class names where the run has them, else the indices
            names = run.config.model.class_names
            header.append("label")
            for r, label in zip(rows, y.tolist(), strict=True):
                r.append(names[label] if names and 0 <= label < len(names) else str(label))
        text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
        write_atomic(args.out, lambda f: Path(f).write_text(text))
    print(f"wrote {args.out}: {len(mean_np)} examples x {mean_np.shape[1]} latent dimensions")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from vaekit.cluster.rundir import ESTIMATOR
    from vaekit.runs.run import Run, draw
    from vaekit.train.devices import resolve_device

    resolve_device(args.device)  # a device that is not here: one line, before any work
    if (args.run / ESTIMATOR).is_file():  # a `vaekit cluster` run: its own pictures
        from vaekit.cluster.plots import draw_clusters

        if args.data is not None:
            raise UserError("--data scores anomalies against a VAE run, not a cluster run")
        for path in draw_clusters(args.run).values():
            print(f"wrote {path}")
        return 0
    run = Run.load(args.run, device=args.device)
    extra = {}
    if args.data is not None:
        from vaekit.anomaly.plots import draw_anomaly

        x, _ = run.data(args.data)
        extra = draw_anomaly(
            run,
            x,
            run.path,
            score=args.score,
            contamination=args.contamination,
            threshold=args.threshold,
        )
    elif args.contamination is not None or args.threshold is not None:
        raise UserError("--contamination and --threshold go with --data (the data to score)")
    images = draw(run, extra=extra)
    for path in images.values():
        print(f"wrote {path}")
    print(f"wrote {run.path / 'report.html'}")
    return 0


# --- helpers ----------------------------------------------------------------------------------


def figures_text(f: dict[str, Any]) -> str:
    split = f.get("split", "test")
    if "elbo" not in f:  # an encoder-only model: its figures as named
        rows = [f"{split} split, {f['n']} examples (an encoder-only model):"]
        for key, value in f.items():
            if key not in ("split", "n", "warnings"):
                shown = f"{value:10.4f}" if isinstance(value, float) else str(value)
                rows.append(f"  {key:<43}{shown}")
        return "\n".join(rows)
    given = "|y" if f.get("conditional") else ""
    lines = [
        f"{split} split, {f['n']} examples, nats per example"
        + (" (networks in bf16)" if f.get("precision") == "bf16" else "")
        + ":",
        f"  ELBO (log-probability, higher is better)   {f['elbo']:10.3f}",
        f"  rate, KL(q(z|x) || p(z))                   {f['rate']:10.3f}",
        f"  distortion, -E_q log p(x|z)                {f['distortion']:10.3f}",
        f"  log p(x{given}), importance sampling, K={f['k']:<{9 - len(given)}d}"
        f"{f['log_likelihood']:10.3f}",
        f"  bits per dimension                         {f['bits_per_dim']:10.4f}",
    ]
    if "conditional_accuracy" in f:
        lines += [
            f"  conditional accuracy ({f['samples_per_class']} samples per class) "
            f"{f['conditional_accuracy']:10.3f}",
            f"  (its judge's accuracy on real test data      {f['classifier_test_accuracy']:.3f})",
        ]
    return "\n".join(lines)
