"""The recipe of the semi-supervised classifier (`vaekit.semisupervised.VAEClassifier`): one
model, the VAE with the class-indexed Gaussian prior p(y) p(z|y) (`prior="cluster"`, the
clusterer's parts), y observed on the labelled rows and summed out under q(y|x) on the others,
trained in stages, each a `vaekit.train.fit` run:

1. `pretrain`: the networks as an autoencoder (beta = 0) on every row, labelled or not. The
   codes are the first model's features of M1+M2 (Kingma et al. 2014): the second stage reads
   them instead of the pixels.
2. `initial_labels`: the known labels spread over a k-nearest-neighbour graph of the inputs
   (PCA to 50 dimensions when wider, `input_features`; scikit-learn's `LabelSpreading`, k =
   `n_neighbors`), so every row has a first guess and every class a first Gaussian (its
   codes' moments, `mixture_moments`). Over the inputs rather than the autoencoder's codes
   (`init_space`, `resolve_space`; "codes" to choose those) the final accuracy was higher on
   every draw of the digits with 50 labels and of MNIST-10k with 100 (the benchmark page),
   though on MNIST the guesses themselves are no better (0.83 right over the inputs).
3. `pull`: the model trained with those guesses observed, at a high KL weight: the latent space
   is pulled into one Gaussian per class, so that q(y|x) starts out agreeing with them.
4. `joint`: the semi-supervised objective, per row
       labelled (y >= 0):   E_q[log p(x|z)] - KL(q(z|x) || p(z|y)) + alpha * log q(y|x)
       unlabelled (y = -1): E_q[log p(x|z)] - E_q(y|x)[KL(q(z|x) || p(z|y))] - KL(q(y|x) || p(y))
   (the sum over y exact, `vaekit.core.priors.ClassGaussian.kl`; alpha = `label_weight`,
   `vaekit.core.objectives.classification_loss`), at the full learning rate. The labelled rows
   are repeated in the training set until they make up `labelled_fraction` of it
   (`oversample`), so an epoch's batches hold labelled rows in that share. On images the loss
   adds the consistency term (`vaekit.core.objectives.consistency_loss`, the estimator's
   `augment` and `consistency_weight`): on an unlabelled row whose q(y|x) names a class with
   probability above 0.95, q(y|x') of a copy x' moved by a pixel or two and turned by up to 10
   degrees must name the same class. The mixture groups images by how they look; this tells it
   which differences do not change the class.

Predictions are argmax_y q(y|x), the responsibilities of the whole posterior under the
mixture; nothing else classifies.

Samples of a class are decoded from that class's aggregate posterior (`class_latents`): a
full-covariance Gaussian with the moments of q(z|x) over the training rows of the class (labelled
so, or predicted so with q(y|x) >= `CONFIDENT`), fitted once after training ("ex-post density
estimation", Ghosh et al. 2020). Draws from p(z|y) itself, a diagonal Gaussian, also land where
few training rows of the class lie; the benchmark page gives both figures.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vaekit.core.model import VAE
from vaekit.train.config import TrainConfig
from vaekit.train.stages import (
    codes,
    input_features,
    mixture_moments,
    responsibilities,
    train_stage,
    with_changes,
)

# Training lengths when left to the estimator: at least this many optimizer steps (and the
# epoch counts in `VAEClassifier.stage_lengths`).
# The pull stays at 400 steps (the clusterer's is 1,600): 1,600 gained 0.007 on MNIST-10k with
# 100 labels and lost 0.009 on the digits with 50 (5 draws each; the benchmark page).
PRETRAIN_STEPS, PULL_STEPS, JOINT_STEPS = 2000, 400, 4000

# An unlabelled row counts towards its predicted class's aggregate posterior (`class_latents`)
# when q(y|x) gives that class at least this probability.
CONFIDENT = 0.95


def pretrain(model: VAE, x: torch.Tensor, cfg: TrainConfig, verbose: bool, device: str) -> None:
    """Train `model` (a VAE with the normal prior) as an autoencoder, in place (beta = 0)."""
    train_stage(model, x, with_changes(cfg, beta=0.0), verbose, device)


def resolve_space(init_space: str) -> str:
    """Where the labels spread: init_space, with "auto" resolved ("input", whatever the
    width: PCA to 50 dimensions first where wider)."""
    return "input" if init_space == "auto" else init_space


def spread_features(space: str, ae: VAE, x: torch.Tensor, seed: int) -> np.ndarray:
    """The rows the labels spread over: the autoencoder's codes ("codes") or the inputs in
    model space, PCA-reduced to 50 dimensions when wider ("input")."""
    return codes(ae, x)[0] if space == "codes" else input_features(x.numpy(), seed)


def initial_labels(z: np.ndarray, y: np.ndarray, n_neighbors: int) -> np.ndarray:
    """A label for every row: the known labels y ((n,), -1 where unknown) spread over the
    k-nearest-neighbour graph of the rows z (n, d: codes or inputs); known labels stay as
    given."""
    from sklearn.semi_supervised import LabelSpreading

    k = int(min(n_neighbors, len(z) - 1))
    spread = LabelSpreading(kernel="knn", n_neighbors=max(k, 1), alpha=0.2, max_iter=100)
    with np.errstate(divide="ignore", invalid="ignore"):  # isolated rows: no neighbour label
        guess = spread.fit(z, y).transduction_.astype(np.int64)
    return np.where(y >= 0, y, guess)


def set_prior(model: VAE, x: torch.Tensor, labels: np.ndarray) -> None:
    """The class prior set to the per-class moments of `model`'s codes of x."""
    z, z_var = codes(model, x)
    model.prior.set_mixture(*mixture_moments(z, z_var, labels, model.config.num_classes))


