"""How high does any classical one-class score get on breast cancer? (Issue 9's target is AUROC
0.97.) bench_anomaly.py's protocol: 5 seeded 80/20 splits, the benign training rows as the
normal data, columns standardised on them; mean AUROC and AP over the splits. The last row is
not one-class: "larger values are malignant" is domain knowledge, a reference line.

--transforms repeats a few of the scores after a per-column transform fitted on the benign
training rows (log1p, Yeo-Johnson, quantiles to a normal), then standardising: do skewed
columns made Gaussian separate better?

    .venv/bin/python benchmarks/study_breast_cancer_ceiling.py [--transforms]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import PowerTransformer, QuantileTransformer

Score = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (normal rows, test rows) -> scores
Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def knn(k: int) -> Score:
    return lambda a, b: NearestNeighbors(n_neighbors=k).fit(a).kneighbors(b)[0][:, -1]


def gmm(c: int) -> Score:
    def score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        g = GaussianMixture(c, covariance_type="full", reg_covar=1e-2, random_state=0).fit(a)
        return -g.score_samples(b)

    return score


def pca(k: int, kind: str) -> Score:
    def score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        p = PCA(k).fit(a)
        if kind == "recon":
            return ((b - p.inverse_transform(p.transform(b))) ** 2).sum(1)
        return ((p.transform(b) / np.sqrt(p.explained_variance_)) ** 2).sum(1)

    return score


def iforest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -IsolationForest(random_state=0).fit(a).score_samples(b)


SCORES: dict[str, Score] = {
    **{f"k-NN distance, k={k}": knn(k) for k in (1, 5, 10, 20)},
    **{f"Gaussian mixture, {c} component(s)": gmm(c) for c in (1, 2, 4)},
    **{f"PCA-{k} {kind}": pca(k, kind) for k in (2, 5, 10) for kind in ("recon", "mahalanobis")},
    "squared norm of the standardised row": lambda a, b: (b**2).sum(1),
    "largest |standardised value|": lambda a, b: np.abs(b).max(1),
    "mean standardised value (one-sided: domain knowledge)": lambda a, b: b.mean(1),
}
# the few scores --transforms repeats: the best of each family above, and IsolationForest
TRANSFORMED_SCORES = (
    "k-NN distance, k=10",
    "Gaussian mixture, 1 component(s)",
    "PCA-2 mahalanobis",
    "squared norm of the standardised row",
    "IsolationForest",
    "mean standardised value (one-sided: domain knowledge)",
)


def fitted(make: Callable[[int], object]) -> Transform:
    """A scikit-learn transformer fitted on the normal rows (made for their count)."""

    def transform(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = make(len(a)).fit(a)  # type: ignore[attr-defined]
        return t.transform(a), t.transform(b)  # type: ignore[attr-defined]

    return transform


TRANSFORMS: dict[str, Transform] = {
    "none (standardise only)": lambda a, b: (a, b),
    # every column is >= 0; a test row below 0 cannot occur in this data
    "log1p": lambda a, b: (np.log1p(a), np.log1p(b)),
    "Yeo-Johnson": fitted(lambda n: PowerTransformer(standardize=False)),
    "quantiles to a normal": fitted(
        lambda n: QuantileTransformer(n_quantiles=min(200, n), output_distribution="normal")
    ),
}


def evaluate(scores: dict[str, Score], transform: Transform) -> dict[str, np.ndarray]:
    """Mean (AUROC, AP) over the 5 splits of each score, after `transform` and standardising
    on the benign training rows."""
    d = load_breast_cancer()
    x, y = d.data, (d.target == 0).astype(int)  # 1 = malignant
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in scores}
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(len(x))
        tr, te = perm[: int(0.8 * len(x))], perm[int(0.8 * len(x)) :]
        normal, test = transform(x[tr][y[tr] == 0], x[te])
        mean, std = normal.mean(0), normal.std(0)
        a, b = (normal - mean) / std, (test - mean) / std
        for name, score in scores.items():
            s = score(a, b)
            res[name].append((roc_auc_score(y[te], s), average_precision_score(y[te], s)))
    return {name: np.mean(v, axis=0) for name, v in res.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--transforms", action="store_true",
                   help="also score after per-column transforms of the skewed columns")
    args = p.parse_args()
    for name, m in evaluate(SCORES, TRANSFORMS["none (standardise only)"]).items():
        print(f"{name:55s} AUROC {m[0]:.4f}  AP {m[1]:.4f}")
    if not args.transforms:
        return
    scores = {**SCORES, "IsolationForest": iforest}
    scores = {k: scores[k] for k in TRANSFORMED_SCORES}
    table = {t: evaluate(scores, f) for t, f in TRANSFORMS.items()}
    print("\n| score | " + " | ".join(table) + " |")
    print("|---|" + "---|" * len(table))
    for s in TRANSFORMED_SCORES:
        cells = " | ".join(f"{table[t][s][0]:.3f} / {table[t][s][1]:.3f}" for t in table)
        print(f"| {s} | {cells} |")


if __name__ == "__main__":
    main()
