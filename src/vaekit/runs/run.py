"""Run directories: train one from a `RunConfig`, load it back, evaluate it, draw it.

A run directory holds
    config.json            RunConfig: everything to rebuild the model and repeat the run
    preprocessing.json     the preprocessing fitted on the training split (means, stds)
    model.safetensors      the best model (weights + its ModelConfig in the header)
    checkpoint.safetensors latest epoch: weights, optimizer, RNG, history (for --resume)
    metrics.csv            one row per epoch
    evaluation.json        test-split figures (nats per example)
    *.png, report.html     pictures and the report that shows them
    exemplars.safetensors  a table run: the training rows' posteriors (vaekit.runs.tables)
    selection.json         a table run trained with --select impute (vaekit.tables.select)
Loading never unpickles: tensors come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaekit.core.config import ConfigError, ModelConfig, to_dict
from vaekit.core.io import CheckpointError, atomic_write_text
from vaekit.core.model import VAE
from vaekit.core.utils import device_of
from vaekit.data import DataError, Preprocessor, Splits, load_like_run, prepare
from vaekit.data.mixed import check_model_kinds
from vaekit.runs.config import RunConfig, load_run_config, save_json
from vaekit.runs.tables import EXEMPLARS, SELECTION, save_exemplars, with_table
from vaekit.train import distributed
from vaekit.train.devices import resolve_device
from vaekit.train.diagnose import diagnose
from vaekit.train.evaluate import conditional_accuracy, evaluate
from vaekit.train.loop import (
    CHECKPOINT,
    METRICS,
    MODEL,
    TENSORBOARD,
    check_data,
    check_labels,
    fit,
)

CONFIG = "config.json"
PREPROCESSING = "preprocessing.json"
EVALUATION = "evaluation.json"
PICTURES = ("samples.png", "reconstructions.png", "manifold.png", "latent.png", "curves.png")
REPORT = "report.html"
ARTIFACTS = (CONFIG, PREPROCESSING, MODEL, CHECKPOINT, METRICS, EVALUATION, EXEMPLARS, SELECTION,
             *PICTURES, REPORT)


@dataclass
class Run:
    """A trained run loaded from its directory."""

    path: Path
    config: RunConfig
    model: VAE
    preprocessor: Preprocessor

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Run:
        """The run in `path`, its model on `device` (auto, cpu, cuda, cuda:N, mps)."""
        path = Path(path)
        device = resolve_device(device)
        if not (path / CONFIG).is_file():
            raise CheckpointError(
                f"{path} is not a vaekit run directory (no {CONFIG}); train one first"
            )
        try:
            config = load_run_config(path / CONFIG, strict=True)
        except ConfigError as e:
            raise CheckpointError(f"{path / CONFIG}: {e}") from None
        model = VAE.load(path / MODEL)
        if model.config != config.model:
            raise CheckpointError(
                f"{path / MODEL} does not match {path / CONFIG} (different model configs); "
                "was one of them replaced?"
            )
        if config.data.table == "on":  # the schema it reads tables with fits its model
            check_model_kinds(config.data, config.model.column_kinds)
        return cls(path, config, model.to(device), _load_preprocessor(path))

    @property
    def device(self) -> torch.device:
        return device_of(self.model)

    def data(
        self,
        source: str | None = None,
        split: str = "test",
        image_shape: tuple[int, ...] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (n, *event_shape) and labels: the run's own split, or new data prepared like it
        (image_shape: how to read that source, where it differs from the run's data)."""
        if source is not None:
            return load_like_run(
                source,
                self.config.data,
                self.preprocessor,
                event_shape=self.config.model.event_shape,
                image_shape=image_shape,
            )
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        part = getattr(prepare(self.config.data), split)
        if len(part.x) == 0:
            raise ValueError(
                f"the run's {split} split is empty; pass --split train or --data SOURCE"
            )
        return part.x, part.y

    def to_display(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> data space for pictures and exports (undo standardization)."""
        return self.preprocessor.inverse(x)


def check_out_dir(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse to train into a non-empty directory unless resuming or forced (changes nothing)."""
    if resume:
        if not (out / CONFIG).is_file():
            raise FileNotFoundError(f"nothing to resume in {out} (no {CONFIG}); drop --resume")
        return
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(
            f"{out} already exists and is not empty; use --resume to continue it, "
            "--force to replace its vaekit files, or another --out"
        )


def prepare_out_dir(out: Path, *, resume: bool, force: bool) -> None:
    """check_out_dir, then (forced) remove the old vaekit files and create the directory."""
    check_out_dir(out, resume=resume, force=force)
    if resume:
        return
    if force and out.is_dir():
        for name in ARTIFACTS:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / TENSORBOARD, ignore_errors=True)  # the old run's curves
    out.mkdir(parents=True, exist_ok=True)