def take_networks(model: VAE, ae: VAE) -> None:
    """`model` starts from the autoencoder's encoder and decoder."""
    model.encoder.load_state_dict(ae.encoder.state_dict())
    model.decoder.load_state_dict(ae.decoder.state_dict())


def oversample(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Row indices of the training set: every row once, and the labelled rows (y >= 0) repeated
    until they make up at least `fraction` of it (whole repeats, in a seeded order)."""
    rows = np.arange(len(y))
    labelled = np.flatnonzero(y >= 0)
    n_l = len(labelled)
    if n_l == 0 or n_l >= fraction * len(y):
        return rows
    # r extra copies: (r + 1) n_l >= fraction (n + r n_l)
    r = math.ceil((fraction * len(y) - n_l) / (n_l * (1 - fraction)))
    extra = np.random.default_rng(seed).permutation(np.tile(labelled, r))
    return np.concatenate([rows, extra])


def class_latents(
    model: VAE, x: torch.Tensor, labels: np.ndarray, confident: float = CONFIDENT
) -> tuple[np.ndarray, np.ndarray]:
    """Each class's aggregate posterior as one Gaussian: means (C, latent) and covariances
    (C, latent, latent), float64, the moments of the mixture of q(z|x) over the rows of x
    (model space) of that class: its labelled rows (`labels`, (n,) class indices, -1 where
    unknown) and the unlabelled rows that q(y|x) gives it with probability >= `confident`.

    The moments of (1/n) sum_i N(mu_i, diag v_i) are mean(mu_i) and
    cov(mu_i) + diag(mean(v_i)); the second term keeps the covariance positive definite for a
    class of few rows. Every class has a labelled row, so none is empty."""
    z, z_var = codes(model, x, fixed=True)
    proba = responsibilities(model, x, fixed=True).numpy()
    sure = np.where(proba.max(1) >= confident, proba.argmax(1), -1)
    assigned = np.where(labels >= 0, labels, sure)
    k, d = model.config.num_classes, z.shape[1]
    means, covariances = np.zeros((k, d)), np.zeros((k, d, d))
    for c in range(k):
        zc, vc = z[assigned == c], z_var[assigned == c]
        spread = np.cov(zc, rowvar=False, bias=True) if len(zc) > 1 else np.zeros((d, d))
        means[c] = zc.mean(0)
        covariances[c] = spread + np.diag(vc.mean(0))
    return means, covariances
