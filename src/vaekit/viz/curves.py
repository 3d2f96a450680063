"""Training curves from a run's metrics.csv: loss, rate and distortion per epoch."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: must precede the pyplot import

import matplotlib.pyplot as plt
import numpy as np

from vaekit.viz.images import _DPI, save_figure


def _read_metrics(metrics_csv: str | Path) -> dict[str, np.ndarray]:
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{metrics_csv} has no rows")

    def num(v: str | None) -> float:
        try:
            return float(v) if v not in (None, "") else math.nan
        except ValueError:
            return math.nan

    cols = {k: np.array([num(r.get(k)) for r in rows]) for k in rows[0] if k}
    if "epoch" not in cols:
        cols["epoch"] = np.arange(1, len(rows) + 1, dtype=float)
    return cols


def training_curves(metrics_csv: str | Path, path: str | Path) -> Path:
    """Panels for the loss (distortion + beta * rate; -ELBO at beta 1), rate (KL) and
    distortion per epoch, train and validation.

    Reads metrics.csv (columns epoch, train_loss, train_rate, train_distortion, val_loss,
    val_rate, val_distortion, seconds); empty val_* cells (no validation split) are skipped.
    """
    cols = _read_metrics(metrics_csv)
    epoch = cols["epoch"]
    panels = [
        ("loss", "loss (distortion + β·rate)"),
        ("rate", "rate (KL)"),
        ("distortion", "distortion (−log p(x|z))"),
    ]
    panels = [p for p in panels if f"train_{p[0]}" in cols or f"val_{p[0]}" in cols]
    if not panels:
        raise ValueError(f"{metrics_csv} has none of the columns train_loss, train_rate, ...")
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.2 * len(panels), 3.3),
        dpi=_DPI,
        squeeze=False,
        layout="constrained",
    )
    marker = "o" if len(epoch) <= 30 else None
    for ax, (key, name) in zip(axes[0], panels, strict=True):
        for split, colour, ls in (("train", "tab:blue", "-"), ("val", "tab:orange", "--")):
            values = cols.get(f"{split}_{key}")
            if values is None or np.all(np.isnan(values)):
                continue
            ok = ~np.isnan(values)
            ax.plot(
                epoch[ok],
                values[ok],
                ls,
                color=colour,
                marker=marker,
                ms=3,
                lw=1.5,
                label="train" if split == "train" else "validation",
            )
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.grid(alpha=0.3, lw=0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize=9, frameon=False)
    return save_figure(fig, path)