def train_run(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    pictures: bool = True,
    device: str | torch.device = "auto",
) -> tuple[Run, dict[str, float]]:
    """Train a run into `out` (see the module docstring); returns it and its test figures.

    With resume=True the run's own config.json is used (only `config.train.epochs` and
    `config.train.patience` are taken from the argument) and training continues from the
    checkpoint. device: where to train and evaluate (auto: a CUDA GPU, else MPS, else the CPU);
    nothing written depends on it.

    Launched by torchrun (vaekit.train.distributed), every rank runs this: all make the same checks
    and load the same data, then join the process group and train their shards; only rank 0
    writes, evaluates and draws (the other ranks return empty figures).
    """
    out = Path(out)
    device = resolve_device(distributed.local_device(device))  # under torchrun: cuda:LOCAL_RANK
    # Nothing is created, replaced or deleted until the data have loaded and passed the
    # model's checks: a bad source leaves an existing (or no) directory as it was.
    check_out_dir(out, resume=resume, force=force)
    if resume:
        saved = load_run_config(out / CONFIG)
        saved.train.epochs, saved.train.patience = config.train.epochs, config.train.patience
        config = saved
    splits = prepare(config.data)
    config.model = dataclasses.replace(config.model, event_shape=splits.event_shape)
    if not resume:
        config = with_table(config, splits)
    if config.model.conditional and not resume:
        config.model = with_classes(config.model, splits)
    torch.manual_seed(config.train.seed)
    model = VAE.from_config(config.model)
    check_data(model, splits.train.x, "training")
    labels = run_labels(model, splits)
    if resume and not (out / CHECKPOINT).is_file():
        raise CheckpointError(f"nothing to resume: {out / CHECKPOINT} is missing")
    created = not out.exists()
    # every rank has checked the same things; the group forms once all have (a barrier), so
    # rank 0 cannot create the directory under another rank's check
    started = distributed.start(device)
    try:
        return _train_and_report(
            config, out, model, splits, labels, resume, force, created, progress, pictures, device
        )
    finally:
        distributed.stop(started)


def _train_and_report(
    config: RunConfig,
    out: Path,
    model: VAE,
    splits: Splits,
    labels: Labels,
    resume: bool,
    force: bool,
    created: bool,
    progress: bool,
    pictures: bool,
    device: torch.device,
) -> tuple[Run, dict[str, float]]:
    """train_run after its checks: the files (rank 0), training, then test figures and
    pictures (rank 0)."""
    main = distributed.current().main
    if main and not resume:
        prepare_out_dir(out, resume=resume, force=force)
        save_json(config, out / CONFIG)
        atomic_write_text(out / PREPROCESSING, json.dumps(splits.preprocessor.to_dict(), indent=2))
    if main and resume:  # the codes of the model before; written again after training
        (out / EXEMPLARS).unlink(missing_ok=True)
    try:
        fit(
            model,
            splits.train.x,
            splits.val.x if len(splits.val.x) else None,
            config.train,
            y_train=labels.train,
            y_val=labels.val,
            run_dir=out,
            resume=resume,
            progress=progress,
            dynamic_binarize=config.data.binarize == "dynamic",
            device=device,
        )
    except BaseException:
        if main and not resume and not (out / CHECKPOINT).is_file():
            _remove_unstarted(out, created)  # so the same command can simply be run again
        raise
    run = Run(out, config, model, splits.preprocessor)
    if not main:
        return run, {}
    if resume:  # the new epoch count, once the checkpoint has loaded and training went on
        save_json(config, out / CONFIG)
    if config.data.table == "on":  # the training rows' codes, imputation's prior
        save_exemplars(out, model, splits.train.x, config.train.seed)
    figures = evaluate_split(run, splits, progress=progress)
    if pictures:
        draw(run, splits=splits, figures=figures)
    return run, figures


