"""Files written by the release before the package restructure (issue 27) still load and give
the same numbers, labels and pictures: run directories (model, checkpoint, config), saved
clusterers and detectors, a `vaekit cluster` run and `vaekit score` outputs.

The fixtures in tests/fixtures/old_release/ and their expected values (expected.json) were
written by tests/fixtures/make_old_release.py with the code before the restructure; see its
docstring. Only the public API (vaekit.VAE, vaekit.VAEClusterer, vaekit.VAEDetector) and the
CLI (vaekit.cli.main) are used. Commands that write into a run directory run on a copy under
tmp_path: the fixture folder is never written (checked after the module's tests).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import vaekit
from vaekit.cli import main

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "old_release"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
RUNS = sorted(EXPECTED["runs"])
RTOL = ATOL = 1e-5

# the helpers that computed expected.json (public API only), so both sides compute alike
_spec = importlib.util.spec_from_file_location(
    "make_old_release", HERE / "fixtures" / "make_old_release.py"
)
assert _spec is not None and _spec.loader is not None
maker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(maker)

pytestmark = pytest.mark.usefixtures("one_thread")  # as the fixtures were written


def tree_state() -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(FIXTURES)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in FIXTURES.rglob("*")
    }


@pytest.fixture(scope="module", autouse=True)
def fixtures_untouched() -> Iterator[None]:
    before = tree_state()
    yield
    assert tree_state() == before, "a test wrote into tests/fixtures/old_release"


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return maker.digits()


def vaekit_cli(*argv: Any) -> str:
    """`vaekit ARGV` in this process; its stdout. Fails unless it exits 0."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main([str(a) for a in argv])
    assert rc == 0, f"vaekit {' '.join(map(str, argv))} exited {rc}"
    return out.getvalue()


def assert_same(got: Any, want: Any, where: str = "") -> None:
    """want's keys and values in got: floats to RTOL/ATOL, everything else exactly."""
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        missing = sorted(set(want) - set(got))
        assert not missing, f"{where}: missing {missing}"
        for key, value in want.items():
            assert_same(got[key], value, f"{where}.{key}")
    elif isinstance(want, float) or (isinstance(want, list) and np.asarray(want).dtype.kind == "f"):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=where)
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"), dtype=np.int16)


def assert_same_picture(got: Path, want: Path) -> None:
    a, b = pixels(got), pixels(want)
    assert a.shape == b.shape, f"{got.name}: {a.shape} != {b.shape}"
    assert np.abs(a - b).max() <= 2, f"{got.name} differs from {want.name}"


