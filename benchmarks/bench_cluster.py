"""Clustering side by side: k-means on raw pixels, the two-step recipe (a plain VAE, then a
full-covariance Gaussian mixture on its latent means) and vaekit's one-step VAEClusterer.

Every arm sees the same data, without labels; the labels only score (Hungarian accuracy: the
best one-to-one matching of clusters to classes, never majority-label purity; NMI; ARI).
Wall time of each arm is measured in the same process, one thread per process.

    python benchmarks/bench_cluster.py --data digits             # cluster_digits.{md,json}
    python benchmarks/bench_cluster.py --data mnist --infomax     # cluster_mnist_infomax
    python benchmarks/bench_cluster.py --data mnist --seeds 0,1,2 --out-dir /tmp/a   # parts run
    python benchmarks/bench_cluster.py --data mnist --seeds 3,4 --out-dir /tmp/b     # side by
    python benchmarks/bench_cluster.py --merge /tmp/a/cluster_mnist.json /tmp/b/cluster_mnist.json
    python benchmarks/bench_cluster.py --robustness --seeds 0,1,2   # cluster_robustness.{md,json}
    python benchmarks/bench_cluster.py --robustness --report-only   # the table from the rows kept
    python benchmarks/bench_cluster.py --robustness --report-only --rows R --arrays A \
        --name cluster_robustness_pooled --before benchmarks/results/cluster_robustness.json

--robustness: the study of issue 28, point 2 (cluster_sets.py): validation sets beyond MNIST
(the digits, MNIST subsets of 2,000 and 4,000 rows, inverted, rotated and elastically distorted
MNIST-4000; --sets), VAEClusterer with its defaults scored after each stage with label-free
figures beside, against k-means, PCA + GMM and PCA + t-SNE + GMM, and label-free rules for
choosing among its clusterings evaluated offline. Rows are appended to --rows after each set
and seed (a rerun resumes), arrays of each unit go to --arrays: give a fresh --rows and
--arrays for a changed recipe, or its rows mix with the old. --before puts an earlier result
file's vaekit figures and wall times beside these (the first table).

digits: scikit-learn's 1,797 8x8 digits / 16. mnist: the 10,000 MNIST test-set images / 255
(../shared/data/mnist), all of them clustered. Networks: MLP 784-512-256 (64-512-256 on the
digits), latent 10, Bernoulli likelihood, Adam 1e-3, batch 256, for the two-step VAE (50
epochs) and VAEClusterer (its defaults) alike. --infomax runs the encoder-only clusterer,
VAEClusterer(objective="infomax"), alone (results cluster_<data>_infomax).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import common as bc

ARMS = ("kmeans", "twostep", "vaekit")  # and "vaekit-infomax" (encoder only): --infomax
NAMES = {
    "kmeans": "k-means on raw pixels",
    "twostep": "two-step: VAE, then full-covariance GMM on latent means",
    "vaekit": "vaekit VAEClusterer (one-step VaDE)",
    "vaekit-infomax": "vaekit VAEClusterer(objective='infomax'), encoder only",
}


def arm_kmeans(x: np.ndarray, seed: int) -> dict:
    from sklearn.cluster import KMeans

    return {"labels": KMeans(10, n_init=10, random_state=seed).fit_predict(x)}


def arm_twostep(x: np.ndarray, seed: int, epochs: int) -> dict:
    from sklearn.mixture import GaussianMixture

    from vaekit.core import VAE, ModelConfig
    from vaekit.train import TrainConfig, fit

    torch.manual_seed(seed)
    model = VAE.from_config(ModelConfig(event_shape=(x.shape[1],), latent_dim=10))
    xt = torch.from_numpy(x)
    fit(model, xt, None, TrainConfig(epochs=epochs, batch_size=256, seed=seed), progress=False)
    with torch.no_grad():
        z = model.encode(xt)[0].double().numpy()
    gm = GaussianMixture(10, covariance_type="full", random_state=seed).fit(z)
    return {"labels": gm.predict(z)}


def arm_vaekit(x: np.ndarray, y: np.ndarray, seed: int, objective: str = "elbo") -> dict:
    from vaekit.cluster import VAEClusterer, hungarian_accuracy

    est = VAEClusterer(10, random_state=seed, arch="mlp", objective=objective).fit(x)
    restarts = [
        {**r, "hungarian_accuracy": hungarian_accuracy(y, lab)}
        for r, lab in zip(est.init_restarts_, est._init_candidates, strict=True)
    ]
    return {
        "labels": est.labels_,
        "init_accuracy": hungarian_accuracy(y, est.init_labels_),
        "pull_accuracy": hungarian_accuracy(y, est._pull_labels),
        "restarts": restarts,
        "chosen": est.init_chosen_,
        "reseeded": est.reseeded_,
        "n_iter": est.n_iter_,
        "elbo": est.score(x) if est.model_.has_decoder else None,
    }


def run(data: str, seeds: list[int], arms: list[str], epochs: int) -> list[dict]:
    from vaekit.cluster import clustering_scores

    x, y = bc.load_all(data)
    rows = []
    for seed in seeds:
        for arm in arms:
            t0 = time.perf_counter()
            if arm == "kmeans":
                out = arm_kmeans(x, seed)
            elif arm == "twostep":
                out = arm_twostep(x, seed, epochs)
            elif arm == "vaekit-infomax":
                out = arm_vaekit(x, y, seed, "infomax")
            else:
                out = arm_vaekit(x, y, seed)
            seconds = time.perf_counter() - t0
            labels = out.pop("labels")
            row = {"data": data, "arm": arm, "seed": seed, "seconds": seconds,
                   **clustering_scores(y, labels), **out}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "restarts"}), flush=True)
    return rows


def stages(arm: str, rows: list[dict]) -> list[str]:
    """A VAEClusterer arm's accuracy after each stage, and its restarts' criterion."""
    if not rows:
        return []
    from scipy.stats import spearmanr

    lines = ["", f"## Stages of {arm} (Hungarian accuracy per seed)", "",
             "| seed | initial clustering | after pull (q(y|x)) | final q(y|x) | "
             "ELBO (nats) | re-seeded |", "|---|---|---|---|---|---|"]
    for r in rows:
        elbo = "—" if r.get("elbo") is None else f"{r['elbo']:.1f}"
        lines.append(f"| {r['seed']} | {r['init_accuracy']:.3f} | {r['pull_accuracy']:.3f} "
                     f"| {r['hungarian_accuracy']:.3f} | {elbo} | {r['reseeded'] or '-'} |")
    lines += ["", "## Restart criterion (label-free): GMM log-likelihood of the embedding",
              "", "Per seed: the chosen restart's accuracy, the best and the mean accuracy "
              "over restarts, and the Spearman correlation of the criterion with accuracy.",
              "", "| seed | chosen | best | mean | worst | Spearman(ll, acc) | "
              "Spearman(agreement, acc) |", "|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if "restarts" in r):
        acc = np.array([q["hungarian_accuracy"] for q in r["restarts"]])
        ll = np.array([q["log_likelihood"] for q in r["restarts"]])
        ag = np.array([q["agreement"] for q in r["restarts"]])
        rho = spearmanr(ll, acc).statistic if acc.std() > 0 else float("nan")
        rho2 = spearmanr(ag, acc).statistic if acc.std() > 0 else float("nan")
        lines.append(f"| {r['seed']} | {acc[r['chosen']]:.3f} | {acc.max():.3f} | "
                     f"{acc.mean():.3f} | {acc.min():.3f} | {rho:.2f} | {rho2:.2f} |")
    return lines


def summarise(data: str, rows: list[dict]) -> str:
    """The markdown results table and the restart-criterion study."""
    lines = [f"# Clustering: {data}", ""]
    seeds = sorted({r["seed"] for r in rows})
    lines.append(f"Seeds {', '.join(map(str, seeds))}; mean +- std (min) over seeds. Hungarian "
                 "accuracy matches clusters to classes one-to-one; labels only score.")
    lines += ["", "| method | Hungarian accuracy | min | NMI | ARI | wall time (s) |",
              "|---|---|---|---|---|---|"]
    stats = {}
    for arm in (*ARMS, "vaekit-infomax"):
        rs = [r for r in rows if r["arm"] == arm]
        if not rs:
            continue

        def ms(key: str, rs: list[dict] = rs) -> tuple[float, float]:
            v = np.array([r[key] for r in rs], dtype=float)
            return float(v.mean()), float(v.std())

        acc, nmi, ari, sec = ms("hungarian_accuracy"), ms("nmi"), ms("ari"), ms("seconds")
        low = min(r["hungarian_accuracy"] for r in rs)
        stats[arm] = {"acc": acc, "sec": sec, "min": low}
        lines.append(f"| {NAMES[arm]} | {acc[0]:.3f} +- {acc[1]:.3f} | {low:.3f} | "
                     f"{nmi[0]:.3f} +- {nmi[1]:.3f} | {ari[0]:.3f} +- {ari[1]:.3f} | "
                     f"{sec[0]:.0f} +- {sec[1]:.0f} |")
    if "vaekit" in stats and "twostep" in stats:
        ratio = stats["vaekit"]["sec"][0] / stats["twostep"]["sec"][0]
        lines += ["", f"vaekit's total wall time (pretraining, t-SNE, restarts, all stages) is "
                  f"{ratio:.2f}x the two-step baseline's."]
    for arm in ("vaekit", "vaekit-infomax"):
        lines += stages(arm, [r for r in rows if r["arm"] == arm])
    return "\n".join(lines) + "\n"


ROBUST_DIR = Path("/tmp/vaekit_cluster_robustness")


def robustness(a: argparse.Namespace) -> int:
    """The robustness study (cluster_sets.py): run the missing (set, seed) units, then write
    cluster_robustness.{md,json} from every row in --rows."""
    import cluster_sets as cs

    torch.set_num_threads(a.threads)
    if not a.report_only:
        cs.run_study(a.sets.split(","), [int(s) for s in a.seeds.split(",")], a.rows, a.arrays,
                     json.loads(a.vaekit_params))
    rows = cs.read_rows(a.rows)
    command = " ".join(["benchmarks/bench_cluster.py", *sys.argv[1:]])
    before = json.loads(a.before.read_text())["rows"] if a.before else []
    md, data = cs.report(rows, a.arrays, before)
    bc.write_result(a.out_dir / a.name, md, {"command": command, **data})
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["digits", "mnist"], default="digits")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma list from {ARMS}")
    p.add_argument("--infomax", action="store_true",
                   help="the encoder-only clusterer alone (results cluster_DATA_infomax)")
    p.add_argument("--epochs", type=int, default=50, help="two-step VAE epochs [50]")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                   help="merge the rows of these result files (parts of one benchmark run "
                   "side by side, e.g. --seeds 0,1,2 and 3,4) and write the results")
    p.add_argument("--robustness", action="store_true",
                   help="the robustness study over --sets (results cluster_robustness)")
    p.add_argument("--sets", default="digits,mnist2000,rotated,elastic,inverted,mnist4000",
                   help="--robustness: comma list of cluster_sets.SETS")
    p.add_argument("--rows", type=Path, default=ROBUST_DIR / "rows.jsonl",
                   help="--robustness: JSON-lines file the rows are appended to [%(default)s]")
    p.add_argument("--arrays", type=Path, default=ROBUST_DIR / "arrays",
                   help="--robustness: where each unit's labels and codes go [%(default)s]")
    p.add_argument("--vaekit-params", default="{}", metavar="JSON",
                   help="--robustness: a variant, VAEClusterer(**JSON) (no baselines; its rows "
                   "are reported beside the defaults'), e.g. '{\"init_space\": \"input\"}'")
    p.add_argument("--name", default="cluster_robustness",
                   help="--robustness: the result files' stem [%(default)s]")
    p.add_argument("--before", type=Path, metavar="JSON",
                   help="--robustness: an earlier result file (e.g. the study's, "
                   "benchmarks/results/cluster_robustness.json) whose vaekit rows are shown "
                   "beside these")
    p.add_argument("--report-only", action="store_true",
                   help="--robustness: write the results from --rows without running")
    bc.add_out_dir(p)
    a = p.parse_args()
    if a.robustness:
        return robustness(a)
    if a.merge:
        parts = [json.loads(f.read_text()) for f in a.merge]
        rows = [r for part in parts for r in part["rows"]]
        data, name = rows[0]["data"], a.merge[0].stem
        command = "; ".join(part.get("command", "") for part in parts)
    else:
        torch.set_num_threads(a.threads)
        arms = ["vaekit-infomax"] if a.infomax else a.arms.split(",")
        rows = run(a.data, [int(s) for s in a.seeds.split(",")], arms, a.epochs)
        data, name = a.data, f"cluster_{a.data}" + ("_infomax" if a.infomax else "")
        command = " ".join(["benchmarks/bench_cluster.py", *sys.argv[1:]])
    bc.write_result(a.out_dir / name, summarise(data, rows), {"command": command, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
