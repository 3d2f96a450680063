"""The width of smooth-error's window (issue 9): one-class AUROC of the squared error of the
Gaussian-smoothed residual, for several widths, from one fitted default detector per class.

Two protocols, bench_anomaly.py's splits:
  test: train on class c of the training split, score the test split (the benchmark's own);
  val:  train on class c of the first 60% of the training split, score the other 40% of the
        training split (all classes): chooses the width without looking at the test split.
Width 0 is recon-error. Prints one JSON line per setting; the figures are collected in
results/anomaly_smoothing.md.

    .venv/bin/python benchmarks/study_anomaly_smoothing.py --protocol val
    .venv/bin/python benchmarks/study_anomaly_smoothing.py --protocol test --seed 1
    .venv/bin/python benchmarks/study_anomaly_smoothing.py --data digits --widths 0,0.29,0.5,1
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from bench_anomaly import image_splits
from vaekit.anomaly import VAEDetector
from vaekit.anomaly_scores import gaussian_smooth


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", choices=["mnist", "digits"], default="mnist")
    p.add_argument("--protocol", choices=["test", "val"], default="test")
    p.add_argument("--widths", default="0,0.5,0.75,1,1.25,1.5,2", help="pixels, comma-separated")
    p.add_argument("--params", default="{}", help="VAEDetector parameters as JSON")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    widths = [float(w) for w in args.widths.split(",")]
    xtr, ytr, xte, yte, shape = image_splits(args.data)
    if args.protocol == "val":
        cut = int(0.6 * len(xtr))
        xtr, ytr, xte, yte = xtr[:cut], ytr[:cut], xtr[cut:], ytr[cut:]
    auroc: dict[float, list[float]] = {w: [] for w in widths}
    t0 = time.perf_counter()
    for c in range(10):
        det = VAEDetector(random_state=args.seed, **json.loads(args.params))
        det.fit(xtr[ytr == c].reshape(-1, *shape))
        images = xte.reshape(-1, *shape)  # in [0, 1]: the model's own space
        residual = torch.from_numpy(images - det.reconstruct(images))
        for w in widths:
            s = gaussian_smooth(residual, (w, w)).pow(2).flatten(1).sum(1)
            auroc[w].append(float(roc_auc_score(yte != c, s.numpy())))
    print(json.dumps({
        "data": args.data, "protocol": args.protocol, "seed": args.seed, "params": args.params,
        "mean_auroc": {f"{w:g}": round(float(np.mean(a)), 4) for w, a in auroc.items()},
        "per_class": {f"{w:g}": [round(x, 4) for x in a] for w, a in auroc.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
