"""Training on a table from Python, with the table defaults of `vaekit train`.

    from vaekit.tables import train_table
    run = train_table("examples/penguins.csv", "runs/penguins")   # or a DataFrame / dict

Defaults (where an argument is None; `vaekit.data.mixed.table_defaults`): epochs enough for
TABLE_MIN_STEPS optimizer steps over the training split (at least 30), hidden sizes
TABLE_HIDDEN, latent size TABLE_LATENT, beta TABLE_BETA (where `train` holds no beta); a
training split of at most TABLE_FULL_BATCH rows (with neither batch_size nor lr given) takes
TABLE_FULL_BATCH_STEPS full-batch steps at TABLE_FULL_BATCH_LR instead; everything else as
`RunConfig()`.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vaekit.core.config import ModelConfig
from vaekit.data.config import DataConfig
from vaekit.data.mixed import table_defaults
from vaekit.data.tabular import as_columns, read_table, write_table
from vaekit.runs.config import RunConfig, save_json
from vaekit.runs.run import CONFIG, Run, train_run
from vaekit.train.config import TrainConfig

# The CSV a table given in memory (dict, DataFrame) is written to, in the run directory.
IN_MEMORY_COPY = "table.csv"


def train_table(
    table: Any,
    out: str | Path,
    *,
    epochs: int | None = None,
    hidden: tuple[int, ...] | list[int] | None = None,
    latent_dim: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    schema: Any = None,
    force: bool = False,
    progress: bool = False,
    pictures: bool = False,
    device: str = "cpu",
    select: str | None = None,
    **train: Any,
) -> Run:
    """A run trained on `table` (a CSV path, a dict of columns or a pandas DataFrame) in
    `out`, with the table defaults for what is not given (module docstring); `train` holds
    further TrainConfig fields (batch_size, lr, patience, ...). A table given in memory is
    written to a CSV first, kept in the run directory as IN_MEMORY_COPY (the run's config
    names it as its source, so `vaekit evaluate`, `impute` and the others read the run's own
    splits from it).
    select="impute": train the defaults and a lower-rate recipe, keep the one that fills the
    validation rows' hidden cells better (`vaekit.tables.select`; give neither beta,
    latent_dim nor hidden)."""
    if select not in (None, "impute"):
        raise ValueError(f"select is None or 'impute', got {select!r}")
    if select is not None and (hidden is not None or latent_dim is not None or "beta" in train):
        raise ValueError("select='impute' chooses beta, latent_dim and hidden; give none of them")
    data = dict(val_fraction=val_fraction, test_fraction=test_fraction, schema=schema,
                table="on")
    if isinstance(table, (str, Path)):
        cols = read_table(table)
        return _train(cols, str(table), out, epochs, hidden, latent_dim, seed, data,
                      dict(force=force, progress=progress, pictures=pictures, device=device),
                      train, select)
    cols = as_columns(table)
    with tempfile.TemporaryDirectory(prefix="vaekit_table_") as tmp:
        path = Path(tmp) / IN_MEMORY_COPY
        write_table(path, {k: [None if _gap(c) else c for c in v] for k, v in cols.items()})
        run = _train(cols, str(path), out, epochs, hidden, latent_dim, seed, data,
                     dict(force=force, progress=progress, pictures=pictures, device=device),
                     train, select)
        kept = (Path(out) / IN_MEMORY_COPY).resolve()
        shutil.copyfile(path, kept)
    data_cfg = dataclasses.replace(run.config.data, source=str(kept))
    save_json(dataclasses.replace(run.config, data=data_cfg), Path(out) / CONFIG)
    return Run.load(out, device=run.device)


def _gap(cell: Any) -> bool:
    """A missing cell of a DataFrame or list: None or a float NaN (pandas' NaN / NA)."""
    return cell is None or (isinstance(cell, float) and cell != cell) or str(cell) == "<NA>"


def _train(cols: dict[str, list[Any]], source: str, out: str | Path, epochs: int | None,
           hidden: Any, latent_dim: int | None, seed: int, data: dict[str, Any],
           run_args: dict[str, Any], train: dict[str, Any], select: str | None) -> Run:
    data_cfg = DataConfig(source=source, **data)
    train_cfg = TrainConfig(seed=seed, **train)
    n_rows = len(next(iter(cols.values())))
    auto = table_defaults(n_rows, data_cfg, train_cfg.batch_size,
                          full_batch="batch_size" not in train and "lr" not in train)
    train_cfg = dataclasses.replace(
        train_cfg, epochs=int(epochs) if epochs is not None else auto["epochs"],
        batch_size=auto.get("batch_size", train_cfg.batch_size),
        lr=auto.get("lr", train_cfg.lr),
        beta=train_cfg.beta if "beta" in train else auto["beta"],
    )
    model = ModelConfig(hidden=tuple(hidden) if hidden is not None else auto["hidden"],
                        latent_dim=latent_dim if latent_dim is not None else auto["latent_dim"])
    config = RunConfig(model=model, data=data_cfg, train=train_cfg)
    if select == "impute":
        from vaekit.tables.select import train_selected

        return train_selected(config, out, **run_args)[0]
    run, _ = train_run(config, out, **run_args)
    return run
