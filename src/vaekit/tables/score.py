"""Anomaly scores of a table's rows under a table run, with each column's part of the score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.core.model import common_noise
from vaekit.data.mixed import load_table_like_run
from vaekit.runs.run import Run
from vaekit.tables.synth import table_run


@torch.no_grad()
def score_table(
    run: Run | str | Path, table: Any, *, samples: int = 100, seed: int = 0, batch_size: int = 256
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(scores (n,), parts {column: (n,), ..., "rate": (n,)}) of a table (a CSV path, a dict of
    columns or a DataFrame with the run's columns) under a table run.

    score: -ELBO per row in nats (higher = more abnormal), the score `vaekit score` gives a
    table run by default (elbo, L = `samples` posterior draws common to every row). parts: each
    column's share, the mean over the draws of -log p(x_j|z) (0 for a missing cell), and
    "rate", KL(q(z|x) || p(z)), which belongs to no column; the parts add up to the score.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples is the number of posterior draws, >= 1; got {samples!r}")
    run, schema = table_run(run)
    x, _ = load_table_like_run(table, run.config.data)
    model = run.model.eval()
    cells, rates = [], []
    with common_noise(model, seed):  # a row's score does not depend on its batch
        for xb in x.split(batch_size):
            xb = xb.to(run.device)
            q = model.posterior(xb)
            z = q.rsample(samples)  # (S, batch, latent)
            nll = -model.likelihood.log_prob_columns(model.decoder_params(z), xb)
            cells.append(nll.mean(0).cpu())  # (batch, C)
            kl = model.prior.kl(q, None)
            if kl is None:  # no closed form: Monte Carlo with the same draws
                kl = (q.log_prob(z) - model.prior.log_prob(z, None)).mean(0)
            rates.append(kl.cpu())
    per_cell = torch.cat(cells).double().numpy()
    rate = torch.cat(rates).double().numpy()
    parts = {name: per_cell[:, j] for j, name in enumerate(schema.names)}
    parts["rate"] = rate
    return rate + per_cell.sum(1), parts
