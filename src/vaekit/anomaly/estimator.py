"""Anomaly detection with a VAE: `VAEDetector`, a PyOD-style detector.

A VAE trained on normal data gives low likelihood, and poor reconstructions, to what it has
not seen. Every score here is per example and oriented the same way: **higher = more
abnormal**. Densities are in nats (summed over the data dimensions, as everywhere in vaekit).

The scores (elbo, iwae, recon-prob, recon-error, smooth-error for images, and latent-knn, which
needs only the encoder) are in `vaekit.anomaly.scores`, whose docstring says what each is;
`feature_contributions` is in `vaekit.anomaly.contributions`, and `run_reference` /
`run_threshold` in `vaekit.anomaly.run_scores`; all are re-exported here.

`VAEDetector` wraps data preparation, a VAE, `vaekit.train.fit` and a score in the
conventions of PyOD and scikit-learn. What it accepts: `vaekit.anomaly.inputs`; its file:
`vaekit.anomaly.persist`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin

from vaekit.anomaly.contributions import feature_contributions
from vaekit.anomaly.inputs import check_params, fit_input, model_space, table_kinds
from vaekit.anomaly.persist import load_detector, save_detector
from vaekit.anomaly.run_scores import run_reference, run_threshold
from vaekit.anomaly.scores import (
    FEATURE_SCORES,
    IMAGE_SCORES,
    SCORES,
    default_score,
    full_block,
    knn_too_few,
    latent_knn_distance,
    neg_elbo,
    neg_log_likelihood,
    posterior_means,
    reconstruction_error,
    reconstruction_probability,
    resolve_score,
    score_samples,
    smoothed_error,
    smoothing_width,
)
from vaekit.core.config import ModelConfig
from vaekit.core.model import VAE
from vaekit.core.precision import resolve_precision
from vaekit.core.utils import device_of
from vaekit.train.config import TrainConfig
from vaekit.train.devices import resolve_device

__all__ = [
    "EXPECTED_FAILED_CHECKS",
    "FEATURE_SCORES",
    "IMAGE_SCORES",
    "SCORES",
    "VAEDetector",
    "default_score",
    "feature_contributions",
    "latent_knn_distance",
    "neg_elbo",
    "neg_log_likelihood",
    "posterior_means",
    "reconstruction_error",
    "reconstruction_probability",
    "resolve_score",
    "run_reference",
    "run_threshold",
    "score_samples",
    "smoothed_error",
    "smoothing_width",
]


# scikit-learn's checks that VAEDetector fails by design (pass this as check_estimator's
# `expected_failed_checks`): each asks for scikit-learn's outlier conventions, which PyOD's
# conventions (followed here, and by the detectors saved by every release) contradict.
PYOD_CONVENTIONS = (
    "scikit-learn's outlier conventions (predict and fit_predict -1 = outlier / 1 = inlier, "
    "decision_function >= 0 for inliers, score_samples higher = more normal) against PyOD's, "
    "which VAEDetector follows: predict 1 = outlier / 0 = inlier, decision_function and "
    "score_samples higher = more abnormal"
)
EXPECTED_FAILED_CHECKS = {
    "check_outliers_train": PYOD_CONVENTIONS,
    "check_outliers_fit_predict": PYOD_CONVENTIONS,
}


# --- the detector ---------------------------------------------------------------------------


class VAEDetector(OutlierMixin, BaseEstimator):
    """Outlier detector on a VAE, in the conventions of PyOD (and scikit-learn's estimators).

    fit(X) trains a VAE on X (taken as mostly normal data) and sets `decision_scores_` (the
    score of every training row), `threshold_` and `labels_` (1 = outlier, 0 = inlier).
    `decision_function(X)` scores new data (higher = more abnormal), `predict(X)` flags
    scores above `threshold_`. get_params / set_params / sklearn.base.clone work.

    X: a (n, D) table, (n, H, W) or (n, C, H, W) images, as a NumPy array, torch tensor or
    DataFrame, or a path to a source `vaekit.data.load_source` reads (e.g. a .csv; labels in it
    are ignored). Tables are standardised per column (fitted on the training data) and get a
    Gaussian likelihood with learned per-feature sigma; images in [0, 1] get a Bernoulli
    likelihood (uint8 images are divided by 255 first).

    Parameters
    contamination: expected fraction of outliers in the training data, in (0, 0.5]; the
        threshold is the (1 - contamination) quantile of the training scores, or of
        `X_calibration`'s scores when fit gets held-out normal data.
    scoring: which anomaly score. "auto" (default: the score that wins on such data in the
        benchmarks, `default_score`: smooth-error for images, elbo for tables, latent-knn for
        objective="infomax"; fitted as `score_`), "recon-error", "smooth-error" (images),
        "recon-prob", "elbo" or "iwae" (see `vaekit.anomaly.scores`), or "latent-knn": the
        distance of a row's posterior mean to its `neighbors`-th nearest training code
        (`reference_`), which needs no decoder. (Formerly `score`, a name that hid the
        `score` method scikit-learn's pipelines look for; saved files keep that name.)
    objective: "elbo" trains a VAE; "infomax" an encoder-only model (prior + mutual
        information, `vaekit.core.critic`), faster to train, scored by latent-knn only.
    neighbors: k of latent-knn [5].
    threshold: a score value set by the user; overrides contamination.
    samples: L draws (elbo, recon-prob) or K importance samples (iwae); None = 100.
    latent_dim, hidden, arch, conv_channels: the VAE (None = chosen from the data: latent 16
        and hidden (512, 256) for images, latent min(8, D // 2 + 1) and hidden (64, 32) for
        tables). likelihood, standardize: None = chosen from the data as above.
    epochs, beta: training length and the weight of the KL term (None = chosen from the data:
        150 epochs at beta 0.5 for images, which keep improving for long, 30 epochs at beta 1
        for tables, whose learned sigma overfits a few hundred rows soon; figures: the docs'
        anomaly benchmark page).
    batch_size, lr: training with `vaekit.train.fit` (Adam).
    score_batch_size: rows per block when scoring. Every block is padded to it, so a row's
        score does not depend on the rows scored with it (scikit-learn's subset invariance,
        to the last bit); a call on a few rows costs one block.
    precision: "auto" (default) trains in bf16 where that is faster (a CPU with AMX and an
        MLP of 500k weights or more, `vaekit.core.precision.resolve_precision`), else in fp32,
        and always scores in fp32, so a saved detector's scores and threshold mean the same on
        every machine; fitted as `precision_` (the training precision used). "fp32": fp32
        throughout, whatever the hardware. "bf16": networks in bfloat16 in training and
        scoring (much slower than fp32 on a CPU without AMX). Figures: the docs' anomaly
        benchmark page.
    random_state: seed of initialisation, training and the scores' posterior draws.
    device: where the VAE trains and scores ("auto": a CUDA GPU, else MPS, else the CPU; see
        vaekit.train.devices); scores come back as NumPy arrays either way, and a saved
        detector loads on the CPU.

    scikit-learn's check_estimator passes except for the checks in `EXPECTED_FAILED_CHECKS`
    (pass it as check_estimator's `expected_failed_checks`): those ask for scikit-learn's
    outlier labels and signs, where this detector keeps PyOD's.
    """

    def __init__(
        self,
        contamination: float = 0.1,
        scoring: str = "auto",
        *,
        objective: str = "elbo",
        neighbors: int = 5,
        threshold: float | None = None,
        samples: int | None = None,
        latent_dim: int | None = None,
        hidden: tuple[int, ...] | None = None,
        arch: str = "mlp",
        conv_channels: tuple[int, ...] = (32, 64),
        likelihood: str | None = None,
        standardize: bool | None = None,
        epochs: int | None = None,
        beta: float | None = None,
        batch_size: int = 128,
        lr: float = 1e-3,
        precision: str = "auto",
        score_batch_size: int = 256,
        random_state: int = 0,
        verbose: bool = False,
        device: str = "auto",
    ):
        self.contamination = contamination
        self.scoring = scoring
        self.objective = objective
        self.neighbors = neighbors
        self.threshold = threshold
        self.samples = samples
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.arch = arch
        self.conv_channels = conv_channels
        self.likelihood = likelihood
        self.standardize = standardize
        self.epochs = epochs
        self.beta = beta
        self.batch_size = batch_size
        self.lr = lr
        self.precision = precision
        self.score_batch_size = score_batch_size
        self.random_state = random_state
        self.verbose = verbose
        self.device = device

    # --- fitting ------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None, *, X_calibration: Any = None) -> VAEDetector:
        """Train on X (mostly normal rows); y is ignored (unsupervised).

        X_calibration: held-out normal data; when given (and no `threshold`), threshold_ is
        the (1 - contamination) quantile of its scores instead of the training scores'.
        """
        self._check_params()
        x, kind = fit_input(self, X)  # a mixed table: encoded under schema_ (kind "table")
        event_shape = tuple(int(s) for s in x.shape[1:])
        self._refuse_before_training(len(x), event_shape)
        pre, xt, likelihood = self._preprocess(x, kind)
        model = self._train(xt, kind, event_shape, likelihood)
        self.model_, self.preprocessor_, self.kind_ = model, pre, kind
        self.event_shape_ = event_shape
        self.n_features_in_ = math.prod(event_shape)
        self.score_ = resolve_score(self.scoring, model)
        self.reference_ = posterior_means(
            model, xt, batch_size=self.score_batch_size, precision=self.scoring_precision
        )
        self.decision_scores_ = self._training_scores(xt)
        if self.threshold is None and X_calibration is not None:
            self.calibrate(X_calibration)
        else:
            self._set_threshold(self.decision_scores_)
        return self

    def _refuse_before_training(self, n: int, event_shape: tuple[int, ...]) -> None:
        """Refuse a score the data cannot give (smooth-error of a table, latent-knn with n rows
        or fewer) now, not after training."""
        if self.scoring in IMAGE_SCORES:
            smoothing_width(event_shape)
        knn = self.scoring in FEATURE_SCORES or self.objective == "infomax"  # latent-knn anyway
        if knn and n <= self.neighbors:
            raise ValueError(knn_too_few(int(self.neighbors), n, training=True))

    def _preprocess(self, x: np.ndarray, kind: str) -> tuple[Any, torch.Tensor, str]:
        """(the preprocessing fitted on x, x in model space, the likelihood): the likelihood and
        standardisation as given, or (None) chosen from the data."""
        from vaekit.data import Preprocessor
        from vaekit.data.config import DataConfig

        if kind == "table":  # one block per column, numbers on the schema's transforms
            return Preprocessor(kind="tabular"), torch.from_numpy(x), "composite"
        likelihood = self.likelihood or (
            "bernoulli" if kind == "image" and x.min() >= 0 and x.max() <= 1 else "gaussian-learned"
        )
        standardize = self.standardize
        if standardize is None:
            standardize = likelihood != "bernoulli"
        pre = Preprocessor.fit(x, DataConfig(standardize=bool(standardize)), kind)
        return pre, torch.from_numpy(pre.transform(x)), likelihood

    def _train(
        self, xt: torch.Tensor, kind: str, event_shape: tuple[int, ...], likelihood: str
    ) -> VAE:
        """The VAE (or encoder-only model) for the data, trained on xt by `vaekit.train.fit`;
        sets precision_ and history_."""
        from vaekit.train.loop import fit

        auto = self.settings(kind, math.prod(event_shape))
        config = ModelConfig(
            event_shape=event_shape,
            latent_dim=auto["latent_dim"],
            arch=self.arch,
            hidden=auto["hidden"],
            conv_channels=tuple(self.conv_channels),
            likelihood=likelihood,
            column_kinds=table_kinds(self),
            decoder=self.objective != "infomax",
            # without the encoder-only model's input augmentation: it helps linear features
            # but not these (figures: the docs' infomax benchmark page)
            augment="off",
        )
        torch.manual_seed(self.random_state)
        model = VAE.from_config(config)
        self.precision_ = resolve_precision(self.precision, model, resolve_device(self.device))
        train_cfg = TrainConfig(
            epochs=auto["epochs"],
            beta=auto["beta"],
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.random_state,
            precision=self.precision_,
            objective=self.objective,
        )
        self.history_ = fit(
            model, xt, None, train_cfg, progress=bool(self.verbose), device=self.device
        )
        return model

    def _training_scores(self, xt: torch.Tensor) -> np.ndarray:
        """decision_scores_: the score of every training row (for latent-knn a training row is
        not its own neighbour)."""
        if self.score_ == "latent-knn":
            return latent_knn_distance(
                self.model_, xt, self.reference_, k=self.neighbors, exclude_self=True,
                batch_size=self.score_batch_size, precision=self.scoring_precision,
            ).double().numpy()
        return self._score_model_space(xt)

    def settings(self, kind: str, d: int) -> dict[str, Any]:
        """latent_dim, hidden, epochs and beta for data of `kind` ("image" or "tabular") with
        d features: the parameters as given, or (None) the defaults chosen from the data."""
        image = kind == "image"
        return {
            "latent_dim": self.latent_dim or (16 if image else min(8, d // 2 + 1)),
            "hidden": tuple(self.hidden)
            if self.hidden is not None
            else ((512, 256) if image else (64, 32)),
            "epochs": self.epochs or (150 if image else 30),
            "beta": (0.5 if image else 1.0) if self.beta is None else float(self.beta),
        }

    def calibrate(self, X_normal: Any, contamination: float | None = None) -> VAEDetector:
        """Set threshold_ to the (1 - contamination) quantile of the scores of held-out normal
        data (so about that fraction of normal data is flagged); labels_ follow."""
        self._check_fitted()
        if contamination is not None:
            self.contamination = contamination
            self._check_params()
        self._set_threshold(self.decision_function(X_normal), ignore_user=True)
        return self

    def _set_threshold(self, scores: np.ndarray, ignore_user: bool = False) -> None:
        if self.threshold is not None and not ignore_user:
            self.threshold_ = float(self.threshold)
        else:
            self.threshold_ = float(np.quantile(scores, 1.0 - self.contamination))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)

    def _check_params(self) -> None:
        check_params(self)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this VAEDetector is not fitted yet; call fit(X) first")

    # --- scoring ------------------------------------------------------------------------------

    @property
    def scoring_precision(self) -> str:
        """The precision scores are computed in: fp32 under "auto" (whatever trained the
        weights), else `precision` as given."""
        return "fp32" if self.precision == "auto" else self.precision

    def _prepare(self, X: Any) -> torch.Tensor:
        """X in data space -> model-space tensor (n, *event_shape), checked against the fit."""
        self._check_fitted()
        return model_space(self, X)

    def _score_model_space(self, xt: torch.Tensor) -> np.ndarray:
        scores = score_samples(
            self.model_,
            xt,
            self.score_,
            samples=self.samples,
            batch_size=self.score_batch_size,
            precision=self.scoring_precision,
            seed=self.random_state,
            reference=getattr(self, "reference_", None),
            neighbors=self.neighbors,
        )
        return scores.double().numpy()

    def decision_function(self, X: Any) -> np.ndarray:
        """The detector's score of every row, (n,) float64; higher = more abnormal."""
        return self._score_model_space(self._prepare(X))

    def score_samples(self, X: Any) -> np.ndarray:
        """Same as `decision_function` (PyOD's orientation: higher = more abnormal; note that
        scikit-learn's own detectors return the opposite sign from their score_samples)."""
        return self.decision_function(X)

    def predict(self, X: Any) -> np.ndarray:
        """1 = outlier (score > threshold_), 0 = inlier; (n,) int64."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> np.ndarray:
        """fit(X) and return labels_ (the training rows' labels)."""
        return self.fit(X, y, **kwargs).labels_

    def predict_proba(self, X: Any, method: str = "linear") -> np.ndarray:
        """Outlier probability as PyOD computes it, (n, 2): columns P(inlier), P(outlier).

        linear: the score min-max scaled by the training scores' range, clipped to [0, 1].
        unify: erf((score - mean) / (std * sqrt 2)) of the training scores, clipped at 0
        (Kriegel et al., 2011). Neither is a calibrated probability; both are monotone in
        the score.
        """
        from scipy.special import erf

        s = self.decision_function(X)
        train = self.decision_scores_
        if method == "linear":
            lo, hi = float(train.min()), float(train.max())
            p = np.clip((s - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
        elif method == "unify":
            sd = float(train.std()) or 1.0
            p = np.clip(erf((s - float(train.mean())) / (sd * math.sqrt(2))), 0.0, 1.0)
        else:
            raise ValueError(f"method must be 'linear' or 'unify', got {method!r}")
        return np.stack([1.0 - p, p], axis=1)

    def explain(self, X: Any) -> np.ndarray:
        """Per-feature contributions to the score, (n, *event_shape) float64: see
        `feature_contributions` (recon-error, smooth-error: squared errors; otherwise nats per
        feature)."""
        contrib = feature_contributions(
            self.model_,
            self._prepare(X),
            self.score_,
            samples=self.samples,
            batch_size=self.score_batch_size,
            precision=self.scoring_precision,
            seed=self.random_state,
        )
        return contrib.double().numpy()

    def reconstruct(self, X: Any) -> np.ndarray:
        """E[x | z = posterior mean] in data space (standardisation undone), like X's rows; in
        blocks of score_batch_size rows padded as the scores' (`full_block`)."""
        xt, size = self._prepare(X), self.score_batch_size
        device = device_of(self.model_)
        x_hat = torch.cat(
            [self.model_.reconstruct(full_block(b, size).to(device))[: len(b)].cpu()
             for b in xt.split(size)]
        )
        return np.asarray(self.preprocessor_.inverse(x_hat.numpy()))

    # --- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """One safetensors file: the VAE's weights and the training scores as tensors; the
        parameters, model config, preprocessing and threshold as JSON in its header
        (`vaekit.anomaly.persist`)."""
        save_detector(self, path)

    @classmethod
    def load(cls, path: str | Path) -> VAEDetector:
        """A detector saved by `save`; refuses other or damaged files with a clear message."""
        return load_detector(cls, path)
