"""A `vaekit classify` run directory: an ordinary run (config.json, preprocessing.json,
model.safetensors: `vaekit sample --label`, `encode`, `evaluate` and `serve` read it as any
run) plus the fitted classifier, the held-out figures and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.core.io import atomic_write_text
from vaekit.data.config import DataConfig
from vaekit.runs.config import RunConfig, save_json
from vaekit.runs.run import CONFIG, EVALUATION, PREPROCESSING, REPORT
from vaekit.semisupervised.estimator import VAEClassifier
from vaekit.train.config import TrainConfig
from vaekit.train.loop import MODEL

ESTIMATOR = "classifier.safetensors"
SAMPLES_PER_CLASS = 10  # the report's classes.png: one row of this many per class


def hide_labels(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """y with all but `per_class` labels of each class set to -1 (seeded choice); a class with
    fewer labelled rows is a one-line ValueError."""
    out = np.full_like(y, -1)
    rng = np.random.default_rng(seed)
    for c in np.unique(y[y >= 0]):
        rows = np.flatnonzero(y == c)
        if len(rows) < per_class:
            raise ValueError(
                f"--labels-per-class {per_class} is more than class {int(c)} has ({len(rows)} "
                "labelled rows in the training split); lower it"
            )
        keep = rng.choice(rows, per_class, replace=False)
        out[keep] = c
    return out


def write_run(
    out: Path,
    est: VAEClassifier,
    data: DataConfig,
    splits: Any,
    y_train: np.ndarray,
    y_test: np.ndarray | None,
) -> dict[str, Any]:
    """Write the run directory `out` for the fitted `est` (trained on splits.train with the
    labels y_train, -1 where hidden or unknown; y_test: the held-out rows' labels in the same
    terms, or None) and return its held-out figures."""
    from vaekit.semisupervised.plots import classifier_figures, confusion_figure
    from vaekit.viz.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    model = est.model_
    names = [str(v) for v in est.classes_.tolist()]
    config = RunConfig(model=model.config, data=data, train=TrainConfig(epochs=est.n_iter_))
    save_json(config, out / CONFIG)
    atomic_write_text(out / PREPROCESSING, json.dumps(splits.preprocessor.to_dict(), indent=2))
    model.save(out / MODEL)
    est.save(out / ESTIMATOR)
    x_train = splits.train.x.numpy()
    figures: dict[str, Any] = {
        "labelled training rows": int(labelled(y_train).sum()),
        "unlabelled training rows": int((~labelled(y_train)).sum()),
    }
    test = splits.test
    images: dict[str, Path] = {}
    if y_test is not None and len(test.x) and labelled(y_test).any():
        rows = labelled(y_test)
        pred = est.predict(test.x.numpy()[rows])
        figures["held-out accuracy"] = float((pred == y_test[rows]).mean())
        figures["held-out labelled rows"] = int(rows.sum())
        images["confusion"] = confusion_figure(
            y_test[rows], pred, est.classes_, names, out / "confusion.png"
        )
    asked = np.repeat(est.classes_, SAMPLES_PER_CLASS)
    samples = torch.from_numpy(est.sample(len(asked), label=asked, random_state=0))
    with torch.no_grad():
        images.update(
            classifier_figures(
                model, splits.train.x, _indices(est, y_train), _indices(est, est.predict(x_train)),
                samples, lambda t: splits.preprocessor.inverse(t.cpu()), out, names,
            )
        )
    atomic_write_text(out / EVALUATION, json.dumps(figures, indent=2) + "\n")
    write_report(
        out, title=f"vaekit classify: {data.source}", figures=figures, images=images,
        config=config,
    )
    return figures


def labelled(y: np.ndarray) -> np.ndarray:
    """(n,) bool: the rows of y (integers or names) that hold a label (not -1 / "-1")."""
    return np.asarray(y).astype(str) != "-1"


def _indices(est: VAEClassifier, y: np.ndarray) -> np.ndarray:
    """Labels (of classes_, -1: none) as indices into classes_ (-1 for none)."""
    y = np.asarray(y)
    index = np.searchsorted(est.classes_, y).clip(0, len(est.classes_) - 1)
    return np.where(labelled(y) & (est.classes_[index] == y), index, -1)


def load_classifier_run(run_dir: Path) -> VAEClassifier:
    """The fitted classifier of a `vaekit classify` run directory."""
    path = Path(run_dir) / ESTIMATOR
    if not path.is_file():
        raise ValueError(
            f"{run_dir} is not a classify run (no {ESTIMATOR}); train one with "
            "vaekit classify --data SOURCE --out RUN_DIR"
        )
    return VAEClassifier.load(path)


__all__ = ["ESTIMATOR", "REPORT", "hide_labels", "labelled", "load_classifier_run", "write_run"]
