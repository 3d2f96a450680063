"""Anomaly detection, side by side: vaekit's VAEDetector against IsolationForest, One-Class
SVM, PCA reconstruction error and PyOD's VAE, on the same splits, with fit and scoring times.

One-class protocol (images): for each class c, train on the class-c images of the training
split (the normal data), score the whole test split, AUROC of "not c" (outlier = any other
class); per class and the mean over classes. MNIST: the 10,000 MNIST test-set images split
8,000 / 2,000 with seed 0 (the same split as `benchcommon.load_data`); digits: scikit-learn's
1,797 8x8 digits split 1,437 / 360.

Breast cancer (tables): scikit-learn's Wisconsin data; benign is normal, malignant the
outlier. For each of `--rounds` seeded 80/20 splits, train on the benign rows of the training
part and score the whole test part; AUROC and average precision (malignant positive), mean
over splits.

vaekit runs with `VAEDetector()`'s defaults (no per-class tuning); all four scores are
computed from the same fitted model and reported, the default one as the headline.

    .venv/bin/python benchmarks/bench_anomaly.py --data mnist      # or digits, breast-cancer
    .venv/bin/python benchmarks/bench_anomaly.py --data all --threads 2

Writes benchmarks/results/anomaly_<data>.json and .md. PyOD is optional (`pip install pyod`);
without it the PyOD arms are skipped and the results say so.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchcommon import MNIST_TEST, REPO_ROOT, load_data, read_idx_images

RESULTS = REPO_ROOT / "benchmarks" / "results"
MNIST_LABELS = MNIST_TEST.with_name("t10k-labels-idx1-ubyte.gz")
SCORES = ("recon-error", "smooth-error", "recon-prob", "elbo", "iwae")
# VAEDetector arms: the precision each passes (None: the detector's default, "auto")
VAEKIT_ARMS = {"vaekit": None, "vaekit-fp32": "fp32", "vaekit-bf16": "bf16"}

# --------------------------------------------------------------------------------------- data


def read_idx_labels(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if int.from_bytes(raw[:4], "big") != 2049:
        raise ValueError(f"{path}: not an IDX1 labels file")
    return np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64)


def image_splits(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple]:
    """(x_train, y_train, x_test, y_test, image shape): flat float32 rows in [0, 1], labels,
    split exactly as `benchcommon.load_data(name, seed=0)` splits the images."""
    rng = np.random.default_rng(0)
    if name == "mnist":
        images = read_idx_images(MNIST_TEST)
        x = images.reshape(len(images), -1).astype(np.float32) / 255.0
        y, n_train, shape = read_idx_labels(MNIST_LABELS), 8000, (1, 28, 28)
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y, n_train, shape = d.data.astype(np.float32) / 16.0, d.target, 1437, (1, 8, 8)
    perm = rng.permutation(len(x))
    x, y = x[perm], y[perm]
    xtr, ytr = x[:n_train], y[:n_train]
    xte, yte = x[n_train : n_train + 2000], y[n_train : n_train + 2000]
    ref_train, ref_test = load_data(name, seed=0)  # the split the other benchmarks use
    assert np.array_equal(ref_train, xtr) and np.array_equal(ref_test, xte)
    return xtr, ytr, xte, yte, shape


# --------------------------------------------------------------------------------------- arms


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def arm_vaekit(
    x_train: np.ndarray,
    x_test: np.ndarray,
    shape: tuple | None,
    seed: int,
    epochs: int | None,
    precision: str | None = None,
) -> dict[str, Any]:
    """VAEDetector with its defaults (precision as given, if given); every score from the same
    fitted model, in the detector's scoring precision."""
    from vaekit import anomaly
    from vaekit.anomaly import VAEDetector

    det = VAEDetector(random_state=seed)
    if precision is not None:
        det.set_params(precision=precision)
    default_scores, xte, fit_s, score_s = fit_and_score(det, x_train, x_test, shape, epochs)
    precision = det.scoring_precision
    out: dict[str, Any] = {
        "default_score": det.score_,
        "precision": det.precision_,
        "fit_s": fit_s,
        "score_s": score_s,
        "scores": {det.score_: default_scores},
        "score_seconds": {det.score_: score_s},
    }
    xt = torch.from_numpy(det.preprocessor_.transform(xte))
    image = len(det.event_shape_) == 3
    for name in SCORES:
        if name != det.score_ and (image or name not in anomaly.IMAGE_SCORES):
            s, secs = timed(
                lambda n=name: anomaly.score_samples(
                    det.model_, xt, n, seed=seed, precision=precision
                )
            )
            out["scores"][name], out["score_seconds"][name] = s.double().numpy(), secs
    s, secs = timed(lambda: anomaly.score_samples(
        det.model_, xt, "latent-knn", precision=precision, reference=det.reference_))
    out["scores"]["latent-knn"], out["score_seconds"]["latent-knn"] = s.double().numpy(), secs
    return out