# --- run directories ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", RUNS)
def test_run_model_api(name: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    model = vaekit.VAE.load(FIXTURES / "runs" / name / "model.safetensors")
    x5, y5 = torch.from_numpy(x[:5]).unsqueeze(1), torch.from_numpy(y[:5])
    assert_same(maker.model_figures(model, x5, y5), EXPECTED["runs"][name]["api"], name)


@pytest.mark.parametrize("name", RUNS)
def test_run_cli(name: str, tmp_path: Path) -> None:
    """evaluate --json, encode and sample on the run as written (none of them writes into it)."""
    run, want = FIXTURES / "runs" / name, EXPECTED["runs"][name]
    figures = json.loads(vaekit_cli("evaluate", run, *maker.EVAL))
    assert_same(figures, want["evaluate"], f"{name} evaluate")

    codes = tmp_path / "codes.npz"
    vaekit_cli("encode", run, "--data", "digits", "--out", codes, "--device", "cpu")
    with np.load(codes) as z:
        got = {
            "mean": maker.summary(z["mean"]),
            "logvar": maker.summary(z["logvar"]),
            "first_mean": maker.rounded(z["mean"][:5]),
        }
    assert_same(got, want["encode_cli"], f"{name} encode")

    npz = tmp_path / "sample.npz"
    argv = ["sample", run, "-n", maker.N_SAMPLES, "--seed", 0, "--out", npz, "--device", "cpu"]
    if "sample_cli" not in want:  # an encoder-only run refuses in one line
        with contextlib.redirect_stderr(io.StringIO()) as err:
            assert main([str(a) for a in argv]) == 1
        assert "no decoder" in err.getvalue()
        return
    vaekit_cli(*argv)
    with np.load(npz) as s:
        got = {"x": maker.summary(s["x"])}
        if "y" in s:
            got["y"] = s["y"].tolist()
    assert_same(got, want["sample_cli"], f"{name} sample")


@pytest.mark.parametrize("name", RUNS)
def test_run_resumes_from_checkpoint(name: str, tmp_path: Path) -> None:
    """One more epoch from checkpoint.safetensors (Adam's and the RNGs' states) on a copy."""
    run = tmp_path / name
    shutil.copytree(FIXTURES / "runs" / name, run)
    vaekit_cli("train", "--out", run, "--resume", "--epochs", 4, *maker.COMMON, "--no-pictures")
    rows = maker.read_csv(run / "metrics.csv")
    assert [int(e) for e in rows["epoch"]] == [1, 2, 3, 4]
    want = EXPECTED["runs"][name]
    got = {k: float(rows[k][3]) for k in want["resumed_epoch4"]}
    assert_same(got, want["resumed_epoch4"], f"{name} resumed")
    figures = json.loads((run / "evaluation.json").read_text())
    assert_same(figures, want["resumed_evaluation"], f"{name} resumed evaluation")


def test_run_pictures(tmp_path: Path) -> None:
    """`vaekit plot` on a copy draws the same pictures; `vaekit sample` the same grid."""
    run = tmp_path / "plain"
    shutil.copytree(FIXTURES / "runs" / "plain", run)
    vaekit_cli("plot", run, "--device", "cpu")
    drawn = sorted(p.name for p in run.iterdir() if p.suffix in (".png", ".html"))
    assert drawn == EXPECTED["runs"]["plain"]["plot_writes"]
    for picture in maker.PICTURES:
        assert_same_picture(run / picture, FIXTURES / "pictures" / f"plain_{picture}")
    grid = tmp_path / "grid.png"
    vaekit_cli(
        "sample",
        FIXTURES / "runs" / "plain",
        "-n",
        maker.N_SAMPLES,
        "--seed",
        0,
        "--device",
        "cpu",
        "--out",
        grid,
    )
    assert_same_picture(grid, FIXTURES / "pictures" / "plain_sample_cli.png")


# --- clusterers --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["clusterer", "clusterer_infomax"])
def test_clusterer(name: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    est = vaekit.VAEClusterer.load(FIXTURES / f"{name}.safetensors")
    got: dict[str, Any] = {
        "predict_20": est.predict(x[:20]).tolist(),
        "predict_proba_5": maker.rounded(est.predict_proba(x[:5])),
        "transform_5": maker.rounded(est.transform(x[:5])),
        "score_100": float(est.score(x[:100])),
        "labels_20": est.labels_[:20].tolist(),
        "weights": maker.rounded(est.weights_),
    }
    if est.objective == "elbo":
        got["sample_cluster3_seed0_n4"] = maker.summary(est.sample(4, cluster=3, random_state=0))
    assert set(got) == set(EXPECTED[name])
    assert_same(got, EXPECTED[name], name)


def test_cluster_run(tmp_path: Path) -> None:
    """`vaekit cluster RUN --data digits` assigns as the run did; `vaekit plot` draws it."""
    run = FIXTURES / "runs" / "cluster"
    out = tmp_path / "assigned.csv"
    vaekit_cli("cluster", run, "--data", "digits", "--out", out, "--device", "cpu")
    got, want = maker.read_csv(out), maker.read_csv(run / "clusters.csv")
    assert got["index"] == want["index"]
    assert got["cluster"] == want["cluster"]
    np.testing.assert_allclose(
        np.array(got["probability"], float),
        np.array(want["probability"], float),
        rtol=RTOL,
        atol=ATOL,
    )
    assert json.loads((run / "metrics.json").read_text()) == EXPECTED["cluster_run"]["metrics"]

    copy = tmp_path / "cluster"
    shutil.copytree(run, copy)
    vaekit_cli("plot", copy, "--device", "cpu")
    drawn = sorted(p.name for p in copy.iterdir() if p.suffix == ".png")
    assert drawn == EXPECTED["cluster_run"]["plot_writes"]


# --- detectors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["detector_images", "detector_table", "detector_infomax"])
def test_detector(name: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    rows = x.reshape(len(x), -1) * 16 if name == "detector_table" else x
    det = vaekit.VAEDetector.load(FIXTURES / f"{name}.safetensors")
    got = {
        "score_": det.score_,
        "threshold_": float(det.threshold_),
        "decision_function_20": maker.rounded(det.decision_function(rows[300:320])),
        "predict_20": det.predict(rows[300:320]).tolist(),
        "decision_scores_5": maker.rounded(det.decision_scores_[:5]),
    }
    assert set(got) == set(EXPECTED[name])
    assert_same(got, EXPECTED[name], name)


@pytest.mark.parametrize(("run", "flags"), [("plain", []), ("infomax", ["--score", "latent-knn"])])
def test_score(run: str, flags: list[str], tmp_path: Path) -> None:
    """`vaekit score RUN --data digits` writes the CSV the old release wrote."""
    out = tmp_path / "scores.csv"
    vaekit_cli(
        "score",
        FIXTURES / "runs" / run,
        "--data",
        "digits",
        "--out",
        out,
        "--device",
        "cpu",
        "--seed",
        0,
        *flags,
    )
    got, want = maker.read_csv(out), maker.read_csv(FIXTURES / "score" / f"{run}.csv")
    assert got["index"] == want["index"]
    assert got["is_outlier"] == want["is_outlier"]
    np.testing.assert_allclose(
        np.array(got["score"], float), np.array(want["score"], float), rtol=RTOL, atol=ATOL
    )