def with_classes(model: ModelConfig, splits: Splits) -> ModelConfig:
    """A conditional model's num_classes and class names, taken from the data's labels:
    class indices 0..K-1 (folder names and string labels are encoded so by the loader, which
    keeps the names); K is the largest label + 1 over all splits."""
    ys = [s.y for s in (splits.train, splits.val, splits.test) if s.y is not None and len(s.y)]
    if splits.train.y is None or not ys:
        raise DataError(
            f"{splits.name} has no labels, which a conditional model needs; give labelled data "
            "(digits, an IDX folder with its labels file, a .npz with y, a CSV with "
            "--label-column, or an image folder with class sub-folders), or drop --conditional"
        )
    lowest = min(int(y.min()) for y in ys)
    if lowest < 0:
        raise DataError(f"{splits.name} has label {lowest}; labels must be class indices >= 0")
    classes = max(int(y.max()) for y in ys) + 1
    if classes < 2:
        raise DataError(f"{splits.name} has only one class; a conditional model needs two or more")
    names = tuple(splits.classes) if splits.classes and len(splits.classes) == classes else ()
    return dataclasses.replace(model, num_classes=classes, class_names=names)


@dataclass
class Labels:
    """Each split's labels for a model that observes them (all None for one that does not)."""

    train: torch.Tensor | None = None
    val: torch.Tensor | None = None
    test: torch.Tensor | None = None


def run_labels(model: VAE, splits: Splits) -> Labels:
    if not model.observes_labels:
        return Labels()
    return Labels(
        *(
            check_labels(model, part.y, len(part.x), name) if len(part.x) else None
            for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test))
        )
    )


def _remove_unstarted(out: Path, created: bool) -> None:
    """Undo a run that failed before its first checkpoint (non-finite loss, Ctrl-C)."""
    for name in (CONFIG, PREPROCESSING, MODEL, METRICS):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / TENSORBOARD, ignore_errors=True)
    if created and not any(out.iterdir()):
        out.rmdir()


def evaluate_options(train: Any) -> dict[str, Any]:
    """The evaluate() options a run's TrainConfig sets (K; an infomax run's MI terms)."""
    return {"k": train.eval_k, "mi_estimator": train.mi_estimator, "mi_weight": train.mi_weight}


def evaluate_split(run: Run, splits: Splits, *, progress: bool = False) -> dict[str, float]:
    """Test-split figures written to evaluation.json (the train split if there is no test);
    a conditional model's are of log p(x|y), with its conditional accuracy beside them."""
    name, part = ("test", splits.test) if len(splits.test.x) else ("train", splits.train)
    y = part.y if run.model.observes_labels else None
    figures: dict[str, Any] = {
        "split": name,
        **evaluate(run.model, part.x, y, **evaluate_options(run.config.train), progress=progress),
    }
    if run.model.observes_labels and isinstance(splits.train.x, torch.Tensor):
        figures.update(
            conditional_accuracy(run.model, splits.train.x, splits.train.y, part.x, part.y)
        )
    figures["device"] = str(run.device)
    figures["warnings"] = diagnose(figures, run.model.config.num_classes)
    for line in figures["warnings"]:
        warnings.warn(line, stacklevel=2)
    atomic_write_text(run.path / EVALUATION, json.dumps(figures, indent=2) + "\n")
    return figures