def arm_infomax(
    x_train: np.ndarray, x_test: np.ndarray, shape: tuple | None, seed: int, epochs: int | None
) -> dict[str, Any]:
    """VAEDetector(objective="infomax", score="latent-knn"): an encoder-only model (no
    decoder), scored by the k-NN distance between posterior means; otherwise its defaults."""
    from vaekit.anomaly import VAEDetector

    det = VAEDetector(score="latent-knn", objective="infomax", random_state=seed)
    s, _, fit_s, score_s = fit_and_score(det, x_train, x_test, shape, epochs)
    return {"fit_s": fit_s, "score_s": score_s, "scores": {"score": s}}


def fit_and_score(
    det: Any, x_train: np.ndarray, x_test: np.ndarray, shape: tuple | None, epochs: int | None
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Fit a VAEDetector (epochs overridden where given) on x_train and score x_test (flat
    rows reshaped to `shape` for images): (scores, x_test as scored, fit s, score s)."""
    if epochs is not None:
        det.set_params(epochs=epochs)
    xtr = x_train.reshape(-1, *shape) if shape else x_train
    xte = x_test.reshape(-1, *shape) if shape else x_test
    _, fit_s = timed(lambda: det.fit(xtr))
    scores, score_s = timed(lambda: det.decision_function(xte))
    return scores, xte, fit_s, score_s


def arm_sklearn(kind: str, x_train: np.ndarray, x_test: np.ndarray, seed: int) -> dict[str, Any]:
    """IsolationForest, One-Class SVM (nu=0.1, gamma='scale') or PCA reconstruction error
    (components for 90% of the training variance); tables standardised on the training rows."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.svm import OneClassSVM

    if kind == "iforest":
        est = IsolationForest(random_state=seed)
        _, fit_s = timed(lambda: est.fit(x_train))
        s, score_s = timed(lambda: -est.score_samples(x_test))
    elif kind == "ocsvm":
        est = OneClassSVM(nu=0.1, gamma="scale")
        _, fit_s = timed(lambda: est.fit(x_train))
        s, score_s = timed(lambda: -est.score_samples(x_test))
    else:
        est = PCA(n_components=0.9, svd_solver="full", random_state=seed)
        _, fit_s = timed(lambda: est.fit(x_train))

        def err() -> np.ndarray:
            rec = est.inverse_transform(est.transform(x_test))
            return ((x_test - rec) ** 2).sum(1)

        s, score_s = timed(err)
    return {"fit_s": fit_s, "score_s": score_s, "scores": {"score": np.asarray(s, float)}}


def arm_pyod(
    x_train: np.ndarray, x_test: np.ndarray, seed: int, matched: dict[str, Any] | None
) -> dict[str, Any]:
    """PyOD's VAE: its defaults, or `matched` (the same network sizes, epochs and batch size
    as vaekit's defaults) for the speed comparison."""
    from pyod.models.vae import VAE

    kwargs: dict[str, Any] = {"random_state": seed, "verbose": 0, "device": "cpu"}
    if matched:
        kwargs.update(matched)
    est = VAE(**kwargs)
    _, fit_s = timed(lambda: est.fit(x_train))
    s, score_s = timed(lambda: est.decision_function(x_test))
    return {"fit_s": fit_s, "score_s": score_s, "scores": {"score": np.asarray(s, float)}}


def arm_floor(x_train: np.ndarray, x_test: np.ndarray, seed: int, epochs: int | None) -> dict:
    """A reference for the speed comparison: the same MLP VAE as VAEDetector's image defaults
    (layers, latent, epochs, batch, Adam, Bernoulli likelihood, beta) as the shortest PyTorch
    loop, no framework around it (PyTorch's default Adam, no flush-to-zero); scored by the
    squared error of the decoded posterior mean. Its time is almost all the network's
    arithmetic, so PyOD's time over it is what any implementation could save."""
    import torch.nn.functional as F

    from vaekit.anomaly import VAEDetector
    from vaekit.nets import mlp as layers

    d = VAEDetector()
    auto = d.settings("image", x_train.shape[1])
    h, latent = list(auto["hidden"]), auto["latent_dim"]

    torch.manual_seed(seed)
    enc = layers([x_train.shape[1], *h, 2 * latent], "relu")  # posterior mean and log-variance
    dec = layers([latent, *h[::-1], x_train.shape[1]], "relu")  # Bernoulli logits
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=d.lr)
    x = torch.from_numpy(x_train)

    def train() -> None:
        for _ in range(epochs or auto["epochs"]):
            for idx in torch.randperm(len(x)).split(d.batch_size):
                xb = x[idx]
                mu, logvar = enc(xb).chunk(2, -1)
                z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
                nll = F.binary_cross_entropy_with_logits(dec(z), xb, reduction="sum")
                kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum()
                opt.zero_grad(set_to_none=True)
                ((nll + auto["beta"] * kl) / len(xb)).backward()
                opt.step()

    @torch.no_grad()
    def score() -> np.ndarray:
        xt = torch.from_numpy(x_test)
        mean = torch.sigmoid(dec(enc(xt).chunk(2, -1)[0]))
        return (mean - xt).square().sum(1).double().numpy()

    _, fit_s = timed(train)
    s, score_s = timed(score)
    return {"fit_s": fit_s, "score_s": score_s, "scores": {"score": s}}


