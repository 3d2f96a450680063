"""What a run does differently on a table: its config records the fitted schema and the
composite likelihood (`with_table`), and it keeps its exemplars for imputation.

Exemplars: `exemplars.safetensors` in a table run holds the posterior mean and log-variance
(N, latent) of each training row (at most MAX_EXEMPLARS, a seeded subset beyond that). Their
mixture (1/N) sum_n q(z|x_n), the aggregate posterior, is the distribution of codes the
decoder was trained on; imputation uses it as the prior in place of N(0, I) (the exemplar
prior of Norouzi et al. 2020, "Exemplar VAE"), so that a row with gaps is completed like the
training rows whose codes explain its observed cells (`vaekit.tables.impute`). Sampling never
reads the file: synthetic rows come from N(0, I). The codes are not the rows, but the decoder
maps them back to near copies: delete the file to share a run without them (imputation then
falls back to the N(0, I) prior).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from vaekit.core.io import CheckpointError, load_tensors, save_tensors
from vaekit.core.model import VAE
from vaekit.data import Splits
from vaekit.runs.config import RunConfig

EXEMPLARS = "exemplars.safetensors"
SELECTION = "selection.json"  # a run trained with --select impute: the recipes' losses
MAX_EXEMPLARS = 50_000  # training rows kept (about 6 MB at 16 latent dimensions)
ROWS_PER_PASS = 8192  # rows through the encoder at a time


@torch.no_grad()
def save_exemplars(out: Path, model: VAE, x: torch.Tensor, seed: int) -> None:
    """Write the posteriors of the training rows x (N, C; NaN where a cell is missing) to
    out/EXEMPLARS; beyond MAX_EXEMPLARS rows, a subset drawn with `seed`."""
    if len(x) > MAX_EXEMPLARS:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        x = x[keep[:MAX_EXEMPLARS].sort().values]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    means, logvars = [], []
    for start in range(0, len(x), ROWS_PER_PASS):
        q = model.posterior(x[start : start + ROWS_PER_PASS].to(device))
        means.append(q.mean.float().cpu())
        logvars.append(q.logvar.float().cpu())
    model.train(was_training)
    save_tensors(out / EXEMPLARS, {"mean": torch.cat(means), "logvar": torch.cat(logvars)},
                 {"rows": len(x)})


def load_exemplars(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, logvar), each (N, latent), from the run's EXEMPLARS; None where it has none."""
    path = Path(run_dir) / EXEMPLARS
    if not path.is_file():
        return None
    tensors, _ = load_tensors(path)
    if "mean" not in tensors or "logvar" not in tensors:
        raise CheckpointError(f"{path} holds no exemplar codes (mean, logvar); delete it to "
                              "impute with the N(0, I) prior")
    return tensors["mean"], tensors["logvar"]


def with_table(config: RunConfig, splits: Splits) -> RunConfig:
    """What the data said about a table: data.table resolved ("on" or "off"), the fitted
    schema stored in data.schema, and the model's composite likelihood over its columns (a
    table run's likelihood is always "composite": Gaussian, categorical, Bernoulli blocks)."""
    from vaekit.data.mixed import column_kinds

    if splits.schema is None:
        if config.data.table == "auto":
            config.data = dataclasses.replace(config.data, table="off")
        return config
    config.data = dataclasses.replace(config.data, table="on", schema=splits.schema.to_dict())
    config.model = dataclasses.replace(
        config.model, likelihood="composite", column_kinds=column_kinds(splits.schema)
    )
    return config
