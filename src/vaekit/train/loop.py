"""The trainer: whole dataset in memory, shuffled index batches, atomic checkpoints.

The training step is the hot path. It reads nothing back from the device: per-step losses
are summed into one tensor, read once per epoch (and at most twice a second for the progress
bar). No per-sample Python, no DataLoader for arrays.

A run directory (optional) gets, after the first epoch, then at the end of an epoch at least
CHECKPOINT_EVERY_S seconds after the last save, and after the last epoch (every epoch under
torchrun), the three files of one save:
    checkpoint.safetensors  weights + optimizer + RNG + epoch + history, one file written to a
                            temp name then renamed, so a crash leaves the previous one intact
    model.safetensors       the best model so far (lowest validation loss)
    metrics.csv             one row per epoch up to the checkpoint's
Saving by time, not every epoch, keeps a run of a thousand short epochs (a small table) from
spending most of its time writing files; Ctrl-C or SIGTERM loses at most that much training.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from vaekit.core.io import interrupts_deferred, load_tensors
from vaekit.core.model import VAE
from vaekit.core.precision import networks_in
from vaekit.core.utils import device_of
from vaekit.train import denormals, distributed
from vaekit.train.checkpoints import load_checkpoint, save_checkpoint
from vaekit.train.config import TrainConfig
from vaekit.train.devices import resolve_device
from vaekit.train.evaluate import evaluate_loss, loss_sums
from vaekit.train.progress import (
    COLUMNS,
    TENSORBOARD,
    epoch_row,
    figure_names,
    log_epoch,
    postfix,
    progress_bar,
    tensorboard,
    write_metrics,
)
from vaekit.train.rows import DeviceRows, Rows, check_data, check_labels
from vaekit.train.steps import (
    BatchLoss,
    batch_loss,
    compile_settings,
    compiles,
    make_optimizer,
    step_optimizer,
)
from vaekit.train.stopping import (
    CHECKPOINT,
    TrainingError,
    TrainingInterrupted,
    interrupts,
    nonfinite_message,
)

__all__ = [
    "CHECKPOINT",
    "COLUMNS",
    "METRICS",
    "MODEL",
    "TENSORBOARD",
    "TrainingError",
    "TrainingInterrupted",
    "check_data",
    "check_labels",
    "evaluate_loss",
    "fit",
    "write_metrics",
]

MODEL = "model.safetensors"
METRICS = "metrics.csv"
CHECKPOINT_EVERY_S = 10.0  # seconds of training between saves, at most (one epoch's, at least)


class _Epoch(NamedTuple):
    """What one epoch gives the loop: its metrics row, the train and validation figures
    ([loss, rate, distortion], nats), whether it is the best so far, and whether to stop."""

    row: dict[str, float]
    train: list[float]
    val: list[float] | None
    improved: bool
    stop: bool


@dataclass
class _Session:
    """What one call of `fit` trains with, shared by the helpers of its loop."""

    model: VAE
    cfg: TrainConfig
    device: torch.device
    world: distributed.World
    run_dir: Path | None
    optimizer: torch.optim.Optimizer
    shuffle: torch.Generator  # the batches' order (and dynamic binarization), alike on every rank
    state: dict[str, Any]  # epoch, history, best, best_epoch, bad: what a checkpoint holds
    x_train: Rows
    rows: DeviceRows
    labels: DeviceRows | None
    x_val: Rows | None
    y_val: torch.Tensor | None
    loss_of: BatchLoss
    dynamic_binarize: bool
    best_weights: dict[str, torch.Tensor] | None = None
    initial: dict[str, torch.Tensor] | None = None  # restored if epoch 1 goes non-finite
    bar: Any = None
    tb: Any = None

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.x_train) / self.cfg.batch_size)


@contextlib.contextmanager
def _training_mode(
    model: VAE, cfg: TrainConfig, device: torch.device, in_group: bool
) -> Iterator[None]:
    """Process settings for the duration of fit only: flush-to-zero (CPU), bf16 networks,
    the compiler's (steps.compile_settings)."""
    # Adam's moments of parameters that never get gradient decay into denormal floats,
    # which make CPU steps 1.5-2x slower after ~800 steps. Flushing them to zero changes
    # values below 1e-38 only. All threads: see vaekit.train.denormals. (GPUs flush by themselves.)
    was_flushing = denormals.is_flushing()
    wanted = cfg.flush_denormal and device.type == "cpu" and not was_flushing
    flushed = wanted and denormals.set_flush_denormal(True)
    try:
        compiled = compiles(cfg, device, in_group)
        with networks_in(model, cfg.precision), compile_settings(compiled):
            yield
    finally:
        if flushed:
            denormals.set_flush_denormal(False)


