"""The clustering robustness study (issue 28, point 2): validation sets beyond MNIST-10k, the
one-step recipe instrumented stage by stage from the outside, the two-step baselines, and
label-free rules for choosing among the recipe's clusterings, evaluated offline.

Sets (built deterministically; set seed 0, independent of the method's seed):
  digits      scikit-learn's 1,797 8x8 digits / 16
  mnist2000   a stratified, seeded 2,000-row subset of the MNIST test set / 255
  mnist4000   the same for 4,000 rows
  inverted    mnist4000's rows, 1 - x
  rotated     mnist4000's rows, each rotated by an angle uniform in +-45 degrees (bilinear)
  elastic     mnist4000's rows, Simard-style elastic distortion (alpha 34, sigma 4, bilinear)
  mnist10k    all 10,000 MNIST test images (the reference set of cluster_mnist.md)
Rows are flat (n, D) float32 in [0, 1], as bench_cluster.py feeds VAEClusterer (arch "auto"
is then the MLP; a (n, 1, 28, 28) array would select the conv networks).

Per set and seed: VAEClusterer(10, random_state=seed) with its defaults, probed from outside
(`Probe` wraps the estimator's stage functions: the autoencoder's codes, the t-SNE embedding,
a copy of the model after the pull, stage wall times), scored after each stage; label-free
figures of each stage (ELBO, the mixture likelihood of the codes, restart agreement,
partition likelihoods in fixed spaces); and the baselines k-means on pixels (10 inits),
PCA(50) + full-covariance GMM, PCA(50) + t-SNE (vaekit's settings: perplexity 30, PCA init,
500 iterations) + full-covariance GMM. Labels only score; no choice sees them.
"""

from __future__ import annotations

import copy
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

import common as bc

SETS = ("digits", "mnist2000", "mnist4000", "inverted", "rotated", "elastic", "mnist10k")
SET_SEED = 0
K = 10


# ----------------------------------------------------------------------------------- the sets


def stratified(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Row indices of a seeded subset of n rows with the class proportions of y (sorted)."""
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(idx)


def rotated(images: np.ndarray, rng: np.random.Generator, degrees: float = 45.0) -> np.ndarray:
    """Each (H, W) image rotated about its centre by an angle uniform in +-degrees."""
    from scipy.ndimage import rotate

    angles = rng.uniform(-degrees, degrees, len(images))
    out = [rotate(im, a, reshape=False, order=1, mode="constant")
           for im, a in zip(images, angles, strict=True)]
    return np.clip(np.stack(out), 0.0, 1.0)


def elastic(
    images: np.ndarray, rng: np.random.Generator, alpha: float = 34.0, sigma: float = 4.0
) -> np.ndarray:
    """Simard et al. (2003): per image, uniform(-1, 1) displacement fields smoothed by a Gaussian
    of width sigma and scaled by alpha, applied with bilinear interpolation."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    h, w = images.shape[1:]
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.empty_like(images)
    for i, im in enumerate(images):
        dy = gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="constant") * alpha
        dx = gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="constant") * alpha
        out[i] = map_coordinates(im, [rows + dy, cols + dx], order=1, mode="constant")
    return np.clip(out, 0.0, 1.0)


