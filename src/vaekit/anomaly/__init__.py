"""Anomaly detection: `VAEDetector`, a PyOD-style detector over a VAE (`estimator`; what it
accepts: `inputs`; its file: `persist`), the scores it can use (`scores`), their per-feature
parts (`contributions`), scores from a trained run's own splits (`run_scores`) and its pictures
(`plots`)."""

from vaekit.anomaly.contributions import feature_contributions
from vaekit.anomaly.estimator import EXPECTED_FAILED_CHECKS, VAEDetector
from vaekit.anomaly.run_scores import run_reference, run_threshold
from vaekit.anomaly.scores import (
    FEATURE_SCORES,
    IMAGE_SCORES,
    SCORES,
    default_score,
    latent_knn_distance,
    neg_elbo,
    neg_log_likelihood,
    posterior_means,
    reconstruction_error,
    reconstruction_probability,
    resolve_score,
    score_samples,
    smoothed_error,
)

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
]
