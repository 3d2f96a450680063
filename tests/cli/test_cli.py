"""The `vaekit` command end to end: run directories, evaluate --json, resume, Ctrl-C, bad inputs.

Most calls go through `vaekit.cli.main([...])` in this process (fast); two go through the real
console script in a subprocess (the entry point, and a real SIGINT).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clitools import (
    FAST,
    SMALL,
    VAEKIT,
    assert_one_line_error,
    assert_same_training,
    checkpoint,
    read_metrics,
    run,
    tree_hash,
)
from vaekit.cli import main
from vaekit.core.io import load_tensors
from vaekit.train.loop import COLUMNS

DEMO_EPOCHS = 4
FILES = (
    "config.json",
    "model.safetensors",
    "metrics.csv",
    "checkpoint.safetensors",
    "evaluation.json",
    "samples.png",
    "reconstructions.png",
    "manifold.png",
    "latent.png",
    "curves.png",
    "report.html",
)


# --- helpers -----------------------------------------------------------------------------------

# Tiny models on a shared 2-core machine: one thread is both faster and steadier (two threads
# spin-wait for each other when other processes hold a core). Subprocesses get the same.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")



# --- the demo-style run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-D-latent run on the digits with pictures and report, as `make demo` makes one."""
    out = tmp_path_factory.mktemp("demo") / "run"
    rc = main(
        [
            "train",
            "--data",
            "digits",
            "--out",
            str(out),
            "--latent-dim",
            "2",
            "--epochs",
            str(DEMO_EPOCHS),
            "--k",
            "20",
            *SMALL,
        ]
    )
    assert rc == 0
    return out


def test_demo_run_directory_holds_every_file(demo: Path) -> None:
    for name in FILES:
        assert (demo / name).is_file(), name
        assert (demo / name).stat().st_size > 0, name
    config = json.loads((demo / "config.json").read_text())
    assert config["model"]["latent_dim"] == 2
    assert config["train"]["epochs"] == DEMO_EPOCHS

    header, rows = read_metrics(demo)
    assert header == list(COLUMNS)
    assert [int(r["epoch"]) for r in rows] == list(range(1, DEMO_EPOCHS + 1))
    for row in rows:
        for key in COLUMNS:
            assert math.isfinite(float(row[key])), (key, row)

    _, meta = checkpoint(demo)
    assert meta["state"]["epoch"] == DEMO_EPOCHS

    figures = json.loads((demo / "evaluation.json").read_text())
    assert figures["split"] == "test"
    assert figures["elbo"] == pytest.approx(-(figures["rate"] + figures["distortion"]), abs=1e-3)

    report = (demo / "report.html").read_text()
    for name in ("samples", "reconstructions", "manifold", "latent", "curves"):
        assert f'src="{name}.png"' in report, name
    assert "ELBO" in report and "log p(x)" in report
    kept = meta["state"]["best_epoch"]  # the weights in model.safetensors: the report says which
    assert kept == 1 + min(range(len(rows)), key=lambda i: float(rows[i]["val_loss"]))
    assert f'epoch kept (lowest validation loss)</td><td class="value">{kept}</td>' in report


def test_manifold_plot_of_a_2d_latent_opens(demo: Path) -> None:
    with Image.open(demo / "manifold.png") as im:
        im.load()
        width, height = im.size
    assert 200 <= width <= 4000 and 200 <= height <= 4000
    assert 0.5 <= width / height <= 2.0
    pixels = np.asarray(Image.open(demo / "manifold.png").convert("L"))
    assert pixels.std() > 5  # not a blank canvas


