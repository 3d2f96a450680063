"""A table run in use: `vaekit sample` to a CSV of the same columns and kinds, `vaekit impute`
(observed cells never change), `vaekit score` with per-column parts; the Python calls beside
them; and the issue's bad inputs at sample/impute/score time: one line, nothing written."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

import numpy as np
import pytest

from clitools import assert_one_line_error, run, tree_hash
from vaekit.data.schema import Schema
from vaekit.data.tabular import as_number, is_missing, read_table, write_table
from vaekit.runs import Run
from vaekit.tables import impute, sample_table, score_table

PENGUINS = Path(__file__).resolve().parents[2] / "examples" / "penguins.csv"


def schema_of(run_dir: Path) -> Schema:
    return Schema.from_dict(Run.load(run_dir).config.data.schema)


def check_kinds(table: dict, schema: Schema) -> None:
    """Every cell of the table fits its column of the schema (kind, levels, range)."""
    assert list(table) == schema.names
    for spec in schema.columns:
        cells = [c for c in table[spec.name] if not is_missing(c)]
        if spec.numeric:
            values = [as_number(c) for c in cells]
            assert None not in values, spec.name
            lo, hi = spec.transform["min"], spec.transform["max"]
            assert all(lo <= v <= hi for v in values), spec.name
            if spec.kind == "integer":
                assert all(float(v).is_integer() for v in values), spec.name
                assert all("." not in str(c) for c in cells), spec.name  # written as ints
        else:
            levels = {str(v) for v in spec.levels}
            assert {str(c) for c in cells} <= levels, spec.name


# --- sample ---------------------------------------------------------------------------


def test_sample_writes_the_columns_and_kinds(penguins_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "synthetic.csv"
    rc, stdout, err = run(capsys, "sample", penguins_run, "-n", 200, "--out", out)
    assert rc == 0, err
    assert "200 synthetic rows" in stdout
    table = read_table(out)
    assert len(table["species"]) == 200
    schema = schema_of(penguins_run)
    check_kinds(table, schema)
    assert len(set(table["species"])) > 1  # draws, not one mode


def test_sample_table_in_python(penguins_run: Path) -> None:
    rows = sample_table(penguins_run, 50, seed=3)
    assert rows == sample_table(str(penguins_run), 50, seed=3)
    assert rows != sample_table(penguins_run, 50, seed=4)
    check_kinds(rows, schema_of(penguins_run))
    assert all(isinstance(v, int) for v in rows["body_mass_g"])
    assert all(isinstance(v, str) for v in rows["species"])
    with pytest.raises(ValueError, match="n is the number of rows"):
        sample_table(penguins_run, 0)


@pytest.mark.parametrize(
    "args, words",
    [
        (["-n", "0", "--out", "s.csv"], "-n"),
        (["-n", "5", "--out", "s.png"], "FILE.csv"),
        (["-n", "5", "--out", "s.csv", "--label", "1"], "--label"),
    ],
)
def test_sample_mistakes(penguins_run: Path, tmp_path: Path, capsys, args, words) -> None:
    args = [str(tmp_path / a) if a.startswith("s.") else a for a in args]
    before = tree_hash(tmp_path)
    rc, _, err = run(capsys, "sample", penguins_run, *args)
    assert words in assert_one_line_error(rc, err)
    assert tree_hash(tmp_path) == before


# --- impute ---------------------------------------------------------------------------


def test_impute_fills_gaps_and_keeps_observed_cells(
    penguins_run: Path, tmp_path: Path, capsys
) -> None:
    gaps = read_table(PENGUINS)
    rng = np.random.default_rng(0)
    for cells in gaps.values():  # hide 20% more cells
        for i in np.flatnonzero(rng.random(len(cells)) < 0.2):
            cells[i] = ""
    data = tmp_path / "gaps.csv"
    write_table(data, gaps)
    out = tmp_path / "filled.csv"
    rc, stdout, err = run(capsys, "impute", penguins_run, "--data", data, "--out", out)
    assert rc == 0, err
    assert "imputing" in err and "row" in err  # the progress bar, on stderr
    missing = sum(is_missing(c) for cells in gaps.values() for c in cells)
    assert f"{missing} missing cells filled" in stdout
    rc, _, quiet = run(capsys, "impute", penguins_run, "--data", data, "--out",
                       tmp_path / "quiet.csv", "--quiet")
    assert rc == 0 and "imputing" not in quiet
    assert read_table(tmp_path / "quiet.csv") == read_table(out)  # the bar changes nothing
    filled = read_table(out)
    assert list(filled) == list(gaps)
    for name, cells in gaps.items():
        for before, after in zip(cells, filled[name], strict=True):
            if is_missing(before):
                assert not is_missing(after), name
            else:
                assert after == before, name  # the very same text
    imputed = {  # the filled-in cells alone fit the schema (observed ones may lie outside
        # the training split's range)
        name: [a if is_missing(b) else "" for b, a in zip(gaps[name], filled[name], strict=True)]
        for name in gaps
    }
    check_kinds(imputed, schema_of(penguins_run))


def test_impute_in_python(penguins_run: Path) -> None:
    table = {k: v[:40] for k, v in read_table(PENGUINS).items()}
    table = {k: table[k] for k in reversed(list(table))}  # any column order
    filled = impute(penguins_run, table, samples=10)
    assert list(filled) == list(table)
    assert filled["sex"][3] in ("female", "male") and table["sex"][3] == "NA"
    assert isinstance(filled["body_mass_g"][3], int)
    for name, cells in table.items():
        for before, after in zip(cells, filled[name], strict=True):
            assert is_missing(before) or after == before
    assert impute(penguins_run, table, samples=10) == filled  # seeded

    class Frame:  # DataFrame-like: columns, frame[name].tolist(), built from a dict
        def __init__(self, data: dict) -> None:
            self.data = dict(data)
            self.columns = list(self.data)

        def __getitem__(self, k: str) -> np.ndarray:
            return np.array(self.data[k], dtype=object)

    back = impute(penguins_run, Frame(table), samples=10)
    assert type(back) is Frame and back.data == filled


def _unknown_category(d: Path) -> Path:
    table = read_table(PENGUINS)
    table["island"][10] = "Atlantis"
    write_table(d / "t.csv", table)
    return d / "t.csv"


def _missing_column(d: Path) -> Path:
    table = read_table(PENGUINS)
    del table["body_mass_g"]
    write_table(d / "t.csv", table)
    return d / "t.csv"


def _extra_column(d: Path) -> Path:
    table = read_table(PENGUINS)
    table["colour"] = ["blue"] * 344
    write_table(d / "t.csv", table)
    return d / "t.csv"


BAD = [
    (_unknown_category, "'island' has category 'Atlantis'"),
    (_missing_column, "lacks column 'body_mass_g'"),
    (_extra_column, "column 'colour'"),
]


@pytest.mark.parametrize("command", ["impute", "score"])
@pytest.mark.parametrize("make, words", BAD)
def test_bad_tables_at_use_time(
    penguins_run: Path, tmp_path: Path, capsys, command: str, make, words: str
) -> None:
    data = make(tmp_path)
    before = tree_hash(tmp_path)
    rc, _, err = run(capsys, command, penguins_run, "--data", data, "--out", tmp_path / "o.csv")
    assert words in assert_one_line_error(rc, err)
    assert tree_hash(tmp_path) == before


def test_impute_refuses_a_run_that_is_not_a_table(digits_run: Path, tmp_path: Path, capsys):
    rc, _, err = run(capsys, "impute", digits_run, "--data", PENGUINS, "--out", tmp_path / "o.csv")
    assert "not trained on a table" in assert_one_line_error(rc, err)
    assert not (tmp_path / "o.csv").exists()


# --- score ----------------------------------------------------------------------------


def test_score_a_table_with_per_column_parts(penguins_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "scores.csv"
    rc, _, err = run(
        capsys, "score", penguins_run, "--data", PENGUINS, "--out", out, "--explain", 5
    )
    assert rc == 0, err
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 344 and all(np.isfinite(float(r["score"])) for r in rows)
    with (tmp_path / "scores_explain.csv").open() as f:
        reader = csv.DictReader(f)
        explain = list(reader)
    assert reader.fieldnames == ["index", "score", *read_table(PENGUINS)]
    assert len(explain) == 5
    rc, _, err = run(
        capsys,
        "score",
        penguins_run,
        "--data",
        PENGUINS,
        "--out",
        tmp_path / "e.csv",
        "--score",
        "recon-error",
    )
    assert "table" in assert_one_line_error(rc, err)


def test_score_table_parts_add_up(penguins_run: Path) -> None:
    scores, parts = score_table(penguins_run, PENGUINS, samples=20)
    assert scores.shape == (344,)
    total = sum(parts[name] for name in parts)
    np.testing.assert_allclose(total, scores, rtol=1e-6, atol=1e-6)
    assert np.all(parts["rate"] >= -1e-6)
    gaps = read_table(PENGUINS)["sex"]
    missing = [i for i, c in enumerate(gaps) if is_missing(c)]
    assert missing and np.all(parts["sex"][missing] == 0)  # a missing cell adds nothing


def test_sample_and_score_with_a_mixture_prior(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["--prior", "mixture", "--components", "3", "--epochs", "1", "--hidden", "16"]
    rc, _, err = run(
        capsys, "train", "--data", PENGUINS, "--out", out, *args, "--quiet", "--no-pictures"
    )
    assert rc == 0, err
    check_kinds(sample_table(out, 20), schema_of(out))
    scores, parts = score_table(out, PENGUINS, samples=4)  # Monte Carlo KL: no closed form
    assert np.isfinite(scores).all() and np.isfinite(parts["rate"]).all()


def test_a_hand_edited_schema_that_no_longer_fits_the_model(
    penguins_run: Path, tmp_path: Path, capsys
) -> None:
    import json
    import shutil

    edited = tmp_path / "run"
    shutil.copytree(penguins_run, edited)
    config = json.loads((edited / "config.json").read_text())
    config["data"]["schema"]["columns"][0]["levels"].append("Emperor")
    (edited / "config.json").write_text(json.dumps(config))
    rc, _, err = run(capsys, "sample", edited, "-n", 5, "--out", tmp_path / "s.csv")
    assert "column_kinds" in assert_one_line_error(rc, err)
    assert not (tmp_path / "s.csv").exists()


def test_impute_bounds_the_memory_of_a_pass(
    penguins_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass over S draws takes as few rows as keep a (S, rows, width) tensor within
    ELEMENTS numbers, at least one; splitting the rows finer fills every gap as well."""
    impute_module = importlib.import_module("vaekit.tables.impute")  # the package's
    # `impute` is the function

    assert impute_module.rows_per_pass(10**9, 40) == 1
    rows = impute_module.rows_per_pass(1000, 40)
    assert rows * 1000 * 40 <= impute_module.ELEMENTS < (rows + 1) * 1000 * 40
    table = {k: v[:40] for k, v in read_table(PENGUINS).items()}
    whole = impute(penguins_run, table, samples=10)
    monkeypatch.setattr(impute_module, "ELEMENTS", 10 * 30)  # a row or two a pass
    split = impute(penguins_run, table, samples=10)
    for name, cells in table.items():
        for before, a, b in zip(cells, whole[name], split[name], strict=True):
            assert (a == b == before) if not is_missing(before) else not is_missing(b)