def build(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(x (n, D) float32 in [0, 1], y (n,)) of a validation set, the same on every call."""
    if name == "digits":
        return bc.load_all("digits")
    x, y = bc.load_all("mnist")
    if name == "mnist10k":
        return x, y
    n = 2000 if name == "mnist2000" else 4000
    idx = stratified(y, n, SET_SEED)
    x, y = x[idx], y[idx]
    rng = np.random.default_rng(SET_SEED + 1)
    images = x.reshape(-1, 28, 28)
    if name == "inverted":
        images = 1.0 - images
    elif name == "rotated":
        images = rotated(images, rng)
    elif name == "elastic":
        images = elastic(images, rng)
    elif name not in ("mnist2000", "mnist4000"):
        raise ValueError(f"unknown set {name!r}; sets: {', '.join(SETS)}")
    return np.ascontiguousarray(images.reshape(len(y), -1), dtype=np.float32), y


# ------------------------------------------------------------------------ label-free figures


def partition_ll(z: np.ndarray, labels: np.ndarray) -> float:
    """Mean log-likelihood of the points z (n, d) under the mixture a hard partition defines:
    per cluster the full-covariance Gaussian of its points (ridge 1e-3 of the mean variance),
    weighted by its share. Compares partitions of the same points in one space."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    ridge = 1e-3 * float(z.var(0).mean()) * np.eye(z.shape[1])
    parts = []
    for c in np.unique(labels):
        zc = z[labels == c]
        cov = (np.cov(zc.T) if len(zc) > 1 else 0.0) + ridge
        mvn = multivariate_normal(zc.mean(0), cov, allow_singular=True)
        parts.append(np.log(len(zc) / len(z)) + mvn.logpdf(z))
    return float(logsumexp(np.stack(parts), axis=0).mean())


def silhouette(z: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return -1.0
    return float(silhouette_score(z, labels, sample_size=min(2000, len(z)), random_state=0))


def mean_ari(a: np.ndarray, others: list[np.ndarray]) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(np.mean([adjusted_rand_score(a, b) for b in others]))


def pairwise_ari(labelings: list[np.ndarray]) -> float:
    """Mean ARI over all pairs: the stability of a set of restarts."""
    from sklearn.metrics import adjusted_rand_score

    n = len(labelings)
    pairs = [adjusted_rand_score(labelings[i], labelings[j]) for i in range(n)
             for j in range(i + 1, n)]
    return float(np.mean(pairs))


@torch.no_grad()
def model_figures(model: Any, xt: torch.Tensor, beta: float) -> dict[str, Any]:
    """A clustering VAE's label-free figures on xt: ELBO (beta 1; 5 seeded posterior draws per
    example, as VAEClusterer.score), its rate and distortion, the joint stage's objective at
    `beta`, the mean log-density of the code means under the model's own mixture, the mean
    max q(y|x); with the codes and q(y|x)'s argmax."""
    from vaekit.cluster.recipe import codes, responsibilities

    model.eval()
    dist = rate = 0.0
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for b in xt.split(1024):
            loss = model.elbo(b, samples=5)
            dist += float(loss.distortion) * len(b)
            rate += float(loss.rate) * len(b)
    dist, rate = dist / len(xt), rate / len(xt)
    z, _ = codes(model, xt)
    resp = responsibilities(model, xt).numpy()
    code_ll = float(model.prior.log_prob(torch.from_numpy(z).float()).mean())
    return {"elbo": -(dist + rate), "rate": rate, "distortion": dist,
            "objective": dist + beta * rate, "code_ll": code_ll,
            "confidence": float(resp.max(1).mean()),
            "_codes": z, "_labels": resp.argmax(1)}


# ------------------------------------------------------------------------ the probed estimator


@contextmanager
def probe(store: dict[str, Any]):
    """Wrap VAEClusterer's stage functions (module attributes of vaekit.cluster.estimator and
    recipe.embed) to record, without changing them: the autoencoder's code means, the t-SNE
    embedding, a copy of the model after the pull, and the time each stage starts and ends."""
    import vaekit.cluster.estimator as est_mod
    import vaekit.cluster.recipe as recipe

    saved = (est_mod.initial_stage, est_mod.joint_stage, recipe.embed)

    def initial_stage(ae, x, *a, **kw):
        store["t_init0"] = time.perf_counter()
        init, z, z_var = saved[0](ae, x, *a, **kw)
        store["t_init1"], store["ae_codes"] = time.perf_counter(), z
        return init, z, z_var

    def joint_stage(model, *a, **kw):
        store["t_joint0"], store["pulled"] = time.perf_counter(), copy.deepcopy(model)
        out = saved[1](model, *a, **kw)
        store["t_joint1"] = time.perf_counter()
        return out

    def embed(z, method, seed):
        store["embedding"] = e = saved[2](z, method, seed)
        return e

    est_mod.initial_stage, est_mod.joint_stage, recipe.embed = initial_stage, joint_stage, embed
    try:
        yield store
    finally:
        est_mod.initial_stage, est_mod.joint_stage, recipe.embed = saved


def fit_vaekit(x: np.ndarray, seed: int, params: dict) -> tuple[Any, dict[str, Any]]:
    """VAEClusterer(10, random_state=seed, **params) (params {}: the defaults), fitted under
    `probe`; stage times."""
    from vaekit.cluster import VAEClusterer

    store: dict[str, Any] = {}
    with probe(store):
        t0, c0 = time.perf_counter(), time.process_time()
        est = VAEClusterer(K, random_state=seed, **params).fit(x)
        t1, c1 = time.perf_counter(), time.process_time()
    store["times"] = {
        "total": t1 - t0, "cpu": c1 - c0,
        "pretrain": store["t_init0"] - t0, "initial": store["t_init1"] - store["t_init0"],
        "pull": store["t_joint0"] - store["t_init1"],
        "joint": store["t_joint1"] - store["t_joint0"],
    }
    return est, store


def vaekit_unit(
    x: np.ndarray, y: np.ndarray, seed: int, pca: np.ndarray, params: dict
) -> tuple[dict, dict]:
    """One vaekit fit: accuracy per stage and the label-free figures; (row, arrays to keep)."""
    from vaekit.cluster import clustering_scores, hungarian_accuracy

    est, store = fit_vaekit(x, seed, params)
    xt = torch.from_numpy(est._to_model(x.reshape(len(x), *est._event_shape)))
    beta = est._joint_beta()
    pulled = model_figures(store["pulled"], xt, beta)
    final = model_figures(est.model_, xt, beta)
    labels = {"init": est.init_labels_, "pull": est._pull_labels, "final": est.labels_}
    spaces = {"ae": store["ae_codes"], "pulled": pulled.pop("_codes"),
              "final": final.pop("_codes"), "pca": pca}
    pulled.pop("_labels"), final.pop("_labels")
    cands = est._init_candidates
    stages = {}
    for name, lab in labels.items():
        stages[name] = {
            **clustering_scores(y, lab),
            **{f"ll_{s}": partition_ll(z, lab) for s, z in spaces.items()},
            **{f"sil_{s}": silhouette(z, lab) for s, z in spaces.items() if s != "pca"},
            "agreement_restarts": mean_ari(lab, cands),
            "min_size": int(np.bincount(lab, minlength=K).min()),
        }
    embs = getattr(est, "_init_embeddings", {})  # per space (older code: none recorded)
    emb = embs.get("codes", store["embedding"])
    restarts = [{**r, "hungarian_accuracy": hungarian_accuracy(y, lab),
                 "sil_emb": silhouette(embs.get(r.get("space"), emb), lab),
                 "ll_ae": partition_ll(spaces["ae"], lab)}
                for r, lab in zip(est.init_restarts_, cands, strict=True)]
    row = {"stages": stages, "pulled_model": pulled, "final_model": final,
           "restarts": restarts, "chosen": int(est.init_chosen_),
           "restart_stability": pairwise_ari(cands), "reseeded": list(est.reseeded_),
           "n_iter": int(est.n_iter_), "times": store["times"],
           "init_space": est._init_space(est._event_shape),
           "final_agreement": float(getattr(est, "final_agreement_", float("nan")))}
    keep = {f"labels_{k}": v for k, v in labels.items()}
    keep.update({f"codes_{k}": v.astype(np.float32) for k, v in spaces.items() if k != "pca"})
    keep["embedding"], keep["candidates"] = emb.astype(np.float32), np.stack(cands)
    keep.update({f"embedding_{k}": v.astype(np.float32) for k, v in embs.items()})
    return row, keep


def baselines_unit(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[dict, dict, np.ndarray]:
    """k-means on pixels, PCA(50) + GMM, PCA(50) + t-SNE + GMM (one GMM fit each, seeded), and
    vaekit's own initial clustering (10 restarts, highest likelihood) on that t-SNE of the
    pixels, for comparison with its t-SNE of the codes; (row, arrays to keep, PCA codes)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    from vaekit.cluster import clustering_scores, hungarian_accuracy
    from vaekit.cluster.recipe import embed, initial_clustering

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    lab = KMeans(K, n_init=10, random_state=seed).fit_predict(x)
    t1 = time.perf_counter()
    out["kmeans"] = {"seconds": t1 - t0, **clustering_scores(y, lab)}
    pca = PCA(min(50, x.shape[1]), random_state=seed).fit_transform(x)
    t2 = time.perf_counter()
    lab = GaussianMixture(K, covariance_type="full", random_state=seed).fit(pca).predict(pca)
    t3 = time.perf_counter()
    out["pca_gmm"] = {"seconds": t3 - t1, **clustering_scores(y, lab)}
    emb = embed(pca, "tsne", seed)
    e = (emb - emb.mean(0)) / emb.std(0)
    lab = GaussianMixture(K, covariance_type="full", random_state=seed).fit(e).predict(e)
    seconds = (t2 - t1) + time.perf_counter() - t3  # its PCA, t-SNE and GMM
    out["pca_tsne_gmm"] = {"seconds": seconds, **clustering_scores(y, lab)}
    init = initial_clustering(emb, K, method="gmm", n_init=10, seed=seed)
    out["pixel_init"] = {
        **clustering_scores(y, init.labels), "chosen": int(init.chosen),
        "stability": pairwise_ari(init.candidates),
        "restarts": [{**r, "hungarian_accuracy": hungarian_accuracy(y, c)}
                     for r, c in zip(init.restarts, init.candidates, strict=True)],
    }
    keep = {"pixel_embedding": emb.astype(np.float32), "pixel_init": init.labels}
    return out, keep, pca


# ------------------------------------------------------------------------------- the study


def run_study(
    sets: list[str], seeds: list[int], out: Path, art: Path | None, params: dict | None = None
) -> list[dict]:
    """Every (set, seed) unit not yet in OUT (a JSON-lines file, appended after each unit, so
    an interrupted study resumes); arrays of each unit into ART (`array_path`). params: given
    to VAEClusterer (a variant: no baselines, its rows carry the params)."""
    params = params or {}
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["set"], r["seed"], tag(r.get("params"))) for r in read_rows(out)}
    built: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for seed in seeds:  # every set at one seed before the next seed: partial results span sets
        for name in sets:
            if (name, seed, tag(params)) in done:
                continue
            x, y = built[name] = built.get(name) or build(name)
            row = study_unit(name, x, y, seed, art, params)
            with out.open("a") as fh:
                fh.write(json.dumps(row, default=float) + "\n")
    return read_rows(out)


def tag(params: dict | None) -> str:
    """'' for the defaults, else '_key-value...' (array file names, resume keys)."""
    return "".join(f"_{k}-{v}" for k, v in sorted((params or {}).items()))


def array_path(art: Path, row: dict) -> Path:
    return art / f"{row['set']}_s{row['seed']}{tag(row.get('params'))}.npz"


def study_unit(
    name: str, x: np.ndarray, y: np.ndarray, seed: int, art: Path | None, params: dict
) -> dict:
    """The baselines (not for a variant) and the probed vaekit fit on one set at one seed: the
    row to record."""
    from sklearn.decomposition import PCA

    import vaekit

    if params:
        base, keep_b = None, {}
        pca = PCA(min(50, x.shape[1]), random_state=seed).fit_transform(x)
    else:
        base, keep_b, pca = baselines_unit(x, y, seed)
    row, keep_v = vaekit_unit(x, y, seed, pca, params)
    row = {"set": name, "seed": seed, "n": len(y), "params": params, "baselines": base, **row,
           "vaekit_source": str(Path(vaekit.__file__).parent)}
    if art is not None:
        art.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(array_path(art, row), y=y, **keep_b, **keep_v)
    s = row["stages"]
    print(f"{name} seed {seed}: init {s['init']['hungarian_accuracy']:.3f} pull "
          f"{s['pull']['hungarian_accuracy']:.3f} final {s['final']['hungarian_accuracy']:.3f}"
          " | " + " ".join(f"{k} {v['hungarian_accuracy']:.3f}" for k, v in (base or {}).items())
          + f" | vaekit {row['times']['total']:.0f} s", flush=True)
    return row


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]



# ------------------------------------------------------------------------------- the report

BASELINES = {"kmeans": "k-means (pixels)", "pca_gmm": "PCA(50) + GMM",
             "pca_tsne_gmm": "PCA(50) + t-SNE + GMM"}
STAGES = {"init": "initial (t-SNE + GMM)", "pull": "after pull", "final": "final"}


def acc(row: dict, stage: str) -> float:
    return row["stages"][stage]["hungarian_accuracy"]


def ms(values: list[float], digits: int = 3) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"


def extras(row: dict, arrays: Path) -> dict[str, float]:
    """Label-free figures computed afterwards from a unit's arrays: the partitions of the
    initial clustering on the codes, on the pixels' t-SNE, and the final one, compared in the
    pixels' PCA(50) space and the autoencoder's code space (likelihood, silhouette)."""
    from sklearn.decomposition import PCA

    path = array_path(arrays, row)
    if row.get("params") or not path.is_file():
        return {}
    f = np.load(path)
    x, _ = build(row["set"])
    pca = PCA(min(50, x.shape[1]), random_state=row["seed"]).fit_transform(x)
    out = {}
    for name, lab in (("init", f["labels_init"]), ("pixel", f["pixel_init"]),
                      ("final", f["labels_final"])):
        out[f"{name}_ll_pca"] = partition_ll(pca, lab)
        out[f"{name}_sil_pca"] = silhouette(pca, lab)
        out[f"{name}_ll_ae"] = partition_ll(f["codes_ae"], lab)
    out.update(pixel_restarts(f, row["seed"]))
    return out


def pixel_restarts(f: Any, seed: int) -> dict[str, float]:
    """The pixels' t-SNE restarts again (the same seeded GMM fits as `baselines_unit`): the
    accuracy of the restart with the highest silhouette in the embedding, and of the one that
    agrees most with the others."""
    from vaekit.cluster import hungarian_accuracy
    from vaekit.cluster.recipe import initial_clustering

    emb = f["pixel_embedding"].astype(np.float64)
    init = initial_clustering(emb, K, method="gmm", n_init=10, seed=seed)
    e = (emb - emb.mean(0)) / (emb.std(0) + 1e-12)
    sil = [silhouette(e, c) for c in init.candidates]
    agree = [r["agreement"] for r in init.restarts]
    pooled = [*f["candidates"], *init.candidates]  # the codes' restarts, then the pixels'
    consensus = [mean_ari(c, pooled[:i] + pooled[i + 1:]) for i, c in enumerate(pooled)]
    best = int(np.argmax(consensus))
    return {"pixel_by_sil": hungarian_accuracy(f["y"], init.candidates[int(np.argmax(sil))]),
            "pixel_by_agreement": hungarian_accuracy(f["y"],
                                                     init.candidates[int(np.argmax(agree))]),
            "pooled_by_agreement": hungarian_accuracy(f["y"], pooled[best]),
            "pooled_picks_pixels": float(best >= len(f["candidates"]))}


def rank_sum(restarts: list[dict]) -> float:
    """The accuracy of the restart with the highest sum of its ranks by likelihood of the
    embedding and by agreement with the other restarts (no parameter to tune)."""
    ll = np.argsort(np.argsort([q["log_likelihood"] for q in restarts]))
    ag = np.argsort(np.argsort([q["agreement"] for q in restarts]))
    return restarts[int(np.argmax(ll + ag))]["hungarian_accuracy"]


def top_likely(restarts: list[dict], n: int = 3) -> float:
    """The accuracy of the most agreeing restart among the n most likely ones."""
    top = sorted(restarts, key=lambda q: -q["log_likelihood"])[:n]
    return max(top, key=lambda q: q["agreement"])["hungarian_accuracy"]


def pick(a: float, b: float, take_a: bool) -> float:
    return a if take_a else b


def rules() -> dict[str, Any]:
    """Label-free rules, each row -> the Hungarian accuracy of the clustering it would return.
    'oracle' rows use the labels (an upper bound, not a rule)."""
    def keep_init(key: str) -> Any:
        return lambda r: pick(acc(r, "init"), acc(r, "final"),
                              r["stages"]["init"][key] > r["stages"]["final"][key])

    def init_or_pixel(key: str, then_final: bool) -> Any:
        def rule(r: dict) -> float:
            e = r["extras"]
            ours = acc(r, "final") if then_final else acc(r, "init")
            return pick(r["baselines"]["pixel_init"]["hungarian_accuracy"], ours,
                        e[f"pixel_{key}"] > e[f"init_{key}"])
        return rule

    def by_stability(then_final: bool) -> Any:
        return lambda r: pick(r["baselines"]["pixel_init"]["hungarian_accuracy"],
                              acc(r, "final") if then_final else acc(r, "init"),
                              r["baselines"]["pixel_init"]["stability"] > r["restart_stability"])

    out: dict[str, Any] = {
        "today: final q(y|x)": lambda r: acc(r, "final"),
        "oracle: best of initial / pull / final": lambda r: max(acc(r, s) for s in STAGES),
        "initial clustering always": lambda r: acc(r, "init"),
        "keep the pulled model if its ELBO is higher than the final's": lambda r: pick(
            acc(r, "pull"), acc(r, "final"), r["pulled_model"]["elbo"] > r["final_model"]["elbo"]),
        "keep the pulled model if its beta-5 objective is lower": lambda r: pick(
            acc(r, "pull"), acc(r, "final"),
            r["pulled_model"]["objective"] < r["final_model"]["objective"]),
        "keep initial if restart agreement higher": lambda r: pick(
            acc(r, "init"), acc(r, "final"),
            r["restarts"][r["chosen"]]["agreement"] > r["stages"]["final"]["agreement_restarts"]),
    }
    for key, text in (("ll_ae", "mixture likelihood of the autoencoder's codes"),
                      ("ll_final", "mixture likelihood of the final codes"),
                      ("ll_pulled", "mixture likelihood of the pulled codes"),
                      ("ll_pca", "mixture likelihood of the pixels' PCA(50)"),
                      ("sil_ae", "silhouette in the autoencoder's codes"),
                      ("sil_final", "silhouette in the final codes")):
        out[f"keep initial if its {text} is higher"] = keep_init(key)
    out["restart choice: best restart's accuracy (oracle)"] = lambda r: max(
        q["hungarian_accuracy"] for q in r["restarts"])
    out["restart choice: by agreement instead of likelihood"] = lambda r: max(
        r["restarts"], key=lambda q: q["agreement"])["hungarian_accuracy"]
    out["restart choice: by silhouette in the t-SNE embedding"] = lambda r: max(
        r["restarts"], key=lambda q: q["sil_emb"])["hungarian_accuracy"]
    out["restart choice: rank sum of likelihood and agreement"] = lambda r: rank_sum(
        r["restarts"])
    out["restart choice: most agreeing of the 3 most likely"] = lambda r: top_likely(
        r["restarts"])
    out["restart choice: by mixture likelihood of the autoencoder's codes"] = lambda r: max(
        r["restarts"], key=lambda q: q["ll_ae"])["hungarian_accuracy"]
    out["pixels' t-SNE, restart by silhouette (initial only)"] = lambda r: r["extras"][
        "pixel_by_sil"]
    out["pixels' t-SNE, restart by agreement (initial only)"] = lambda r: r["extras"][
        "pixel_by_agreement"]
    out["pixels' t-SNE, restart by rank sum (initial only)"] = lambda r: rank_sum(
        r["baselines"]["pixel_init"]["restarts"])
    out["both t-SNEs' 20 restarts pooled, by agreement (initial only)"] = lambda r: r[
        "extras"]["pooled_by_agreement"]
    out["init on pixels' t-SNE always (initial only)"] = lambda r: r["baselines"][
        "pixel_init"]["hungarian_accuracy"]
    for then_final, what in ((False, "initial"), (True, "final")):
        out[f"pixels' init vs codes' {what}, by restart stability"] = by_stability(then_final)
        for key, text in (("ll_pca", "PCA(50) likelihood"), ("sil_pca", "PCA(50) silhouette"),
                          ("ll_ae", "code-space likelihood")):
            out[f"pixels' init vs codes' {what}, by {text}"] = init_or_pixel(key, then_final)
    return out


def seed_choice(rows: list[dict], arrays: Path, m: int) -> dict[str, float]:
    """Whole fits as restarts: over every m-subset of a set's seeds, the accuracy of the fit
    chosen by its final ELBO, by consensus (mean ARI of its final labels with the others'), and
    the subset's mean (no choice). Costs m fits."""
    from itertools import combinations

    out: dict[str, list[float]] = {"elbo": [], "consensus": [], "mean": []}
    finals = {}
    for r in rows:
        path = array_path(arrays, r)
        if path.is_file():
            finals[r["seed"]] = np.load(path)["labels_final"]
    rows = [r for r in rows if r["seed"] in finals]
    for sub in combinations(rows, m):
        accs = [acc(r, "final") for r in sub]
        out["mean"].append(float(np.mean(accs)))
        out["elbo"].append(accs[int(np.argmax([r["final_model"]["elbo"] for r in sub]))])
        cons = [mean_ari(finals[r["seed"]], [finals[q["seed"]] for q in sub if q is not r])
                for r in sub]
        out["consensus"].append(accs[int(np.argmax(cons))])
    return {k: float(np.mean(v)) for k, v in out.items() if v}


def by_set(rows: list[dict]) -> dict[str, list[dict]]:
    order = {s: i for i, s in enumerate(SETS)}
    out: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (order.get(r["set"], 99), r["seed"])):
        out.setdefault(r["set"], []).append(r)
    return out


def main_table(groups: dict[str, list[dict]]) -> tuple[list[str], dict]:
    """Per set: the baselines and vaekit after each stage, mean ± std over seeds, wall time."""
    lines = ["| set | n | seeds | " + " | ".join(BASELINES.values()) + " | "
             + " | ".join(f"vaekit {v}" for v in STAGES.values())
             + " | final ≥ best baseline? | vaekit s | PCA+t-SNE+GMM s |",
             "|---" * (9 + len(BASELINES)) + "|"]
    summary = {}
    for name, rs in groups.items():
        base = {b: [r["baselines"][b]["hungarian_accuracy"] for r in rs] for b in BASELINES}
        stage = {s: [acc(r, s) for r in rs] for s in STAGES}
        best = max(float(np.mean(v)) for v in base.values())
        final = float(np.mean(stage["final"]))
        summary[name] = {"seeds": [r["seed"] for r in rs], "best_baseline": best,
                         **{b: float(np.mean(v)) for b, v in base.items()},
                         **{f"vaekit_{s}": float(np.mean(v)) for s, v in stage.items()},
                         "vaekit_seconds": float(np.mean([r["times"]["total"] for r in rs]))}
        lines.append(
            f"| {name} | {rs[0]['n']} | {len(rs)} | " + " | ".join(ms(v) for v in base.values())
            + " | " + " | ".join(ms(v) for v in stage.values())
            + f" | {'yes' if final >= best else 'no'} ({final - best:+.3f}) | "
            + f"{ms([r['times']['total'] for r in rs], 0)} | "
            + f"{ms([r['baselines']['pca_tsne_gmm']['seconds'] for r in rs], 0)} |")
    return lines, summary


def stage_table(groups: dict[str, list[dict]]) -> list[str]:
    """Where accuracy is won or lost, per set (means over seeds)."""
    lines = ["| set | codes' init: chosen | best restart | mean restart | restart stability "
             "| pixels' init | its stability | pull − initial | final − pull | ELBO pulled "
             "| ELBO final | re-seeded runs |", "|---" * 12 + "|"]
    for name, rs in groups.items():
        def m(f: Any, rs: list[dict] = rs) -> float:
            return float(np.mean([f(r) for r in rs]))

        px = [r["baselines"]["pixel_init"] for r in rs]
        lines.append(
            f"| {name} | {m(lambda r: acc(r, 'init')):.3f} | "
            f"{m(lambda r: max(q['hungarian_accuracy'] for q in r['restarts'])):.3f} | "
            f"{m(lambda r: np.mean([q['hungarian_accuracy'] for q in r['restarts']])):.3f} | "
            f"{m(lambda r: r['restart_stability']):.2f} | "
            f"{np.mean([p['hungarian_accuracy'] for p in px]):.3f} | "
            f"{np.mean([p['stability'] for p in px]):.2f} | "
            f"{m(lambda r: acc(r, 'pull') - acc(r, 'init')):+.3f} | "
            f"{m(lambda r: acc(r, 'final') - acc(r, 'pull')):+.3f} | "
            f"{m(lambda r: r['pulled_model']['elbo']):.1f} | "
            f"{m(lambda r: r['final_model']['elbo']):.1f} | "
            f"{sum(bool(r['reseeded']) for r in rs)}/{len(rs)} |")
    return lines


def rules_table(groups: dict[str, list[dict]], summary: dict) -> tuple[list[str], dict]:
    """Each rule's mean accuracy per set; sets where it reaches the best baseline's mean."""
    names = list(groups)
    lines = ["| rule | " + " | ".join(names) + " | mean | sets ≥ best baseline |",
             "|---" * (len(names) + 3) + "|",
             "| best two-step baseline (mean) | "
             + " | ".join(f"{summary[n]['best_baseline']:.3f}" for n in names) + " | "
             + f"{np.mean([summary[n]['best_baseline'] for n in names]):.3f} | |"]
    out = {}
    for rule, f in rules().items():
        try:
            means = [float(np.mean([f(r) for r in groups[n]])) for n in names]
        except (KeyError, TypeError):  # a figure these rows lack (a variant: no baselines)
            continue
        hits = sum(v >= summary[n]["best_baseline"] for v, n in zip(means, names, strict=True))
        out[rule] = dict(zip(names, means, strict=True))
        lines.append(f"| {rule} | " + " | ".join(f"{v:.3f}" for v in means)
                     + f" | {np.mean(means):.3f} | {hits}/{len(names)} |")
    return lines, out


def time_table(groups: dict[str, list[dict]]) -> list[str]:
    keys = ("pretrain", "initial", "pull", "joint", "total", "cpu")
    lines = ["| set | " + " | ".join(f"{k} s" for k in keys)
             + " | k-means s | PCA+GMM s | PCA+t-SNE+GMM s |", "|---" * (len(keys) + 4) + "|"]
    for name, rs in groups.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{np.mean([r['times'][k] for r in rs]):.0f}" for k in keys) + " | " + " | ".join(
            f"{np.mean([r['baselines'][b]['seconds'] for r in rs]):.1f}" for b in BASELINES)
            + " |")
    return lines


def variant_table(variants: list[dict], groups: dict[str, list[dict]], summary: dict) -> list[str]:
    """Variants (VAEClusterer(**params)) beside the defaults on the same sets and seeds."""
    lines = ["| variant | set | seeds | initial | after pull | final | defaults' final, same "
             "seeds | best baseline | vaekit s |", "|---" * 9 + "|"]
    keyed: dict[tuple[str, str], list[dict]] = {}
    for r in variants:
        keyed.setdefault((json.dumps(r["params"], sort_keys=True), r["set"]), []).append(r)
    for (params, name), rs in sorted(keyed.items(), key=lambda kv: SETS.index(kv[0][1])):
        seeds = {r["seed"] for r in rs}
        same = [acc(r, "final") for r in groups.get(name, []) if r["seed"] in seeds]
        lines.append(f"| `{params}` | {name} | {len(rs)} | "
                     + " | ".join(ms([acc(r, st) for r in rs]) for st in STAGES)
                     + f" | {ms(same) if same else '—'} | "
                     + (f"{summary[name]['best_baseline']:.3f}" if name in summary else "—")
                     + f" | {ms([r['times']['total'] for r in rs], 0)} |")
    return lines


def variant_rules(variants: list[dict], summary: dict) -> list[str]:
    """The rules that need no baselines, on the rows of each variant run with 3 seeds or more."""
    lines = []
    for params in sorted({json.dumps(r["params"], sort_keys=True) for r in variants}):
        rs = [r for r in variants if json.dumps(r["params"], sort_keys=True) == params]
        if max(len(g) for g in by_set(rs).values()) < 3:
            continue
        for r in rs:
            r.setdefault("extras", {})
        table, _ = rules_table(by_set(rs), summary)
        lines += ["", f"Label-free rules on the rows of `{params}`:", "", *table]
    return lines


def before_table(groups: dict[str, list[dict]], before: list[dict]) -> list[str]:
    """The issue's table: per set, vaekit's final clustering against the three baselines and
    against the rows of an earlier recipe (`before`, e.g. the study's), mean ± std over seeds,
    with vaekit's wall time beside the earlier one."""
    old = by_set([r for r in before if not r.get("params")])
    lines = ["| set | seeds | " + " | ".join(BASELINES.values()) + " | vaekit | vaekit − best "
             "baseline | before: vaekit (seeds) | vaekit s | before: vaekit s |",
             "|---" * 10 + "|"]
    for name, rs in groups.items():
        base = {b: [r["baselines"][b]["hungarian_accuracy"] for r in rs] for b in BASELINES}
        best = max(float(np.mean(v)) for v in base.values())
        final = [acc(r, "final") for r in rs]
        prev = old.get(name, [])
        prev_acc = f"{ms([acc(r, 'final') for r in prev])} ({len(prev)})" if prev else "—"
        prev_s = ms([r["times"]["total"] for r in prev], 0) if prev else "—"
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(ms(v) for v in base.values())
                     + f" | **{ms(final)}** | {np.mean(final) - best:+.3f} | {prev_acc} | "
                     + f"{ms([r['times']['total'] for r in rs], 0)} | {prev_s} |")
    return lines


