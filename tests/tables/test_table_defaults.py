"""The table defaults (issue 30, phase 3): a per-step floor on the epochs of a table, a
smaller network, full-batch steps at a higher rate for a small table; `vaekit train` and
`vaekit.tables.train_table` apply them where nothing is given, and never to an all-numeric
CSV or over a flag."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaekit.cli import build_parser
from vaekit.cli.train import run_config_from_args
from vaekit.core.composite import CompositeLikelihood
from vaekit.data.config import DataConfig
from vaekit.data.mixed import (
    TABLE_BETA,
    TABLE_FULL_BATCH,
    TABLE_FULL_BATCH_LR,
    TABLE_FULL_BATCH_STEPS,
    TABLE_HIDDEN,
    TABLE_LATENT,
    TABLE_MIN_EPOCHS,
    TABLE_MIN_STEPS,
    table_defaults,
    table_epochs,
    table_rows,
)
from vaekit.data.tabular import read_table
from vaekit.runs import Run

PENGUINS = Path(__file__).resolve().parents[2] / "examples" / "penguins.csv"


def config(*argv: str):
    return run_config_from_args(build_parser().parse_args(["train", *argv]))


def test_table_epochs_floor() -> None:
    assert table_epochs(240, 128) == -(-TABLE_MIN_STEPS // 2)  # 2 steps an epoch
    assert table_epochs(10**6, 128) == TABLE_MIN_EPOCHS  # a big table: the usual 30
    assert table_epochs(1, 128) == TABLE_MIN_STEPS  # one row: one step an epoch
    steps = table_epochs(5000, 128) * -(-5000 // 128)
    assert TABLE_MIN_STEPS <= steps < TABLE_MIN_STEPS + 40


def test_table_defaults_count_the_training_split() -> None:
    cfg = DataConfig(source="t.csv", val_fraction=0.1, test_fraction=0.2)
    small = {"epochs": TABLE_FULL_BATCH_STEPS, "batch_size": TABLE_FULL_BATCH,
             "lr": TABLE_FULL_BATCH_LR, "hidden": TABLE_HIDDEN, "latent_dim": TABLE_LATENT,
             "beta": TABLE_BETA}
    assert table_defaults(344, cfg, 128) == small  # 241 training rows: one full batch
    # with the batch size or rate given, the step floor over that batch
    assert table_defaults(344, cfg, 128, full_batch=False) == {
        "epochs": table_epochs(241, 128), "hidden": TABLE_HIDDEN, "latent_dim": TABLE_LATENT,
        "beta": TABLE_BETA}
    edge = round(TABLE_FULL_BATCH / 0.7)  # the largest table whose split fits one batch
    assert table_defaults(edge, cfg, 128)["batch_size"] == TABLE_FULL_BATCH
    assert table_defaults(edge + 2, cfg, 128) == {
        "epochs": table_epochs(round((edge + 2) * 0.7), 128), "hidden": TABLE_HIDDEN,
        "latent_dim": TABLE_LATENT, "beta": TABLE_BETA}


def test_vaekit_train_on_a_table_takes_the_table_defaults(tmp_path: Path) -> None:
    cfg = config("--data", str(PENGUINS), "--out", str(tmp_path / "r"))
    assert cfg.model.hidden == TABLE_HIDDEN and cfg.model.latent_dim == TABLE_LATENT
    assert cfg.train.epochs == TABLE_FULL_BATCH_STEPS  # 241 training rows: full batch
    assert (cfg.train.batch_size, cfg.train.lr) == (TABLE_FULL_BATCH, TABLE_FULL_BATCH_LR)
    assert cfg.train.beta == TABLE_BETA
    assert config("--data", str(PENGUINS), "--out", str(tmp_path / "r"),
                  "--beta", "2").train.beta == 2.0
    given = config("--data", str(PENGUINS), "--out", str(tmp_path / "r"), "--epochs", "7",
                   "--hidden", "32,16", "--batch-size", "16")
    assert given.train.epochs == 7 and given.model.hidden == (32, 16)
    assert given.model.latent_dim == TABLE_LATENT and given.train.batch_size == 16
    assert given.train.lr == 1e-3
    small_batch = config("--data", str(PENGUINS), "--out", str(tmp_path / "r"),
                         "--batch-size", "16")
    assert small_batch.train.epochs == table_epochs(241, 16)
    rate = config("--data", str(PENGUINS), "--out", str(tmp_path / "r"), "--lr", "0.01")
    assert (rate.train.batch_size, rate.train.lr) == (128, 0.01)
    assert rate.train.epochs == table_epochs(241, 128)


def test_train_table_takes_the_full_batch_defaults(tmp_path: Path) -> None:
    from vaekit.tables import train_table

    run = train_table(PENGUINS, tmp_path / "r", epochs=2)
    assert (run.config.train.batch_size, run.config.train.lr) == (
        TABLE_FULL_BATCH, TABLE_FULL_BATCH_LR)
    assert run.config.train.beta == TABLE_BETA
    given = train_table(PENGUINS, tmp_path / "g", epochs=2, batch_size=64, beta=1.0)
    assert (given.config.train.batch_size, given.config.train.lr) == (64, 1e-3)
    assert given.config.train.beta == 1.0


def test_numeric_data_keep_the_usual_defaults(tmp_path: Path) -> None:
    data = tmp_path / "n.csv"
    data.write_text("a,b\n" + "".join(f"{i},{i * 0.5}\n" for i in range(50)))
    for argv in (["--data", str(data)], ["--data", "digits"]):
        cfg = config(*argv, "--out", str(tmp_path / "r"))
        assert cfg.train.epochs == 30 and cfg.model.hidden == (512, 256)
        assert cfg.train.beta == 1.0 and cfg.train.batch_size == 128
        assert cfg.model.latent_dim == 16
    assert table_rows(DataConfig(source=str(data))) is None
    assert table_rows(DataConfig(source=str(data), table="on")) == 50
    assert table_rows(DataConfig(source=str(PENGUINS))) == 344
    assert table_rows(DataConfig(source=str(PENGUINS), table="off")) is None
    assert table_rows(DataConfig(source=str(tmp_path / "missing.csv"))) is None


def test_cell_dropout_only_while_training() -> None:
    lik = CompositeLikelihood(["continuous", ("categorical", 3), "binary"])
    x = torch.tensor([[0.5, 2.0, 1.0]]).repeat(2000, 1)
    lik.eval()
    assert torch.equal(lik.encoder_input(x), lik.encoder_input(x[:1]).expand(2000, -1))
    lik.train()
    torch.manual_seed(0)
    bits = lik.encoder_input(x)[:, -3:]  # the observed bits
    assert abs(1 - bits.mean().item() - lik.cell_dropout) < 0.03
    assert torch.all(lik.encoder_input(x.new_full((4, 3), float("nan")))[:, -3:] == 0)


def test_train_table_from_columns_and_a_dataframe(tmp_path: Path) -> None:
    from vaekit.tables import sample_table, train_table

    run = train_table(read_table(PENGUINS), tmp_path / "run", epochs=2, hidden=(16,),
                      latent_dim=2)
    assert run.config.train.epochs == 2 and run.config.model.hidden == (16,)
    assert run.config.data.table == "on" and (tmp_path / "run" / "model.safetensors").is_file()
    rows = sample_table(run, 5)
    assert list(rows) == list(read_table(PENGUINS)) and len(rows["species"]) == 5
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(PENGUINS)  # NaN gaps, int and float columns
    again = train_table(frame, tmp_path / "frame", epochs=2, hidden=(16,), latent_dim=2)
    assert again.config.data.schema["columns"] == run.config.data.schema["columns"]
    # the table given in memory stays with the run: its own splits read back, as from the file
    kept = Run.load(tmp_path / "frame")
    assert Path(kept.config.data.source) == (tmp_path / "frame" / "table.csv").resolve()
    torch.testing.assert_close(kept.data(split="test")[0], run.data(split="test")[0],
                               equal_nan=True)


def test_impute_level_choice_numeric_levels_take_the_nearest_to_the_mean() -> None:
    import numpy as np

    from vaekit.tables.impute import level_choice

    p = np.array([[0.5, 0.0, 0.5], [0.1, 0.8, 0.1], [0.9, 0.0, 0.1]])
    assert level_choice(p, [2, 4, 8]).tolist() == [1, 1, 0]  # means 5, 4.2, 2.6
    assert level_choice(p, ["2", "4", "8"]).tolist() == [1, 1, 0]
    assert level_choice(p, ["a", "b", "c"]).tolist() == [0, 1, 0]  # words: the mode
