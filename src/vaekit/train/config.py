"""How to train: optimizer, objective, schedule, precision, checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field

from vaekit.core.config import ADDED, check_choice, check_positive


@dataclass
class TrainConfig:
    """How to train: optimizer, objective, schedule, checkpoints."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    grad_clip: float | None = None  # max global gradient norm; None = no clipping
    patience: int | None = None  # early stopping after this many epochs without improvement
    objective: str = "elbo"  # elbo | iwae | infomax (an encoder-only model: prior + MI)
    samples: int = 1  # S samples per input (ELBO) or K importance samples (IWAE)
    beta: float = 1.0  # weight of the rate (KL) term
    warmup_epochs: int = 0  # beta ramps linearly from 0 to `beta` over these epochs
    analytic_kl: bool = True  # closed-form KL where the prior allows it, else Monte Carlo
    precision: str = "fp32"  # fp32 | bf16 (networks in bf16 on fp32 master weights; loss fp32)
    # importance samples of the log-likelihood at the end of training: a small fraction of a
    # short run's time; `vaekit evaluate --k 1000` gives the figure papers report
    eval_k: int = 100
    flush_denormal: bool = True  # denormal floats slow CPU training 1.5-2x after a while
    mi_estimator: str = field(default="infonce", metadata=ADDED)  # infomax: infonce | jsd
    mi_weight: float = field(default=200.0, metadata=ADDED)  # infomax: weight of the MI term
    # auto | on | off: the step's forward and backward through torch.compile, CUDA graphs on a
    # GPU (vaekit.train.steps); auto = on a CUDA GPU only
    compile: str = field(default="auto", metadata=ADDED)
    # semi-supervised images (label_weight > 0): weight of q(y|x)'s consistency under small moves
    # of the image on unlabelled rows (vaekit.core.objectives.consistency_loss); 0: none
    consistency_weight: float = field(default=0.0, metadata=ADDED)

    def __post_init__(self) -> None:
        check_positive("epochs", self.epochs)
        check_positive("batch_size", self.batch_size)
        check_positive("lr", self.lr)
        check_positive("samples", self.samples)
        check_positive("beta", self.beta, allow_zero=True)
        check_positive("warmup_epochs", self.warmup_epochs, allow_zero=True)
        check_positive("eval_k", self.eval_k)
        check_choice("objective", self.objective, ("elbo", "iwae", "infomax"))
        check_choice("mi_estimator", self.mi_estimator, ("jsd", "infonce"))
        check_positive("mi_weight", self.mi_weight)
        check_choice("precision", self.precision, ("fp32", "bf16"))
        check_choice("compile", self.compile, ("auto", "on", "off"))
        check_positive("consistency_weight", self.consistency_weight, allow_zero=True)
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
        if self.patience is not None:
            check_positive("patience", self.patience)