def choice_table(groups: dict[str, list[dict]]) -> list[str]:
    """The label-free choices: which feature space the chosen restart came from, its
    agreement with the other restarts against the final clustering's, and what the rule "keep
    the initial clustering unless the final agrees more with the restarts" would give."""
    lines = ["| set | chosen restart from codes / input | initial | final | final − initial | "
             "agreement: initial | agreement: final | runs final agrees more | rule: keep "
             "initial unless final agrees more |", "|---" * 9 + "|"]
    for name, rs in groups.items():
        spaces = [r["restarts"][r["chosen"]].get("space", "?") for r in rs]
        a_init = [r["restarts"][r["chosen"]]["agreement"] for r in rs]
        a_final = [r["stages"]["final"]["agreement_restarts"] for r in rs]
        ruled = [acc(r, "final") if f > i else acc(r, "init")
                 for r, i, f in zip(rs, a_init, a_final, strict=True)]
        lines.append(
            f"| {name} | {spaces.count('codes')} / {spaces.count('input')} | "
            f"{ms([acc(r, 'init') for r in rs])} | {ms([acc(r, 'final') for r in rs])} | "
            f"{np.mean([acc(r, 'final') - acc(r, 'init') for r in rs]):+.3f} | "
            f"{np.mean(a_init):.3f} | {np.mean(a_final):.3f} | "
            f"{sum(f > i for i, f in zip(a_init, a_final, strict=True))}/{len(rs)} | "
            f"{ms(ruled)} |")
    return lines


