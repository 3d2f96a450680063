"""Anomaly scores of a table's rows under a table run, with each column's part of the score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.mixed import load_table_like_run
from vaekit.runs.run import Run
from vaekit.tables.synth import table_run


def score_table(
    run: Run | str | Path, table: Any, *, samples: int = 100, seed: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(scores (n,), parts {column: (n,), ..., "rate": (n,)}) of a table (a CSV path, a dict of
    columns or a DataFrame with the run's columns) under a table run.

    score: -ELBO per row in nats (higher = more abnormal; `vaekit score`'s default "elbo",
    L = `samples` posterior draws, common to every row). parts: each column's share, the mean
    over the draws of -log p(x_j|z) (0 for a missing cell), and "rate", KL(q(z|x) || p(z)),
    which belongs to no column; the parts add up to the score.
    """
    from vaekit.anomaly.contributions import feature_contributions
    from vaekit.anomaly.scores import score_samples

    run, schema = table_run(run)
    x, _ = load_table_like_run(table, run.config.data)
    opts: dict[str, Any] = {"samples": samples, "seed": seed}
    scores = score_samples(run.model, x, "elbo", **opts).double().numpy()
    cells = feature_contributions(run.model, x, "elbo", **opts).double().numpy()
    parts = {name: cells[:, j] for j, name in enumerate(schema.names)}
    parts["rate"] = scores - cells.sum(1)
    return scores, parts
