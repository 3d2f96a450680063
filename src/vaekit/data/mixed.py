"""The table path of the data layer: a mixed CSV -> a fitted schema -> encoded, seeded splits.

`vaekit train --data table.csv` takes this path when the run's `DataConfig.table` is "on", or
"auto" and the CSV is not all numbers (a text cell or a gap) or a schema is given; an
all-numeric CSV keeps the numeric path (`vaekit.data.tables`) unless table="on" (--table on)
or a schema (--schema) asks for a table.

The schema: kinds and levels are read from every row of the table (a level seen only in the
test split is still a level), the numeric transforms are fitted on the training split only;
what a given schema states (kinds, levels, transforms) is kept. The fitted schema is stored in
the run's config (`DataConfig.schema`), so the run reads new tables the same way. Rows are
`vaekit.data.schema.encode`d: (n, C) float32 with NaN in missing cells, which the composite
likelihood masks out; no Preprocessor is applied on top (it stays the identity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.data.base import DataError
from vaekit.data.config import DataConfig
from vaekit.data.schema import ColumnSpec, Schema, encode, infer_schema
from vaekit.data.tabular import Table, as_columns, read_table


def wants_table(cfg: DataConfig) -> bool | None:
    """True: the table path; False: the numeric path; None: "auto" (decided by the data)."""
    if cfg.table == "auto" and cfg.schema is None:
        return None
    return cfg.table == "on" or cfg.schema is not None


def may_be_table(cfg: DataConfig) -> bool:
    """Whether a source that the numeric loader refused may be read as a table instead."""
    return cfg.table == "auto" and Path(str(cfg.source)).suffix.lower() == ".csv"


def check_table_options(cfg: DataConfig) -> None:
    """The options a table does not take: one line naming them."""
    if cfg.standardize or cfg.binarize != "none" or cfg.mmap:
        raise DataError(
            f"{cfg.source} is a table: its numeric columns are transformed by its schema, so "
            "drop --standardize, --binarize and --mmap"
        )
    if cfg.image_shape is not None:
        raise DataError(f"{cfg.source} is a table, not images: drop --image-shape")
    if cfg.label_column is not None:
        raise DataError(
            f"a table run models every column of {cfg.source}; --label-column is not "
            "supported for tables yet: drop the option (the column is then modelled too) or "
            "drop the column from the CSV"
        )


def column_kinds(schema: Schema) -> tuple[str, ...]:
    """ModelConfig.column_kinds of a fitted schema: "categorical:K" or the kind."""
    return tuple(
        f"categorical:{len(c.levels)}" if c.kind == "categorical" else c.kind
        for c in schema.columns
    )


def rows(table: Table, idx: np.ndarray) -> Table:
    """The rows idx (int array) of a table, as a table."""
    return {name: [cells[i] for i in idx] for name, cells in table.items()}


def fit_schema(
    table: Table, train_idx: np.ndarray, given: Schema | dict[str, Any] | None = None
) -> Schema:
    """The run's schema: `given` kept where it says something; kinds and levels inferred from
    all rows; the numeric transforms (unless given fitted) fitted on the rows train_idx."""
    if isinstance(given, dict):
        given = Schema.from_dict(given)
    full = infer_schema(table, given)
    stated = {c.name: c for c in given.columns} if given is not None else {}

    def refit(c: ColumnSpec) -> ColumnSpec:
        if not c.numeric or (c.name in stated and stated[c.name].fitted):
            return c
        return ColumnSpec(c.name, c.kind, [], {"name": c.transform["name"]})

    partial = Schema([refit(c) for c in full.columns])
    if all(c.fitted for c in partial.columns):
        return partial
    return infer_schema(rows(table, train_idx), partial)


def read_source(cfg: DataConfig) -> Table:
    """cfg.source read as a table (after checking the options a table does not take)."""
    check_table_options(cfg)
    return read_table(cfg.source)


def encode_rows(table: Table, schema: Schema) -> torch.Tensor:
    """A table's rows under a fitted schema: (n, C) float32, NaN where a cell is missing."""
    x, _ = encode(table, schema)
    return torch.from_numpy(np.ascontiguousarray(x))


def run_schema(cfg: DataConfig) -> Schema:
    """The fitted schema of a table run (its config's); a DataError if the run has none."""
    if cfg.table != "on" or cfg.schema is None:
        raise DataError("this run was not trained on a table (its config has no schema)")
    schema = Schema.from_dict(cfg.schema, where="the run's schema")
    schema.check_fitted()
    return schema


