"""The parts of a VAE and their composition: networks, the posterior, priors, likelihoods,
objectives (ELBO, IWAE, importance-sampled log p(x)), the infomax critic and its loss, and the
model that holds them. Imports torch and nothing of vaekit outside `core`."""

from vaekit.core.config import ConfigError, ModelConfig
from vaekit.core.model import VAE

__all__ = ["VAE", "ConfigError", "ModelConfig"]
