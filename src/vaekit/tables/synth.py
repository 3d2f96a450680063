"""Synthetic rows from a table run: z ~ p(z), then one draw of every column from p(x|z)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vaekit.data.mixed import run_schema
from vaekit.data.schema import Schema, decode
from vaekit.data.tabular import Table
from vaekit.runs.run import Run


def as_run(run: Run | str | Path, device: str | torch.device = "cpu") -> Run:
    """A loaded Run, or the run in a directory (its model on `device`)."""
    return run if isinstance(run, Run) else Run.load(run, device=device)


def table_run(run: Run | str | Path, device: str | torch.device = "cpu") -> tuple[Run, Schema]:
    """The run and its fitted schema; a one-line DataError for a run not trained on a table."""
    run = as_run(run, device)
    return run, run_schema(run.config.data)


def generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


@torch.no_grad()
def sample_table(run: Run | str | Path, n: int, *, seed: int = 0) -> Table:
    """n synthetic rows of a table run: dict column -> n cells, in the schema's column order.

    Each row: z ~ p(z), then every column drawn from its block of p(x|z) (a numeric value
    N(mu, sigma^2) in the transformed scale, mapped back to the column's units, clipped to the
    training range and rounded as the data were written; integers as int; a level from the
    column's softmax; a binary level from its Bernoulli). Seeded: the same seed, the same rows.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n is the number of rows to sample, >= 1; got {n!r}")
    run, schema = table_run(run)
    model = run.model.eval()
    gen = generator(run.device, seed)  # the columns' draws, where the model is
    # p(z): the standard normal draws where the model is, the mixtures on the CPU
    prior_gen = gen if model.config.prior == "normal" else generator(torch.device("cpu"), seed)
    out: Table = {name: [] for name in schema.names}
    for start in range(0, n, 4096):
        z = model.prior.sample(min(4096, n - start), generator=prior_gen)
        x = model.likelihood.sample(model.decoder_params(z), generator=gen)
        for name, cells in decode(x.cpu(), schema).items():
            out[name].extend(cells)
    return out


def as_frame_like(table: Table, like: Any) -> Any:
    """table as a DataFrame of `like`'s type when `like` is one (a pandas DataFrame is built
    from a dict of columns, in order), else the dict itself."""
    if hasattr(like, "columns") and not isinstance(like, dict):
        return type(like)(table)
    return table
