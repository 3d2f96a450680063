"""A tiny penguins run (2 epochs, seconds) that the table tests read."""

from __future__ import annotations

from pathlib import Path

import pytest

PENGUINS = Path(__file__).resolve().parents[2] / "examples" / "penguins.csv"
TINY = ["--hidden", "32,16", "--latent-dim", "4", "--epochs", "2", "--quiet", "--k", "5"]


@pytest.fixture(scope="session")
def penguins_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`vaekit train --data examples/penguins.csv` with no table flags (tests only read it)."""
    from vaekit.cli import main

    run = tmp_path_factory.mktemp("penguins") / "run"
    assert main(["train", "--data", str(PENGUINS), "--out", str(run), "--no-pictures", *TINY]) == 0
    return run
