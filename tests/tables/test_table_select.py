"""`--select impute` (vaekit.tables.select): two recipes trained, the one that fills the
validation rows' hidden cells better kept in the run directory, selection.json beside it;
the criterion itself, and the refusals (one line, nothing written)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from clitools import assert_one_line_error, run, tree_hash
from vaekit.runs import Run

PENGUINS = Path(__file__).resolve().parents[2] / "examples" / "penguins.csv"
SHORT = ["--epochs", "3", "--quiet", "--no-pictures", "--k", "5"]


@pytest.mark.parametrize("better", ["defaults", "low rate"])
def test_the_recipe_of_lower_loss_is_kept(
    better: str, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    select = importlib.import_module("vaekit.tables.select")
    real = select.masked_cell_loss
    losses = iter([0.2, 0.4] if better == "defaults" else [0.4, 0.2])

    def loss(run_: Run, *, seed: int) -> float:
        assert 0.0 < real(run_, seed=seed) < 2.0  # a real figure on every candidate
        return next(losses)

    monkeypatch.setattr(select, "masked_cell_loss", loss)
    out = tmp_path / "run"
    rc, stdout, err = run(capsys, "train", "--data", PENGUINS, "--out", out,
                          "--select", "impute", *SHORT)
    assert rc == 0, err
    assert f"kept: the {better} recipe" in stdout
    record = json.loads((out / "selection.json").read_text())
    assert record["kept"] == better and record["losses"][better] == 0.2
    kept = Run.load(out)
    recipe = record["recipes"][better]
    assert kept.config.train.beta == recipe["beta"]
    assert kept.config.model.latent_dim == recipe["latent_dim"]
    assert list(kept.config.model.hidden) == recipe["hidden"]
    assert (out / "exemplars.safetensors").is_file() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the candidates' folders are gone


def test_the_criterion_prefers_a_trained_model(penguins_run: Path, tmp_path: Path) -> None:
    """The masked-cell loss of a run trained to the table defaults is below that of a run
    of two epochs, and the same for the same seed."""
    from vaekit.tables import train_table
    from vaekit.tables.select import masked_cell_loss

    trained = train_table(PENGUINS, tmp_path / "trained", hidden=[32, 16], latent_dim=4)
    tiny = Run.load(penguins_run)
    assert masked_cell_loss(trained, seed=0) < masked_cell_loss(tiny, seed=0)
    assert masked_cell_loss(trained, seed=0) == masked_cell_loss(trained, seed=0)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--data", PENGUINS, "--beta", "0.2"], "drop --beta"),
        (["--data", PENGUINS, "--hidden", "64,32"], "drop --hidden"),
        (["--data", "digits"], "not read as a table"),
        (["--data", "missing.csv"], "no such file"),
        (["--data", PENGUINS, "--val-fraction", "0"], "--val-fraction > 0"),
        (["--data", PENGUINS, "--config", "run.toml"], "drop --config"),
        (["--data", PENGUINS, "torchrun"], "without torchrun"),
        # one validation row whose three cells the seeded draw leaves all observed: refused
        # before any training
        (["--data", "tiny.csv", "--val-fraction", "0.05", "--seed", "0"], "no cell to hide"),
    ],
)
def test_select_refusals(
    args: list, words: str, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "torchrun" in args:  # as torchrun starts every rank
        args = [a for a in args if a != "torchrun"]
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("WORLD_SIZE", "2")
    if "run.toml" in args:
        (tmp_path / "run.toml").write_text("[train]\nseed = 1\n")
        args = [tmp_path / "run.toml" if a == "run.toml" else a for a in args]
    if "tiny.csv" in args:
        rows = [f"{i / 7:.3f},{(i * i) % 5},{'xy'[i % 2]}" for i in range(20)]
        (tmp_path / "tiny.csv").write_text("\n".join(["a,b,kind", *rows]) + "\n")
        args = [tmp_path / "tiny.csv" if a == "tiny.csv" else a for a in args]
    select = importlib.import_module("vaekit.tables.select")

    def no_training(*a: object, **k: object) -> None:
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(select, "train_run", no_training)  # every refusal comes first
    before = tree_hash(tmp_path)
    rc, _, err = run(capsys, "train", "--out", tmp_path / "run", "--select", "impute",
                     *args, *SHORT)
    assert words in assert_one_line_error(rc, err)
    assert tree_hash(tmp_path) == before and not (tmp_path / "run").exists()


def test_select_keeps_an_existing_run_without_force(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc, _, err = run(capsys, "train", "--data", PENGUINS, "--out", out, "--select", "impute",
                     *SHORT)
    assert "--force" in assert_one_line_error(rc, err)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
