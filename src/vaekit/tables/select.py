"""Training for imputation: two recipes side by side, the one kept that fills held-out cells
better (`vaekit train --select impute`, `train_table(..., select="impute")`).

Which rate suits imputation depends on the table: where rows have near copies (a worker's
other years, one configuration sold in many months), a code that keeps more of each row
(beta 0.1, 16 latent dimensions, hidden 256-128: LOW_RATE) completes rows better; elsewhere
the table defaults (beta 0.5) do (docs/benchmarks/tables.md). Nothing in the data says which
before training, so both are trained on the same split, and each fills 20% of the validation
rows' observed cells hidden at random (seeded); the one of lower masked-cell loss (mean over
columns of the NRMSE of numbers, in the column's units, and the error rate of levels) is
kept in the run directory, and selection.json gives both losses. The cost: the two fits.
The validation rows that choose are also those that chose each recipe's best epoch, so the
kept recipe's loss is slightly optimistic; the held-out (test) rows are never used.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.core.io import atomic_write_text
from vaekit.data import DataError, prepare
from vaekit.data.mixed import run_schema, table_rows
from vaekit.data.schema import encode
from vaekit.data.tabular import inverse
from vaekit.runs.config import RunConfig
from vaekit.runs.run import Run, check_out_dir, prepare_out_dir, train_run
from vaekit.runs.tables import SELECTION
from vaekit.tables.impute import predict_cells

LOW_RATE = {"beta": 0.1, "latent_dim": 16, "hidden": (256, 128)}
HIDDEN_FRACTION = 0.2  # of the validation rows' observed cells, hidden for the comparison


def low_rate(config: RunConfig) -> RunConfig:
    """config with LOW_RATE's beta, latent size and hidden sizes."""
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, latent_dim=LOW_RATE["latent_dim"],
                                  hidden=LOW_RATE["hidden"]),
        train=dataclasses.replace(config.train, beta=LOW_RATE["beta"]),
    )


def cells_to_hide(x: torch.Tensor, seed: int) -> torch.Tensor:
    """(n, columns) bool: HIDDEN_FRACTION of the observed cells of x (the validation rows),
    drawn at random (seeded). A DataError where that hides none."""
    draw = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    hidden = ~torch.isnan(x) & (draw < HIDDEN_FRACTION)
    if not hidden.any():
        raise DataError("the validation rows have no cell to hide; --select impute needs more "
                        "validation rows (--val-fraction) or a larger table")
    return hidden


def masked_cell_loss(run: Run, *, seed: int) -> float:
    """Mean over columns of the error in filling HIDDEN_FRACTION of the run's validation rows'
    observed cells, hidden at random (seeded): the RMSE of a number over the std of the
    column's observed validation values (both in the column's units), the error rate of a
    level. A DataError where the validation rows have no cell to hide."""
    schema = run_schema(run.config.data)
    x, _ = run.data(split="val")
    x = x.double()
    observed = ~torch.isnan(x)
    hidden = cells_to_hide(x, seed)
    gapped = torch.where(hidden, torch.full_like(x, float("nan")), x)
    filled, _ = encode(predict_cells(run, schema, gapped.float(), samples=100, seed=seed), schema)
    losses = []
    for j, spec in enumerate(schema.columns):
        rows = hidden[:, j].numpy()
        if not rows.any():
            continue
        truth, guess = x[:, j].numpy(), filled[:, j]
        if spec.numeric:
            spread = float(inverse(spec.transform, truth[observed[:, j].numpy()]).std())
            if spread == 0.0:  # one value in the validation rows: no scale to judge by
                continue
            err = inverse(spec.transform, truth[rows]) - inverse(spec.transform, guess[rows])
            losses.append(float(np.sqrt(np.mean(err**2)) / spread))
        else:
            losses.append(float(np.mean(truth[rows] != guess[rows])))
    if not losses:
        raise DataError("no column of the validation rows can be scored (every hidden numeric "
                        "cell's column holds one value); --select impute needs more validation "
                        "rows (--val-fraction)")
    return float(np.mean(losses))


def train_selected(
    config: RunConfig, out: str | Path, *, force: bool = False, progress: bool = True,
    pictures: bool = True, device: str | torch.device = "auto",
) -> tuple[Run, dict[str, float]]:
    """train_run of `config` and of low_rate(config), each into a temporary directory beside
    `out`; the one of lower masked_cell_loss moves into `out`, with SELECTION (both losses).
    Returns it and its test figures. Refuses before any training as train_run would (an
    existing --out without force), and without validation rows."""
    out = Path(out)
    check_out_dir(out, resume=False, force=force)
    source = Path(str(config.data.source))
    if source.suffix.lower() == ".csv" and not source.is_file():
        raise DataError(f"cannot read {source}: no such file; give the path of a CSV")
    if table_rows(config.data) is None:
        raise DataError(f"{config.data.source} is not read as a table; --select impute is for "
                        "tables (a CSV of mixed columns, or --table on): drop it")
    if config.data.val_fraction <= 0:
        raise DataError("--select impute compares the recipes on validation rows; give "
                        "--val-fraction > 0")
    cells_to_hide(prepare(config.data).val.x.double(), config.train.seed)  # before training
    out.parent.mkdir(parents=True, exist_ok=True)
    candidates = {"defaults": config, "low rate": low_rate(config)}
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".vaekit_select_") as tmp:
        fitted: dict[str, Any] = {}
        for i, (name, cfg) in enumerate(candidates.items()):
            if progress:
                print(f"recipe {i + 1} of {len(candidates)}: {name}", flush=True)
            # tmp/i/<out's name>: the report is titled by the run directory's name
            run, figures = train_run(dataclasses.replace(cfg), Path(tmp) / str(i) / out.name,
                                     force=True, progress=progress, pictures=pictures,
                                     device=device)
            fitted[name] = (run, figures, masked_cell_loss(run, seed=cfg.train.seed))
        best = min(fitted, key=lambda k: fitted[k][2])
        prepare_out_dir(out, resume=False, force=force)
        for path in fitted[best][0].path.iterdir():
            shutil.move(str(path), str(out / path.name))
        record = {
            "criterion": f"masked-cell loss on the validation rows ({HIDDEN_FRACTION:.0%} of "
                         "their observed cells hidden): mean over columns of NRMSE (numbers) "
                         "and error rate (levels); lower is better",
            "losses": {k: v[2] for k, v in fitted.items()},
            "recipes": {k: {"beta": c.train.beta, "latent_dim": c.model.latent_dim,
                            "hidden": list(c.model.hidden)} for k, c in candidates.items()},
            "kept": best,
        }
        atomic_write_text(out / SELECTION, json.dumps(record, indent=2) + "\n")
    return Run.load(out, device=fitted[best][0].device), fitted[best][1]
