"""The recipe of the clustering VAE (`vaekit.cluster.VAEClusterer`): one named helper per stage,
and the scores of a clustering against labels. The stages, in the order the estimator runs
them, and why each is there (all on by default; figures for each: the docs' clustering
benchmark page):
1. `pretrain`: the same networks trained as an autoencoder (a VAE with beta = 0 through
   `vaekit.train.fit`: the rate is not penalised, so the posterior variance shrinks to the
   floor and the codes are an autoencoder's), for at least PRETRAIN_STEPS optimizer steps:
   on small sets a shorter autoencoder gives codes that cluster worse.
2. `initial_clustering`: a 2-D t-SNE of each feature space and `n_init` full-covariance
   Gaussian-mixture restarts on each embedding. What t-SNE sees (`init_space`): the
   autoencoder's codes, the inputs themselves (PCA to 50 dimensions when wider,
   `input_features`), or both ("pooled", the default for inputs wider than
   AUTO_INPUT_FEATURES; small inputs such as the 8x8 digits cluster best as they are).
   The winner is chosen without labels, by stability: the restart with the highest mean
   adjusted Rand index against all the other restarts (`agreement`). The likelihood of the
   embedding cannot choose (t-SNE clusters are not Gaussian: restarts that split one cluster
   and merge two others differ by thousandths of a nat); with two embeddings pooled, only a
   partition that both views reproduce agrees with many restarts. t-SNE is initialisation
   only, never the prediction: a GMM on the codes themselves starts worse.
3. `init_prior` + `pull`: the mixture prior is set to the per-cluster moments of the codes (the
   variance floor adds the encoder's mean posterior variance, so unused latent dimensions do
   not get tiny prior variances: the cause of collapse into one cluster), then the clustering
   VAE is trained with those initial labels *observed* (KL to p(z|y) for the given y, beta
   `pull_beta`): the latent space is pulled into one Gaussian per initial cluster, so that
   q(y|x) starts out agreeing with the initial clustering. The mixture is then set again to
   the moments of the pulled codes (the M-step in closed form).
4. `joint`: the VaDE objective (`vaekit.cluster.estimator`), y inferred, at a fifth of the
   learning rate (a good start drifts at the full rate) and with the rate weighted as in the
   pull (`joint_beta`): the KL terms keep each code in its cluster's Gaussian, where at beta 1
   the reconstruction pulls codes across cluster borders (hence the defaults pull_beta 10,
   joint_beta 5).
5. `reseed_empty`: a cluster that q(y|x) leaves (near) empty is re-seeded from half of the
   largest cluster, and the joint stage continues (`joint_stage`).
6. The final clustering is q(y|x)'s argmax, so that `labels_` is what `predict` gives. Its
   stability against the initial restarts (`agreement` of the final labels) is recorded
   beside the chosen restart's, the label-free figure by which the initial clustering
   could be preferred (measured on the docs' clustering benchmark page, not used to
   override q(y|x)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vaekit.core.model import VAE
from vaekit.train import distributed
from vaekit.train.config import TrainConfig
from vaekit.train.stages import (  # re-exported: the recipe's names
    AUTO_INPUT_FEATURES,
    blocks,  # noqa: F401
    codes,
    input_features,
    mixture_moments,
    responsibilities,
    stage_epochs,  # noqa: F401
    train_stage,
    with_changes,
)

# --- scores ------------------------------------------------------------------------------------


def hungarian_accuracy(y_true: Any, y_pred: Any) -> float:
    """Accuracy under the best one-to-one matching of clusters to classes (Hungarian
    algorithm), in [0, 1]. Not majority-label purity: two clusters cannot both count as one
    class."""
    from scipy.optimize import linear_sum_assignment

    t = np.unique(np.asarray(y_true), return_inverse=True)[1]
    p = np.unique(np.asarray(y_pred), return_inverse=True)[1]
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} entries, y_pred {len(p)}")
    w = np.zeros((p.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(w, (p, t), 1)
    rows, cols = linear_sum_assignment(-w)
    return float(w[rows, cols].sum() / len(t))


def clustering_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """{'hungarian_accuracy', 'nmi', 'ari'} of a clustering against known labels."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {
        "hungarian_accuracy": hungarian_accuracy(y_true, y_pred),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
    }


# --- the recipe --------------------------------------------------------------------------------


@dataclass
class InitResult:
    """The initial clustering: labels (n,) int64, one record per restart (its feature space,
    criteria, smallest cluster), the chosen restart's index, every restart's labels ((n,)
    each) and each feature space's embedding ((n, 2) for t-SNE)."""

    labels: np.ndarray
    restarts: list[dict[str, Any]]
    chosen: int
    candidates: list[np.ndarray]
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)


def pretrain(
    model: VAE, x: torch.Tensor, cfg: TrainConfig, verbose: bool = False, device: str = "cpu"
) -> None:
    """Train `model` (a VAE with the normal prior) as an autoencoder, in place: beta = 0 through
    `vaekit.train.fit`. x: (n, *event_shape)."""
    train_stage(model, x, with_changes(cfg, beta=0.0), verbose, device)


