"""Anomaly detection, side by side: vaekit's VAEDetector against IsolationForest, One-Class
SVM, PCA reconstruction error and PyOD's VAE, on the same splits, with fit and scoring times.

One-class protocol (images): for each class c, train on the class-c images of the training
split (the normal data), score the whole test split, AUROC of "not c" (outlier = any other
class); per class and the mean over classes. MNIST: the 10,000 MNIST test-set images split
8,000 / 2,000 with seed 0 (`common.load_labelled`); digits: the 1,797 8x8 digits, 1,437 / 360.

Breast cancer (tables): scikit-learn's Wisconsin data; benign is normal, malignant the
outlier. For each of `--rounds` seeded 80/20 splits, train on the benign rows of the training
part and score the whole test part; AUROC and average precision (malignant positive), mean
over splits.

vaekit runs with `VAEDetector()`'s defaults (no per-class tuning); every score is computed
from the same fitted model and reported, the default one as the headline. What is compared
(one result file per data set and comparison, anomaly_<data>[_<comparison>].{md,json}):
  (default)  quality: vaekit, IsolationForest, One-Class SVM, PCA, PyOD's VAE (defaults and
             latent 16 / 50 epochs; on breast cancer also at vaekit's network, for speed)
  --speed    fit + scoring time at the same network, epochs and batch: vaekit (precision
             "auto", and fp32) against PyOD's VAE with vaekit's settings
  --latent   the k-NN distance between codes (latent-knn): an encoder-only detector
             (objective="infomax") beside the VAE's scores
  --sweep S [S ...]  VAEDetector settings (JSON each, '{}' for the defaults): mean AUROC per
             score for each setting; --widths adds smooth-error at other window widths,
             --holdout scores a split inside the training data (chooses without the test split)

    .venv/bin/python benchmarks/bench_anomaly.py --data mnist      # or digits, breast-cancer
    .venv/bin/python benchmarks/bench_anomaly.py --data mnist --speed
    .venv/bin/python benchmarks/bench_anomaly.py --data all --latent
    .venv/bin/python benchmarks/bench_anomaly.py --data mnist --sweep '{}' '{"beta": 1.0}'
    .venv/bin/python benchmarks/bench_anomaly.py --data mnist --sweep '{}' --holdout \\
        --widths 0,0.5,0.75,1,1.25,1.5,2

PyOD is optional (`pip install pyod`; `make bench` installs it); without it the PyOD arms are
skipped and the results say so.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

import common as bc

SCORES = ("recon-error", "smooth-error", "recon-prob", "elbo", "iwae")
# VAEDetector arms: the precision each passes (None: the detector's default, "auto")
VAEKIT_ARMS = {"vaekit": None, "vaekit-fp32": "fp32", "vaekit-bf16": "bf16"}
ARMS = {  # the default arms of each comparison
    "quality": "vaekit,iforest,ocsvm,pca,pyod,pyod-tuned",  # + pyod-matched on breast cancer
    "speed": "vaekit,vaekit-fp32,pyod-matched",
    "latent": "vaekit,infomax",
    "sweep": "vaekit",
}
LABELS = {
    "vaekit": "vaekit VAEDetector() (default score)",
    "iforest": "IsolationForest",
    "ocsvm": "One-Class SVM (nu=0.1)",
    "pca": "PCA reconstruction error (90% variance)",
    "pyod": "PyOD VAE, defaults",
    "pyod-tuned": "PyOD VAE, latent 16, 50 epochs",
    "pyod-matched": "PyOD VAE, vaekit's network/epochs/batch",
    "infomax": "vaekit VAEDetector(objective='infomax', scoring='latent-knn'), encoder only",
}

# --------------------------------------------------------------------------------------- arms


def arm_vaekit(x_train: np.ndarray, x_test: np.ndarray, shape: tuple | None, seed: int,
               opts: argparse.Namespace, precision: str | None = None) -> dict[str, Any]:
    """VAEDetector with its defaults (or opts.params; precision as given, if given); every
    score from the same fitted model, in the detector's scoring precision."""
    import vaekit.anomaly as anomaly

    det = anomaly.VAEDetector(random_state=seed, **opts.params)
    if precision is not None:
        det.set_params(precision=precision)
    default_scores, xte, fit_s, score_s = fit_and_score(det, x_train, x_test, shape, opts)
    out: dict[str, Any] = {"default_score": det.score_, "precision": det.precision_,
                           "fit_s": fit_s, "score_s": score_s, "scores": {det.score_:
                                                                          default_scores}}
    xt = torch.from_numpy(det.preprocessor_.transform(xte))
    image = len(det.event_shape_) == 3
    common = {"precision": det.scoring_precision}
    for name in SCORES:
        if name != det.score_ and (image or name not in anomaly.IMAGE_SCORES):
            s = anomaly.score_samples(det.model_, xt, name, seed=seed, **common)
            out["scores"][name] = s.double().numpy()
    s = anomaly.score_samples(det.model_, xt, "latent-knn", reference=det.reference_, **common)
    out["scores"]["latent-knn"] = s.double().numpy()
    for w in opts.widths if image else ():
        s = anomaly.smoothed_error(det.model_, xt, width=(w, w), **common)
        out["scores"][f"smooth-error w={w:g}"] = s.double().numpy()
    return out


