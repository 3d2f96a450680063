"""`vaekit predict`: a classify run's classes for new data (vaekit.semisupervised)."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

from vaekit.cli.common import check_out, ints, write_atomic

NAME = "predict"

EPILOG = """examples:
  vaekit predict runs/mnist-ssl --data new_images/ --out predictions.csv
  vaekit predict runs/digits-ssl --data digits --out all.csv

predictions.csv: index (0-based row of --data), class (argmax q(y|x), the run's class name
where it has them), then one column p_<class> per class with q(y|x)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="predict the classes of new data with a 'vaekit classify' run",
        description="Write the predicted class and the probability of every class for --data.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", type=Path, help="a run directory written by vaekit classify")
    p.add_argument("--data", required=True, help="'digits' (built in) or a path vaekit reads")
    p.add_argument("--out", type=Path, required=True, help="FILE.csv to write")
    p.add_argument("--image-shape", type=ints, help="read flat rows as (H, W) or (C, H, W)")
    p.add_argument("--force", action="store_true", help="overwrite --out")


def run(args: argparse.Namespace) -> int:
    from vaekit.runs.run import Run
    from vaekit.semisupervised.rundir import load_classifier_run

    check_out(args.out, (".csv",), args.force)
    est = load_classifier_run(args.run)
    x, _ = Run.load(args.run).data(args.data, image_shape=args.image_shape)
    proba = est.predict_proba(x.numpy())  # wrong shapes and values are refused here
    names = list(est.model_.config.class_names) or [str(c) for c in est.classes_]
    write_atomic(args.out, lambda f: f.write_text(_table(proba, names)))
    print(f"wrote {args.out}: {len(proba)} rows, {len(names)} classes")
    return 0


def _table(proba: Any, names: list[str]) -> str:
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(["index", "class", *(f"p_{n}" for n in names)])
    for i, row in enumerate(proba):
        w.writerow([i, names[int(row.argmax())], *(f"{p:.6g}" for p in row)])
    return text.getvalue()
