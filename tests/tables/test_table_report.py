"""The synthetic-data checks for a table run's report: DCR always, sdmetrics' quality score
only where sdmetrics is installed (CI has no peers: then the quality figures are left out)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from vaekit.data.mixed import encode_rows, run_schema
from vaekit.data.tabular import read_table
from vaekit.runs import Run
from vaekit.viz.tables import synthetic_checks

PENGUINS = Path(__file__).resolve().parents[2] / "examples" / "penguins.csv"


def test_synthetic_checks_of_a_table_run(penguins_run: Path) -> None:
    run = Run.load(penguins_run)
    schema = run_schema(run.config.data)
    x = encode_rows(read_table(PENGUINS), schema)
    state = torch.get_rng_state()
    figures = synthetic_checks(run.model, schema, x[:250], x[250:], seed=1)
    assert torch.equal(state, torch.get_rng_state())  # seeded by its own generators
    assert figures["DCR of synthetic rows (median)"] > 0
    assert figures["DCR of held-out rows (median)"] > 0
    assert 0 <= figures["synthetic rows copying a training row (share)"] <= 1
    assert figures == synthetic_checks(run.model, schema, x[:250], x[250:], seed=1)
    has_sdmetrics = importlib.util.find_spec("sdmetrics") is not None
    assert ("sdmetrics quality score" in figures) == has_sdmetrics
    if has_sdmetrics:
        assert 0 <= figures["sdmetrics quality score"] <= 1
    assert not run.model.training
