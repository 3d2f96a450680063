"""How high does any classical one-class score get on breast cancer? (Issue 9's target is AUROC
0.97.) bench_anomaly.py's protocol: 5 seeded 80/20 splits, the benign training rows as the
normal data, columns standardised on them; mean AUROC and AP over the splits. The last row is
not one-class: "larger values are malignant" is domain knowledge, a reference line.

    .venv/bin/python benchmarks/study_breast_cancer_ceiling.py
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

Score = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (normal rows, test rows) -> scores


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


SCORES: dict[str, Score] = {
    **{f"k-NN distance, k={k}": knn(k) for k in (1, 5, 10, 20)},
    **{f"Gaussian mixture, {c} component(s)": gmm(c) for c in (1, 2, 4)},
    **{f"PCA-{k} {kind}": pca(k, kind) for k in (2, 5, 10) for kind in ("recon", "mahalanobis")},
    "squared norm of the standardised row": lambda a, b: (b**2).sum(1),
    "largest |standardised value|": lambda a, b: np.abs(b).max(1),
    "mean standardised value (one-sided: domain knowledge)": lambda a, b: b.mean(1),
}


def main() -> None:
    d = load_breast_cancer()
    x, y = d.data, (d.target == 0).astype(int)  # 1 = malignant
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in SCORES}
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(len(x))
        tr, te = perm[: int(0.8 * len(x))], perm[int(0.8 * len(x)) :]
        normal = x[tr][y[tr] == 0]
        mean, std = normal.mean(0), normal.std(0)
        a, b = (normal - mean) / std, (x[te] - mean) / std
        for name, score in SCORES.items():
            s = score(a, b)
            res[name].append((roc_auc_score(y[te], s), average_precision_score(y[te], s)))
    for name, v in res.items():
        m = np.mean(v, axis=0)
        print(f"{name:55s} AUROC {m[0]:.4f}  AP {m[1]:.4f}")


if __name__ == "__main__":
    main()
