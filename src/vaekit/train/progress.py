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
) -> None:
    """The epoch's row to TensorBoard, the caller's hook and the progress bar."""
    if tb is not None:
        for key, value in row.items():
            if key != "epoch" and math.isfinite(value):
                tb.add_scalar(key, value, int(row["epoch"]))
    if on_epoch is not None:
        on_epoch(row)
    if bar is not None:
        bar.set_postfix_str(postfix(torch.tensor(train), val), refresh=False)
        bar.update(1)


def postfix(t: torch.Tensor, val: list[float] | None = None) -> str:
    total, rate, dist = t.tolist()
    text = f"-elbo {total:.2f}  rate {rate:.2f}  distortion {dist:.2f}"
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
