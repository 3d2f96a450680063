"""Missing cells of a table filled in by a table run; observed cells are never changed.

How a missing cell is filled: from p(x_mis|x_obs) of the model, as a weighted set of draws of
z, each giving p(x|z), with weights proportional to p(x_obs|z) under the prior they stand for:
- with the run's exemplars (a table run keeps its training rows' posteriors q(z|x_n),
  `vaekit.runs.tables`): the draws are their means mu_n, the exemplar prior
  (1/N) sum_n delta(z - mu_n) (Norouzi et al. 2020, with its components' width taken to 0:
  a draw of each component instead did no better on the tables benchmark), and the weights
  w_n are proportional to p(x_obs|mu_n), normalised over the exemplars. A row is completed
  like the training rows whose codes explain its observed cells; on tables with near copies
  of a row (a worker's other years) this is where the gain over N(0, I) is
  (docs/benchmarks/tables.md);
- without them (a run from before they were kept, the file deleted, exemplars=False): S
  draws z_1..z_S of q(z|x_obs) (S = `samples`, 1,000) with weights proportional to
  p(x_obs|z_s) p(z_s) / q(z_s|x_obs) (MIWAE's imputation, Mattei & Frellsen 2019;
  importance=False gives every draw the same weight);
then per cell
- numeric (continuous, integer): the weighted mean over the draws of the decoder's Gaussian
  mean, each mapped back to the column's units (inverse transform) before averaging: the
  posterior predictive mean, clipped to the training range, rounded as the data were written
  (an integer column to a whole number);
- categorical: the level of highest weighted-average probability (the predictive mode); for
  levels that are all numbers (e.g. 2, 4, 8, 16 GB) the level nearest the predictive mean,
  the level of least expected squared error;
- binary: levels[1] where the weighted-average P(x = 1) >= 0.5, else levels[0] (the mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.core.io import CheckpointError
from vaekit.data.schema import Schema, encode
from vaekit.data.tabular import as_columns, inverse, read_table
from vaekit.runs.run import Run
from vaekit.runs.tables import EXEMPLARS, load_exemplars
from vaekit.tables.synth import as_frame_like, generator, table_run

SAMPLES = 1000  # posterior draws per row without exemplars
ELEMENTS = 1 << 24  # at most this many numbers per tensor of a posterior pass (64 MiB)


def impute(
    run: Run | str | Path, table: Any, *, samples: int = SAMPLES, seed: int = 0,
    importance: bool = True, exemplars: bool = True, progress: bool = False,
) -> Any:
    """`table` (a CSV path, a dict of columns or a DataFrame) with its missing cells filled in
    by the run (see the module docstring for how); every observed cell is returned as given.

    exemplars: use the run's exemplar prior where it has one (else, and with False, the N(0, I)
    prior with `samples` posterior draws a row and `importance` weights). Returns the same
    columns in the same order (a dict of columns; a DataFrame for a DataFrame). One-line
    DataErrors for a column missing or extra, an unknown category, a cell that does not fit
    its column's kind. progress: a progress bar on stderr (rows done).
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples is the number of posterior draws, >= 1; got {samples!r}")
    run, schema = table_run(run)
    cols = read_table(table) if isinstance(table, (str, Path)) else as_columns(table)
    x, mask = encode(cols, schema)
    values = predict_cells(run, schema, torch.from_numpy(x), samples=samples, seed=seed,
                           importance=importance, exemplars=exemplars, progress=progress)
    out = {name: list(cells) for name, cells in cols.items()}
    for j, name in enumerate(schema.names):
        for i in np.flatnonzero(~mask[:, j]):
            out[name][i] = values[name][i]
    return as_frame_like(out, table)


@torch.no_grad()
def predict_cells(
    run: Run, schema: Schema, x: torch.Tensor, *, samples: int, seed: int,
    importance: bool = True, exemplars: bool = True, progress: bool = False,
) -> dict[str, list[Any]]:
    """Every cell's prediction from the run given the row's observed cells (x: (n, C) encoded,
    NaN where missing): dict column -> n values in the column's own kind (module docstring)."""
    model = run.model.eval()
    lik = model.likelihood
    gen = generator(run.device, seed)
    prior = exemplar_params(run) if exemplars else None
    if prior is not None:  # the draws are the same for every row: decoded once
        prior_units = data_units(schema, lik, prior[:, None, :])  # (M, 1) each
        prior_levels = lik.level_probabilities(prior)  # (M, n_categorical, K_max)
        samples = len(prior)
    parts: dict[str, list[Any]] = {name: [] for name in schema.names}
    levels = lik.cat_params.numel()  # categorical columns x their most levels
    # the widest tensor of a pass: with exemplars the densities of the observed cells (the
    # decoder ran once, above); without, the decoder's layers too
    hidden = 0 if prior is not None else max(run.config.model.hidden, default=0)
    rows = rows_per_pass(samples, max(lik.param_dim, levels, hidden, len(schema.columns)))
    bar = rows_bar(len(x), progress)
    for start in range(0, len(x), rows):
        xb = x[start : start + rows].to(run.device)
        if prior is not None:
            log_w = lik.log_prob_pairs(prior, xb)  # (M, batch)
            w = torch.softmax(log_w.double(), 0).to(prior.dtype)
            units = prior_units
            probs = torch.einsum("mb,mck->bck", w, prior_levels)
        else:
            q = model.posterior(xb)
            eps = torch.randn((samples, *q.mean.shape), generator=gen, device=q.mean.device)
            z = q.mean + torch.exp(0.5 * q.logvar) * eps  # (S, batch, latent)
            params = model.decoder_params(z)  # (S, batch, P)
            w = weights(model, params, xb, z, q) if importance else torch.full(
                z.shape[:2], 1.0 / samples, device=z.device)  # (S, batch), sum 1 over S
            units = data_units(schema, lik, params)
            probs = torch.einsum("sb,sbck->bck", w, lik.level_probabilities(params))
        _fill(parts, schema, lik, units, w.cpu().double().numpy(), probs.cpu().numpy())
        if bar is not None:
            bar.update(len(xb))
    if bar is not None:
        bar.close()
    return parts


