"""Training and evaluation: the loop (`fit`, a loop of named helpers in `loop`), one step
(`steps`), atomic checkpoints (`checkpoints`), devices (`devices`), flush-to-zero
(`denormals`), several processes through torchrun (`distributed`), and the honest figures of a
trained model (`evaluate`: ELBO, rate, distortion, importance-sampled log p(x))."""

from vaekit.train.config import TrainConfig
from vaekit.train.loop import (
    CHECKPOINT,
    COLUMNS,
    METRICS,
    MODEL,
    TENSORBOARD,
    TrainingError,
    TrainingInterrupted,
    check_data,
    check_labels,
    evaluate_loss,
    fit,
    write_metrics,
)

__all__ = [
    "CHECKPOINT",
    "COLUMNS",
    "METRICS",
    "MODEL",
    "TENSORBOARD",
    "TrainConfig",
    "TrainingError",
    "TrainingInterrupted",
    "check_data",
    "check_labels",
    "evaluate_loss",
    "fit",
    "write_metrics",
]