# 500 iterations: as accurate as 1000, in half the time (figures: the docs' clustering
# benchmark page).
TSNE_ITERATIONS = 500


def embed(z: np.ndarray, method: str, seed: int) -> np.ndarray:
    """The space the initial clustering runs in: 'tsne' (2-D t-SNE of z; for fewer than 16
    points z itself) or 'gmm' (z itself). z: (n, features)."""
    if method == "gmm" or len(z) < 16:
        return z
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, (len(z) - 1) / 3))
    tsne = TSNE(2, perplexity=perplexity, init="pca", max_iter=TSNE_ITERATIONS, random_state=seed)
    return tsne.fit_transform(z)


def agreement(labels: np.ndarray, others: list[np.ndarray]) -> float:
    """Mean adjusted Rand index of a partition (n,) against other partitions of the same points
    (1.0 when there are none): how well the others reproduce it."""
    from sklearn.metrics import adjusted_rand_score

    return float(np.mean([adjusted_rand_score(labels, o) for o in others])) if others else 1.0


def initial_clustering(
    features: np.ndarray | dict[str, np.ndarray],
    k: int,
    *,
    method: str = "tsne",
    n_init: int = 10,
    seed: int = 0,
) -> InitResult:
    """k clusters from `n_init` full-covariance GMM restarts on `embed` of each feature space
    (features: (n, d) array, or {space name: (n, d_space)} to pool the restarts of several
    spaces of the same n points). The winner is chosen without labels: the restart with the
    highest `agreement` with all the other restarts, pooled over spaces (restarts that left a
    cluster empty only as last resorts; the embedding's log-likelihood breaks ties)."""
    from sklearn.mixture import GaussianMixture

    spaces = features if isinstance(features, dict) else {"features": features}
    embeddings, records, labels = {}, [], []
    for space, z in spaces.items():
        e = embeddings[space] = embed(z, method, seed)
        e = (e - e.mean(0)) / (e.std(0) + 1e-12)  # GMM's reg_covar is absolute: unit scale
        for r in range(n_init):
            gm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed + r)
            labels.append(gm.fit(e).predict(e))
            sizes = np.bincount(labels[-1], minlength=k)
            records.append({"space": space, "log_likelihood": float(gm.score(e)),
                            "min_cluster_size": int(sizes.min())})
    for r, rec in enumerate(records):
        rec["agreement"] = agreement(labels[r], labels[:r] + labels[r + 1:])
    chosen = max(
        range(len(records)),
        key=lambda r: (records[r]["min_cluster_size"] > 0, records[r]["agreement"],
                       records[r]["log_likelihood"]),
    )
    return InitResult(labels[chosen].astype(np.int64), records, chosen, labels, embeddings)


def init_prior(model: VAE, z: np.ndarray, z_var: np.ndarray, labels: np.ndarray) -> None:
    """Set the clustering prior of `model` from the per-cluster moments of the codes."""
    means, variances, weights = mixture_moments(z, z_var, labels, model.config.num_classes)
    model.prior.set_mixture(means, variances, weights)


def pull(
    model: VAE,
    x: torch.Tensor,
    labels: np.ndarray,
    cfg: TrainConfig,
    verbose: bool = False,
    device: str = "cpu",
) -> None:
    """Train the clustering VAE with the initial labels observed (KL(q(z|x) || p(z|y)) for the
    given y), in place: each initial cluster becomes one Gaussian of the latent space."""
    train_stage(model, x, cfg, verbose, device, labels)


def joint(
    model: VAE, x: torch.Tensor, cfg: TrainConfig, verbose: bool = False, device: str = "cpu"
) -> None:
    """Train the clustering VAE on its own objective (y inferred), in place."""
    train_stage(model, x, cfg, verbose, device)


@torch.no_grad()
def reseed_empty(model: VAE, x: torch.Tensor, min_size: int) -> list[int]:
    """Re-seed every cluster that q(y|x) gives fewer than `min_size` points: it takes over
    the half of the largest cluster farther from that cluster's mean along its widest latent
    dimension (the two halves' moments become the two components). Returns the re-seeded
    clusters."""
    prior = model.prior
    k = model.config.num_classes
    reseeded = []
    for _ in range(k):
        assign = responsibilities(model, x).argmax(1).numpy()
        sizes = np.bincount(assign, minlength=k)
        empty = [c for c in range(k) if sizes[c] < min_size and c not in reseeded]
        big = int(sizes.argmax())
        if not empty or sizes[big] < 2 * max(min_size, 1):
            break
        c = empty[0]
        z, z_var = codes(model, x)
        zb = z[assign == big]
        dim = int(zb.var(0).argmax())
        side = zb[:, dim] > np.median(zb[:, dim])
        floor = z_var.mean(0) + 1e-3 * z.var(0) + 1e-8
        weights = torch.softmax(prior.logits, -1)
        weights[c] = weights[big] = weights[big] / 2  # the big cluster's weight, shared
        for comp, part in ((big, zb[~side]), (c, zb[side])):
            prior.means[comp] = torch.as_tensor(part.mean(0), dtype=prior.means.dtype)
            prior.logvars[comp] = torch.as_tensor(
                np.log(part.var(0) + floor), dtype=prior.logvars.dtype
            )
        prior.logits.copy_(weights.log())
        reseeded.append(c)
    return reseeded