def exemplar_params(run: Run) -> torch.Tensor | None:
    """The decoder's parameters (M, P) at the posterior means of the run's exemplars
    (`vaekit.runs.tables`), or None where the run has none."""
    codes = load_exemplars(run.path)
    if codes is None:
        return None
    mean = codes[0].to(run.device)
    if mean.ndim != 2 or mean.shape[1] != run.config.model.latent_dim or len(mean) == 0:
        raise CheckpointError(
            f"{run.path / EXEMPLARS} does not fit the run's model (codes of shape "
            f"{tuple(mean.shape)}); delete it to impute with the N(0, I) prior")
    return run.model.decoder_params(mean)


def data_units(schema: Schema, lik: Any, params: torch.Tensor) -> dict[int, np.ndarray]:
    """Each numeric column's decoder mean in the column's units and each binary column's
    P(x = 1), per draw: params (S, batch, P) -> column index -> (S, batch)."""
    means = lik.mean(params).cpu().double().numpy()  # (S, batch, C)
    out: dict[int, np.ndarray] = {}
    for j, spec in enumerate(schema.columns):
        if spec.numeric:
            out[j] = inverse(spec.transform, means[:, :, j].ravel()).reshape(means.shape[:2])
        elif spec.kind == "binary":
            out[j] = means[:, :, j]
    return out


def _fill(parts: dict[str, list[Any]], schema: Schema, lik: Any, units: dict[int, np.ndarray],
          w: np.ndarray, probs: np.ndarray) -> None:
    """Append a batch's cells to parts: units (S, batch or 1) per column, weights w
    (S, batch), probs (batch, n_categorical, K_max) the weighted level probabilities."""
    cat = {int(j): k for k, j in enumerate(lik.cat_cols.tolist())}
    for j, spec in enumerate(schema.columns):
        if spec.numeric:
            v = (units[j] * w).sum(0)
            places = spec.transform.get("decimals")
            v = np.round(v, places) if places is not None else v
            cells = [int(t) for t in np.rint(v)] if spec.kind == "integer" else v.tolist()
        elif spec.kind == "binary":
            cells = [spec.levels[int(p >= 0.5)] for p in (units[j] * w).sum(0)]
        else:
            best = level_choice(probs[:, cat[j], : len(spec.levels)], spec.levels)
            cells = [spec.levels[int(i)] for i in best]
        parts[spec.name].extend(cells)


def rows_bar(n: int, enabled: bool) -> Any:
    """A progress bar over n rows on stderr, or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=n, desc="imputing", unit="row", leave=False, dynamic_ncols=True)


def rows_per_pass(samples: int, width: int) -> int:
    """Rows per posterior pass so that a (samples, rows, width) tensor (width: the widest of a
    pass, a decoder layer or the level probabilities) stays within ELEMENTS numbers: the memory
    of a pass does not grow with the draws."""
    return max(1, ELEMENTS // (samples * max(1, width)))


def weights(model: Any, params: torch.Tensor, x: torch.Tensor, z: torch.Tensor, q: Any
            ) -> torch.Tensor:
    """Self-normalised importance weights of the draws z (S, batch, latent): softmax over S
    of log p(x_obs|z) + log p(z) - log q(z|x_obs) (a missing cell adds 0 to log p(x|z))."""
    log_w = model.likelihood.log_prob(params, x) + model.prior.log_prob(z) - q.log_prob(z)
    return torch.softmax(log_w.double(), 0).to(params.dtype)


def level_choice(p: np.ndarray, levels: list[Any]) -> np.ndarray:
    """Each row's level index from its level probabilities p (n, K): where every level is a
    number (2, 4, 8, 16 GB; the years 2007-2009), the level nearest the predictive mean (the
    level of least expected squared error); otherwise the most probable level."""
    try:
        values = np.array([float(v) for v in levels])
    except (TypeError, ValueError):
        return p.argmax(-1)
    if any(isinstance(v, bool) for v in levels) or not np.isfinite(values).all():
        return p.argmax(-1)
    mean = (p @ values) / p.sum(-1)
    return np.abs(mean[:, None] - values[None, :]).argmin(-1)
