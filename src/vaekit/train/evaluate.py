"""Honest figures for a trained model: ELBO split into rate and distortion, and log p(x) by
importance sampling, in nats per example (and bits per dimension), as papers report them."""

from __future__ import annotations

import math
from typing import Any

import torch

from vaekit.core.model import VAE
from vaekit.core.objectives import bits_per_dim, elbo_terms, log_likelihood
from vaekit.core.precision import networks_in
from vaekit.core.utils import device_of, fork_rng
from vaekit.data import LazyRows
from vaekit.train.config import TrainConfig
from vaekit.train.rows import Rows


@torch.no_grad()
def evaluate(
    model: VAE,
    x: torch.Tensor | LazyRows,
    y: Any = None,
    *,
    k: int = 1000,
    batch_size: int = 256,
    seed: int = 0,
    precision: str = "fp32",
    mi_estimator: str = "infonce",
    mi_weight: float = 200.0,
    progress: bool = False,
) -> dict[str, float]:
    """Figures over x: (n, *event_shape), a tensor or a row source read a batch at a time.

    y: (n,) labels, for a model that observes them (a conditional VAE): then the figures are
    conditional, elbo and log_likelihood bound and estimate log p(x|y), and `conditional`
    says so. Seeded, and the caller's RNG state is left untouched. precision="bf16" runs the
    networks in bfloat16 (faster on CPUs with AMX; figures move by a few hundredths of a nat).
    progress: a bar on stderr over the log-likelihood's batches, the long part.

    An encoder-only (infomax) model has no likelihood: its figures are those of
    `vaekit.core.critic.infomax_figures` (loss, rate, the MI terms, an MI estimate in nats), with
    the run's mi_estimator and mi_weight (its TrainConfig's).

    Returns n, k, precision and (nats per example unless named otherwise):
      elbo            E_q[log p(x|z)] - KL, analytic KL where the prior allows (a log-probability)
      rate            KL(q(z|x) || p(z))
      distortion      -E_q[log p(x|z)]
      log_likelihood  importance-sampled log p(x) with K samples (>= elbo up to noise)
      bits_per_dim    -log_likelihood / (D ln 2)
    """
    n = len(x)
    if n == 0:
        raise ValueError("nothing to evaluate: the data hold 0 examples")
    if not model.has_decoder:  # encoder-only: the infomax loss, its terms and an MI estimate
        from vaekit.core.critic import infomax_figures

        model.eval()
        with networks_in(model, precision):
            rows = x if isinstance(x, torch.Tensor) else x[torch.arange(n)]
            figures = infomax_figures(
                model, rows, estimator=mi_estimator, mi_weight=mi_weight, seed=seed
            )
            return {"n": n, "precision": precision, **figures}
    y = model.check_labels(y, n)
    model.eval()
    device = device_of(model)
    log_px_z, rate, ll = (torch.zeros((), device=device) for _ in range(3))
    batches = torch.arange(n).split(batch_size)

    def batch(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return x[idx].to(device), None if y is None else y[idx].to(device)

    with fork_rng(device), networks_in(model, precision):
        # Two passes, each seeded: the ELBO's draws do not depend on K (nor K's on the ELBO).
        torch.manual_seed(seed)
        for idx in batches:
            xb, yb = batch(idx)
            model.check_input(xb)
            t = elbo_terms(model, xb, yb)
            log_px_z += t.log_px_z.sum()
            rate += t.rate.sum()
        torch.manual_seed(seed + 1)
        for idx in _progress(batches, progress, f"log p(x), K={k}"):
            xb, yb = batch(idx)
            ll += log_likelihood(model, xb, k, y=yb).sum()
    ll = ll / n
    dims = math.prod(model.config.event_shape)
    return {
        "n": n,
        "k": k,
        "precision": precision,
        "elbo": float((log_px_z - rate) / n),
        "rate": float(rate / n),
        "distortion": float(-log_px_z / n),
        "log_likelihood": float(ll),
        "bits_per_dim": bits_per_dim(ll, dims),
        "conditional": y is not None,  # elbo and log_likelihood are of log p(x|y)
    }


def _progress(batches: Any, enabled: bool, what: str) -> Any:
    """The batches, under a progress bar on stderr when enabled."""
    if not enabled:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=what, unit="batch", leave=False, dynamic_ncols=True)


def conditional_accuracy(
    model: VAE,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    per_class: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """Does the conditional model generate the class asked for?

    An independent judge, scikit-learn's MLPClassifier (one hidden layer of 256), is trained on
    the real training split only (never on generated data); `per_class` samples of every
    class (the decoder's mean at draws from the prior) are classified, and the fraction given
    the requested class is `conditional_accuracy`. The judge's accuracy on the real test
    split comes beside it (`classifier_test_accuracy`): a sample can only be judged as well
    as the judge reads real data. x: (n, *event_shape) in model space, y: (n,) labels.
    """
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    classes = model.config.num_classes
    judge = MLPClassifier(hidden_layer_sizes=(256,), max_iter=200, random_state=seed)
    # BLAS threads as many as torch's: more spin-wait for each other on a busy machine (a
    # 2-core VM with another process: 95 s instead of 10 s for the digits)
    with warnings.catch_warnings(), threadpool_limits(torch.get_num_threads()):
        warnings.simplefilter("ignore", ConvergenceWarning)
        judge.fit(x_train.flatten(1).numpy(), y_train.numpy())
    asked = torch.arange(classes).repeat_interleave(per_class)
    with fork_rng(device_of(model)):
        torch.manual_seed(seed)
        samples = model.sample(len(asked), y=asked, generator=torch.Generator().manual_seed(seed))
    got = judge.predict(samples.flatten(1).cpu().numpy())
    real = judge.predict(x_test.flatten(1).numpy()) if len(x_test) else np.array([])
    return {
        "conditional_accuracy": float((got == asked.numpy()).mean()),
        "classifier_test_accuracy": float((real == y_test.numpy()).mean())
        if len(real)
        else float("nan"),
        "samples_per_class": per_class,
    }


def evaluate_loss(
    model: VAE,
    x: Rows,
    batch_size: int = 512,
    y: torch.Tensor | None = None,
    cfg: TrainConfig | None = None,
) -> list[float]:
    """[-ELBO, rate, distortion] (beta = 1, analytic KL where possible), mean over x, nats;
    for an encoder-only model the infomax loss and its terms (cfg's estimator and weight).
    y: (n,) labels for a model that observes them."""
    return (loss_sums(model, x, torch.arange(len(x)), batch_size, y, cfg) / len(x)).tolist()


@torch.no_grad()
def loss_sums(
    model: VAE,
    x: Rows,
    idx: torch.Tensor,
    batch_size: int = 512,
    y: torch.Tensor | None = None,
    cfg: TrainConfig | None = None,
) -> torch.Tensor:
    """evaluate_loss's terms summed over the rows `idx` of x: a (3,) tensor on the model's
    device."""
    was_training = model.training
    model.eval()
    device = device_of(model)
    sums = torch.zeros(3, device=device)
    mi = {} if cfg is None else {"mi_weight": cfg.mi_weight, "mi_estimator": cfg.mi_estimator}
    for part in idx.split(max(batch_size, 512)):
        yb = None if y is None else y[part].to(device)
        loss = model.loss(x[part].to(device), y=yb, **mi)
        sums += torch.stack(loss) * len(part)
    model.train(was_training)
    return sums