def arm_infomax(x_train: np.ndarray, x_test: np.ndarray, shape: tuple | None, seed: int,
                opts: argparse.Namespace) -> dict[str, Any]:
    """VAEDetector(objective="infomax", scoring="latent-knn"): an encoder-only model (no
    decoder), scored by the k-NN distance between posterior means; otherwise its defaults."""
    from vaekit.anomaly import VAEDetector

    det = VAEDetector(scoring="latent-knn", objective="infomax", random_state=seed)
    s, _, fit_s, score_s = fit_and_score(det, x_train, x_test, shape, opts)
    return {"fit_s": fit_s, "score_s": score_s, "scores": {"score": s}}


def fit_and_score(det: Any, x_train: np.ndarray, x_test: np.ndarray, shape: tuple | None,
                  opts: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Fit a VAEDetector (epochs overridden where given) on x_train and score x_test (flat
    rows reshaped to `shape` for images): (scores, x_test as scored, fit s, score s)."""
    if opts.epochs is not None:
        det.set_params(epochs=opts.epochs)
    xtr = x_train.reshape(-1, *shape) if shape else x_train
    xte = x_test.reshape(-1, *shape) if shape else x_test
    _, fit_s = bc.timed(lambda: det.fit(xtr))
    scores, score_s = bc.timed(lambda: det.decision_function(xte))
    return scores, xte, fit_s, score_s


def arm_sklearn(kind: str, x_train: np.ndarray, x_test: np.ndarray, seed: int) -> dict[str, Any]:
    """IsolationForest, One-Class SVM (nu=0.1, gamma='scale') or PCA reconstruction error
    (components for 90% of the training variance); tables standardised on the training rows."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.svm import OneClassSVM

    if kind == "pca":
        est = PCA(n_components=0.9, svd_solver="full", random_state=seed)

        def score() -> np.ndarray:
            return ((x_test - est.inverse_transform(est.transform(x_test))) ** 2).sum(1)
    else:
        est = (IsolationForest(random_state=seed) if kind == "iforest"
               else OneClassSVM(nu=0.1, gamma="scale"))

        def score() -> np.ndarray:
            return -est.score_samples(x_test)

    _, fit_s = bc.timed(lambda: est.fit(x_train))
    s, score_s = bc.timed(score)
    return {"fit_s": fit_s, "score_s": score_s, "scores": {"score": np.asarray(s, float)}}


def arm_pyod(x_train: np.ndarray, x_test: np.ndarray, seed: int,
             settings: dict[str, Any] | None) -> dict[str, Any]:
    """PyOD's VAE: its defaults, or the given settings."""
    from pyod.models.vae import VAE

    est = VAE(random_state=seed, verbose=0, device="cpu", **(settings or {}))
    _, fit_s = bc.timed(lambda: est.fit(x_train))
    s, score_s = bc.timed(lambda: est.decision_function(x_test))
    return {"fit_s": fit_s, "score_s": score_s, "scores": {"score": np.asarray(s, float)}}


def matched_pyod(x_dim: int, image: bool, epochs: int | None) -> dict[str, Any]:
    """PyOD VAE settings equal to VAEDetector's defaults for this data: network, epochs,
    batch size, learning rate (PyOD keeps its own dropout 0.2 and weight decay 1e-5)."""
    from vaekit.anomaly import VAEDetector

    d = VAEDetector()
    auto = d.settings("image" if image else "tabular", x_dim)
    return {"encoder_neuron_list": list(auto["hidden"]),
            "decoder_neuron_list": list(auto["hidden"])[::-1], "latent_dim": auto["latent_dim"],
            "epoch_num": epochs or auto["epochs"], "batch_size": d.batch_size, "lr": d.lr}


def run_arm(arm: str, x_train: np.ndarray, x_test: np.ndarray, shape: tuple | None, seed: int,
            opts: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(seed)
    if arm in VAEKIT_ARMS:
        return arm_vaekit(x_train, x_test, shape, seed, opts, VAEKIT_ARMS[arm])
    if arm == "infomax":
        return arm_infomax(x_train, x_test, shape, seed, opts)
    if arm in ("iforest", "ocsvm", "pca"):
        return arm_sklearn(arm, x_train, x_test, seed)
    settings = {"pyod": None, "pyod-tuned": {"latent_dim": 16, "epoch_num": 50}}  # the issue's
    if arm == "pyod-matched":
        return arm_pyod(x_train, x_test, seed,
                        matched_pyod(x_train.shape[1], shape is not None, opts.epochs))
    return arm_pyod(x_train, x_test, seed, settings[arm])


def warm_up(arms: list[str], x: np.ndarray, shape: tuple | None, opts: argparse.Namespace) -> None:
    """One tiny fit per arm first, so no arm's timing includes one-time costs (imports,
    first-call initialisation: about 10 s for torch's optimizer machinery here)."""
    few, tiny = x[:64], argparse.Namespace(**{**vars(opts), "epochs": 1, "widths": []})
    for arm in arms:
        if arm.startswith("pyod"):
            arm_pyod(few, few, 0, {"epoch_num": 1, "batch_size": 32})
        else:
            run_arm(arm, few, few, shape, 0, tiny)


# ---------------------------------------------------------------------------------- protocols


def record(row: dict[str, Any], arm: str, r: dict[str, Any], truth: np.ndarray,
           ap: bool) -> None:
    """Add an arm's AUROC (and AP) per score and its times to a result row."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if "default_score" in r:
        row["default_score"] = r["default_score"]
    for sname, s in r["scores"].items():
        key = arm if sname == "score" else f"{arm}:{sname}"
        row[key] = {"auroc": float(roc_auc_score(truth, s))}
        if ap:
            row[key]["ap"] = float(average_precision_score(truth, s))
    row[f"{arm}:time"] = {"fit_s": r["fit_s"], "score_s": r["score_s"],
                          **({"precision": r["precision"]} if "precision" in r else {})}


def show(row: dict[str, Any]) -> None:
    print(json.dumps({k: v if not isinstance(v, dict) else round(v["auroc"], 4)
                      for k, v in row.items() if not k.endswith(":time")}), flush=True)


def one_class(name: str, arms: list[str], opts: argparse.Namespace) -> dict:
    xtr, ytr, xte, yte = bc.load_labelled(name, seed=0)
    shape = (1, 28, 28) if name == "mnist" else (1, 8, 8)
    if opts.holdout:  # train on the first 60% of the training split, score the rest
        cut = int(0.6 * len(xtr))
        xtr, ytr, xte, yte = xtr[:cut], ytr[:cut], xtr[cut:], ytr[cut:]
    warm_up(arms, xtr, shape, opts)
    rows = []
    for c in opts.classes:
        normal = xtr[ytr == c]
        row: dict[str, Any] = {"class": c, "n_train": len(normal)}
        for arm in arms:
            record(row, arm, run_arm(arm, normal, xte, shape, 0, opts), yte != c, ap=False)
        rows.append(row)
        show(row)
    protocol = "one-class, inside the training split" if opts.holdout else "one-class"
    return {"protocol": protocol, "data": name, "n_test": len(xte), "rows": rows}


def breast_cancer(arms: list[str], opts: argparse.Namespace) -> dict:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x, is_out = d.data.astype(np.float32), (d.target == 0).astype(int)  # 0 = malignant
    warm_up(arms, x, None, opts)
    rows = []
    for seed in range(opts.rounds):
        perm = np.random.default_rng(seed).permutation(len(x))
        tr, te = perm[: int(0.8 * len(x))], perm[int(0.8 * len(x)) :]
        normal = x[tr][is_out[tr] == 0]
        mean, std = normal.mean(0), normal.std(0) + 1e-12
        row: dict[str, Any] = {"round": seed, "n_train": len(normal), "n_test": len(te),
                               "n_outliers_test": int(is_out[te].sum())}
        for arm in arms:
            # vaekit and PyOD standardise themselves; the sklearn arms get standardised rows
            own = arm.startswith(("vaekit", "pyod", "infomax"))
            xa, xb = (normal, x[te]) if own else ((normal - mean) / std, (x[te] - mean) / std)
            record(row, arm, run_arm(arm, xa, xb, None, seed, opts), is_out[te], ap=True)
        rows.append(row)
        show(row)
    return {"protocol": "benign-as-normal", "data": "breast-cancer", "rows": rows}


def evaluate(name: str, arms: list[str], opts: argparse.Namespace) -> dict:
    result = breast_cancer(arms, opts) if name == "breast-cancer" else one_class(name, arms, opts)
    result["summary"] = summarise(result["rows"])
    return result


# ------------------------------------------------------------------------------------ reports


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per arm (and vaekit score): mean AUROC (and AP), total fit and scoring seconds."""
    summary: dict[str, dict[str, float]] = {}
    for k in (k for k, v in rows[0].items() if isinstance(v, dict) and "auroc" in v):
        arm = k.split(":")[0]
        summary[k] = {m: float(np.mean([r[k][m] for r in rows])) for m in rows[0][k]}
        summary[k]["fit_s"] = float(sum(r[f"{arm}:time"]["fit_s"] for r in rows))
        summary[k]["score_s"] = float(sum(r[f"{arm}:time"]["score_s"] for r in rows))
    return summary


def label(key: str, default_score: str) -> str:
    if ":" in key:
        arm, score = key.split(":")
        name = arm.replace("-", " ")
        return f"{name}, score {score}" + (" (default)" if score == default_score else "")
    return LABELS.get(key, key)


def speed_lines(rows: list[dict], tables: bool) -> list[str]:
    """Fit + scoring time of each vaekit arm against PyOD at vaekit's settings."""
    def seconds(r: dict, arm: str) -> float:
        return r[f"{arm}:time"]["fit_s"] + r[f"{arm}:time"]["score_s"]

    if "pyod-matched:time" not in rows[0]:
        return []
    lines, p = [], sum(seconds(r, "pyod-matched") for r in rows)
    for arm in (a for a in VAEKIT_ARMS if f"{a}:time" in rows[0]):
        v = sum(seconds(r, arm) for r in rows)
        # each class (round) runs every arm back to back, so its ratio sees one state of a
        # machine whose speed drifts: their median is the steadier figure
        per = [seconds(r, "pyod-matched") / seconds(r, arm) for r in rows]
        lines += ["", f"Fit + scoring, same network sizes, epochs and batch size: {arm} "
                  f"(trained in {rows[0][f'{arm}:time'].get('precision', 'fp32')}) {v:.1f} s, "
                  f"PyOD {p:.1f} s: **{p / v:.2f}x** as fast; per {'round' if tables else 'class'}"
                  f", median {statistics.median(per):.2f}x (range {min(per):.2f}-{max(per):.2f})."]
    return lines


def markdown(result: dict, meta: dict) -> str:
    s, rows = result["summary"], result["rows"]
    # the score VAEDetector(scoring="auto") took on these data (it depends on their kind)
    default = next((r["default_score"] for r in rows if "default_score" in r), "")
    meta["vaekit_default_score"] = default or meta["vaekit_default_score"]
    tables = "breast-cancer" in result["data"]
    lines = [f"# Anomaly detection: {result['data']} ({result['protocol']} protocol)", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "| method | mean AUROC |" + (" mean AP |" if tables else "")
              + " fit s (total) | score s (total) |",
              "|---|---|" + ("---|" if tables else "") + "---|---|"]
    order = [k for k in sorted(s, key=lambda k: (":" in k, -s[k]["auroc"])) if k not in VAEKIT_ARMS]
    for k in order:  # a vaekit arm is listed under its default score
        name = label(k, default)
        name = f"**{name}**" if k == f"vaekit:{default}" else name
        ap = f" {s[k]['ap']:.4f} |" if tables else ""
        lines.append(f"| {name} | {s[k]['auroc']:.4f} |{ap} {s[k]['fit_s']:.1f} | "
                     f"{s[k]['score_s']:.1f} |")
    lines += ["", "vaekit rows share one fitted model per class/round: the fit time is the same; "
              "score time is the default score's."]
    lines += speed_lines(rows, tables)
    if not tables:
        lines += ["", "## AUROC per class (class c normal, every other class an outlier)", "",
                  "| class | n train | " + " | ".join(label(k, default) for k in order) + " |",
                  "|---|---|" + "---|" * len(order)]
        lines += [f"| {r['class']} | {r['n_train']} | "
                  + " | ".join(f"{r[k]['auroc']:.4f}" for k in order) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def sweep_markdown(name: str, results: dict[str, dict], meta: dict) -> str:
    """One row per setting: the mean AUROC (/ AP on tables) of each vaekit score."""
    keys = list(next(iter(results.values()))["summary"])
    tables = name == "breast-cancer"
    lines = [f"# VAEDetector settings on {name} "
             f"({next(iter(results.values()))['protocol']} protocol)", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "| setting | " + " | ".join(k.split(":")[-1] for k in keys) + " | fit s |",
              "|---|" + "---|" * (len(keys) + 1)]
    for setting, res in results.items():
        s = res["summary"]
        cells = [f"{s[k]['auroc']:.4f}" + (f" / {s[k]['ap']:.4f}" if tables else "")
                 for k in keys]
        lines.append(f"| `{setting}` | " + " | ".join(cells) + f" | {s[keys[0]]['fit_s']:.0f} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------- main


def parse() -> tuple[argparse.Namespace, str]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="all", choices=["mnist", "digits", "breast-cancer", "all"])
    what = p.add_mutually_exclusive_group()
    what.add_argument("--speed", action="store_true", help="fit + scoring time against PyOD")
    what.add_argument("--latent", action="store_true", help="latent-knn, encoder-only detector")
    what.add_argument("--sweep", nargs="+", metavar="JSON", help="VAEDetector settings to try")
    p.add_argument("--arms", help="comma-separated, the comparison's by default: vaekit, "
                   "vaekit-fp32, vaekit-bf16, infomax, iforest, ocsvm, pca, pyod, pyod-tuned, "
                   "pyod-matched")
    p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    p.add_argument("--rounds", type=int, default=5, help="breast cancer: seeded splits [5]")
    p.add_argument("--epochs", type=int, help="override VAEDetector's (and matched PyOD's) epochs")
    p.add_argument("--widths", default="", help="extra smooth-error widths in pixels, e.g. 0,1")
    p.add_argument("--holdout", action="store_true",
                   help="images: train on 60%% of the training split, score the other 40%%")
    p.add_argument("--threads", type=int, default=1)
    bc.add_out_dir(p)
    args = p.parse_args()
    args.classes = [int(c) for c in args.classes.split(",")]
    args.widths = [float(w) for w in args.widths.split(",") if w]
    args.params = {}
    mode = "speed" if args.speed else "latent" if args.latent else "sweep" if args.sweep else (
        "quality")
    return args, mode


def main() -> int:
    args, mode = parse()
    torch.set_num_threads(args.threads)
    from vaekit.anomaly import VAEDetector
    from vaekit.core.precision import BF16_MIN_WEIGHTS, native_bf16

    pyod, d = bc.peer_version("pyod"), VAEDetector()
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "benchmarks/bench_anomaly.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__,
        "pyod": pyod or "not installed",
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "vaekit_default_score": d.score,
        "vaekit_defaults": f"batch {d.batch_size}, lr {d.lr}; images: "
        f"{d.settings('image', 784)}, Bernoulli; tables: {d.settings('tabular', 30)}, "
        "standardised, Gaussian with learned sigma"
        + (f"; epochs overridden: {args.epochs}" if args.epochs else ""),
        "vaekit_precision": "auto: trains in bf16 where the CPU has AMX and the MLP at least "
        f"{BF16_MIN_WEIGHTS:,} weights (AMX here: {native_bf16(torch.device('cpu'))}), else "
        "fp32; scores in fp32",
    }
    names = ["mnist", "digits", "breast-cancer"] if args.data == "all" else [args.data]
    for name in names:
        arms = (args.arms or ARMS[mode]).split(",")
        if mode == "quality" and not args.arms and name == "breast-cancer":
            arms.append("pyod-matched")
        if pyod is None and any(a.startswith("pyod") for a in arms):
            print("pyod is not installed: skipping the PyOD arms (pip install pyod)",
                  file=sys.stderr)
            arms = [a for a in arms if not a.startswith("pyod")]
        stem = args.out_dir / ("anomaly_" + name.replace("-", "_")
                               + ("" if mode == "quality" else f"_{mode}"))
        if mode == "sweep":
            results = {}
            for setting in args.sweep:
                args.params = json.loads(setting)
                results[setting] = evaluate(name, arms, args)
            bc.write_result(stem, sweep_markdown(name, results, dict(meta)),
                            {"meta": meta, "settings": results})
        else:
            result = evaluate(name, arms, args)
            md = markdown(result, dict(meta))
            bc.write_result(stem, md, {**result, "meta": meta})
    return 0


if __name__ == "__main__":
    sys.exit(main())
