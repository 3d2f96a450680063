"""An encoder-only (infomax) run through the CLI: it trains, loads and encodes to the same
means; every command that needs a decoder refuses in one line and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clitools import FAST, assert_one_line_error, run, tree_hash
from vaekit import VAE
from vaekit.runs.run import Run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def infomax_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("infomax") / "run"
    rc = main(
        [
            "train",
            "--data",
            "digits",
            "--objective",
            "infomax",
            "--latent-dim",
            "4",
            "--epochs",
            "3",
            "--out",
            str(out),
            "--hidden",
            "64",
            "--quiet",
        ]
    )
    assert rc == 0
    return out


def test_an_infomax_run_trains_evaluates_and_draws_its_latents(infomax_run: Path, capsys) -> None:
    config = json.loads((infomax_run / "config.json").read_text())
    assert config["model"]["decoder"] is False and config["train"]["objective"] == "infomax"
    figures = json.loads((infomax_run / "evaluation.json").read_text())
    assert {"loss", "rate", "mi_nats"} <= set(figures) and "elbo" not in figures
    assert (infomax_run / "latent.png").is_file() and not (infomax_run / "samples.png").exists()
    rc, stdout, err = run(capsys, "evaluate", infomax_run, "--json")
    assert rc == 0, err
    assert json.loads(stdout)["mi_estimator"] == "infonce"


def test_a_saved_encoder_only_run_loads_and_encodes_to_the_same_means(
    infomax_run: Path, tmp_path: Path, capsys
) -> None:
    r = Run.load(infomax_run)
    x = r.data(None, "test")[0]
    again = VAE.load(infomax_run / "model.safetensors")
    assert not again.has_decoder and again.critic is not None
    torch.testing.assert_close(again.encode(x)[0], r.model.encode(x)[0], rtol=0, atol=0)
    rc, _, err = run(capsys, "encode", infomax_run, "--data", "digits", "--out", tmp_path / "e.npz")
    assert rc == 0, err
    with np.load(tmp_path / "e.npz") as f:
        assert f["mean"].shape == (1797, 4)


def test_decoder_commands_refuse_in_one_line_and_write_nothing(
    infomax_run: Path, tmp_path: Path, capsys
) -> None:
    before = tree_hash(tmp_path), tree_hash(infomax_run)
    for command in (
        ["sample", infomax_run, "--out", tmp_path / "s.png"],
        ["reconstruct", infomax_run, "--data", "digits", "--out", tmp_path / "r.png"],
        ["score", infomax_run, "--data", "digits", "--out", tmp_path / "s.csv", "--score",
         "recon-error"],
    ):
        rc, _, err = run(capsys, *command)
        assert "no decoder" in assert_one_line_error(rc, err), command
    assert (tree_hash(tmp_path), tree_hash(infomax_run)) == before
    with pytest.raises(ValueError, match="no decoder"):
        VAE.load(infomax_run / "model.safetensors").sample(2)


def test_infomax_needs_an_encoder_only_model_and_the_reverse(tmp_path: Path, capsys) -> None:
    rc, _, err = run(
        capsys,
        "train",
        "--data",
        "digits",
        "--out",
        tmp_path / "x",
        "--config",
        _config(tmp_path),
        *FAST,
    )
    assert "objective infomax trains an encoder-only model" in assert_one_line_error(rc, err)
    assert not (tmp_path / "x").exists()


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"model": {"decoder": True}, "train": {"objective": "infomax"}}))
    return path


def test_augment_flag_reaches_the_config_and_needs_infomax(tmp_path: Path, capsys) -> None:
    rc, _, err = run(capsys, "train", "--data", "digits", "--augment", "on",
                     "--out", tmp_path / "vae", *FAST)
    assert "--augment on" in assert_one_line_error(rc, err)  # a VAE has no encoder view
    assert not (tmp_path / "vae").exists()
    rc, _, _ = run(capsys, "train", "--data", "digits", "--objective", "infomax", "--augment",
                   "on", "--out", tmp_path / "enc", *FAST)
    assert rc == 0
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config["model"]["augment"] == "on"
    assert Run.load(tmp_path / "enc").model.config.augment == "on"  # saved as trained
