"""Semi-supervised classification with a VAE: `VAEClassifier` learns from a few labels and
many unlabelled rows (y = -1), and generates inputs of a class."""

from vaekit.semisupervised.estimator import EXPECTED_FAILED_CHECKS, VAEClassifier

__all__ = ["EXPECTED_FAILED_CHECKS", "VAEClassifier"]
