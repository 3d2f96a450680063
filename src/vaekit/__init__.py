"""vaekit: variational autoencoders on PyTorch — train, generate, represent, evaluate.

from vaekit import VAE, ModelConfig
model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=2))
"""

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.models import VAE

__all__ = ["VAE", "DataConfig", "ModelConfig", "RunConfig", "TrainConfig"]
__version__ = "0.1.0"
