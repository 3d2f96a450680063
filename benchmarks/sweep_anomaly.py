"""Sweep VAEDetector's settings on the one-class benchmark (bench_anomaly.py's splits and
protocol): mean AUROC per score for each setting, one JSON line per (setting, seed).

A study of the defaults, not a tuning per class: every class gets the same setting. Prints to
stdout; the figures are collected by hand in results/anomaly_sweep.md.

    .venv/bin/python benchmarks/sweep_anomaly.py --data mnist --params '{}' '{"beta": 0.25}'
    .venv/bin/python benchmarks/sweep_anomaly.py --data mnist --seed 1 --params '{}'
    .venv/bin/python benchmarks/sweep_anomaly.py --data breast-cancer --params '{"epochs": 15}'
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from bench_anomaly import image_splits
from vaekit import anomaly
from vaekit.anomaly import VAEDetector

SCORES = ("recon-error", "recon-prob", "elbo")


def scores(det: VAEDetector, x: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    xt = torch.from_numpy(det.preprocessor_.transform(x))
    return {s: anomaly.score_samples(det.model_, xt, s, seed=seed).numpy() for s in SCORES}


def one_class(data: str, params: dict, seed: int) -> dict:
    """Class c normal, every other class an outlier; AUROC per score, mean over classes."""
    xtr, ytr, xte, yte, shape = image_splits(data)
    xte = xte.reshape(-1, *shape)
    auroc: dict[str, list[float]] = {s: [] for s in SCORES}
    for c in range(10):
        det = VAEDetector(random_state=seed, **params).fit(xtr[ytr == c].reshape(-1, *shape))
        for s, v in scores(det, xte, seed).items():
            auroc[s].append(float(roc_auc_score(yte != c, v)))
    return {s: round(float(np.mean(v)), 4) for s, v in auroc.items()} | {
        "per_class_recon_error": [round(a, 4) for a in auroc["recon-error"]]
    }


def breast_cancer(params: dict, rounds: int = 5) -> dict:
    """Benign normal; bench_anomaly's seeded 80/20 splits; mean AUROC and AP per score."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x, is_out = d.data.astype(np.float32), (d.target == 0).astype(int)
    res: dict[str, list[tuple[float, float]]] = {s: [] for s in SCORES}
    for seed in range(rounds):
        perm = np.random.default_rng(seed).permutation(len(x))
        tr, te = perm[: int(0.8 * len(x))], perm[int(0.8 * len(x)) :]
        det = VAEDetector(random_state=seed, **params).fit(x[tr][is_out[tr] == 0])
        for s, v in scores(det, x[te], seed).items():
            res[s].append((roc_auc_score(is_out[te], v), average_precision_score(is_out[te], v)))
    return {s: {"auroc": round(float(np.mean([a for a, _ in v])), 4),
                "ap": round(float(np.mean([p for _, p in v])), 4)} for s, v in res.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=["mnist", "digits", "breast-cancer"], default="mnist")
    p.add_argument("--params", nargs="+", default=["{}"], help="VAEDetector settings, JSON")
    p.add_argument("--seed", type=int, default=0, help="images: the detectors' random_state")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for text in a.params:
        params = json.loads(text)
        t0 = time.perf_counter()
        if a.data == "breast-cancer":
            out = breast_cancer(params)
        else:
            out = one_class(a.data, params, a.seed)
        print(json.dumps({"data": a.data, "params": params, "seed": a.seed,
                          "seconds": round(time.perf_counter() - t0, 1), **out}), flush=True)


if __name__ == "__main__":
    main()
