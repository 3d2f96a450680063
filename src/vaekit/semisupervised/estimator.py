"""A classifier and class-conditional generator from a few labels and many unlabelled rows:
`VAEClassifier`, a scikit-learn estimator over one VAE (Kingma et al. 2014, "Semi-supervised
learning with deep generative models").

The model is the ordinary `vaekit.core.model.VAE` with the class-indexed Gaussian prior
(`prior="cluster"`, `vaekit.core.priors.ClassGaussian`): p(y) p(z|y) p(x|z). The class variable y
is observed where a row has a label and inferred where it has none (y = -1, the convention of
`sklearn.semi_supervised`), summed out exactly under q(y|x), the responsibilities of q(z|x)
under the mixture. Labelled rows add M2's classification term alpha * log q(y|x). How it is
trained, and why each stage is there: `vaekit.semisupervised.recipe`.

Shapes: X is (n, D) tables or (n, H, W) / (n, C, H, W) images; codes (n, latent).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

from vaekit.core.config import ModelConfig
from vaekit.core.model import VAE
from vaekit.semisupervised import recipe
from vaekit.semisupervised.inputs import check_params, check_targets, named, validate
from vaekit.train.config import TrainConfig
from vaekit.train.stages import (
    codes,
    resolve_arch,
    responsibilities,
    stage_epochs,
    train_stage,
    with_changes,
)

# scikit-learn's checks that VAEClassifier fails (check_estimator's `expected_failed_checks`).
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    # Its labels include -1, which marks an unlabelled row (sklearn.semi_supervised's
    # convention, as LabelSpreading reads it): the check's classes {-1, 1} leave one class.
    "check_classifiers_classes": "-1 marks an unlabelled row, not a class",
}


class VAEClassifier(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Semi-supervised classification with a VAE: one model that classifies and generates.

    fit(X, y) with y = -1 on unlabelled rows trains the model (`vaekit.semisupervised.recipe`);
    predict(X) = argmax q(y|x); predict_proba(X) = q(y|x); score(X, y) = accuracy;
    transform(X) = latent means; sample(n, label) generates inputs of a class.

    X as `VAEClusterer` takes it (arrays, tensors, DataFrames; uint8 divided by 255); data in
    [0, 1] get a Bernoulli likelihood, others are standardised per feature and get a Gaussian
    one with unit sigma. y: integers 0..C-1, -1 where unknown.

    Parameters
    n_classes: C (None: the largest label + 1); every class needs a labelled row.
    latent_dim, hidden, arch, conv_channels, image_shape: the networks. arch "auto" is "conv"
        for images of at least 16x16 pixels and "mlp" otherwise (the clusterer's rule).
    pretrain_epochs, pull_epochs, epochs: the three stages (autoencoder; first guesses observed;
        the semi-supervised objective). None: at least 50 / 20 / 100 epochs and 2000 / 400 /
        4000 optimizer steps.
    label_weight: alpha of the classification term alpha * -log q(y|x) (nats, per labelled row
        of a batch). labelled_fraction: the labelled rows are repeated until they make up this
        share of the training rows. n_neighbors: k of the label spreading that gives the first
        guesses. init_space: where the labels spread for the first guesses, "codes" (the
        autoencoder's), "input" (PCA to 50 dimensions when wider) or "auto" (today "input":
        the better final accuracy on the digits and on MNIST). pull_beta, joint_beta: the KL weight
        of the pull and joint stages.
    augment: "auto" | "on" | "off": in the joint stage, train q(y|x) to keep its class when an
        image moves a little (`vaekit.core.objectives.consistency_loss`); "auto" = on for images
        (X as (n, H, W) or (n, C, H, W), or image_shape given), off for flat rows; "on" insists.
        consistency_weight: its weight on the unlabelled rows (nats per row).
    batch_size, lr, random_state, verbose, device ("auto": a GPU where there is one).

    Fitted attributes: classes_ (C,), model_ (the VAE), n_iter_ (epochs, all stages),
    initial_labels_ (the first guesses for the training rows, indices into classes_),
    class_latent_means_ (C, latent) and class_latent_covariances_ (C, latent, latent): each
    class's aggregate posterior as a Gaussian, which `sample` draws from
    (`vaekit.semisupervised.recipe.class_latents`), n_features_in_.
    """

    def __init__(
        self,
        n_classes: int | None = None,
        *,
        latent_dim: int = 20,
        hidden: tuple[int, ...] = (512, 256),
        arch: str = "auto",
        conv_channels: tuple[int, ...] = (32, 64),
        image_shape: tuple[int, ...] | None = None,
        pretrain_epochs: int | None = None,
        pull_epochs: int | None = None,
        epochs: int | None = None,
        label_weight: float = 50.0,
        labelled_fraction: float = 0.1,
        n_neighbors: int = 10,
        init_space: str = "auto",
        pull_beta: float = 10.0,
        joint_beta: float = 1.0,
        augment: str = "auto",
        consistency_weight: float = 50.0,
        batch_size: int = 256,
        lr: float = 1e-3,
        random_state: int | None = None,
        verbose: bool = False,
        device: str = "auto",
    ):
        self.n_classes = n_classes
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.arch = arch
        self.conv_channels = conv_channels
        self.image_shape = image_shape
        self.pretrain_epochs = pretrain_epochs
        self.pull_epochs = pull_epochs
        self.epochs = epochs
        self.label_weight = label_weight
        self.labelled_fraction = labelled_fraction
        self.n_neighbors = n_neighbors
        self.init_space = init_space
        self.pull_beta = pull_beta
        self.joint_beta = joint_beta
        self.augment = augment
        self.consistency_weight = consistency_weight
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state
        self.verbose = verbose
        self.device = device

    # --- fitting ------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> VAEClassifier:
        """Train on X (n rows) with labels y ((n,), -1 where unknown): the stages of
        `vaekit.semisupervised.recipe` (pretrain, initial labels, pull, joint)."""
        from sklearn.utils import check_random_state

        x = validate(self, X, reset=True)
        check_params(self)
        labels, classes = check_targets(y, len(x), self.n_classes)
        consistency = self._consistency_weight(x)  # refuses augment="on" before any training
        c = len(classes)
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        xt, networks = self._model_space(x)
        batch = int(min(self.batch_size, len(x)))
        rows = recipe.oversample(labels, float(self.labelled_fraction), seed)
        pre, pull, joint = self.stage_lengths(math.ceil(len(x) / batch), len(rows) / len(x))
        train = TrainConfig(epochs=1, batch_size=batch, lr=float(self.lr), seed=seed)
        device, verbose = self.device, self.verbose
        torch.manual_seed(seed)
        ae = VAE.from_config(ModelConfig(**networks))
        if pre > 0:
            recipe.pretrain(ae, xt, with_changes(train, epochs=pre), verbose, device)
        space = recipe.resolve_space(self.init_space)
        rows_to_spread = recipe.spread_features(space, ae, xt, seed)
        self.initial_labels_ = recipe.initial_labels(rows_to_spread, labels, self.n_neighbors)
        model = VAE.from_config(
            ModelConfig(
                **networks,
                prior="cluster",
                num_classes=c,
                label_weight=float(self.label_weight),
                class_names=tuple(str(v) for v in classes),
            )
        )
        recipe.take_networks(model, ae)
        recipe.set_prior(model, xt, self.initial_labels_)
        if pull > 0:
            cfg = with_changes(train, epochs=pull, beta=float(self.pull_beta))
            train_stage(model, xt, cfg, verbose, device, self.initial_labels_)
            recipe.set_prior(model, xt, self.initial_labels_)
        if joint > 0:
            cfg = with_changes(
                train,
                epochs=joint,
                beta=float(self.joint_beta),
                consistency_weight=consistency,
            )
            train_stage(model, xt[rows], cfg, verbose, device, labels[rows])
        self.model_ = model.eval()
        self.class_latent_means_, self.class_latent_covariances_ = recipe.class_latents(
            model, xt, labels
        )
        self.classes_ = classes
        self.n_iter_ = pre + pull + joint
        return self

    def stage_lengths(self, steps: int, joint_scale: float = 1.0) -> tuple[int, int, int]:
        """Epochs of (pretraining, pull, joint) for `steps` optimizer steps per epoch (the joint
        stage's epochs are `joint_scale` times longer: the repeated labelled rows)."""
        pre = stage_epochs(self.pretrain_epochs, recipe.PRETRAIN_STEPS, 50, steps)
        pull = stage_epochs(self.pull_epochs, recipe.PULL_STEPS, 20, steps)
        joint_steps = max(1, round(steps * joint_scale))
        return pre, pull, stage_epochs(self.epochs, recipe.JOINT_STEPS, 100, joint_steps)

    def _consistency_weight(self, x: np.ndarray) -> float:
        """The joint stage's consistency weight: consistency_weight for images under augment
        "auto" or "on", else 0 ("on" with flat rows: a one-line ValueError)."""
        images = x.ndim == 4
        if self.augment == "on" and not images:
            raise ValueError(
                f"{named('augment')}='on' moves images: give X as (n, H, W) or (n, C, H, W), or "
                f"image_shape (--image-shape), or set it to 'off'; X has rows of {x.shape[1:]}"
            )
        return float(self.consistency_weight) if images and self.augment != "off" else 0.0

    def _model_space(self, x: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        """(x in model space, the networks' config). Data in [0, 1] keep their units and get a
        Bernoulli likelihood; others are standardised per feature and get a Gaussian one."""
        bernoulli = bool(x.min() >= 0 and x.max() <= 1)
        flat = x.reshape(len(x), -1)
        self._shift = np.zeros(1, np.float32) if bernoulli else flat.mean(0).astype(np.float32)
        self._scale = np.ones(1, np.float32) if bernoulli else (flat.std(0) + 1e-6).astype(
            np.float32
        )
        networks = dict(
            event_shape=tuple(int(s) for s in x.shape[1:]),
            latent_dim=int(self.latent_dim),
            arch=resolve_arch(self.arch, tuple(int(s) for s in x.shape[1:])),
            hidden=tuple(int(h) for h in self.hidden),
            conv_channels=tuple(int(c) for c in self.conv_channels),
            likelihood="bernoulli" if bernoulli else "gaussian",
        )
        return torch.from_numpy(self._to_model(x)), networks

    def _to_model(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        return ((flat - self._shift) / self._scale).astype(np.float32).reshape(x.shape)

    def _prepare(self, X: Any) -> torch.Tensor:
        """New data -> model-space tensor, checked against the fit."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        xt = torch.from_numpy(self._to_model(validate(self, X, reset=False)))
        try:
            self.model_.likelihood.check_support(xt)
        except ValueError as e:
            raise ValueError(f"X: {e}") from None
        return xt

    # --- results ------------------------------------------------------------------------------

    def predict_proba(self, X: Any) -> np.ndarray:
        """q(y|x): (n, C) float64, rows summing to 1 (fixed-shape blocks: a row's answer does
        not depend on the rows it is given with)."""
        xt = self._prepare(X)
        p = responsibilities(self.model_, xt, fixed=True).numpy()
        return p / p.sum(1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """argmax_y q(y|x): (n,) class labels (of classes_)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(1)]

    def transform(self, X: Any) -> np.ndarray:
        """Latent means of q(z|x): (n, latent) float64."""
        xt = self._prepare(X)
        return codes(self.model_, xt, fixed=True)[0]

    def sample(
        self,
        n: int = 1,
        label: Any = None,
        random_state: int | None = None,
        source: str = "aggregate",
    ) -> np.ndarray:
        """n new inputs in data units, shaped like X's rows: (n, *input shape), the decoder's
        mean at latent draws. label: a class (all n of it), (n,) classes, or None (classes
        drawn from p(y)). source: where z is drawn, "aggregate" (the class's aggregate
        posterior, class_latent_means_ / class_latent_covariances_: samples that look like the
        training rows of the class) or "prior" (the model's p(z|y))."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if source not in ("aggregate", "prior"):
            raise ValueError(f"source must be 'aggregate' or 'prior', got {source!r}")
        g = torch.Generator().manual_seed(0 if random_state is None else int(random_state))
        if label is None:
            weights = self.model_.prior.log_weights().detach().cpu().exp()
            y = torch.multinomial(weights, int(n), replacement=True, generator=g).numpy()
        else:
            y = self._class_indices(label, int(n))
        if source == "prior":
            x = self.model_.sample(int(n), y=y, generator=g).cpu().numpy()
        else:
            x = self.model_.decode(self._aggregate_draws(y, g)).cpu().numpy()
        flat = x.reshape(len(x), -1) * self._scale + self._shift
        return flat.reshape(x.shape)

    def _aggregate_draws(self, y: np.ndarray, g: torch.Generator) -> torch.Tensor:
        """z from the aggregate posterior of each class index in y: (n, latent) float32."""
        eps = torch.randn(len(y), self.model_.config.latent_dim, generator=g).double()
        means = torch.from_numpy(self.class_latent_means_)[y]
        tril = torch.linalg.cholesky(torch.from_numpy(self.class_latent_covariances_))[y]
        z = means + (tril @ eps.unsqueeze(-1)).squeeze(-1)
        return z.float().to(self.model_.prior_device())

    def _class_indices(self, label: Any, n: int) -> np.ndarray:
        """Classes (one, or (n,)) as indices into classes_; a one-line ValueError for others."""
        wanted = np.broadcast_to(np.asarray(label), (n,))
        index = np.searchsorted(self.classes_, wanted).clip(0, len(self.classes_) - 1)
        bad = self.classes_[index] != wanted
        if bad.any():
            raise ValueError(
                f"label {wanted[bad][0]!r} is not a class of this classifier "
                f"({', '.join(map(str, self.classes_))})"
            )
        return index

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

    # --- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """One safetensors file: weights and preprocessing as tensors, parameters and config as
        JSON in its header (`vaekit.semisupervised.persist`)."""
        from vaekit.semisupervised.persist import save_classifier

        save_classifier(self, path)

    @classmethod
    def load(cls, path: str | Path) -> VAEClassifier:
        """A classifier saved by `save`; refuses other or damaged files in one line."""
        from vaekit.semisupervised.persist import load_classifier

        return load_classifier(cls, path)
