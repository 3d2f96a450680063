"""Anomaly detection: `VAEDetector`, a PyOD-style detector over a VAE (`estimator`), the scores
it can use (`scores`) and its pictures (`plots`)."""

from vaekit.anomaly.estimator import VAEDetector
from vaekit.anomaly.scores import (
    FEATURE_SCORES,
    IMAGE_SCORES,
    SCORES,
    default_score,
    feature_contributions,
    latent_knn_distance,
    neg_elbo,
    neg_log_likelihood,
    posterior_means,
    reconstruction_error,
    reconstruction_probability,
    resolve_score,
    run_reference,
    run_threshold,
    score_samples,
    smoothed_error,
)

__all__ = [
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
