"""`vaekit impute`: a table's missing cells filled in by a table run (observed cells kept)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vaekit.cli.common import UserError, add_device, check_out, write_atomic

NAME = "impute"

EPILOG = """examples:
  vaekit train --data examples/penguins.csv --out runs/penguins
  vaekit impute runs/penguins --data examples/penguins.csv --out filled.csv
  vaekit impute runs/penguins --data gaps.csv --out filled.csv --samples 2000 --seed 1

How a missing cell is filled: a table run keeps its training rows' codes
(exemplars.safetensors); the code of each (its posterior mean), weighted by how well it
explains the row's observed cells (the exemplar prior), stands for p(z | observed cells).
Without them (--no-exemplars, or the file deleted), --samples draws of q(z|x),
importance-weighted, do. Then a numeric column takes the weighted mean of the decoded values
(in its own units, rounded as the data were written; integers as integers), a categorical or
binary column its most probable level (probabilities averaged over the draws; for levels that
are all numbers, the level nearest their mean). A run trained with --select impute fills
gaps best where rows have near copies (vaekit train --help).
Observed cells are written exactly as read.
--data must have the run's columns (any order); a column missing or extra, or a category the
run has not seen, is an error naming it."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="fill in a table's missing cells with a table run",
        description="Fill the empty cells of a CSV from a run trained on a table like it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", type=Path, help="run directory (trained on a table)")
    p.add_argument("--data", required=True, type=Path, help="FILE.csv with gaps (empty, NA)")
    p.add_argument("--out", type=Path, required=True, help="FILE.csv: --data, gaps filled")
    p.add_argument("--samples", type=int, default=1000,
                   help="posterior draws per row without exemplars [1000]")
    p.add_argument("--no-exemplars", action="store_true",
                   help="the N(0, I) prior even where the run keeps its training rows' codes")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the posterior draws without exemplars [0]")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(p)


def run(args: argparse.Namespace) -> int:
    from vaekit.data.tabular import is_missing, read_table, write_table
    from vaekit.runs.run import Run
    from vaekit.tables import impute

    if args.samples < 1:
        raise UserError(f"--samples must be >= 1, got {args.samples}")
    check_out(args.out, (".csv",), args.force)
    run = Run.load(args.run, device=args.device)
    if run.config.data.table != "on":
        raise UserError(f"{args.run} was not trained on a table; train one on a CSV first")
    table = read_table(args.data)
    filled = impute(run, table, samples=args.samples, seed=args.seed,
                    exemplars=not args.no_exemplars, progress=not args.quiet)
    gaps = sum(is_missing(c) for cells in table.values() for c in cells)
    write_atomic(args.out, lambda f: write_table(f, filled))
    rows = len(next(iter(table.values())))
    print(f"wrote {args.out}: {rows} rows, {gaps} missing cells filled in")
    return 0