def pyod_version() -> str | None:
    try:
        from importlib.metadata import version

        import pyod  # noqa: F401

        return version("pyod")
    except Exception:
        return None


def matched_pyod(x_dim: int, image: bool) -> dict[str, Any]:
    """PyOD VAE settings equal to VAEDetector's defaults for this data: network, epochs,
    batch size, learning rate (PyOD keeps its own dropout 0.2 and weight decay 1e-5)."""
    from vaekit.anomaly import VAEDetector

    d = VAEDetector()
    auto = d.settings("image" if image else "tabular", x_dim)
    return {
        "encoder_neuron_list": list(auto["hidden"]),
        "decoder_neuron_list": list(auto["hidden"])[::-1],
        "latent_dim": auto["latent_dim"],
        "epoch_num": auto["epochs"],
        "batch_size": d.batch_size,
        "lr": d.lr,
    }


# ---------------------------------------------------------------------------------- protocols


def run_arms(
    arms: list[str],
    x_train: np.ndarray,
    x_test: np.ndarray,
    shape: tuple | None,
    seed: int,
    epochs: int | None,
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        torch.manual_seed(seed)
        if arm in VAEKIT_ARMS:
            out[arm] = arm_vaekit(x_train, x_test, shape, seed, epochs, VAEKIT_ARMS[arm])
        elif arm == "infomax":
            out[arm] = arm_infomax(x_train, x_test, shape, seed, epochs)
        elif arm in ("iforest", "ocsvm", "pca"):
            out[arm] = arm_sklearn(arm, x_train, x_test, seed)
        elif arm == "floor":
            out[arm] = arm_floor(x_train, x_test, seed, epochs)
        elif arm == "pyod":
            out[arm] = arm_pyod(x_train, x_test, seed, None)
        elif arm == "pyod-tuned":  # the tuned PyOD VAE: latent 16, 50 epochs
            out[arm] = arm_pyod(x_train, x_test, seed, {"latent_dim": 16, "epoch_num": 50})
        elif arm == "pyod-matched":
            m = matched_pyod(x_train.shape[1], shape is not None)
            if epochs is not None:
                m["epoch_num"] = epochs
            out[arm] = arm_pyod(x_train, x_test, seed, m)
    return out


def warm_up(arms: list[str], x: np.ndarray, shape: tuple | None) -> None:
    """One tiny fit per arm first, so no arm's timing includes one-time costs (imports,
    first-call initialisation: about 10 s for torch's optimizer machinery here)."""
    few = x[:64]
    for arm in arms:
        if arm in VAEKIT_ARMS:
            arm_vaekit(few, few, shape, 0, 1, VAEKIT_ARMS[arm])
        elif arm.startswith("pyod"):
            arm_pyod(few, few, 0, {"epoch_num": 1, "batch_size": 32})
        elif arm == "floor":
            arm_floor(few, few, 0, 1)
        elif arm == "infomax":
            arm_infomax(few, few, shape, 0, 1)
        else:
            arm_sklearn(arm, few, few, 0)


def one_class(name: str, arms: list[str], classes: list[int], epochs: int | None) -> dict:
    from sklearn.metrics import roc_auc_score

    xtr, ytr, xte, yte, shape = image_splits(name)
    warm_up(arms, xtr, shape)
    rows = []
    for c in classes:
        normal = xtr[ytr == c]
        res = run_arms(arms, normal, xte, shape, seed=0, epochs=epochs)
        row: dict[str, Any] = {"class": c, "n_train": len(normal)}
        for arm, r in res.items():
            if "default_score" in r:
                row["default_score"] = r["default_score"]
            for sname, s in r["scores"].items():
                key = arm if sname == "score" else f"{arm}:{sname}"
                row[key] = {"auroc": float(roc_auc_score(yte != c, s))}
            row[f"{arm}:time"] = {"fit_s": r["fit_s"], "score_s": r["score_s"],
                                  **({"precision": r["precision"]} if "precision" in r else {})}
        rows.append(row)
        brief = {k: round(v["auroc"], 4) for k, v in row.items() if isinstance(v, dict)
                 and "auroc" in v}
        print(json.dumps({"class": c, **brief}), flush=True)
    return {"protocol": "one-class", "data": name, "n_test": len(xte), "rows": rows}


def breast_cancer(arms: list[str], rounds: int, epochs: int | None) -> dict:
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import average_precision_score, roc_auc_score

    d = load_breast_cancer()
    x, is_out = d.data.astype(np.float32), (d.target == 0).astype(int)  # 0 = malignant
    warm_up(arms, x, None)
    rows = []
    for seed in range(rounds):
        perm = np.random.default_rng(seed).permutation(len(x))
        n_train = int(0.8 * len(x))
        tr, te = perm[:n_train], perm[n_train:]
        normal = x[tr][is_out[tr] == 0]
        mean, std = normal.mean(0), normal.std(0) + 1e-12
        row: dict[str, Any] = {"round": seed, "n_train": len(normal), "n_test": len(te),
                               "n_outliers_test": int(is_out[te].sum())}
        for arm in arms:
            # vaekit and PyOD standardise themselves; the sklearn arms get standardised rows
            own = arm.startswith(("vaekit", "pyod", "infomax"))
            xa, xb = (normal, x[te]) if own else ((normal - mean) / std, (x[te] - mean) / std)
            r = run_arms([arm], xa, xb, None, seed, epochs)[arm]
            if "default_score" in r:
                row["default_score"] = r["default_score"]
            for sname, s in r["scores"].items():
                key = arm if sname == "score" else f"{arm}:{sname}"
                row[key] = {"auroc": float(roc_auc_score(is_out[te], s)),
                            "ap": float(average_precision_score(is_out[te], s))}
            row[f"{arm}:time"] = {"fit_s": r["fit_s"], "score_s": r["score_s"],
                                  **({"precision": r["precision"]} if "precision" in r else {})}
        rows.append(row)
        brief = {k: round(v["auroc"], 4) for k, v in row.items() if isinstance(v, dict)
                 and "auroc" in v}
        print(json.dumps({"round": seed, **brief}), flush=True)
    return {"protocol": "benign-as-normal", "data": "breast-cancer", "rows": rows}


# ------------------------------------------------------------------------------------ reports


def summarise(result: dict) -> dict[str, dict[str, float]]:
    """Per arm (and vaekit score): mean AUROC (and AP), total fit and scoring seconds."""
    rows = result["rows"]
    keys = [k for k, v in rows[0].items() if isinstance(v, dict) and "auroc" in v]
    summary: dict[str, dict[str, float]] = {}
    for k in keys:
        s: dict[str, float] = {"auroc": float(np.mean([r[k]["auroc"] for r in rows]))}
        if "ap" in rows[0][k]:
            s["ap"] = float(np.mean([r[k]["ap"] for r in rows]))
        arm = k.split(":")[0]
        s["fit_s"] = float(sum(r[f"{arm}:time"]["fit_s"] for r in rows))
        s["score_s"] = float(sum(r[f"{arm}:time"]["score_s"] for r in rows))
        summary[k] = s
    return summary


LABELS = {
    "vaekit": "vaekit VAEDetector() (default score)",
    "iforest": "IsolationForest",
    "ocsvm": "One-Class SVM (nu=0.1)",
    "pca": "PCA reconstruction error (90% variance)",
    "pyod": "PyOD VAE, defaults",
    "pyod-tuned": "PyOD VAE, latent 16, 50 epochs",
    "pyod-matched": "PyOD VAE, vaekit's network/epochs/batch",
    "floor": "bare PyTorch loop, vaekit's network/epochs/batch (reference)",
    "infomax": "vaekit VAEDetector(objective='infomax', score='latent-knn'), encoder only",
}


def label(key: str, default_score: str) -> str:
    if ":" in key:
        arm, score = key.split(":")
        name = arm.replace("-", " ")
        return f"{name}, score {score}" + (" (default)" if score == default_score else "")
    return LABELS.get(key, key)


def write_report(result: dict, meta: dict, path_stem: Path) -> None:
    result["summary"] = summarise(result)
    result["meta"] = meta
    path_stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    # the score VAEDetector(score="auto") took on these data (it depends on their kind)
    default = next((r["default_score"] for r in result["rows"] if "default_score" in r), "")
    meta["vaekit_default_score"] = default or meta.get("vaekit_default_score", "")
    s = result["summary"]
    tables = "breast-cancer" in result["data"]
    lines = [f"# Anomaly detection: {result['data']} ({result['protocol']} protocol)", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "| method | mean AUROC |" + (" mean AP |" if tables else "")
              + " fit s (total) | score s (total) |",
              "|---|---|" + ("---|" if tables else "") + "---|---|"]
    order = sorted(s, key=lambda k: (":" in k, -s[k]["auroc"]))
    for k in order:
        if k in VAEKIT_ARMS:
            continue  # listed as its default score below
        ap = f" {s[k]['ap']:.4f} |" if tables else ""
        name = label(k, default)
        if k == f"vaekit:{default}":
            name = f"**{name}**"
        lines.append(f"| {name} | {s[k]['auroc']:.4f} |{ap} {s[k]['fit_s']:.1f} | "
                     f"{s[k]['score_s']:.1f} |")
    lines.append("")
    lines.append("vaekit rows share one fitted model per class/round: the fit time is the same; "
                 "score time is the default score's.")
    rows = result["rows"]

    def seconds(r: dict, arm: str) -> float:
        return r[f"{arm}:time"]["fit_s"] + r[f"{arm}:time"]["score_s"]

    def total(arm: str) -> float:
        return sum(seconds(r, arm) for r in rows)

    if "pyod-matched:time" in rows[0]:
        p = total("pyod-matched")
        unit = "round" if tables else "class"
        for arm in VAEKIT_ARMS:
            if f"{arm}:time" in rows[0]:
                v = total(arm)
                # each class (round) runs every arm back to back, so its ratio sees one state
                # of a machine whose speed drifts: their median is the steadier figure
                per = [seconds(r, "pyod-matched") / seconds(r, arm) for r in rows]
                lines += ["", f"Fit + scoring, same network sizes, epochs and batch size: {arm} "
                          f"(trained in {rows[0][f'{arm}:time'].get('precision', 'fp32')}) "
                          f"{v:.1f} s, PyOD {p:.1f} s: **{p / v:.2f}x** as fast; per {unit}, "
                          f"median {statistics.median(per):.2f}x (range {min(per):.2f}-"
                          f"{max(per):.2f})."]
        if "floor:time" in rows[0]:
            f = total("floor")
            ours = next((a for a in VAEKIT_ARMS if f"{a}:time" in rows[0]), "vaekit")
            lines += ["", f"The same network, epochs and batch as the shortest PyTorch loop (no "
                      f"framework, default Adam, no flush-to-zero): {f:.1f} s. PyOD takes "
                      f"{p / f:.2f}x that loop's time, {ours} {total(ours) / f:.2f}x: "
                      f"PyOD spends {1 - f / p:.0%} of its time outside that loop's work. "
                      f"2x PyOD's speed would need {p / 2 / f:.2f}x the loop's time, that is less "
                      "arithmetic for the same network, not less overhead."]
    if not tables:
        cols = [k for k in order if k not in VAEKIT_ARMS]
        lines += ["", "## AUROC per class (class c normal, every other class an outlier)", "",
                  "| class | n train | " + " | ".join(label(k, default) for k in cols) + " |",
                  "|---|---|" + "---|" * len(cols)]
        for r in rows:
            lines.append(f"| {r['class']} | {r['n_train']} | "
                         + " | ".join(f"{r[k]['auroc']:.4f}" for k in cols) + " |")
    path_stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="all", choices=["mnist", "digits", "breast-cancer", "all"])
    p.add_argument(
        "--arms",
        default="vaekit,iforest,ocsvm,pca,pyod,pyod-tuned,pyod-matched",
        help="comma-separated: vaekit (defaults), vaekit-fp32, vaekit-bf16, iforest, ocsvm, pca, "
        "pyod, pyod-tuned, pyod-matched, floor (the bare-loop compute floor, images only), "
        "infomax (an encoder-only detector scored by latent-knn)",
    )
    p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    p.add_argument("--rounds", type=int, default=5, help="breast cancer: seeded splits [5]")
    p.add_argument("--epochs", type=int, help="override VAEDetector's default epochs (studies)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--tag", default="", help="suffix of the results files")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    arms = [a for a in args.arms.split(",") if a]
    pyod = pyod_version()
    if pyod is None and any(a.startswith("pyod") for a in arms):
        print("pyod is not installed: skipping the PyOD arms (pip install pyod)", file=sys.stderr)
        arms = [a for a in arms if not a.startswith("pyod")]
    from vaekit.anomaly import VAEDetector
    from vaekit.models import BF16_MIN_WEIGHTS, native_bf16

    d = VAEDetector()
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
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name == "breast-cancer":
            result = breast_cancer(arms, args.rounds, args.epochs)
        else:
            classes = [int(c) for c in args.classes.split(",")]
            result = one_class(name, arms, classes, args.epochs)
        stem = args.out / f"anomaly_{name.replace('-', '_')}{args.tag}"
        write_report(result, dict(meta), stem)
        print(f"wrote {stem}.md / .json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
