"""One-step clustering with a Gaussian-mixture VAE (VaDE, Jiang et al. 2017), as a scikit-learn
estimator: `VAEClusterer`.

The model is the ordinary `vaekit.core.model.VAE` with the clustering prior (`prior="cluster"`,
`vaekit.core.priors.ClassGaussian`): p(y) = Cat(pi), p(z|y) = N(mu_y, diag sigma_y^2), p(x|z)
the decoder. y is inferred: q(y|x) are the responsibilities of the whole posterior q(z|x) under
the mixture, and the training objective is

    ELBO(x) = E_q[log p(x|z)] - E_q(y|x)[KL(q(z|x) || p(z|y))] - KL(q(y|x) || p(y)),

derived in `ClassGaussian`'s docstring and checked against a Monte-Carlo estimate in
tests/test_cluster.py. Predictions are argmax_y q(y|x); nothing else assigns clusters.

How it is trained, and why each stage is there: the recipe, `vaekit.cluster.recipe` (pretrain
as an autoencoder, initial clusters from t-SNE + GMM, the mixture prior pulled onto them, the
joint VaDE objective, re-seeding of emptied clusters).

Shapes: X is (n, D) tables or (n, H, W) / (n, C, H, W) images; codes (n, latent). What the
estimator accepts: `vaekit.cluster.inputs`; its file: `vaekit.cluster.persist`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin

from vaekit.cluster.inputs import check_params, validate
from vaekit.cluster.persist import load_clusterer, save_clusterer
from vaekit.cluster.recipe import (  # the stages and scores, re-exported here
    INPUT_PRETRAIN_STEPS,
    JOINT_STEPS,
    PRETRAIN_STEPS,
    PULL_STEPS,
    InitResult,
    agreement,
    clustering_scores,
    codes,
    embed,
    hungarian_accuracy,
    init_prior,
    initial_clustering,
    initial_stage,
    joint,
    joint_stage,
    mixture_moments,
    pretrain,
    pull,
    pull_stage,
    reseed_empty,
    resolve_space,
    responsibilities,
    small_clusters_message,
    stage_epochs,
    with_changes,
)
from vaekit.core.config import ModelConfig
from vaekit.core.model import VAE
from vaekit.train.config import TrainConfig
from vaekit.train.stages import resolve_arch

__all__ = [
    "EXPECTED_FAILED_CHECKS",
    "InitResult",
    "VAEClusterer",
    "clustering_scores",
    "codes",
    "embed",
    "hungarian_accuracy",
    "init_prior",
    "initial_clustering",
    "joint",
    "mixture_moments",
    "pretrain",
    "pull",
    "reseed_empty",
    "responsibilities",
]

# scikit-learn's checks that VAEClusterer fails by design (pass this as check_estimator's
# `expected_failed_checks`): each assigns n_clusters=1 itself before fitting (scikit-learn gives
# an estimator no way to choose a check's parameters), and one cluster is refused.
ONE_CLUSTER = "sets n_clusters=1, which VAEClusterer refuses: one cluster is no clustering"
EXPECTED_FAILED_CHECKS = {
    "check_dont_overwrite_parameters": ONE_CLUSTER,
    "check_fit2d_predict1d": ONE_CLUSTER,
    "check_methods_subset_invariance": ONE_CLUSTER,
    "check_fit2d_1feature": ONE_CLUSTER,
}


# --- the estimator -----------------------------------------------------------------------------


class VAEClusterer(ClusterMixin, TransformerMixin, BaseEstimator):
    """Clustering with a Gaussian-mixture VAE, one model that clusters and generates.

    fit(X) trains the model (the recipe of `vaekit.cluster.recipe`) and sets `labels_`;
    predict(X) = argmax q(y|x); predict_proba(X) = q(y|x); transform(X) = latent means;
    sample(n, cluster) generates; score(X) = mean ELBO in nats (in the model's data units:
    standardised for tables). get_params / set_params / sklearn.base.clone work.

    X: (n, D) tables or (n, H, W) / (n, C, H, W) images as a NumPy array or torch tensor
    (or a DataFrame); uint8 arrays are divided by 255. Data in [0, 1] get a Bernoulli
    likelihood; other data are standardised
    per feature (fitted on X) and get a Gaussian likelihood with unit sigma.

    Parameters
    n_clusters: K >= 2, an integer no larger than the number of samples.
    latent_dim, hidden, arch, conv_channels, image_shape: the networks. arch "auto" is "conv"
        for images of at least 16x16 pixels and "mlp" otherwise; image_shape ((H, W) or
        (C, H, W)) reads flat rows as images.
    pretrain_epochs, pull_epochs, epochs: the three training stages (autoencoder; initial
        labels observed; joint VaDE). None: at least 50 / 20 / 10 epochs and 2,000 / 1,600 /
        80 optimizer steps, so small data sets still get enough updates (`stage_lengths`;
        shorter pretraining when the initial clustering runs on the inputs alone).
    init: "tsne" (2-D t-SNE, then a full-covariance GMM) or "gmm" (a GMM on the features
        directly). init_space: "codes", "input" (PCA to 50 dimensions when wider), "pooled"
        (the restarts of both) or "auto" ("input" up to 256 features, else "pooled").
        n_init: GMM restarts per space; the winner agrees most (mean ARI) with the others
        (`init_restarts_` records each restart's space and criteria).
    pull_beta: weight of the KL term while the initial labels are observed; joint_beta: its
        weight in the joint stage (None: pull_beta).
    batch_size, lr: Adam through vaekit.train.fit; joint_lr: the joint stage's rate (None:
        lr / 5).
    min_cluster_size: a cluster that q(y|x) gives fewer points is re-seeded (None: 1% of n/K,
        at least 1).
    objective: "elbo" (the VAE: the recipe) or "infomax": the same stages with an
        encoder-only model (`vaekit.core.critic`: the prior term of each stage kept, the decoder's
        reconstruction replaced by a mutual-information estimate), for features and clusters
        without a decoder; `sample` (it decodes) then refuses in one line, and `score` gives
        the infomax objective instead of the ELBO.
    random_state: int or None; seeds the networks, t-SNE, the GMM and training.
    device: where the three training stages run ("auto": a CUDA GPU, else MPS, else the CPU);
        the fitted model is kept on the CPU, where predict, transform and sample run.

    Fitted attributes: labels_ (n,), weights_ (K,), means_ (K, latent), covariances_ (K,
    latent) diagonal variances of p(z|y), n_iter_ (epochs trained, all stages), model_ (the
    VAE), init_restarts_ (per-restart criteria of the initial clustering), init_chosen_,
    init_labels_ (the initial clustering of the training rows), final_agreement_ (mean ARI
    of labels_ with the initial restarts; where it is below the chosen restart's agreement,
    init_labels_ is the more stable partition of the training rows), reseeded_ (clusters
    re-seeded), n_features_in_. labels_ is always argmax q(y|x), as predict gives it.

    predict, predict_proba and transform evaluate fixed-shape blocks (`recipe.blocks`): a row's
    answer does not depend on the rows it is given with, to the last bit.

    scikit-learn's check_estimator passes except for the checks in `EXPECTED_FAILED_CHECKS`
    (pass it as check_estimator's `expected_failed_checks`, scikit-learn's own mechanism since
    1.6; its tags have no field for this): check_dont_overwrite_parameters,
    check_fit2d_predict1d, check_methods_subset_invariance and check_fit2d_1feature set
    n_clusters=1, which this estimator refuses (one cluster is no clustering). The properties
    they check hold with n_clusters=2 (tests/cluster/test_cluster.py runs them so).
    """

    def __init__(
        self,
        n_clusters: int = 10,
        *,
        latent_dim: int = 10,
        hidden: tuple[int, ...] = (512, 256),
        arch: str = "auto",
        conv_channels: tuple[int, ...] = (32, 64),
        image_shape: tuple[int, ...] | None = None,
        pretrain_epochs: int | None = None,
        init: str = "tsne",
        init_space: str = "auto",
        n_init: int = 10,
        pull_epochs: int | None = None,
        pull_beta: float = 10.0,
        epochs: int | None = None,
        joint_beta: float | None = 5.0,
        batch_size: int = 256,
        lr: float = 1e-3,
        joint_lr: float | None = None,
        min_cluster_size: int | None = None,
        objective: str = "elbo",
        random_state: int | None = None,
        verbose: bool = False,
        device: str = "auto",
    ):
        self.n_clusters = n_clusters
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.arch = arch
        self.conv_channels = conv_channels
        self.image_shape = image_shape
        self.pretrain_epochs = pretrain_epochs
        self.init = init
        self.init_space = init_space
        self.n_init = n_init
        self.pull_epochs = pull_epochs
        self.pull_beta = pull_beta
        self.epochs = epochs
        self.joint_beta = joint_beta
        self.batch_size = batch_size
        self.lr = lr
        self.joint_lr = joint_lr
        self.min_cluster_size = min_cluster_size
        self.objective = objective
        self.random_state = random_state
        self.verbose = verbose
        self.device = device

    # --- fitting ------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> VAEClusterer:
        """Train on X; y is ignored (unsupervised). The stages of `vaekit.cluster.recipe`, in
        order: pretrain, initial clustering, pull, joint (with re-seeding)."""
        from sklearn.utils import check_random_state

        x = self._checked_data(X)
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        xt, networks = self._model_space(x)
        batch = int(min(self.batch_size, len(x)))
        space = self._init_space(networks["event_shape"])
        pre_epochs, pull_epochs, joint_epochs = self.stage_lengths(space, math.ceil(len(x) / batch))
        train = TrainConfig(
            epochs=1, batch_size=batch, lr=float(self.lr), seed=seed, objective=self.objective
        )
        torch.manual_seed(seed)
        ae = VAE.from_config(ModelConfig(**networks))
        if pre_epochs > 0:
            pretrain(ae, xt, with_changes(train, epochs=pre_epochs), self.verbose, self.device)
        k = self.n_clusters
        init, z, z_var = initial_stage(
            ae, xt, k, space, method=self.init, n_init=int(self.n_init), seed=seed
        )
        model = VAE.from_config(ModelConfig(**networks, prior="cluster", num_classes=k))
        pull_cfg = None
        if pull_epochs > 0:
            pull_cfg = with_changes(train, epochs=pull_epochs, beta=float(self.pull_beta))
        pull_stage(model, ae, xt, init.labels, (z, z_var), pull_cfg, self.verbose, self.device)
        self._pull_labels = responsibilities(model, xt).argmax(1).numpy()  # for studies
        joint_trained, self.reseeded_ = joint_stage(
            model, xt, self._joint_config(train, joint_epochs), self._min_size(len(x)),
            self.verbose, self.device,
        )
        self._set_fitted(model, xt, init, pre_epochs + pull_epochs + joint_trained)
        if (message := small_clusters_message(self.labels_, k)) is not None:
            warnings.warn(message, stacklevel=2)
        return self

    def _checked_data(self, X: Any) -> np.ndarray:
        """X validated, then the parameters, then n_clusters against the number of samples.
        Data first: scikit-learn's checks expect its messages for 1-D or one-sample X."""
        x = self._validate(X, reset=True)
        n = len(x)
        if n < 2:
            raise ValueError(f"clustering needs at least 2 samples, got {n} sample")
        self._check_params()
        k = self.n_clusters
        if k > n:
            raise ValueError(
                f"n_clusters={k} is larger than the number of samples ({n}); "
                "give more data or fewer clusters"
            )
        return x

    def _model_space(self, x: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        """(x in model space, the networks' config for it). Data in [0, 1] keep their units and
        get a Bernoulli likelihood; others are standardised per feature (sets _shift, _scale)
        and get a Gaussian one."""
        event_shape = tuple(int(s) for s in x.shape[1:])
        bernoulli = bool(x.min() >= 0 and x.max() <= 1)
        if bernoulli:
            self._shift, self._scale = np.zeros(1, np.float32), np.ones(1, np.float32)
        else:
            self._shift = x.mean(0, keepdims=True)[0].astype(np.float32)
            self._scale = (x.std(0, keepdims=True)[0] + 1e-6).astype(np.float32)
        xt = torch.from_numpy(self._to_model(x))
        arch = resolve_arch(self.arch, event_shape)
        networks = dict(
            event_shape=event_shape,
            latent_dim=int(self.latent_dim),
            arch=arch,
            hidden=tuple(int(h) for h in self.hidden),
            conv_channels=tuple(int(c) for c in self.conv_channels),
            likelihood="bernoulli" if bernoulli else "gaussian",
            decoder=self.objective != "infomax",
            # without the encoder-only model's input augmentation: it helps linear features
            # but not these (figures: the docs' infomax benchmark page)
            augment="off",
        )
        return xt, networks

    def _init_space(self, event_shape: tuple[int, ...]) -> str:
        """Where the initial clustering runs: init_space, "auto" resolved (`resolve_space`)."""
        return resolve_space(self.init_space, math.prod(event_shape))

    def _joint_config(self, train: TrainConfig, epochs: int) -> TrainConfig | None:
        """The joint stage's training (None for 0 epochs): at joint_lr, by default a fifth of lr
        (joint training drifts away from a good start), and joint_beta."""
        if epochs <= 0:
            return None
        lr = float(self.joint_lr if self.joint_lr is not None else self.lr / 5)
        return with_changes(train, epochs=epochs, lr=lr, beta=self._joint_beta())

    def _min_size(self, n: int) -> int:
        """Clusters given fewer points are re-seeded: min_cluster_size, or 1% of n/K (>= 1)."""
        if self.min_cluster_size is not None:
            return self.min_cluster_size
        return max(1, int(0.01 * n / self.n_clusters))

    def _set_fitted(self, model: VAE, xt: torch.Tensor, init: InitResult, n_iter: int) -> None:
        self.model_ = model.eval()
        self.init_restarts_ = init.restarts
        self.init_chosen_ = init.chosen
        self.init_labels_ = init.labels
        self._init_candidates, self._init_embeddings = init.candidates, init.embeddings
        self.n_iter_ = n_iter
        self._set_mixture_attributes()
        self.labels_ = self._proba_model(xt).argmax(1)
        # the final clustering's stability, beside init_restarts_[init_chosen_]["agreement"]
        self.final_agreement_ = agreement(self.labels_, init.candidates)

    def stage_lengths(self, space: str, steps: int) -> tuple[int, int, int]:
        """Epochs of (pretraining, pull, joint) for `steps` optimizer steps per epoch, where the
        initial clustering runs in `space`: the parameters as given, or (None) at least
        50 / 20 / 10 epochs and PRETRAIN_STEPS / PULL_STEPS / JOINT_STEPS steps; on the inputs
        alone ("input") the autoencoder only starts the networks and the prior's moments,
        and at least 25 epochs and INPUT_PRETRAIN_STEPS do as well."""
        if space == "input":
            pre = stage_epochs(self.pretrain_epochs, INPUT_PRETRAIN_STEPS, 25, steps)
        else:
            pre = stage_epochs(self.pretrain_epochs, PRETRAIN_STEPS, 50, steps)
        pull = stage_epochs(self.pull_epochs, PULL_STEPS, 20, steps)
        return pre, pull, stage_epochs(self.epochs, JOINT_STEPS, 10, steps)

    def _joint_beta(self) -> float:
        """The joint stage's KL weight: joint_beta, or pull_beta where it is None."""
        return float(self.pull_beta if self.joint_beta is None else self.joint_beta)

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> np.ndarray:
        """fit(X) and return labels_."""
        return self.fit(X, y).labels_

    def _set_mixture_attributes(self) -> None:
        prior = self.model_.prior
        with torch.no_grad():
            self.weights_ = torch.softmax(prior.logits, -1).double().numpy()
            self.means_ = prior.means.double().numpy().copy()
            self.covariances_ = prior._logvars().exp().double().numpy()

    def _check_params(self) -> None:
        check_params(self)

    # --- data ---------------------------------------------------------------------------------

    def _validate(self, X: Any, reset: bool) -> np.ndarray:
        """X -> float32 (n, *event_shape); one-line ValueError for what cannot be used."""
        return validate(self, X, reset)

    def _to_model(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        return ((flat - self._shift) / self._scale).astype(np.float32).reshape(x.shape)

    def _prepare(self, X: Any) -> torch.Tensor:
        """New data -> model-space tensor, checked against the fit."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        xt = torch.from_numpy(self._to_model(self._validate(X, reset=False)))
        if self.model_.likelihood is not None:  # an encoder-only model has no support to check
            try:
                self.model_.likelihood.check_support(xt)
            except ValueError as e:
                raise ValueError(f"X: {e}") from None
        return xt

    # --- results ------------------------------------------------------------------------------

    def _proba_model(self, xt: torch.Tensor) -> np.ndarray:
        # fixed-shape blocks: a row's prediction does not depend on the rows predicted with it
        p = responsibilities(self.model_, xt, fixed=True).numpy()
        return p / p.sum(1, keepdims=True)  # float64 rows summing to 1 to rounding

    def predict_proba(self, X: Any) -> np.ndarray:
        """q(y|x): (n, K) float64, rows summing to 1."""
        return self._proba_model(self._prepare(X))

    def predict(self, X: Any) -> np.ndarray:
        """argmax_y q(y|x): (n,) int64 cluster indices."""
        return self.predict_proba(X).argmax(1)

    def transform(self, X: Any) -> np.ndarray:
        """Latent means of q(z|x): (n, latent) float64."""
        return codes(self.model_, self._prepare(X), fixed=True)[0]

    def score(self, X: Any, y: Any = None) -> float:
        """The opposite of the training objective's value on X, nats per example (higher is
        better, as scikit-learn's KMeans.score; in the model's data units, i.e. standardised
        for tables). objective "elbo": the mean ELBO, from 5 seeded posterior draws per
        example. "infomax": mi_weight * MI estimate - rate at beta 1, the training defaults'
        InfoNCE over seeded batches of 256 (`vaekit.core.critic.infomax_figures`); X needs
        at least 2 rows."""
        xt = self._prepare(X)
        if not self.model_.has_decoder:
            from vaekit.core.critic import infomax_figures

            cfg = TrainConfig(objective="infomax")  # what the stages trained with
            figures = infomax_figures(
                self.model_, xt, estimator=cfg.mi_estimator, mi_weight=cfg.mi_weight
            )
            return -float(figures["loss"])
        # Seeded posterior draws (5 per example): the same X gives the same score.
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            totals = [float(self.model_.elbo(b, samples=5).total) * len(b) for b in xt.split(1024)]
        return -sum(totals) / len(xt)

    def sample(
        self, n: int = 1, cluster: Any = None, random_state: int | None = None
    ) -> np.ndarray:
        """n new examples in data units, shaped like X's rows: (n, *input shape). cluster:
        an int (all from that cluster), (n,) cluster indices, or None (clusters ~ weights_)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        g = torch.Generator().manual_seed(0 if random_state is None else int(random_state))
        x = self.model_.sample(int(n), y=cluster, generator=g).numpy()
        flat = x.reshape(len(x), -1) * self._scale + self._shift
        return flat.reshape(x.shape)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

    # --- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """One safetensors file: the VAE's weights, the preprocessing and the training labels as
        tensors; the parameters, model config and input shape as JSON in its header
        (`vaekit.cluster.persist`)."""
        save_clusterer(self, path)

    @classmethod
    def load(cls, path: str | Path) -> VAEClusterer:
        """A clusterer saved by `save`; refuses other or damaged files with a clear message."""
        return load_clusterer(cls, path)