# --- exemplars: the training rows' codes, imputation's prior ----------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small penguins run trained to its full-batch default (seconds), codes that differ."""
    from vaekit.tables import train_table

    out = tmp_path_factory.mktemp("exemplars") / "run"
    train_table(PENGUINS, out, hidden=[32, 16], latent_dim=4, seed=0)
    return out


def test_a_table_run_keeps_its_training_rows_codes(trained_run: Path) -> None:
    import torch

    from vaekit.runs.tables import EXEMPLARS, load_exemplars

    run = Run.load(trained_run)
    x, _ = run.data(split="train")
    mean, logvar = load_exemplars(trained_run)
    assert mean.shape == logvar.shape == (len(x), run.config.model.latent_dim)
    with torch.no_grad():
        q = run.model.eval().posterior(x)
    torch.testing.assert_close(mean, q.mean)
    torch.testing.assert_close(logvar, q.logvar)
    # --force into the same directory removes them with the other vaekit files
    from vaekit.runs.run import prepare_out_dir

    copy = trained_run.parent / "copy"
    copy.mkdir()
    (copy / EXEMPLARS).write_bytes((trained_run / EXEMPLARS).read_bytes())
    prepare_out_dir(copy, resume=False, force=True)
    assert not (copy / EXEMPLARS).exists()


