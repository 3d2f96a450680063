"""`vaekit train` on a mixed CSV: no table flags needed, the schema in config.json and
--schema to give or edit it; the issue's bad inputs are one line, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clitools import assert_one_line_error, run, tree_hash
from vaekit.data.schema import infer_schema
from vaekit.data.tabular import read_table, write_table
from vaekit.runs import Run

PENGUINS = Path(__file__).resolve().parents[2] / "examples" / "penguins.csv"
TINY = ["--hidden", "32,16", "--latent-dim", "4", "--epochs", "2", "--quiet", "--k", "5"]


def test_train_a_mixed_csv_with_no_flags(penguins_run: Path) -> None:
    config = json.loads((penguins_run / "config.json").read_text())
    assert config["data"]["table"] == "on"
    schema = config["data"]["schema"]
    assert [c["name"] for c in schema["columns"]] == list(read_table(PENGUINS))
    assert config["model"]["likelihood"] == "composite"
    assert config["model"]["column_kinds"][0] == "categorical:3"
    figures = json.loads((penguins_run / "evaluation.json").read_text())
    assert figures["elbo"] < 0
    loaded = Run.load(penguins_run)
    assert loaded.config.data.schema == schema


def test_pictures_and_report_of_a_table_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--data", PENGUINS, "--out", out, *TINY)
    assert rc == 0, err
    report = (out / "report.html").read_text()
    # the synthetic-data check: how close synthetic rows lie to training rows, beside held-out
    assert "DCR of synthetic rows (median)" in report and "DCR of held-out rows" in report


def test_schema_file_edits_the_kinds(penguins_run: Path, tmp_path: Path, capsys) -> None:
    schema = json.loads((penguins_run / "config.json").read_text())["data"]["schema"]
    for c in schema["columns"]:  # keep kinds only, and make year an integer
        c.pop("levels", None), c.pop("transform", None)
        if c["name"] == "year":
            c["kind"] = "integer"
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    out = tmp_path / "run"
    rc, _, err = run(
        capsys, "train", "--data", PENGUINS, "--schema", path, "--out", out, "--no-pictures", *TINY
    )
    assert rc == 0, err
    config = json.loads((out / "config.json").read_text())
    kinds = {c["name"]: c["kind"] for c in config["data"]["schema"]["columns"]}
    assert kinds["year"] == "integer"
    assert config["model"]["column_kinds"][-1] == "integer"


def test_an_all_numeric_csv_keeps_todays_path(tmp_path: Path, capsys) -> None:
    data = tmp_path / "n.csv"
    write_table(data, {"a": [0.5, 1.5, 2.5, 3.0] * 10, "b": [1.0, 0.0, 2.0, 4.0] * 10})
    out = tmp_path / "run"
    args = ["--likelihood", "gaussian", "--no-pictures", *TINY]
    rc, _, err = run(capsys, "train", "--data", data, "--out", out, *args)
    assert rc == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["table"] == "off" and config["model"]["likelihood"] == "gaussian"
    out2 = tmp_path / "run2"
    rc, _, err = run(capsys, "train", "--data", data, "--out", out2, "--table", "on", *args)
    assert rc == 0, err
    assert json.loads((out2 / "config.json").read_text())["model"]["likelihood"] == "composite"


def _table(tmp_path: Path, name: str, change) -> Path:
    table = read_table(PENGUINS)
    change(table)
    path = tmp_path / name
    write_table(path, table)
    return path


def _ragged(tmp_path: Path) -> Path:
    path = tmp_path / "ragged.csv"
    lines = PENGUINS.read_text().splitlines()
    lines[5] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    return path


def _empty_schema(tmp_path: Path) -> Path:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"columns": [{"name": "species", "kind": "categorical"}]}))
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (_ragged, "line 6 has 9 cells"),
        (
            lambda p: _table(p, "gap.csv", lambda t: t.update(sex=[""] * 344)),
            "'sex' is all missing",
        ),
        (
            lambda p: _table(p, "id.csv", lambda t: t.update(tag=[f"p{i}" for i in range(344)])),
            "'tag' looks like an identifier",
        ),
    ],
)
def test_bad_tables_are_one_line(tmp_path: Path, capsys, make, words: str) -> None:
    data = make(tmp_path)
    before = tree_hash(tmp_path)
    rc, _, err = run(capsys, "train", "--data", data, "--out", tmp_path / "run", *TINY)
    assert words in assert_one_line_error(rc, err)
    assert tree_hash(tmp_path) == before and not (tmp_path / "run").exists()


def test_a_schema_that_does_not_match_is_one_line(tmp_path: Path, capsys) -> None:
    schema = _empty_schema(tmp_path)
    before = tree_hash(tmp_path)
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--data", PENGUINS, "--schema", schema, "--out", out, *TINY)
    assert "'island'" in assert_one_line_error(rc, err)
    assert tree_hash(tmp_path) == before and not out.exists()
    schema.write_text("{not json")
    rc, _, err = run(capsys, "train", "--data", PENGUINS, "--schema", schema, "--out", out, *TINY)
    assert "schema" in assert_one_line_error(rc, err)
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:posterior collapse")
def test_python_train_with_a_schema(tmp_path: Path) -> None:
    from vaekit.core.config import ModelConfig
    from vaekit.data import DataConfig
    from vaekit.data.schema import ColumnSpec
    from vaekit.runs import RunConfig, train_run
    from vaekit.train.config import TrainConfig

    schema = infer_schema(read_table(PENGUINS))  # a Schema (or its dict) as schema=
    schema.columns[-1] = ColumnSpec("year", "integer")  # to be fitted on the training split
    config = RunConfig(
        model=ModelConfig(hidden=(16,), latent_dim=2),
        data=DataConfig(source=str(PENGUINS), schema=schema),
        train=TrainConfig(epochs=1, eval_k=2),
    )
    run, figures = train_run(config, tmp_path / "run", progress=False, pictures=False)
    year = run.config.data.schema["columns"][-1]
    assert year["kind"] == "integer" and year["transform"]["name"] == "quantile"
    assert run.config.model.column_kinds[-1] == "integer"
    assert figures["elbo"] < 0


def test_an_identifier_declared_categorical_is_kept(tmp_path: Path, capsys) -> None:
    table = read_table(PENGUINS)
    names = list(table)
    table["tag"] = [f"p{i}" for i in range(344)]
    data = tmp_path / "id.csv"
    write_table(data, table)
    kinds = {c.name: c.kind for c in infer_schema(read_table(PENGUINS)).columns}
    schema = tmp_path / "schema.json"
    columns = [{"name": n, "kind": kinds[n]} for n in names] + [
        {"name": "tag", "kind": "categorical"}
    ]
    schema.write_text(json.dumps({"columns": columns}))
    out = tmp_path / "run"
    rc, _, err = run(
        capsys, "train", "--data", data, "--schema", schema, "--out", out, "--no-pictures", *TINY
    )
    assert rc == 0, err
    assert json.loads((out / "config.json").read_text())["model"]["column_kinds"][-1] == (
        "categorical:344"
    )