def fit(
    model: VAE,
    x_train: Rows,
    x_val: Rows | None,
    cfg: TrainConfig,
    *,
    y_train: Any = None,
    y_val: Any = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    dynamic_binarize: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    device: str | torch.device | None = None,
) -> list[dict[str, float]]:
    """Train `model` in place; return one metrics dict per epoch.

    x_train, x_val: (n, *event_shape) float tensors (or row sources). y_train, y_val: (n,)
    class labels, required by a model that observes them (a conditional VAE) and refused by
    one that does not; a batch's labels are taken with the same indices as its x. The model
    ends with the weights of its best epoch: the lowest validation loss (without validation
    data, training loss), the rate weighed by cfg.beta (warm-up's ramp aside).
    resume: continue from run_dir/checkpoint.safetensors (same weights as an uninterrupted run).
    dynamic_binarize: draw x ~ Bernoulli(x) afresh every epoch (validation is drawn once).
    device: where to train ("auto", "cpu", "cuda", "cuda:N", "mps", a torch.device); None:
    where the model is. The model is moved there and stays there; the data follow the rule of
    `DeviceRows`. Batches and shuffles are drawn on the CPU, so a run's batches do not depend
    on the device (the posterior noise comes from the device's generator).
    In a torch.distributed process group (torchrun; vaekit.train.distributed) each rank trains
    on its shard of every global batch of cfg.batch_size rows, the epoch's metrics are summed across
    ranks, and only rank 0 writes to run_dir; every rank returns the same history.
    """
    # under torchrun, "auto" and "cuda" mean this process's own GPU (cuda:LOCAL_RANK)
    device = (
        device_of(model) if device is None else resolve_device(distributed.local_device(device))
    )
    world = distributed.current()
    y_train, x_val, y_val = _checked_splits(model, x_train, y_train, x_val, y_val, cfg, world)
    s = _start(model, cfg, device, world, run_dir, resume, x_train, y_train, x_val, y_val)
    s.dynamic_binarize = dynamic_binarize
    if s.x_val is not None and dynamic_binarize:
        fixed = torch.Generator().manual_seed(cfg.seed + 1)  # one draw: comparable across epochs
        s.x_val = torch.bernoulli(s.x_val[torch.arange(len(s.x_val))], generator=fixed)
    if s.best_weights is None:
        s.initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    s.rows = DeviceRows(x_train, device)
    s.labels = None if y_train is None else DeviceRows(y_train, device, s.rows.resident)
    s.bar = progress_bar(progress and world.main, cfg.epochs, s.state["epoch"])
    s.tb = tensorboard(s.run_dir if world.main else None)
    s.loss_of = batch_loss(world.wrap(model, device), cfg, device, world.active)

    saved = [s.state["epoch"]]  # the last epoch whose checkpoint is complete (for Ctrl-C)
    last_save, improved = -math.inf, False  # time of the last save; a better model since?
    with _training_mode(model, cfg, device, world.active), interrupts(s.run_dir, saved, s.bar):
        for epoch in range(s.state["epoch"] + 1, cfg.epochs + 1):
            done = _run_epoch(s, epoch)
            improved |= done.improved
            due = time.monotonic() - last_save >= CHECKPOINT_EVERY_S or world.active
            if due or done.stop or epoch == cfg.epochs:
                with interrupts_deferred():  # Ctrl-C waits: model, checkpoint, metrics agree
                    if s.run_dir is not None and s.world.main:
                        _save_epoch(s, improved)
                    saved[0] = epoch
                last_save, improved = time.monotonic(), False
            log_epoch(done.row, done.train, done.val, s.tb, s.bar, on_epoch, figure_names(cfg))
            if done.stop:  # every rank has the same validation loss, so all stop here together
                break
    _finish(s)
    return s.state["history"]


def _checked_splits(
    model: VAE,
    x_train: Rows,
    y_train: Any,
    x_val: Rows | None,
    y_val: Any,
    cfg: TrainConfig,
    world: distributed.World,
) -> tuple[torch.Tensor | None, Rows | None, torch.Tensor | None]:
    """The splits checked once before training: (y_train, x_val, y_val), labels as int64 and
    an empty validation split as None; one-line ValueErrors for what cannot train."""
    if len(x_train) == 0:
        raise ValueError("the training split is empty; give more data or a smaller test fraction")
    check_data(model, x_train, "training")
    y_train = check_labels(model, y_train, len(x_train), "training")
    if x_val is not None and len(x_val) == 0:
        x_val = None
    if x_val is not None:
        check_data(model, x_val, "validation")
        y_val = check_labels(model, y_val, len(x_val), "validation")
    if world.active and cfg.precision != "fp32":
        raise ValueError("--precision bf16 is not supported with torchrun yet; use fp32")
    if cfg.batch_size < world.size:
        raise ValueError(
            f"--batch-size {cfg.batch_size} is the global batch, shared by {world.size} "
            f"processes; give at least {world.size} (one row each)"
        )
    return y_train, x_val, y_val