def test_a_resumed_table_run_writes_the_codes_of_its_new_model(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume rewrites the codes after training; one that stops partway leaves none (the
    old codes would not fit the weights it saved), and imputation falls back to N(0, I)."""
    import torch

    from vaekit.runs.tables import EXEMPLARS, load_exemplars

    out = tmp_path / "run"
    tiny = ["--hidden", "32,16", "--latent-dim", "4", "--quiet", "--no-pictures", "--k", "5"]
    assert run(capsys, "train", "--data", PENGUINS, "--out", out, "--epochs", "2", *tiny)[0] == 0
    before = load_exemplars(out)[0]
    runs_module = importlib.import_module("vaekit.runs.run")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(runs_module, "fit", interrupted)
        rc, _, err = run(capsys, "train", "--out", out, "--resume", "--epochs", "40", "--quiet",
                         "--no-pictures")
    assert rc != 0
    assert not (out / EXEMPLARS).exists() and (out / "model.safetensors").exists()
    rc, _, err = run(capsys, "train", "--out", out, "--resume", "--epochs", "40", "--quiet",
                     "--no-pictures")
    assert rc == 0, err
    resumed = Run.load(out)
    x, _ = resumed.data(split="train")
    with torch.no_grad():
        codes = resumed.model.eval().posterior(x).mean
    torch.testing.assert_close(load_exemplars(out)[0], codes)
    assert not torch.allclose(before, codes)


def test_imputation_follows_the_exemplar_that_explains_the_observed_cells(
    trained_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two exemplars far apart, each nearly a point: a row whose observed cells are what one
    of them decodes to is completed with that exemplar's decoded values, not a blend."""
    import torch

    impute_module = importlib.import_module("vaekit.tables.impute")
    run = Run.load(trained_run)
    schema = schema_of(trained_run)
    lik = run.model.eval().likelihood
    d = run.config.model.latent_dim
    codes = torch.stack([torch.full((d,), 2.5), torch.full((d,), -2.5)])
    monkeypatch.setattr(impute_module, "load_exemplars",
                        lambda path: (codes, torch.full_like(codes, -30.0)))
    with torch.no_grad():
        params = run.model.decoder_params(codes)  # (2, P)
        means = lik.mean(params)  # transformed numbers, P(x = 1), level indices
    rows = means.clone()
    for j, spec in enumerate(schema.columns):
        if spec.kind == "binary":
            rows[:, j] = (means[:, j] >= 0.5).float()
    target = schema.names.index("body_mass_g")
    rows[:, target] = float("nan")  # the cell to fill
    units = impute_module.data_units(schema, lik, params[:, None, :])[target][:, 0]
    assert abs(units[0] - units[1]) > 200  # grams: the two exemplars disagree
    filled = impute_module.predict_cells(run, schema, rows, samples=10, seed=0)
    assert filled["body_mass_g"] == [round(units[0]), round(units[1])]
    prior = impute_module.predict_cells(run, schema, rows, samples=10, seed=0,
                                        exemplars=False)  # N(0, I): another answer
    assert prior["body_mass_g"] != filled["body_mass_g"]


def test_codes_that_do_not_fit_the_model_are_a_one_line_error(
    trained_run: Path, tmp_path: Path, capsys
) -> None:
    import shutil

    import torch

    from vaekit.core.io import save_tensors
    from vaekit.runs.tables import EXEMPLARS

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    save_tensors(run_dir / EXEMPLARS, {"mean": torch.zeros(5, 3), "logvar": torch.zeros(5, 3)},
                 {})
    out = tmp_path / "filled.csv"
    rc, _, err = run(capsys, "impute", run_dir, "--data", PENGUINS, "--out", out)
    assert "exemplars.safetensors" in assert_one_line_error(rc, err) and "delete" in err
    assert not out.exists()
    (run_dir / EXEMPLARS).write_bytes(b"not a safetensors file")
    rc, _, err = run(capsys, "impute", run_dir, "--data", PENGUINS, "--out", out)
    assert "exemplars.safetensors" in assert_one_line_error(rc, err)
    assert not out.exists()
    rc, _, err = run(capsys, "impute", run_dir, "--data", PENGUINS, "--out", out,
                     "--no-exemplars", "--quiet")  # the N(0, I) prior needs no codes
    assert rc == 0, err
    assert out.exists()