def test_evaluate_json_prints_one_object(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "evaluate", demo, "--json", "--k", "50")
    assert rc == 0, err
    assert len(out.strip().splitlines()) == 1
    figures = json.loads(out)
    for key in ("elbo", "rate", "distortion", "log_likelihood", "bits_per_dim"):
        assert isinstance(figures[key], float), key
        assert math.isfinite(figures[key]), key
    assert figures["k"] == 50
    assert figures["elbo"] == pytest.approx(-(figures["rate"] + figures["distortion"]), abs=1e-3)
    assert figures["rate"] >= 0
    # importance sampling bounds log p(x) from below more tightly than the ELBO (up to noise)
    assert figures["log_likelihood"] >= figures["elbo"] - 0.05 * abs(figures["elbo"])
    dims = 64  # 8x8 digits
    assert figures["bits_per_dim"] == pytest.approx(
        -figures["log_likelihood"] / (dims * math.log(2)), rel=1e-4
    )
    # by default the run's own held-out test split: the same examples as evaluation.json, the
    # same analytic rate, and at the training run's K and seed the very same figures
    saved = json.loads((demo / "evaluation.json").read_text())
    assert figures["split"] == "test" and figures["n"] == saved["n"]
    assert figures["rate"] == pytest.approx(saved["rate"], rel=1e-5)
    rc, out, err = run(capsys, "evaluate", demo, "--json", "--k", saved["k"])
    assert rc == 0, err
    again = json.loads(out)
    for key in ("elbo", "rate", "distortion", "log_likelihood", "bits_per_dim"):
        assert again[key] == pytest.approx(saved[key], rel=1e-5), key


