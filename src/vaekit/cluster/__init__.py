"""One-step clustering: `VAEClusterer`, a VAE whose prior is a Gaussian mixture (`estimator`;
what it accepts: `inputs`; its file: `persist`), trained by a staged recipe (`recipe`), with its
pictures (`plots`) and its run directory (`rundir`)."""

from vaekit.cluster.estimator import EXPECTED_FAILED_CHECKS, VAEClusterer
from vaekit.cluster.recipe import clustering_scores, hungarian_accuracy

__all__ = ["EXPECTED_FAILED_CHECKS", "VAEClusterer", "clustering_scores", "hungarian_accuracy"]
