"""`vaekit score`: anomaly scores of new data under a trained run (higher = more abnormal)."""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path
from typing import Any

from vaekit.cli.common import UserError, add_device, check_out, ints, write_atomic

NAME = "score"

EPILOG = """examples:
  vaekit train --data normal.csv --standardize --likelihood gaussian-learned --out runs/normal
  vaekit score runs/normal --data new.csv --out scores.csv --contamination 0.05
  vaekit score runs/mnist --data ../shared/data/mnist --out scores.csv --explain 10
  vaekit score runs/mnist --data ../shared/data/mnist --out scores.csv --score elbo
  vaekit score runs/normal --data new.csv --out scores.csv --threshold 42.5
  vaekit train --data normal.npz --objective infomax --out runs/codes   # encoder only
  vaekit score runs/codes --data new.npz --out scores.csv --score latent-knn

scores (each per input; higher = more abnormal):
  auto         the default: smooth-error for images, elbo for tables, latent-knn for an
               encoder-only run (the scores that win on such data: the docs' anomaly benchmarks)
  recon-error  squared error of the decoded posterior mean (data units as the model sees them)
  smooth-error squared error of the residual smoothed by a Gaussian of std side/28 pixels
               (images only): stroke-sized blobs count, edge noise averages away
  recon-prob   mean over L posterior draws of -log p(x|z_l), nats (An & Cho 2015)
  elbo         -ELBO, nats
  iwae         -log p(x) by importance sampling with K draws, nats
  latent-knn   distance of the posterior mean to its k-th nearest code of the run's training
               split (--neighbors k), latent units; needs no decoder, so it also scores an
               encoder-only (--objective infomax) run

The threshold is --threshold, or the (1 - contamination) quantile of the scores of the run's
held-out normal data (its validation split; its training split when it has none).
--out gets one row per input: index (0-based row of --data), score, is_outlier (1/0).
--explain N also writes OUT_explain.csv: the N highest-scoring inputs, one column per
feature holding its part of the score (squared error for recon-error and smooth-error,
nats for the others)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="anomaly scores of data under a run (higher = more abnormal)",
        description="Score inputs by how abnormal they are to a run trained on normal data.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", type=Path, help="run directory (trained on normal data)")
    p.add_argument("--data", required=True, help="source to score, prepared like the run's data")
    p.add_argument("--out", type=Path, required=True, help="FILE.csv: index, score, is_outlier")
    p.add_argument(
        "--score",
        default="auto",
        choices=["auto", "recon-error", "smooth-error", "recon-prob", "elbo", "iwae", "latent-knn"],
        help="[auto: smooth-error for images, elbo for tables]",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--contamination",
        type=float,
        help="fraction of held-out normal data to flag, in (0, 0.5] [0.1]",
    )
    g.add_argument("--threshold", type=float, help="flag scores above this value")
    p.add_argument(
        "--explain",
        type=int,
        default=0,
        metavar="N",
        help="also write the N most anomalous inputs' per-feature contributions to OUT_explain.csv",
    )
    p.add_argument(
        "--samples", type=int, help="L posterior draws (elbo, recon-prob) or K (iwae) [100]"
    )
    p.add_argument("--neighbors", type=int, default=5, help="k of latent-knn [5]")
    p.add_argument(
        "--image-shape", type=ints, help="how to read --data's examples, e.g. 28,20 (a .mat file)"
    )
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="[fp32]")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior draws [0]")
    p.add_argument("--force", action="store_true", help="overwrite --out (and OUT_explain.csv)")
    add_device(p)


def explain_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_explain.csv")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.anomaly import estimator as anomaly
    from vaekit.runs.run import Run

    # Every check before anything is computed or written: a mistake changes no file.
    contamination = 0.1 if args.contamination is None else args.contamination
    if not 0 < contamination <= 0.5:
        raise UserError(f"--contamination must be in (0, 0.5], got {args.contamination:g}")
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise UserError(f"--threshold must be a finite number, got {args.threshold}")
    if args.explain < 0:
        raise UserError(f"--explain must be >= 0, got {args.explain}")
    if args.samples is not None and args.samples < 1:
        raise UserError(f"--samples must be >= 1, got {args.samples}")
    if args.neighbors < 1:
        raise UserError(f"--neighbors must be >= 1, got {args.neighbors}")
    check_out(args.out, (".csv",), args.force)
    if args.explain:
        check_out(explain_path(args.out), (".csv",), args.force)

    run = Run.load(args.run, device=args.device)
    score = anomaly.resolve_score(args.score, run.model)
    if args.explain and score in anomaly.FEATURE_SCORES:
        raise UserError(
            f"--explain splits a score over the input's features; {score} is a distance "
            "between codes: explain with --score recon-error (a run with a decoder)"
        )
    if score in anomaly.IMAGE_SCORES:  # a table's run: say so before reading the data
        anomaly.smoothing_width(run.model.config.event_shape)
    x, _ = run.data(args.data, image_shape=args.image_shape)
    opts: dict[str, Any] = {"samples": args.samples, "precision": args.precision, "seed": args.seed}
    if score in anomaly.FEATURE_SCORES:
        opts["reference"] = anomaly.run_reference(run, args.precision)
        opts["neighbors"] = args.neighbors
    scores = anomaly.score_samples(run.model, x, score, **opts).double().numpy()
    if args.threshold is not None:
        threshold, how = args.threshold, "--threshold"
    else:
        threshold, split = anomaly.run_threshold(run, score, contamination, **opts)
        how = f"the run's {split} split at contamination {contamination:g}"
    flagged = scores > threshold

    table = io.StringIO()
    w = csv.writer(table, lineterminator="\n")
    w.writerow(["index", "score", "is_outlier"])
    for i, (s, f) in enumerate(zip(scores, flagged, strict=True)):
        w.writerow([i, f"{s:.9g}", int(f)])
    explain = None
    if args.explain:
        top = np.argsort(-scores, kind="stable")[: args.explain]
        opts = {k: opts[k] for k in ("samples", "precision", "seed")}
        contrib = anomaly.feature_contributions(run.model, x[top], score, **opts)
        contrib = contrib.flatten(1).double().numpy()
        names = feature_names(args.data, run, contrib.shape[1])
        explain = io.StringIO()
        w = csv.writer(explain, lineterminator="\n")
        w.writerow(["index", "score", *names])
        for i, row in zip(top, contrib, strict=True):
            w.writerow([int(i), f"{scores[i]:.9g}", *(f"{v:.6g}" for v in row)])

    write_atomic(args.out, lambda f: f.write_text(table.getvalue()))
    print(
        f"wrote {args.out}: {len(scores)} inputs, {int(flagged.sum())} flagged as outliers "
        f"({score} > {threshold:.6g}, threshold from {how})"
    )
    if explain is not None:
        path = explain_path(args.out)
        write_atomic(path, lambda f: f.write_text(explain.getvalue()))
        print(f"wrote {path}: per-feature contributions of the {len(top)} highest scores")
    return 0


def feature_names(source: str, run: Any, d: int) -> list[str]:
    """A CSV's column names (without the run's label column) when it has a header of d
    feature names; else pixel names for images and feature_i for tables. A table run: the
    columns of its schema (in the order of the contributions)."""
    if run.config.data.table == "on" and run.config.data.schema:
        return [c["name"] for c in run.config.data.schema["columns"]]
    path = Path(source).expanduser()
    if path.suffix.lower() == ".csv" and path.is_file():
        with path.open(newline="", encoding="utf-8") as f:
            line = f.readline()
        delimiter = "," if "," in line else next((c for c in ("\t", ";") if c in line), ",")
        names = [s.strip() for s in next(csv.reader([line], delimiter=delimiter), [])]
        names = [n for n in names if n != run.config.data.label_column]
        if len(names) == d and not any(_is_number(n) for n in names):
            return names
    shape = tuple(run.config.model.event_shape)
    if len(shape) == 3:
        _, h, w = shape
        return [f"c{i // (h * w)}_y{i % (h * w) // w}_x{i % w}" for i in range(d)]
    return [f"feature_{i}" for i in range(d)]


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
