"""vaekit: variational autoencoders on PyTorch — train, generate, represent, evaluate.

from vaekit import VAE, ModelConfig
model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=2))

The estimators over the same parts, with scikit-learn's (and PyOD's) conventions:
vaekit.VAEClusterer (one-step clustering, a Gaussian-mixture prior), vaekit.VAEClassifier
(semi-supervised classification from a few labels) and vaekit.VAEDetector (anomaly
detection). They are imported on first use, so `import vaekit` stays light.
"""

from typing import Any

from vaekit.core.config import ModelConfig
from vaekit.core.model import VAE
from vaekit.data.config import DataConfig
from vaekit.runs.config import RunConfig
from vaekit.train.config import TrainConfig

__all__ = [
    "VAE",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "VAEClassifier",
    "VAEClusterer",
    "VAEDetector",
]
__version__ = "0.1.0"

_LAZY = {
    "VAEClassifier": "vaekit.semisupervised",
    "VAEClusterer": "vaekit.cluster",
    "VAEDetector": "vaekit.anomaly",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