def draw(
    run: Run,
    *,
    splits: Splits | None = None,
    figures: dict[str, Any] | None = None,
    extra: dict[str, Path] | None = None,
) -> dict[str, Path]:
    """Write the run's pictures and report.html; returns {name: path}. extra: pictures drawn
    by an application (e.g. `vaekit.anomaly.plots.draw_anomaly`) to show in the report too."""
    from vaekit.viz import plot_run
    from vaekit.viz.report import write_report

    if splits is None:
        splits = prepare(run.config.data)
    part = splits.test if len(splits.test.x) else splits.train
    x, y = part.x, part.y
    if not isinstance(x, torch.Tensor):  # a memory-mapped split: pictures need a few rows only
        x, y = x[torch.arange(min(len(x), 2000))], None if y is None else y[:2000]
    images = plot_run(
        run.model,
        x,
        y,
        run.path,
        metrics_csv=run.path / METRICS,
        to_display=run.to_display,
    )
    images.update(extra or {})
    if figures is None and (run.path / EVALUATION).is_file():
        figures = json.loads((run.path / EVALUATION).read_text())
    shown = _report_figures(figures or {}, run)
    if run.config.data.table == "on":  # synthetic rows against the training rows
        from vaekit.data.mixed import run_schema
        from vaekit.viz.tables import synthetic_checks

        test = splits.test.x if len(splits.test.x) else None
        schema = run_schema(run.config.data)
        shown.update(synthetic_checks(run.model, schema, splits.train.x, test))
    write_report(
        run.path,
        title=f"vaekit run: {run.path.name}",
        warnings=(figures or {}).get("warnings", []),
        figures=shown,
        images=images,
        config=to_dict(run.config),
    )
    return images


def _report_figures(f: dict[str, Any], run: Run) -> dict[str, float | str]:
    if not f:
        return {}
    split = f.get("split", "test")
    if "elbo" not in f:  # an encoder-only model: its own figures, as they are named
        skip = ("split", "n", "precision", "warnings")
        out = {f"{split} {k}": v for k, v in f.items() if k not in skip}
        out["examples"] = f["n"]
        return _with_history(out, run)
    out = {
        f"{split} ELBO (nats per example)": f["elbo"],
        f"{split} rate, KL(q(z|x) || p(z)) (nats per example)": f["rate"],
        f"{split} distortion, -E_q log p(x|z) (nats per example)": f["distortion"],
        f"{split} log p(x), importance sampling K={f['k']} (nats per example)": f["log_likelihood"],
        f"{split} bits per dimension": f["bits_per_dim"],
        "examples": f["n"],
    }
    if f.get("conditional"):
        out = {k.replace("log p(x)", "log p(x|y)"): v for k, v in out.items()}
        out["conditional accuracy (fraction of samples judged the asked class)"] = f.get(
            "conditional_accuracy", math.nan
        )
        out["judge's accuracy on real test data (fraction)"] = f.get(
            "classifier_test_accuracy", math.nan
        )
    return _with_history(out, run)


def _with_history(out: dict[str, Any], run: Run) -> dict[str, Any]:
    history = _read_metrics(run.path / METRICS)
    if history:
        out["epochs trained"] = len(history)
        out["seconds training"] = round(sum(float(r["seconds"]) for r in history), 1)
        val = [float(r["val_loss"] or "nan") for r in history]
        if any(math.isfinite(v) for v in val):  # the weights in model.safetensors
            out["epoch kept (lowest validation loss)"] = 1 + min(
                range(len(val)), key=lambda i: val[i] if math.isfinite(val[i]) else math.inf)
    return out


def _read_metrics(path: Path) -> list[dict[str, str]]:
    import csv

    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def _load_preprocessor(path: Path) -> Preprocessor:
    try:
        return Preprocessor.from_dict(json.loads((path / PREPROCESSING).read_text()))
    except FileNotFoundError:
        raise CheckpointError(f"{path / PREPROCESSING} is missing; the run is incomplete") from None
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path / PREPROCESSING} is damaged: {e}") from None
