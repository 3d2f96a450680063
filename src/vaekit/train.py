"""The trainer: whole dataset in memory, shuffled index batches, atomic checkpoints.

The training step is the hot path. It reads nothing back from the device: per-step losses
are summed into one tensor, read once per epoch (and at most twice a second for the progress
bar). No per-sample Python, no DataLoader for arrays.

A run directory (optional) gets, every epoch:
    checkpoint.safetensors  weights + optimizer + RNG + epoch + history, one file written to a
                            temp name then renamed, so a crash leaves the previous one intact
    model.safetensors       the best model so far (lowest validation loss)
    metrics.csv             one row per epoch
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from vaekit import denormals, distributed
from vaekit.checkpoints import load_checkpoint, save_checkpoint
from vaekit.config import TrainConfig
from vaekit.devices import device_of, fits_on, resolve_device
from vaekit.io import Terminated, atomic_write_text, interrupts_deferred, load_tensors
from vaekit.models import VAE, networks_in
from vaekit.steps import (
    BatchLoss,
    batch_loss,
    compile_settings,
    compiles,
    make_optimizer,
    step_optimizer,
)

CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"
METRICS = "metrics.csv"
TENSORBOARD = "tensorboard"  # event files, when the tensorboard package is installed
COLUMNS = (
    "epoch",
    "train_loss",
    "train_rate",
    "train_distortion",
    "val_loss",
    "val_rate",
    "val_distortion",
    "beta",
    "seconds",
)


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss); the message says what was kept and what to try."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM under `io.terminate_as_interrupt`): the last finished epoch is saved;
    resume with `--resume`. `signum` tells which signal."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


class Rows(Protocol):
    """In-memory tensor, or anything that returns rows for an index tensor (e.g. a memmap view)."""

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor: ...
    def __len__(self) -> int: ...


class DeviceRows:
    """A split's rows as training reads them on `device`, one index batch at a time.

    The rule: on the CPU the rows stay as given (a tensor, or a memory-mapped row source). On a
    GPU a tensor split is copied there once when it fits (`devices.fits_on`: at most half the
    free memory) and batches are indexed there ("resident"); otherwise it waits in pinned host
    memory and each batch is copied with non_blocking=True. `resident` forces the choice (so
    labels follow their x).
    """

    def __init__(self, rows: Rows, device: torch.device, resident: bool | None = None):
        self.device = device
        tensor = isinstance(rows, torch.Tensor)
        if resident is None:
            resident = device.type == "cpu" or (
                tensor and fits_on(device, rows.element_size() * rows.nelement())
            )
        self.resident = resident
        if device.type == "cpu" or not tensor:
            self.rows = rows
        elif resident:
            self.rows = rows.to(device)
        else:
            self.rows = rows.pin_memory() if torch.cuda.is_available() else rows

    def __len__(self) -> int:
        return len(self.rows)

    def place_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """A (CPU-drawn) index tensor where the rows are indexed."""
        return idx.to(self.device) if self.resident else idx

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        rows = self.rows
        # index_select gathers the same rows as rows[idx] without advanced indexing's general
        # path: 40 us against 190 us for 128 of 8,000 MNIST images on one CPU thread
        batch = rows.index_select(0, idx) if isinstance(rows, torch.Tensor) else rows[idx]
        return batch if self.resident else batch.to(self.device, non_blocking=True)


@contextlib.contextmanager
def _training_mode(
    model: VAE, cfg: TrainConfig, device: torch.device, in_group: bool
) -> Iterator[None]:
    """Process settings for the duration of fit only: flush-to-zero (CPU), bf16 networks,
    the compiler's (steps.compile_settings)."""
    # Adam's moments of parameters that never get gradient decay into denormal floats,
    # which make CPU steps 1.5-2x slower after ~800 steps. Flushing them to zero changes
    # values below 1e-38 only. All threads: see vaekit.denormals. (GPUs flush by themselves.)
    was_flushing = denormals.is_flushing()
    flushed = (
        cfg.flush_denormal
        and device.type == "cpu"
        and not was_flushing
        and denormals.set_flush_denormal(True)
    )
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
    ends with the weights of its best validation epoch (the last epoch without validation data).
    resume: continue from run_dir/checkpoint.safetensors (same weights as an uninterrupted run).
    dynamic_binarize: draw x ~ Bernoulli(x) afresh every epoch (validation is drawn once).
    device: where to train ("auto", "cpu", "cuda", "cuda:N", "mps", a torch.device); None:
    where the model is. The model is moved there and stays there; the data follow the rule of
    `DeviceRows`. Batches and shuffles are drawn on the CPU, so a run's batches do not depend
    on the device (the posterior noise comes from the device's generator).
    In a torch.distributed process group (torchrun; vaekit.distributed) each rank trains on its
    shard of every global batch of cfg.batch_size rows, the epoch's metrics are summed across
    ranks, and only rank 0 writes to run_dir; every rank returns the same history.
    """
    # under torchrun, "auto" and "cuda" mean this process's own GPU (cuda:LOCAL_RANK)
    device = (
        device_of(model) if device is None else resolve_device(distributed.local_device(device))
    )
    world = distributed.current()
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
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None and world.main:
        run_dir.mkdir(parents=True, exist_ok=True)

    model.to(device)
    torch.manual_seed(cfg.seed)
    shuffle = torch.Generator().manual_seed(cfg.seed)  # alike on every rank
    optimizer = make_optimizer(model, cfg.lr)
    state: dict[str, Any] = {"epoch": 0, "history": [], "best": math.inf, "best_epoch": 0, "bad": 0}
    best_weights: dict[str, torch.Tensor] | None = None
    initial: dict[str, torch.Tensor] | None = None  # restored if epoch 1 goes non-finite
    if resume:
        if run_dir is None:
            raise ValueError("resume needs a run directory")
        state = load_checkpoint(run_dir / CHECKPOINT, model, optimizer, shuffle, device)
        if (run_dir / MODEL).is_file():
            best_weights = {k: v.clone() for k, v in load_tensors(run_dir / MODEL)[0].items()}
    if x_val is not None and dynamic_binarize:
        fixed = torch.Generator().manual_seed(cfg.seed + 1)  # one draw: comparable across epochs
        x_val = torch.bernoulli(x_val[torch.arange(len(x_val))], generator=fixed)

    if best_weights is None:
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_rows = DeviceRows(x_train, device)
    train_labels = None if y_train is None else DeviceRows(y_train, device, train_rows.resident)
    n = len(x_train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    warmup_steps = cfg.warmup_epochs * steps_per_epoch
    history: list[dict[str, float]] = state["history"]
    bar = _progress(progress and world.main, cfg.epochs, state["epoch"])
    tb = _tensorboard(run_dir if world.main else None)
    loss_of = batch_loss(world.wrap(model, device), cfg, device, world.active)

    saved = [state["epoch"]]  # the last epoch whose checkpoint is complete (for Ctrl-C)
    with _training_mode(model, cfg, device, world.active), _interrupts(run_dir, saved, bar):
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            source = train_rows
            if dynamic_binarize:  # drawn on the CPU: the same draw on every device
                drawn = torch.bernoulli(x_train[torch.arange(n)], generator=shuffle)
                source = DeviceRows(drawn, device, train_rows.resident)
            perm = train_rows.place_indices(torch.randperm(n, generator=shuffle))
            if world.active:  # each rank its own noise, and a resume draws it alike
                torch.manual_seed(world.noise_seed(cfg.seed, epoch))
            step0 = (epoch - 1) * steps_per_epoch
            sums, beta = _train_epoch(
                model,
                loss_of,
                optimizer,
                source,
                train_labels,
                perm,
                cfg,
                step0,
                warmup_steps,
                bar,
                world,
            )
            train = world.sum(sums).div(n).tolist()
            if not all(math.isfinite(v) for v in train):
                if bar is not None:
                    bar.close()
                model.load_state_dict(best_weights if best_weights is not None else initial)
                raise TrainingError(_nonfinite_message(run_dir, epoch, train[0]))
            val = None if x_val is None else _validate(model, x_val, y_val, cfg, world)
            row = _epoch_row(epoch, train, val, beta, time.perf_counter() - t0)
            history.append(row)
            improved = _track_best(state, val[0] if val else train[0], epoch)
            if improved:
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            stop = cfg.patience is not None and x_val is not None and state["bad"] >= cfg.patience
            with interrupts_deferred():  # a Ctrl-C here waits: model, checkpoint, metrics agree
                if run_dir is not None and world.main:
                    _save_epoch(run_dir, model, optimizer, shuffle, state, cfg, history, improved)
                saved[0] = epoch
            _log_epoch(row, train, val, tb, bar, on_epoch)
            if stop:  # every rank has the same validation loss, so all stop here together
                break

    if bar is not None:
        bar.close()
    if tb is not None:
        tb.close()
    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.eval()
    refit = _fit_prior_to_posterior(model, train_rows, train_labels, cfg.batch_size)
    if refit and run_dir is not None and world.main:
        # the model file gets the refit prior; the checkpoint keeps the one training goes on with
        model.save(run_dir / MODEL)
    return history


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
            bar.set_postfix_str(_postfix(sums / seen), refresh=False)
            bar.update(0)
    return sums, beta


def _validate(
    model: VAE, x: Rows, y: torch.Tensor | None, cfg: TrainConfig, world: distributed.World
) -> list[float]:
    """evaluate_loss over the validation split, each rank its part, summed across ranks."""
    idx = world.part(len(x))
    sums = loss_sums(model, x, idx, cfg.batch_size, y, cfg)
    return world.sum(sums).div(len(x)).tolist()


def _epoch_row(
    epoch: int, train: list[float], val: list[float] | None, beta: float, seconds: float
) -> dict[str, float]:
    """One metrics.csv row (nats per example; val_* NaN without validation data)."""
    val = val or [math.nan] * 3
    return {
        "epoch": epoch,
        "train_loss": train[0],
        "train_rate": train[1],
        "train_distortion": train[2],
        "val_loss": val[0],
        "val_rate": val[1],
        "val_distortion": val[2],
        "beta": beta,
        "seconds": seconds,
    }


def _track_best(state: dict[str, Any], score: float, epoch: int) -> bool:
    """Early stopping's bookkeeping: whether `score` (validation loss, else training loss)
    improved on the best; counts the epochs without improvement in state["bad"]."""
    state["epoch"] = epoch
    if score < state["best"]:
        state.update(best=score, best_epoch=epoch, bad=0)
        return True
    state["bad"] += 1
    return False


def _save_epoch(
    run_dir: Path,
    model: VAE,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    state: dict[str, Any],
    cfg: TrainConfig,
    history: list[dict[str, float]],
    improved: bool,
) -> None:
    """The save unit: the best model (when it improved), the checkpoint and metrics.csv, which
    always agree (the caller holds Ctrl-C until all three are written)."""
    if improved:
        model.save(run_dir / MODEL)
    save_checkpoint(run_dir / CHECKPOINT, model, optimizer, shuffle, state, cfg)
    write_metrics(run_dir / METRICS, history)


def _log_epoch(
    row: dict[str, float],
    train: list[float],
    val: list[float] | None,
    tb: Any,
    bar: Any,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> None:
    """The epoch's row to TensorBoard, the caller's hook and the progress bar."""
    if tb is not None:
        for key, value in row.items():
            if key != "epoch" and math.isfinite(value):
                tb.add_scalar(key, value, int(row["epoch"]))
    if on_epoch is not None:
        on_epoch(row)
    if bar is not None:
        bar.set_postfix_str(_postfix(torch.tensor(train), val), refresh=False)
        bar.update(1)


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


def check_data(model: VAE, x: Rows, name: str) -> None:
    """Shape and support checked once per split, not per step."""
    probe = x[torch.arange(min(len(x), 2))]
    try:
        # the whole of an in-memory split (its finiteness, and the likelihood's support where
        # the model has one); rows read from disk are checked by the loader
        model.check_input(x if isinstance(x, torch.Tensor) else probe)
    except ValueError as e:
        raise ValueError(f"{name} data: {e}") from None


def check_labels(model: VAE, y: Any, n: int, name: str) -> torch.Tensor | None:
    """A split's labels as (n,) int64 (None for a model without observed labels), checked once."""
    try:
        return model.check_labels(y, n)
    except ValueError as e:
        raise ValueError(f"{name} labels: {e}") from None


def _postfix(t: torch.Tensor, val: list[float] | None = None) -> str:
    total, rate, dist = t.tolist()
    text = f"-elbo {total:.2f}  rate {rate:.2f}  distortion {dist:.2f}"
    return text + (f"  val {val[0]:.2f}" if val else "")


def _progress(enabled: bool, epochs: int, done: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, initial=done, unit="epoch", dynamic_ncols=True, leave=True)


def _tensorboard(run_dir: Path | None) -> Any:
    """A SummaryWriter when tensorboard is installed and there is a run directory."""
    if run_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional
        return None
    return SummaryWriter(str(run_dir / TENSORBOARD))


@contextlib.contextmanager
def _interrupts(run_dir: Path | None, saved: list[int], bar: Any) -> Iterator[None]:
    """Ctrl-C anywhere in an epoch (steps, validation, saving) -> TrainingInterrupted."""
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as e:
        if bar is not None:
            bar.close()
        signum = e.signum if isinstance(e, Terminated) else signal.SIGINT
        how = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
        raise TrainingInterrupted(_interrupted_message(run_dir, saved[0], how), signum) from None


def _interrupted_message(run_dir: Path | None, saved: int, how: str = "interrupted") -> str:
    epoch = saved + 1
    if run_dir is None:
        return f"{how} during epoch {epoch}"
    if saved == 0:
        return f"{how} during epoch 1, before any checkpoint: nothing to --resume; start again"
    # under torchrun the run goes on under torchrun, with the same launcher options
    launcher = "torchrun [the same options] -m " if distributed.launched() else ""
    return (
        f"{how} during epoch {epoch}; epochs up to {saved} are saved in "
        f"{run_dir / CHECKPOINT}; continue with: {launcher}vaekit train --resume --out {run_dir}"
    )


def _nonfinite_message(run_dir: Path | None, epoch: int, value: float) -> str:
    kept = ""
    if run_dir is not None and epoch > 1:
        kept = f"; the last good checkpoint (epoch {epoch - 1}) is kept in {run_dir}"
    return (
        f"the training loss became {value} in epoch {epoch}{kept}; "
        "try a smaller --lr, --grad-clip 10, or check the data for extreme values"
    )


def write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    """metrics.csv, one row per epoch, rewritten whole (atomically) so resume stays consistent."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow(
            {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        )
    atomic_write_text(path, buf.getvalue())