def _start(
    model: VAE,
    cfg: TrainConfig,
    device: torch.device,
    world: distributed.World,
    run_dir: str | Path | None,
    resume: bool,
    x_train: Rows,
    y_train: torch.Tensor | None,
    x_val: Rows | None,
    y_val: torch.Tensor | None,
) -> _Session:
    """The model on its device, seeded, with a fresh optimizer; or, resuming, the state of the
    run directory's checkpoint and its best model so far."""
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None and world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    torch.manual_seed(cfg.seed)
    shuffle = torch.Generator().manual_seed(cfg.seed)  # alike on every rank
    optimizer = make_optimizer(model, cfg.lr)
    state: dict[str, Any] = {"epoch": 0, "history": [], "best": math.inf, "best_epoch": 0, "bad": 0}
    best_weights = None
    if resume:
        if run_dir is None:
            raise ValueError("resume needs a run directory")
        state = load_checkpoint(run_dir / CHECKPOINT, model, optimizer, shuffle, device)
        if (run_dir / MODEL).is_file():
            best_weights = {k: v.clone() for k, v in load_tensors(run_dir / MODEL)[0].items()}
    return _Session(
        model,
        cfg,
        device,
        world,
        run_dir,
        optimizer,
        shuffle,
        state,
        x_train,
        rows=None,
        labels=None,
        x_val=x_val,
        y_val=y_val,
        loss_of=None,  # type: ignore[arg-type]
        dynamic_binarize=False,
        best_weights=best_weights,
    )


def _run_epoch(s: _Session, epoch: int) -> _Epoch:
    """One epoch: the shuffled pass, the non-finite check, validation and early stopping's
    bookkeeping."""
    cfg, world, n = s.cfg, s.world, len(s.x_train)
    t0 = time.perf_counter()
    source = s.rows
    if s.dynamic_binarize:  # drawn on the CPU: the same draw on every device
        drawn = torch.bernoulli(s.x_train[torch.arange(n)], generator=s.shuffle)
        source = DeviceRows(drawn, s.device, s.rows.resident)
    perm = s.rows.place_indices(torch.randperm(n, generator=s.shuffle))
    if world.active:  # each rank its own noise, and a resume draws it alike
        torch.manual_seed(world.noise_seed(cfg.seed, epoch))
    step0 = (epoch - 1) * s.steps_per_epoch
    warmup_steps = cfg.warmup_epochs * s.steps_per_epoch
    sums, beta = _train_epoch(
        s.model,
        s.loss_of,
        s.optimizer,
        source,
        s.labels,
        perm,
        cfg,
        step0,
        warmup_steps,
        s.bar,
        world,
    )
    train = world.sum(sums).div(n).tolist()
    if not all(math.isfinite(v) for v in train):
        if s.bar is not None:
            s.bar.close()
        s.model.load_state_dict(s.best_weights if s.best_weights is not None else s.initial)
        raise TrainingError(nonfinite_message(s.run_dir, epoch, train[0]))
    val = None if s.x_val is None else _validate(s.model, s.x_val, s.y_val, cfg, world)
    row = epoch_row(epoch, train, val, beta, time.perf_counter() - t0)
    s.state["history"].append(row)
    improved = _track_best(s.state, val[0] if val else _at_beta(train, beta, cfg), epoch)
    if improved:
        s.best_weights = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
    stop = cfg.patience is not None and s.x_val is not None and s.state["bad"] >= cfg.patience
    return _Epoch(row, train, val, improved, stop)


def _finish(s: _Session) -> None:
    """After the last epoch: close the bar and TensorBoard, keep the best weights, refit a
    prior that is fit to the trained encoder (and save the model with it)."""
    if s.bar is not None:
        s.bar.close()
    if s.tb is not None:
        s.tb.close()
    if s.best_weights is not None:
        s.model.load_state_dict(s.best_weights)
    s.model.eval()
    refit = _fit_prior_to_posterior(s.model, s.rows, s.labels, s.cfg.batch_size)
    if refit and s.run_dir is not None and s.world.main:
        # the model file gets the refit prior; the checkpoint keeps the one training goes on with
        s.model.save(s.run_dir / MODEL)


