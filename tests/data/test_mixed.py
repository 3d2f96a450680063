"""vaekit.data.mixed: which CSVs take the table path, the run's schema (kinds and levels from
every row, transforms from the training split, a given schema kept), new tables read like it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vaekit.core.config import ConfigError
from vaekit.data import DataConfig, DataError, load_like_run, prepare
from vaekit.data.mixed import column_kinds, fit_schema
from vaekit.data.schema import Schema
from vaekit.data.tabular import read_table, write_table

PENGUINS = Path(__file__).resolve().parents[2] / "examples" / "penguins.csv"


def test_a_mixed_csv_takes_the_table_path() -> None:
    splits = prepare(DataConfig(source=str(PENGUINS)))
    assert splits.schema is not None
    assert splits.event_shape == (8,)
    n = len(splits.train) + len(splits.val) + len(splits.test)
    assert n == 344 and splits.train.y is None
    assert np.isnan(splits.train.x.numpy()).any()  # the gaps travel as NaN
    assert column_kinds(splits.schema)[0] == "categorical:3"
    assert splits.preprocessor.standardize is False


def test_transforms_are_fitted_on_the_training_split() -> None:
    table = read_table(PENGUINS)
    train = np.arange(0, 100)
    schema = fit_schema(table, train)
    spec = {c.name: c for c in schema.columns}["body_mass_g"]
    observed = [float(v) for v in table["body_mass_g"][:100] if v != "NA"]
    assert spec.transform["min"] == min(observed) and spec.transform["max"] == max(observed)
    # levels from every row: Chinstrap penguins come after row 100
    assert {c.name: c for c in schema.columns}["species"].levels == [
        "Adelie",
        "Chinstrap",
        "Gentoo",
    ]


def test_numeric_csv_keeps_the_numeric_path(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    write_table(path, {"a": [1.5, 2.0, 3.25, 4.0] * 5, "b": [0, 1, 2, 3] * 5})
    assert prepare(DataConfig(source=str(path))).schema is None
    on = prepare(DataConfig(source=str(path), table="on"))
    assert on.schema is not None and on.event_shape == (2,)


def test_a_given_schema_is_kept(tmp_path: Path) -> None:
    given = {"columns": [{"name": "year", "kind": "integer"}]}
    table = read_table(PENGUINS)
    names = list(table)
    given["columns"] = [
        {"name": n, "kind": "integer"} if n == "year" else {"name": n, "kind": k}
        for n, k in zip(
            names, ["categorical"] * 2 + ["continuous"] * 4 + ["binary", "integer"], strict=True
        )
    ]
    splits = prepare(DataConfig(source=str(PENGUINS), schema=given))
    kinds = {c.name: c.kind for c in splits.schema.columns}
    assert kinds["year"] == "integer" and kinds["body_mass_g"] == "continuous"


def test_a_schema_that_does_not_fit(tmp_path: Path) -> None:
    schema = {"columns": [{"name": "species", "kind": "categorical"}]}
    with pytest.raises(DataError, match="island"):
        prepare(DataConfig(source=str(PENGUINS), schema=schema))
    wrong = {"columns": [{"name": n, "kind": "continuous"} for n in read_table(PENGUINS)]}
    with pytest.raises(DataError, match="species"):
        prepare(DataConfig(source=str(PENGUINS), schema=wrong))


def test_table_options_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="standardize"):
        DataConfig(source=str(PENGUINS), table="on", standardize=True)
    with pytest.raises(DataError, match="standardize"):
        prepare(DataConfig(source=str(PENGUINS), standardize=True))
    with pytest.raises(DataError, match="label-column"):
        prepare(DataConfig(source=str(PENGUINS), label_column="species"))
    with pytest.raises(DataError):
        DataConfig(schema={"columns": []})


def test_new_tables_read_like_the_run(tmp_path: Path) -> None:
    cfg = DataConfig(source=str(PENGUINS))
    splits = prepare(cfg)
    cfg = DataConfig(source=str(PENGUINS), table="on", schema=splits.schema.to_dict())
    x, y = load_like_run(str(PENGUINS), cfg, splits.preprocessor)
    assert x.shape == (344, 8) and y is None
    table = read_table(PENGUINS)
    table["island"][3] = "Atlantis"
    bad = tmp_path / "bad.csv"
    write_table(bad, table)
    with pytest.raises(DataError, match=r"'island'.*'Atlantis'"):
        load_like_run(str(bad), cfg, splits.preprocessor)
    del table["sex"]
    write_table(bad, table)
    with pytest.raises(DataError, match="lacks column 'sex'"):
        load_like_run(str(bad), cfg, splits.preprocessor)
    assert Schema.from_dict(cfg.schema).names == list(read_table(PENGUINS))


def test_a_tiny_training_split_still_fits(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_table(path, {"a": [0.1, 0.4, 0.7], "kind": ["cat", "dog", "cat"]})
    splits = prepare(DataConfig(source=str(path)))  # one training row: a one-knot quantile
    assert splits.schema is not None and len(splits.train) == 1
    DataConfig(source=str(path), table="on", schema=splits.schema.to_dict())  # valid JSON


def test_a_stray_word_in_numbers_names_the_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    cells = [str(0.5 * i) for i in range(40)]
    cells[7] = "oops"
    write_table(path, {"a": cells, "b": ["x", "y"] * 20})
    with pytest.raises(DataError, match=r"column 'a' holds numbers but row 8 holds 'oops'"):
        prepare(DataConfig(source=str(path)))
