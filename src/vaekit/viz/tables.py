"""The synthetic-data checks of a table run's report (issue 30, point 4): sdmetrics' quality
score where sdmetrics is installed, and the distance to the closest training record.

    figures.update(synthetic_checks(model, schema, train_x, test_x))

- quality (only where sdmetrics and pandas import; silently left out otherwise): sdmetrics'
  QualityReport of n synthetic rows (n = the training rows, at most 5,000) against the
  training rows: the score and its column shapes / column pair trends parts, in [0, 1];
- DCR: the median over synthetic rows of the Euclidean distance to the nearest training row in
  the encoder's input space (numbers in the schema's transformed scale, levels one-hot, a gap
  at 0), beside the same for held-out rows: a synthetic median far below the held-out one
  means rows copied from the training data; "copies" is the share at distance 0.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from vaekit.data.schema import Schema, decode

MAX_ROWS = 5000


@torch.no_grad()
def synthetic_checks(
    model: Any, schema: Schema, train_x: torch.Tensor, test_x: torch.Tensor | None = None,
    *, seed: int = 0,
) -> dict[str, float]:
    """Report figures (name -> value) of a table model; see the module docstring."""
    was_training = bool(model.training)
    model.eval()
    try:
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        train_x = train_x[torch.randperm(len(train_x), generator=gen)[:MAX_ROWS]].float()
        # the standard normal draws where the model is, a mixture prior on the CPU
        here = gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed)
        z_gen = gen if model.config.prior != "normal" else here
        z = model.prior.sample(len(train_x), generator=z_gen).to(device)
        syn = model.likelihood.sample(model.decoder_params(z), generator=here).cpu()
        figures = _quality(schema, train_x, syn)
        ref = model.likelihood.encoder_input(train_x.to(device))
        d_syn = _nearest(model.likelihood.encoder_input(syn.to(device)), ref)
        figures["DCR of synthetic rows (median)"] = float(d_syn.median())
        copies = float((d_syn < 1e-6).float().mean())
        figures["synthetic rows copying a training row (share)"] = copies
        if test_x is not None and len(test_x):
            d_test = _nearest(model.likelihood.encoder_input(test_x.float().to(device)), ref)
            figures["DCR of held-out rows (median)"] = float(d_test.median())
        return figures
    finally:
        model.train(was_training)


def _nearest(rows: torch.Tensor, ref: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Each row's Euclidean distance to its nearest row of ref."""
    return torch.cat([torch.cdist(rows[i : i + chunk], ref).min(1).values
                      for i in range(0, len(rows), chunk)]).cpu()


def _quality(schema: Schema, train_x: torch.Tensor, syn: torch.Tensor) -> dict[str, float]:
    """sdmetrics' quality score and its two parts; {} where sdmetrics (or pandas) is absent
    or fails on these data."""
    try:
        import pandas as pd

        with warnings.catch_warnings():  # "deprecated" in 0.32: the multi-table one replaces it
            warnings.simplefilter("ignore", FutureWarning)
            from sdmetrics.reports.single_table import QualityReport
    except ImportError:
        return {}
    meta = {"columns": {c.name: {"sdtype": "numerical" if c.numeric else "categorical"}
                        for c in schema.columns}}
    try:
        real, fake = (pd.DataFrame(decode(x, schema)) for x in (train_x, syn))
        for c in schema.columns:
            if c.numeric:
                real[c.name], fake[c.name] = (pd.to_numeric(t[c.name]) for t in (real, fake))
            else:
                real[c.name], fake[c.name] = (t[c.name].astype(str) for t in (real, fake))
        report = QualityReport()
        report.generate(real, fake, meta, verbose=False)
        parts = report.get_properties().set_index("Property")["Score"]
    except Exception:  # a check of the report, never a reason for training to fail
        return {}
    return {"sdmetrics quality score": float(report.get_score()),
            "sdmetrics column shapes": float(parts["Column Shapes"]),
            "sdmetrics column pair trends": float(parts["Column Pair Trends"])}