def check_model_kinds(cfg: DataConfig, kinds: tuple[str, ...]) -> None:
    """A one-line DataError unless a table run's schema (cfg.schema) describes the columns its
    model was built for (ModelConfig.column_kinds): e.g. after a hand edit of config.json."""
    if column_kinds(run_schema(cfg)) != tuple(kinds):
        raise DataError(
            "the run's schema (data.schema in config.json) does not describe its model's "
            "columns (model.column_kinds: kinds and numbers of levels); was config.json edited? "
            "Train a new run with the schema you want (--schema)"
        )


def load_table_like_run(source: Any, cfg: DataConfig) -> tuple[torch.Tensor, None]:
    """New rows for a table run: a CSV path (or a table: dict of columns, DataFrame) encoded
    under the run's schema -> x (n, C) float32, NaN where missing. One-line DataErrors for a
    missing or extra column, an unknown category, a cell that does not fit its kind."""
    table = read_table(source) if isinstance(source, (str, Path)) else as_columns(source)
    return encode_rows(table, run_schema(cfg)), None


# The defaults of a table run where the user gives none (`vaekit train` without --epochs /
# --hidden / --latent-dim / --batch-size / --lr / --beta, `vaekit.tables.train_table`):
# measured in benchmarks/bench_tables.py and bench_table_recipe.py (docs/benchmarks/tables.md).
# - The rate weighs half (TABLE_BETA; TVAE weighs its reconstruction twice): at beta 1 the code
#   leaves out what one column alone holds (a level of 8 costs about as many nats to encode
#   as it saves to decode), the joint detail that ML efficacy and imputation need.
# - Enough epochs for TABLE_MIN_STEPS optimizer steps of the usual 128 rows (30 epochs of 344
#   penguins are 60 steps: far from trained).
# - A small table, whose training split fits in one batch of TABLE_FULL_BATCH rows (TVAE's
#   batch is 500), trains on the whole split at every step instead, at a higher rate and for
#   fewer steps: about as good a model in a quarter of the time, where a step costs mostly
#   fixed overhead.
TABLE_MIN_STEPS = 3000
TABLE_MIN_EPOCHS = 30
TABLE_HIDDEN = (128, 64)
TABLE_LATENT = 8
TABLE_BETA = 0.5
TABLE_FULL_BATCH = 512
TABLE_FULL_BATCH_STEPS = 500
TABLE_FULL_BATCH_LR = 3e-3


def table_epochs(n_train: int, batch_size: int, min_steps: int = TABLE_MIN_STEPS) -> int:
    """Epochs of a table run: at least TABLE_MIN_EPOCHS, and enough for `min_steps` steps."""
    steps_per_epoch = max(1, -(-int(n_train) // int(batch_size)))
    return max(TABLE_MIN_EPOCHS, -(-int(min_steps) // steps_per_epoch))


def table_defaults(
    n_rows: int, cfg: DataConfig, batch_size: int, *, full_batch: bool = True
) -> dict[str, Any]:
    """The model/train defaults of a table of n_rows rows split as cfg says: epochs (the
    per-step floor over the training split), hidden sizes, latent size and beta; with `full_batch`
    (neither the batch size nor the learning rate was given) and a training split of at most
    TABLE_FULL_BATCH rows, also batch_size and lr: one step an epoch over the whole split,
    TABLE_FULL_BATCH_STEPS of them at TABLE_FULL_BATCH_LR."""
    n_train = max(1, round(n_rows * (1.0 - cfg.val_fraction - cfg.test_fraction)))
    shared = {"hidden": TABLE_HIDDEN, "latent_dim": TABLE_LATENT, "beta": TABLE_BETA}
    if full_batch and n_train <= TABLE_FULL_BATCH:
        return {"epochs": max(TABLE_MIN_EPOCHS, TABLE_FULL_BATCH_STEPS),
                "batch_size": TABLE_FULL_BATCH, "lr": TABLE_FULL_BATCH_LR, **shared}
    return {"epochs": table_epochs(n_train, batch_size), **shared}


def table_rows(cfg: DataConfig) -> int | None:
    """The number of rows of cfg.source when `vaekit train` would read it as a table (the
    same rule as `vaekit.data.splits.prepare`: table "on", a schema, or "auto" and a CSV with
    a text cell or a gap), else None. Unreadable sources are None: training reports them."""
    wanted = wants_table(cfg)
    if wanted is False or (wanted is None and not may_be_table(cfg)):
        return None
    try:
        table = read_table(cfg.source)
    except (DataError, OSError, UnicodeDecodeError):
        return None
    n = len(next(iter(table.values()), []))
    if wanted or any(not _is_number(cell) for cells in table.values() for cell in cells):
        return n
    return None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return cell.strip() != ""