def test_evaluate_in_bf16_stays_within_a_tenth_of_a_nat_and_leaves_the_model_fp32(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    from vaekit.runs.run import Run

    args = ("evaluate", demo, "--json", "--k", 200)
    rc, out, err = run(capsys, *args)
    assert rc == 0, err
    fp32 = json.loads(out)
    rc, out, err = run(capsys, *args, "--precision", "bf16")
    assert rc == 0, err
    bf16 = json.loads(out)
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    for key in ("elbo", "rate", "distortion", "log_likelihood"):
        assert bf16[key] != fp32[key], key  # the networks really ran in bf16
        assert bf16[key] == pytest.approx(fp32[key], abs=0.1), key

    r = Run.load(demo)
    before = {k: v.clone() for k, v in r.model.state_dict().items()}
    r.model.log_likelihood(r.data(None, "test")[0][:5], k=10, precision="bf16")
    assert r.model.low_precision is None
    after = r.model.state_dict()
    assert all(v.dtype == torch.float32 and torch.equal(v, after[k]) for k, v in before.items())


def test_bf16_on_a_cpu_without_it_is_a_one_line_warning(
    demo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaekit.core import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    rc, out, err = run(capsys, "evaluate", demo, "--json", "--k", 5, "--precision", "bf16")
    assert rc == 0, err
    assert err.strip().startswith("vaekit evaluate: warning: precision bf16")
    assert len(err.strip().splitlines()) == 1, err
    assert json.loads(out)["precision"] == "bf16"


def test_training_evaluates_log_px_with_100_samples_by_default(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--data", "digits", "--epochs", 1, "--out", out, *SMALL)
    assert rc == 0, err
    assert json.loads((out / "evaluation.json").read_text())["k"] == 100


def test_score_reads_a_mat_file_as_the_runs_images(demo: Path, tmp_path: Path, capsys) -> None:
    import scipy.io
    from sklearn.datasets import load_digits

    flat = load_digits().data[:40].astype(np.float64) / 16.0  # (40, 64): 8x8 images as rows
    scipy.io.savemat(tmp_path / "faces.mat", {"faces": flat.T})  # one example per column
    mat = tmp_path / "faces.mat"
    for extra in ([], ["--image-shape", "8,8"]):
        out = tmp_path / f"scores{len(extra)}.csv"
        rc, _, err = run(capsys, "score", demo, "--data", mat, "--out", out, *extra)
        assert rc == 0, err
        assert len(out.read_text().splitlines()) == 41


def test_data_errors_name_the_flag_a_cli_user_types(tmp_path: Path, capsys) -> None:
    table = tmp_path / "t.csv"
    table.write_text("a,b,kind\n1,2,cat\n3,4,dog\n")
    # (a CSV with a text column is a mixed table unless --table off: tests/tables)
    rc, _, err = run(
        capsys, "train", "--data", table, "--out", tmp_path / "run", "--table", "off", *FAST
    )
    assert "--label-column" in assert_one_line_error(rc, err)
    import scipy.io

    scipy.io.savemat(tmp_path / "m.mat", {"faces": np.zeros((30, 70))})
    rc, _, err = run(capsys, "train", "--data", tmp_path / "m.mat", "--out", tmp_path / "r", *FAST)
    assert "--image-shape" in assert_one_line_error(rc, err)


def test_console_script_runs(demo: Path) -> None:
    """The installed `vaekit` entry point (a real process), not just the function."""
    assert VAEKIT.is_file()
    proc = subprocess.run(
        [str(VAEKIT), "evaluate", str(demo), "--json", "--k", "10"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert {"elbo", "rate", "distortion", "log_likelihood", "bits_per_dim"} <= set(figures)


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("train", "evaluate", "sample", "reconstruct", "encode", "plot"):
        rc, out, _ = run(capsys, command, "--help")
        assert rc == 0
        assert "example" in out and f"vaekit {command}" in out, command


def test_plot_redraws_pictures(demo: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "run"
    shutil.copytree(demo, copy)
    for name in ("samples.png", "manifold.png", "report.html"):
        (copy / name).unlink()
    rc, out, err = run(capsys, "plot", copy)
    assert rc == 0, err
    for name in ("samples.png", "manifold.png", "report.html"):
        assert (copy / name).is_file()
    assert "report.html" in out


# --- sample / reconstruct / encode ---------------------------------------------------------------


def test_sample_png_and_npz(demo: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "s.png"
    rc, _, err = run(capsys, "sample", demo, "-n", 16, "--out", png)
    assert rc == 0, err
    with Image.open(png) as im:
        assert im.size[0] > 8 and im.size[1] > 8
    npz = tmp_path / "s.npz"
    rc, _, err = run(capsys, "sample", demo, "-n", 12, "--out", npz)
    assert rc == 0, err
    with np.load(npz) as f:
        x = f["x"]
    assert x.shape == (12, 1, 8, 8)
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1  # Bernoulli means


def test_reconstruct_png(demo: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.png"
    rc, _, err = run(capsys, "reconstruct", demo, "--data", "digits", "--out", out, "-n", 8)
    assert rc == 0, err
    with Image.open(out) as im:
        im.load()
        assert im.size[0] > 16 and im.size[1] > 8


def test_encode_npz_and_csv(demo: Path, tmp_path: Path, capsys) -> None:
    npz = tmp_path / "codes.npz"
    rc, _, err = run(capsys, "encode", demo, "--data", "digits", "--out", npz)
    assert rc == 0, err
    with np.load(npz) as f:
        mean, logvar, y = f["mean"], f["logvar"], f["y"]
    n = len(y)
    assert n == 1797  # every digit, not a split
    assert mean.shape == logvar.shape == (n, 2)
    assert np.isfinite(mean).all() and np.isfinite(logvar).all()
    assert sorted(set(y.tolist())) == list(range(10))

    path = tmp_path / "codes.csv"
    rc, _, err = run(capsys, "encode", demo, "--data", "digits", "--out", path)
    assert rc == 0, err
    lines = path.read_text().splitlines()
    assert lines[0] == "mean_0,mean_1,logvar_0,logvar_1,label"
    assert len(lines) == n + 1
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, :2], mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(table[:, 4].astype(int), y)


@pytest.mark.parametrize(
    "command",
    [
        ["sample", "-n", "4", "--out", "{out}.png"],
        ["sample", "-n", "4", "--out", "{out}.npz"],
        ["reconstruct", "--data", "digits", "--out", "{out}.png"],
        ["encode", "--data", "digits", "--out", "{out}.npz"],
        ["encode", "--data", "digits", "--out", "{out}.csv"],
    ],
    ids=["sample-png", "sample-npz", "reconstruct", "encode-npz", "encode-csv"],
)
def test_outputs_are_not_overwritten_without_force(
    demo: Path, tmp_path: Path, capsys, command: list[str]
) -> None:
    name, *rest = command
    rest = [a.format(out=tmp_path / "existing") for a in rest]
    target = Path(rest[rest.index("--out") + 1])
    target.write_bytes(b"precious")
    rc, _, err = run(capsys, name, demo, *rest)
    msg = assert_one_line_error(rc, err)
    assert "--force" in msg
    assert target.read_bytes() == b"precious"
    rc, _, err = run(capsys, name, demo, *rest, "--force")
    assert rc == 0, err
    assert target.read_bytes() != b"precious"
    assert not list(tmp_path.glob(".*.tmp*"))  # no temp files left behind


# --- config files --------------------------------------------------------------------------------


def test_json_config_is_honoured_and_flags_override_it(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "model": {"latent_dim": 3, "hidden": [24]},
                "train": {"epochs": 3, "batch_size": 200, "eval_k": 4},
            }
        )
    )
    out = tmp_path / "run"
    rc, _, err = run(
        capsys, "train", "--config", cfg, "--out", out, "--epochs", 2, "--quiet", "--no-pictures"
    )
    assert rc == 0, err
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["latent_dim"] == 3
    assert saved["model"]["hidden"] == [24]
    assert saved["train"]["batch_size"] == 200
    assert saved["train"]["epochs"] == 2  # the flag wins
    assert len(read_metrics(out)[1]) == 2
    assert json.loads((out / "evaluation.json").read_text())["k"] == 4
    weights, _ = load_tensors(out / "model.safetensors")
    assert {tuple(w.shape) for w in weights.values()} >= {(24, 64)}  # first encoder layer


def test_toml_config_is_honoured_and_flags_override_it(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[model]\nlatent_dim = 5\nhidden = [20, 10]\n\n"
        "[train]\nepochs = 1\nlr = 0.002\neval_k = 3\n"
    )
    out = tmp_path / "run"
    rc, _, err = run(
        capsys,
        "train",
        "--config",
        cfg,
        "--out",
        out,
        "--latent-dim",
        4,
        "--quiet",
        "--no-pictures",
    )
    assert rc == 0, err
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["latent_dim"] == 4  # the flag wins
    assert saved["model"]["hidden"] == [20, 10]
    assert saved["train"]["lr"] == 0.002
    assert saved["train"]["epochs"] == 1
    assert len(read_metrics(out)[1]) == 1


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.json", '{"model": {"latent_dim": 2, "latnet_dim": 3}}'),
        ("c.toml", "[train]\nepochs = 1\nlearning_rate = 0.1\n"),
        ("c.json", '{"modle": {}}'),
        ("c.toml", "[model\nlatent_dim = 2\n"),
        ("c.json", '{"train": {"epochs": "ten"}}'),
    ],
    ids=["unknown-model-key", "unknown-train-key", "unknown-section", "bad-toml", "bad-type"],
)
def test_bad_config_file_is_one_line_error(tmp_path: Path, capsys, name: str, text: str) -> None:
    cfg = tmp_path / name
    cfg.write_text(text)
    before = tree_hash(tmp_path)
    rc, _, err = run(capsys, "train", "--config", cfg, "--out", tmp_path / "run", *FAST)
    msg = assert_one_line_error(rc, err)
    assert cfg.name in msg
    assert not (tmp_path / "run").exists()
    assert tree_hash(tmp_path) == before


# --- resume --------------------------------------------------------------------------------------


def test_resume_matches_an_uninterrupted_run(tmp_path: Path, capsys) -> None:
    """2 epochs, then --resume to 4 == 4 epochs straight (dynamic binarization: RNG matters)."""
    common = ["--data", "digits", "--binarize", "dynamic", "--latent-dim", "4", "--seed", 3, *FAST]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    rc, _, err = run(capsys, "train", *common, "--out", straight, "--epochs", 4)
    assert rc == 0, err
    rc, _, err = run(capsys, "train", *common, "--out", resumed, "--epochs", 2)
    assert rc == 0, err
    assert checkpoint(resumed)[1]["state"]["epoch"] == 2
    rc, _, err = run(
        capsys, "train", "--out", resumed, "--resume", "--epochs", 4, "--quiet", "--no-pictures"
    )
    assert rc == 0, err
    assert_same_training(straight, resumed)
    saved = json.loads((resumed / "config.json").read_text())
    assert saved["train"]["epochs"] == 4 and saved["data"]["binarize"] == "dynamic"


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_saves_and_resume_matches_an_uninterrupted_run(
    tmp_path: Path, capsys, sig: int, code: int, word: str
) -> None:
    """A real SIGINT (or a scheduler's SIGTERM) to a running `vaekit train`: exit 128+signal,
    one line naming --resume, the finished epochs saved, and resume as if never stopped."""
    common = ["--data", "digits", "--latent-dim", "3", "--seed", 1, *FAST]
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [str(VAEKIT), "train", *map(str, common), "--out", str(out), "--epochs", "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.safetensors").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(0.2)  # let it get into a later epoch
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    msg = assert_one_line_error(proc.returncode, err, code=code)
    assert "--resume" in msg and f"{word} during epoch" in msg

    _, meta = checkpoint(out)  # still loads: written atomically
    stopped = meta["state"]["epoch"]
    assert 1 <= stopped < 100000
    assert f"epochs up to {stopped} are saved" in msg
    # model, checkpoint and metrics are saved as one unit that Ctrl-C waits for
    assert len(read_metrics(out)[1]) == stopped
    assert not list(out.glob(".*.tmp"))  # no half-written temp files left behind

    target = stopped + 2
    rc, _, err = run(
        capsys, "train", "--out", out, "--resume", "--epochs", target, "--quiet", "--no-pictures"
    )
    assert rc == 0, err
    straight = tmp_path / "straight"
    rc, _, err = run(capsys, "train", *common, "--out", straight, "--epochs", target)
    assert rc == 0, err
    assert_same_training(straight, out)


def test_resume_without_a_run_is_one_line_error(tmp_path: Path, capsys) -> None:
    rc, _, err = run(capsys, "train", "--out", tmp_path / "nothing", "--resume", *FAST)
    assert "resume" in assert_one_line_error(rc, err)
    assert not (tmp_path / "nothing").exists()


# --- bad inputs: one line, non-zero exit, nothing changed ---------------------------------------


def _nan_npy(d: Path) -> list[str]:
    x = np.random.default_rng(0).random((40, 16), dtype=np.float32)
    x[7, 3] = np.nan
    np.save(d / "nan.npy", x)
    return ["--data", str(d / "nan.npy")]


def _inf_npz(d: Path) -> list[str]:
    x = np.random.default_rng(0).random((40, 16), dtype=np.float32)
    x[2, 2] = np.inf
    np.savez(d / "inf.npz", x=x)
    return ["--data", str(d / "inf.npz")]


def _bad_csv(d: Path) -> list[str]:
    (d / "bad.csv").write_text("a,b,c\n0.1,0.2,0.3\n0.4,oops,0.6\n0.7,0.8,0.9\n")
    # the numeric path (a text cell makes a mixed table otherwise: tests/tables)
    return ["--data", str(d / "bad.csv"), "--table", "off"]


def _ragged_images(d: Path) -> list[str]:
    folder = d / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.full((9, 8), 200, np.uint8)).save(folder / "b.png")
    return ["--data", str(folder)]


def _empty_folder(d: Path) -> list[str]:
    (d / "empty").mkdir()
    return ["--data", str(d / "empty")]


def _empty_csv(d: Path) -> list[str]:
    (d / "empty.csv").write_text("a,b\n")
    return ["--data", str(d / "empty.csv")]


def _label_mismatch(d: Path) -> list[str]:
    rng = np.random.default_rng(0)
    np.savez(d / "xy.npz", x=rng.random((10, 6), dtype=np.float32), y=np.arange(9))
    return ["--data", str(d / "xy.npz")]


def _bernoulli_range(d: Path) -> list[str]:
    x = np.random.default_rng(0).random((40, 16), dtype=np.float32) * 5
    np.save(d / "big.npy", x)
    return ["--data", str(d / "big.npy"), "--likelihood", "bernoulli"]


def _missing_file(d: Path) -> list[str]:
    return ["--data", str(d / "does-not-exist.npy")]


BAD_DATA = {
    "nan": (_nan_npy, "nan"),
    "inf": (_inf_npz, "inf"),
    "non-numeric-csv": (_bad_csv, "oops"),
    "ragged-images": (_ragged_images, "size"),
    "empty-folder": (_empty_folder, "empty"),
    "empty-csv": (_empty_csv, "empty"),
    "label-mismatch": (_label_mismatch, "label"),
    "bernoulli-out-of-range": (_bernoulli_range, "gaussian"),
    "missing-file": (_missing_file, "does-not-exist.npy"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_one_line_error_and_changes_nothing(
    demo: Path, tmp_path: Path, capsys, case: str
) -> None:
    make, expected = BAD_DATA[case]
    args = make(tmp_path)
    existing = tmp_path / "existing-run"
    shutil.copytree(demo, existing)
    before = tree_hash(tmp_path)

    # into a new directory: error, and no directory left behind
    rc, _, err = run(capsys, "train", *args, "--out", tmp_path / "new", *FAST, "--epochs", 1)
    msg = assert_one_line_error(rc, err)
    assert expected in msg.lower(), msg
    assert not (tmp_path / "new").exists()
    # even --force into an existing run deletes nothing before the data have passed
    rc, _, err = run(capsys, "train", *args, "--out", existing, "--force", *FAST, "--epochs", 1)
    assert_one_line_error(rc, err)
    assert tree_hash(tmp_path) == before


def test_corrupt_checkpoint_is_one_line_error(demo: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(demo, run_dir)
    model = run_dir / "model.safetensors"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    before = tree_hash(tmp_path)
    for command in (
        ["evaluate", run_dir, "--json", "--k", 5],
        ["sample", run_dir, "--out", tmp_path / "s.png"],
        ["plot", run_dir],
    ):
        rc, out, err = run(capsys, *command)
        assert "model.safetensors" in assert_one_line_error(rc, err), command
        assert out == ""
    assert tree_hash(tmp_path) == before

    ckpt = run_dir / "checkpoint.safetensors"
    ckpt.write_bytes(b"\x00" * 100)
    before = tree_hash(tmp_path)
    rc, _, err = run(capsys, "train", "--out", run_dir, "--resume", "--epochs", 9, *FAST)
    assert "checkpoint.safetensors" in assert_one_line_error(rc, err)
    assert tree_hash(tmp_path) == before


def test_existing_run_dir_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--out", out, "--latent-dim", 2, *FAST, "--epochs", 1]
    rc, _, err = run(capsys, *args)
    assert rc == 0, err
    before = tree_hash(tmp_path)
    rc, _, err = run(capsys, *args)
    msg = assert_one_line_error(rc, err)
    assert "--resume" in msg and "--force" in msg
    assert tree_hash(tmp_path) == before
    # a file where the directory should be is refused too
    plain = tmp_path / "file"
    plain.write_text("keep")
    rc, _, err = run(capsys, "train", "--data", "digits", "--out", plain, *FAST)
    assert_one_line_error(rc, err)
    assert plain.read_text() == "keep"


def test_force_replaces_an_existing_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    common = ["train", "--data", "digits", "--out", out, "--latent-dim", 2, *FAST]
    rc, _, err = run(capsys, *common, "--epochs", 2)
    assert rc == 0, err
    (out / "notes.txt").write_text("mine")
    rc, _, err = run(capsys, *common, "--epochs", 1, "--force")
    assert rc == 0, err
    assert len(read_metrics(out)[1]) == 1
    assert (out / "notes.txt").read_text() == "mine"  # only vaekit's files are replaced


def test_wrong_flag_is_usage_error(capsys) -> None:
    rc, out, err = run(capsys, "train", "--data", "digits", "--out", "x", "--latnet-dim", 2)
    msg = assert_one_line_error(rc, err, code=2)
    assert "--latnet-dim" in msg
    assert out == ""
    rc, _, err = run(capsys, "evaluate")  # missing argument
    assert_one_line_error(rc, err, code=2)
    rc, _, err = run(capsys, "train", "--out", "x", "--epochs", "many")
    assert_one_line_error(rc, err, code=2)


def test_missing_run_is_one_line_error(tmp_path: Path, capsys) -> None:
    for command in (
        ["evaluate", tmp_path / "nope"],
        ["sample", tmp_path / "nope", "--out", tmp_path / "s.png"],
        ["encode", tmp_path / "nope", "--data", "digits", "--out", tmp_path / "e.npz"],
    ):
        rc, _, err = run(capsys, *command)
        assert "nope" in assert_one_line_error(rc, err)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_loss_through_the_cli(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss turns inf in epoch 2: one-line error, epoch 1's checkpoint kept."""
    from vaekit.core.model import VAE

    original = VAE.loss
    out = tmp_path / "run"

    def loss(self, x, **kw):  # inf once epoch 1's checkpoint is on disk
        result = original(self, x, **kw)
        if self.training and (out / "checkpoint.safetensors").exists():
            return type(result)(*(t * math.inf for t in result))
        return result

    monkeypatch.setattr(VAE, "loss", loss)
    rc, _, err = run(capsys, "train", "--data", "digits", "--out", out, *FAST, "--epochs", 5)
    msg = assert_one_line_error(rc, err)
    assert "epoch 2" in msg and "--lr" in msg
    assert checkpoint(out)[1]["state"]["epoch"] == 1
    assert len(read_metrics(out)[1]) == 1
    assert not (out / "evaluation.json").exists()


def test_module_entry_point() -> None:
    """`python -m vaekit.cli` reports a usage error as one line too."""
    proc = subprocess.run(
        [sys.executable, "-m", "vaekit.cli", "train", "--bogus"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert proc.returncode == 2
    assert "\n" not in proc.stderr.strip() and "Traceback" not in proc.stderr


def test_resume_keeps_the_runs_settings_unless_given(tmp_path: Path, capsys) -> None:
    """`vaekit train --resume --out RUN` (the command the Ctrl-C message prints) keeps the
    run's own epoch count and patience instead of falling back to the defaults."""
    out = tmp_path / "run"
    common = ["--data", "digits", "--latent-dim", 2, *FAST]
    rc, _, err = run(capsys, "train", *common, "--out", out, "--epochs", 2, "--patience", 7)
    assert rc == 0, err
    rc, _, err = run(capsys, "train", "--out", out, "--resume", "--quiet", "--no-pictures")
    assert rc == 0, err
    assert len(read_metrics(out)[1]) == 2  # not the default 30
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["epochs"] == 2 and saved["train"]["patience"] == 7
    rc, _, err = run(capsys, "train", "--out", out, "--resume", "--epochs", 3, *FAST)
    assert rc == 0, err
    assert len(read_metrics(out)[1]) == 3
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 3


def test_failing_before_the_first_checkpoint_leaves_nothing(tmp_path: Path, capsys) -> None:
    """An absurd --lr makes epoch 1 non-finite: one-line error naming --lr, no half-made run
    directory, so the same --out works on the next try."""
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--out", out, *FAST, "--epochs", 2]
    rc, _, err = run(capsys, *args, "--lr", "1e10")
    msg = assert_one_line_error(rc, err)
    assert "non-finite" in msg or "nan" in msg or "inf" in msg
    assert "--lr" in msg
    assert not out.exists()
    rc, _, err = run(capsys, *args)
    assert rc == 0, err
    assert len(read_metrics(out)[1]) == 2


def test_ctrl_c_in_epoch_1_leaves_nothing(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaekit.core.model import VAE

    def loss(self, x, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(VAE, "loss", loss)
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--data", "digits", "--out", out, *FAST, "--epochs", 2)
    msg = assert_one_line_error(rc, err, code=130)
    assert "nothing to --resume" in msg
    assert not out.exists()


def test_evaluate_elbo_does_not_depend_on_k():
    """The ELBO pass and the importance-sampling pass draw from separately seeded streams."""

    from vaekit import VAE, ModelConfig
    from vaekit.train.evaluate import evaluate

    torch.manual_seed(0)
    model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), hidden=(16,), latent_dim=2))
    x = torch.rand(40, 1, 8, 8)
    a, b = evaluate(model, x, k=5), evaluate(model, x, k=50)
    assert a["elbo"] == b["elbo"] and a["rate"] == b["rate"]
    assert a["log_likelihood"] != b["log_likelihood"]


def test_abbreviated_flags_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--dat", "digits", "--out", "unused"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--dat" in err


def test_plot_with_data_adds_the_anomaly_pictures(demo: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(demo, run_dir)
    rc, out, err = run(capsys, "plot", run_dir, "--data", "digits", "--contamination", 0.05)
    assert rc == 0, err
    report = (run_dir / "report.html").read_text()
    for name in ("anomalies.png", "anomaly_scores.png"):
        assert Image.open(run_dir / name).format == "PNG"
        assert name in report and f"wrote {run_dir / name}" in out
    before = tree_hash(run_dir)
    rc, _, err = run(capsys, "plot", run_dir, "--threshold", 3)
    assert "go with --data" in assert_one_line_error(rc, err)
    rc, _, err = run(capsys, "plot", run_dir, "--data", "digits", "--score", "nope")
    assert_one_line_error(rc, err)
    assert tree_hash(run_dir) == before  # a refused command writes nothing


def test_plot_draws_a_cluster_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "clusters"
    rc, _, err = run(capsys, "cluster", "--data", "digits", "--k", 3, "--out", out, "--hidden",
                     "32", "--pretrain-epochs", 1, "--pull-epochs", 1, "--epochs", 1)
    assert rc == 0, err
    rc, stdout, err = run(capsys, "plot", out)
    assert rc == 0, err
    for name in ("cluster_samples.png", "cluster_latent.png", "cluster_latent_labels.png"):
        assert f"wrote {out / name}" in stdout and Image.open(out / name).format == "PNG"
    rc, _, err = run(capsys, "plot", out, "--data", "digits")
    assert "not a cluster run" in assert_one_line_error(rc, err)