def small_clusters_message(labels: np.ndarray, k: int) -> str | None:
    """One line when the final clustering leaves clusters empty or tiny (under a tenth of the
    mean size n / k), with the likely fix; None when every cluster holds its share."""
    sizes = np.bincount(labels, minlength=k)
    small = int((sizes < 0.1 * len(labels) / k).sum())
    if not small:
        return None
    empty = int((sizes == 0).sum())
    return (
        f"{small} of {k} clusters are empty or tiny ({empty} empty; smallest sizes "
        f"{sorted(sizes.tolist())[:3]}) after training: train longer (epochs, --epochs) or ask "
        "for fewer clusters (n_clusters, --k)"
    )


# --- the stages as the estimator chains them ------------------------------------------------


def initial_stage(
    ae: VAE, x: torch.Tensor, k: int, space: str, *, method: str, n_init: int, seed: int
) -> tuple[InitResult, np.ndarray, np.ndarray]:
    """(k initial clusters, the autoencoder's code means and variances, each (n, latent)): the
    `initial_clustering` of the codes (space "codes"), of the inputs (`input_features`,
    "input") or of both pooled ("pooled"), the same on every torchrun rank."""
    z, z_var = codes(ae, x)
    features = {}
    if space in ("codes", "pooled"):
        features["codes"] = z
    if space in ("input", "pooled"):
        features["input"] = input_features(x.numpy(), seed)
    init = initial_clustering(features, k, method=method, n_init=n_init, seed=seed)
    # under torchrun every rank computes it; all take rank 0's (t-SNE may differ by machine)
    init.labels = distributed.current().from_main(torch.from_numpy(init.labels)).numpy()
    return init, z, z_var


def pull_stage(
    model: VAE,
    ae: VAE,
    x: torch.Tensor,
    labels: np.ndarray,
    ae_codes: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig | None,
    verbose: bool = False,
    device: str = "cpu",
) -> None:
    """In place: the clustering VAE `model` takes the autoencoder's networks, its mixture is set
    from the initial clusters `labels` (`init_prior`; ae_codes: the codes' means and
    variances), it is trained with them observed (`pull`; cfg None: not trained) and the
    mixture is set again from the pulled codes."""
    model.encoder.load_state_dict(ae.encoder.state_dict())
    for part in ("decoder", "critic"):  # the decoder of a VAE, the critic of an encoder-only
        if getattr(ae, part) is not None:
            getattr(model, part).load_state_dict(getattr(ae, part).state_dict())
    init_prior(model, *ae_codes, labels)
    if cfg is not None:
        pull(model, x, labels, cfg, verbose, device)
        init_prior(model, *codes(model, x), labels)


def joint_stage(
    model: VAE,
    x: torch.Tensor,
    cfg: TrainConfig | None,
    min_size: int,
    verbose: bool = False,
    device: str = "cpu",
) -> tuple[int, list[int]]:
    """`joint` (cfg None: not trained), then clusters that q(y|x) gives fewer than `min_size`
    points re-seeded (`reseed_empty`) and left to settle for half as long, twice at most; then
    a last re-seed of empty clusters. Returns (epochs trained, the re-seeded clusters)."""
    epochs, reseeded = 0, []
    if cfg is not None:
        joint(model, x, cfg, verbose, device)
        epochs += cfg.epochs
        settle = with_changes(cfg, epochs=max(1, cfg.epochs // 2))
        for _ in range(2):  # re-seed emptied clusters and let them settle, twice at most
            found = reseed_empty(model, x, min_size)
            if not found:
                break
            reseeded += found
            joint(model, x, settle, device=device)
            epochs += settle.epochs
    # A last re-seed without training after it (it cannot help a model whose codes
    # carry no cluster structure at all).
    reseeded += reseed_empty(model, x, 1)
    return epochs, reseeded


# Training lengths when left to the estimator: at least this many optimizer steps (and the
# epoch counts below), so small data sets get as many updates as MNIST-sized ones: 2,000
# pretraining steps (MNIST-10k's 50 epochs; fewer leave the codes of small sets worse for the
# initial clustering); 1,600 pull steps (a longer pull keeps more of the initial clustering
# on every validation set). The joint stage drifts from a good start, so its floor is short.
PRETRAIN_STEPS, PULL_STEPS, JOINT_STEPS = 2000, 1600, 80
# An initial clustering on the inputs alone leaves the autoencoder only the networks and the
# prior's moments to start: a quarter-length pretraining (at least 25 epochs) does as well.
INPUT_PRETRAIN_STEPS = 200


def resolve_space(init_space: str, n_features: int) -> str:
    """The initial clustering's feature space: init_space, with "auto" resolved ("input" up to
    AUTO_INPUT_FEATURES features, else "pooled")."""
    if init_space == "auto":
        return "input" if n_features <= AUTO_INPUT_FEATURES else "pooled"
    return init_space