def report(rows: list[dict], arrays: Path, before: list[dict] | None = None) -> tuple[str, dict]:
    """The markdown tables and the JSON summary of the robustness study."""
    variants = [r for r in rows if r.get("params")]
    rows = [r for r in rows if not r.get("params")]
    cache_path = arrays / "extras.json"  # extras are slow (PCA, GMM refits): kept per unit
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    for r in rows:
        key = array_path(arrays, r).name
        if key not in cache or "pooled_by_agreement" not in cache[key]:
            cache[key] = extras(r, arrays)
        r["extras"] = cache[key]
    if arrays.is_dir():
        cache_path.write_text(json.dumps(cache, indent=1))
    groups = by_set(rows)
    table, summary = main_table(groups)
    rule_lines, rule_means = rules_table(groups, summary)
    seeds = {n: {m: seed_choice(rs, arrays, m) for m in (2, 3) if len(rs) >= m + 1}
             for n, rs in groups.items()}
    seed_lines = ["| set | fits per choice | mean of the fits | chosen by final ELBO "
                  "| chosen by consensus |", "|---|---|---|---|---|"]
    for n, d in seeds.items():
        for m, v in d.items():
            if v:
                seed_lines.append(f"| {n} | {m} | {v['mean']:.3f} | {v['elbo']:.3f} | "
                                  f"{v['consensus']:.3f} |")
    sources = sorted({r.get("vaekit_source", "?") for r in rows})
    md = "\n".join([
        "# Clustering robustness (issue 28, point 2)", "",
        "Hungarian accuracy, mean ± std over the seeds run; labels only score. "
        "VAEClusterer(10, random_state=seed) with its defaults on flat rows (MLP networks); "
        f"vaekit from {', '.join(sources)}. The best two-step baseline of a set: the highest "
        "mean of its three baselines.", "", *before_table(groups, before or []), "",
        "## Label-free choices of the recipe", "", *choice_table(groups), "",
        "## Each stage", "", *table, "",
        "## Where accuracy is won or lost (means over seeds)", "",
        "codes' init: vaekit's initial clustering (t-SNE of the autoencoder's codes, 10 GMM "
        "restarts, the most likely chosen); pixels' init: the same choice on the baseline's "
        "t-SNE of PCA(50) of the pixels; stability: mean ARI between the 10 restarts.", "",
        *stage_table(groups), "",
        "## Label-free rules, evaluated offline (mean accuracy per set)", "", *rule_lines, "",
        "The pooled rule took a restart of the pixels' t-SNE in: " + ", ".join(
            f"{n} {sum(r['extras'].get('pooled_picks_pixels', 0) for r in rs):.0f}/{len(rs)}"
            for n, rs in groups.items()) + " runs.", "",
        "## Whole fits as restarts (mean over every subset of the seeds run)", "", *seed_lines,
        "", "## Variants of the recipe (existing parameters), same seeds", "",
        *variant_table(variants, groups, summary), *variant_rules(variants, summary),
        "", "## Wall time per stage (s, means; shared 2-core machine, one thread)", "",
        *time_table(groups), ""])
    for r in rows:
        r.pop("extras", None) if not r["extras"] else None
    data = {"summary": summary, "rules": rule_means, "seed_choice": seeds, "rows": rows + variants}
    return md, rounded(data)


def rounded(obj: Any) -> Any:
    """Floats to 5 significant digits, for a readable result file."""
    if isinstance(obj, float):
        return float(f"{obj:.5g}")
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rounded(v) for v in obj]
    return obj