@torch.no_grad()
def _fit_prior_to_posterior(
    model: VAE, rows: DeviceRows, labels: DeviceRows | None, batch_size: int
) -> bool:
    """Refit a prior that is fit after training (one with `fit_to_posterior`, e.g. the class
    prior "class-full") to the trained encoder's posteriors of the training rows; whether it
    did. Deterministic (posterior means and variances, no sampling), so a resumed run refits
    to the same prior as an uninterrupted one."""
    refit = getattr(model.prior, "fit_to_posterior", None)
    if refit is None:
        return False
    means, variances, ys = [], [], []
    for idx in rows.place_indices(torch.arange(len(rows))).split(batch_size):
        y = None if labels is None else labels[idx]
        q = model.posterior(rows[idx], model.condition_labels(y))
        means.append(q.mean)
        variances.append(q.logvar.exp())
        ys.append(y)
    refit(torch.cat(means), torch.cat(variances), torch.cat(ys))
    return True


def _train_epoch(
    model: VAE,
    loss_of: BatchLoss,
    optimizer: torch.optim.Optimizer,
    source: DeviceRows,
    labels: DeviceRows | None,
    perm: torch.Tensor,
    cfg: TrainConfig,
    step0: int,
    warmup_steps: int,
    bar: Any,
    world: distributed.World,
) -> tuple[torch.Tensor, float]:
    """One pass over the shuffled index batches: the hot path. Returns this rank's summed
    [total, rate, distortion] (a device tensor, never read back per step) and the last beta.
    In a distributed run each rank takes its shard of every global batch (distributed.py)."""
    model.train()
    sums = torch.zeros(3, device=source.device)
    beta, seen, last_shown = cfg.beta, 0, time.monotonic()
    for i, batch in enumerate(world.batches(perm, cfg.batch_size)):
        if warmup_steps:  # the rate's weight ramps linearly over the warm-up steps
            beta = cfg.beta * min(1.0, (step0 + i + 1) / warmup_steps)
        idx, weight = world.shard(batch)
        loss = loss_of(source[idx], None if labels is None else labels[idx], beta)
        total = loss.total * weight if weight != 1.0 else loss.total
        step_optimizer(model, optimizer, total, cfg.grad_clip)
        sums += torch.stack(loss).detach() * len(idx)
        seen += len(idx)
        if bar is not None and time.monotonic() - last_shown > 0.5:  # at most twice a second
            last_shown = time.monotonic()
            bar.set_postfix_str(postfix(sums / seen, None, figure_names(cfg)), refresh=False)
            bar.update(0)
    return sums, beta


def _validate(
    model: VAE, x: Rows, y: torch.Tensor | None, cfg: TrainConfig, world: distributed.World
) -> list[float]:
    """evaluate_loss over the validation split, each rank its part, summed across ranks; the
    total at cfg.beta (`_at_beta`), so that early stopping and the best model follow the
    objective trained (with beta < 1 the beta-1 ELBO can be best in the first epochs while
    that objective still improves); rate and distortion stay in nats."""
    idx = world.part(len(x))
    val = world.sum(loss_sums(model, x, idx, cfg.batch_size, y, cfg)).div(len(x)).tolist()
    return [_at_beta(val, 1.0, cfg), *val[1:]]


def _at_beta(figures: list[float], beta: float, cfg: TrainConfig) -> float:
    """The total of [loss, rate, distortion] computed at `beta`, the rate weighed by cfg.beta
    instead (warm-up's epochs compare at the beta they ramp to); iwae has no beta."""
    return figures[0] if cfg.objective == "iwae" else figures[0] + (cfg.beta - beta) * figures[1]


def _track_best(state: dict[str, Any], score: float, epoch: int) -> bool:
    """Early stopping's bookkeeping: whether `score` (validation loss, else training loss)
    improved on the best; counts the epochs without improvement in state["bad"]."""
    state["epoch"] = epoch
    if score < state["best"]:
        state.update(best=score, best_epoch=epoch, bad=0)
        return True
    state["bad"] += 1
    return False


def _save_epoch(s: _Session, improved: bool) -> None:
    """The save unit: the best model (when a better one came since the last save), the
    checkpoint and metrics.csv, which always agree (the caller holds Ctrl-C over all three)."""
    assert s.run_dir is not None
    if improved:
        s.model.save(s.run_dir / MODEL, s.best_weights)
    save_checkpoint(s.run_dir / CHECKPOINT, s.model, s.optimizer, s.shuffle, s.state, s.cfg)
    write_metrics(s.run_dir / METRICS, s.state["history"])
