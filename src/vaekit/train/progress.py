"""What training reports per epoch: the metrics.csv row and file, the progress bar and
TensorBoard scalars."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vaekit.core.io import atomic_write_text
from vaekit.train.config import TrainConfig

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


def epoch_row(
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


def log_epoch(
    row: dict[str, float],
    train: list[float],
    val: list[float] | None,
    tb: Any,
    bar: Any,
    on_epoch: Callable[[dict[str, float]], None] | None,
    names: tuple[str, str, str] = ("-elbo", "rate", "distortion"),
) -> None:
    """The epoch's row to TensorBoard, the caller's hook and the progress bar (figures
    under `names`, see `figure_names`)."""
    if tb is not None:
        for key, value in row.items():
            if key != "epoch" and math.isfinite(value):
                tb.add_scalar(key, value, int(row["epoch"]))
    if on_epoch is not None:
        on_epoch(row)
    if bar is not None:
        bar.set_postfix_str(postfix(torch.tensor(train), val, names), refresh=False)
        bar.update(1)


def figure_names(cfg: TrainConfig) -> tuple[str, str, str]:
    """What the three training figures [total, rate, distortion] are under this objective,
    named as the progress bar shows them (nats per example).

    ELBO: the total is -ELBO only at beta 1 without warm-up (else the beta-weighted loss).
    IWAE: the total is the negative IWAE bound; rate and distortion are one-sample Monte Carlo
    means of the same draws (mc), which do not add up to it. Infomax: the loss, the rate, and
    minus the mutual-information estimate."""
    if cfg.objective == "iwae":
        return f"-iwae(k={cfg.samples})", "rate(mc)", "distortion(mc)"
    if cfg.objective == "infomax":
        return "loss", "rate", "-mi"
    plain = cfg.beta == 1.0 and cfg.warmup_epochs == 0
    return ("-elbo" if plain else "loss"), "rate", "distortion"


def postfix(
    t: torch.Tensor,
    val: list[float] | None = None,
    names: tuple[str, str, str] = ("-elbo", "rate", "distortion"),
) -> str:
    """The progress bar's text: the training figures under their names, and the validation
    total."""
    total, rate, dist = t.tolist()
    text = f"{names[0]} {total:.2f}  {names[1]} {rate:.2f}  {names[2]} {dist:.2f}"
    return text + (f"  val {val[0]:.2f}" if val else "")


def progress_bar(enabled: bool, epochs: int, done: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, initial=done, unit="epoch", dynamic_ncols=True, leave=True)


def tensorboard(run_dir: Path | None) -> Any:
    """A SummaryWriter when tensorboard is installed and there is a run directory."""
    if run_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional
        return None
    return SummaryWriter(str(run_dir / TENSORBOARD))


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
