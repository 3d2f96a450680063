"""How much the Monte Carlo scores' draws move a detector's ranking: breast cancer (bench_anomaly's
five seeded 80/20 splits, benign as normal), one VAEDetector per split, each Monte Carlo score
computed with five scoring seeds, with common random numbers (the package's: every row uses
the same draws) and with independent draws per row (as before CommonNoise). Reports the mean
AUROC / AP and the standard deviation of the AUROC over scoring seeds (mean over splits).

    .venv/bin/python benchmarks/study_score_noise.py

Writes benchmarks/results/anomaly_score_noise.md.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import average_precision_score, roc_auc_score

from vaekit import VAEDetector, anomaly_scores

ROUNDS, SEEDS = 5, 5
SETTINGS = [("elbo", 10), ("elbo", 30), ("elbo", 100), ("recon-prob", 10), ("recon-prob", 100),
            ("iwae", 100)]
OUT = Path(__file__).resolve().parent / "results" / "anomaly_score_noise.md"


def main() -> None:
    torch.set_num_threads(1)
    d = load_breast_cancer()
    x, is_out = d.data.astype(np.float32), (d.target == 0).astype(int)
    common = anomaly_scores.common_noise

    def independent(model: object, seed: int) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    res: dict[tuple[str, str, int], np.ndarray] = {}
    for r in range(ROUNDS):
        perm = np.random.default_rng(r).permutation(len(x))
        n = int(0.8 * len(x))
        tr, te = perm[:n], perm[n:]
        det = VAEDetector(random_state=r).fit(x[tr][is_out[tr] == 0])
        xt = torch.from_numpy(det.preprocessor_.transform(x[te]))
        for draws, noise in (("common", common), ("independent", independent)):
            anomaly_scores.common_noise = noise
            try:
                for score, n_draws in SETTINGS:
                    for seed in range(SEEDS):
                        s = anomaly_scores.score_samples(
                            det.model_, xt, score, samples=n_draws, seed=seed
                        ).numpy()
                        key = (draws, score, n_draws)
                        row = [roc_auc_score(is_out[te], s), average_precision_score(is_out[te], s)]
                        res[key] = np.vstack([res.get(key, np.empty((0, 2))), row])
            finally:
                anomaly_scores.common_noise = common
    lines = [
        "# Monte Carlo scores: common or independent draws, and how many",
        "",
        f"`python benchmarks/study_score_noise.py` on {datetime.now(timezone.utc):%Y-%m-%d}, "
        f"torch {torch.__version__}, one thread. Breast cancer, {ROUNDS} splits x {SEEDS} scoring "
        "seeds, VAEDetector's defaults for tables.",
        "",
        "| draws | score | L or K | mean AUROC | mean AP | AUROC sd over seeds |",
        "|---|---|---|---|---|---|",
    ]
    for (draws, score, n_draws), v in res.items():
        sd = v[:, 0].reshape(ROUNDS, SEEDS).std(1).mean()
        lines.append(f"| {draws} | {score} | {n_draws} | {v[:, 0].mean():.4f} | "
                     f"{v[:, 1].mean():.4f} | {sd:.4f} |")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
