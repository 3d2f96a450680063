"""VAEDetector on a mixed table (issue 30, point 5): a dict of columns (or a DataFrame, or a
mixed CSV) is encoded under a schema fitted on it, the model is the composite likelihood, and
scores, explain, save/load work as on arrays; an odd row scores high."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vaekit import VAEDetector
from vaekit.data.tabular import read_table

PENGUINS = Path(__file__).resolve().parents[2] / "examples" / "penguins.csv"


@pytest.fixture(scope="module")
def fitted(one_thread) -> VAEDetector:
    return VAEDetector(epochs=40, hidden=(32, 16), random_state=0).fit(read_table(PENGUINS))


def test_fit_a_mixed_table(fitted: VAEDetector) -> None:
    assert fitted.kind_ == "table"
    assert fitted.model_.config.likelihood == "composite"
    assert fitted.schema_.names == list(read_table(PENGUINS))
    assert fitted.decision_scores_.shape == (344,)
    assert np.isfinite(fitted.decision_scores_).all()
    assert 0.05 < fitted.labels_.mean() < 0.15


def test_an_odd_row_scores_high(fitted: VAEDetector) -> None:
    table = {k: v[:3] for k, v in read_table(PENGUINS).items()}
    odd = {k: list(v) for k, v in table.items()}
    odd["body_mass_g"] = ["20000"] * 3  # far beyond the training range
    assert (fitted.decision_function(odd) > fitted.decision_function(table) + 5).all()
    assert fitted.predict(odd).tolist() == [1, 1, 1]
    parts = fitted.explain(odd)
    assert parts.shape == (3, 8)
    assert (parts.argmax(1) == list(fitted.schema_.names).index("body_mass_g")).all()


def test_save_load_and_a_csv_path(fitted: VAEDetector, tmp_path: Path) -> None:
    fitted.save(tmp_path / "d.safetensors")
    back = VAEDetector.load(tmp_path / "d.safetensors")
    assert back.schema_.to_dict() == fitted.schema_.to_dict()
    np.testing.assert_allclose(back.decision_function(PENGUINS), fitted.decision_scores_)


def test_table_mistakes(fitted: VAEDetector) -> None:
    table = read_table(PENGUINS)
    with pytest.raises(ValueError, match="lacks column 'sex'"):
        fitted.decision_function({k: v for k, v in table.items() if k != "sex"})
    with pytest.raises(ValueError, match="'island' has category 'Atlantis'"):
        fitted.decision_function({**table, "island": ["Atlantis"] * 344})
    with pytest.raises(ValueError, match="mixed table"):
        VAEDetector(likelihood="gaussian").fit(table)
    with pytest.raises(ValueError, match="table"):
        VAEDetector(scoring="recon-error", epochs=1).fit(table)
