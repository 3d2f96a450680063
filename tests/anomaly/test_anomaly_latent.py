"""latent-knn: the anomaly score that needs only the encoder, so encoder-only (infomax) models
detect anomalies too. The score, the detector with objective="infomax", files and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from test_anomaly import FAST, cli, read_rows, write_csv

from vaekit.anomaly import estimator as anomaly
from vaekit.anomaly.estimator import VAEDetector

pytestmark = pytest.mark.usefixtures("one_thread")


def novel_in_plane(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A table whose outliers differ in what an encoder keeps: inliers in two clusters on a
    2-D plane in 12-D, outliers on the same plane far from both (test_anomaly's `planted` puts
    them off the plane instead: a distance between codes cannot see that, the decoder can).

    Returns X (300, 12) float32 and is_outlier (300,)."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(2, 12))
    centres = rng.choice([-3.0, 3.0], size=(285, 1)) * np.array([1.0, 0.0])
    inliers = centres + 0.7 * rng.normal(size=(285, 2))
    angle = rng.uniform(0, 2 * np.pi, size=15)
    outliers = 7.0 * np.stack([np.cos(angle), np.sin(angle)], 1)
    plane = np.concatenate([inliers, outliers]) @ basis
    x = (plane + 0.05 * rng.normal(size=plane.shape)).astype(np.float32)
    y = np.r_[np.zeros(285), np.ones(15)].astype(int)
    order = rng.permutation(len(x))
    return x[order], y[order]


@pytest.fixture(scope="module")
def table() -> tuple[np.ndarray, np.ndarray]:
    return novel_in_plane()


@pytest.fixture(scope="module")
def encoder_only(table: tuple[np.ndarray, np.ndarray]) -> VAEDetector:
    x, _ = table
    return VAEDetector(0.05, "latent-knn", objective="infomax", **FAST).fit(x)


@pytest.mark.parametrize("objective", ["infomax", "elbo"])
def test_planted_outliers_rank_above_inliers_by_latent_knn(
    table: tuple[np.ndarray, np.ndarray], objective: str
) -> None:
    x, is_out = table
    det = VAEDetector(0.05, "latent-knn", objective=objective, **FAST).fit(x)
    assert det.model_.has_decoder == (objective == "elbo")
    assert det.decision_scores_.shape == (len(x),) and np.isfinite(det.decision_scores_).all()
    # higher = more abnormal, on the training rows (not their own neighbours) and when scored
    assert roc_auc_score(is_out, det.decision_scores_) >= 0.9
    assert roc_auc_score(is_out, det.decision_function(x)) >= 0.9


def test_latent_knn_is_the_kth_nearest_reference_distance(encoder_only: VAEDetector) -> None:
    model, ref = encoder_only.model_, encoder_only.reference_
    x = torch.randn(7, 12)
    got = anomaly.latent_knn_distance(model, x, ref, k=3)
    mean, _ = model.encode(x)
    d = np.linalg.norm(mean.numpy()[:, None] - ref.numpy()[None], axis=-1)
    np.testing.assert_allclose(got.numpy(), np.sort(d, 1)[:, 2], rtol=1e-4, atol=1e-5)
    # a reference row scored against itself: k=1 skips its own zero distance
    own = anomaly.latent_knn_distance(model, x, mean, k=1, exclude_self=True)
    np.testing.assert_allclose(own.numpy(), np.sort(np.linalg.norm(
        mean.numpy()[:, None] - mean.numpy()[None], axis=-1), 1)[:, 1], rtol=1e-4, atol=1e-5)


def test_encoder_only_detector_thresholds_predicts_and_round_trips(
    encoder_only: VAEDetector, table: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, _ = table
    det = encoder_only
    assert abs(det.labels_.sum() - 0.05 * len(x)) <= 1
    s = det.decision_function(x)
    assert np.array_equal(det.predict(x), (s > det.threshold_).astype(np.int64))
    det.save(tmp_path / "det.safetensors")
    back = VAEDetector.load(tmp_path / "det.safetensors")
    assert back.get_params() == det.get_params() and not back.model_.has_decoder
    assert np.array_equal(back.decision_function(x), s)
    assert torch.equal(back.reference_, det.reference_)
    assert clone(det).get_params() == det.get_params()


def test_encoder_only_refuses_what_needs_a_decoder(encoder_only: VAEDetector) -> None:
    x = np.zeros((3, 12), dtype=np.float32)
    with pytest.raises(ValueError, match="use scoring='latent-knn'"):
        VAEDetector(objective="infomax", scoring="recon-error").fit(x)
    with pytest.raises(ValueError, match="objective must be elbo or infomax"):
        VAEDetector(objective="vae").fit(x)
    with pytest.raises(ValueError, match="neighbors must be an integer >= 1"):
        VAEDetector(scoring="latent-knn", neighbors=0).fit(x)
    with pytest.raises(ValueError, match="no decoder"):
        anomaly.score_samples(encoder_only.model_, torch.zeros(3, 12), "recon-error")
    with pytest.raises(ValueError, match="belongs to no single feature"):
        encoder_only.explain(x)
    with pytest.raises(ValueError, match="needs reference codes"):
        anomaly.score_samples(encoder_only.model_, torch.zeros(3, 12), "latent-knn")


@pytest.mark.parametrize("params", [{"objective": "infomax"}, {"scoring": "latent-knn"}])
def test_latent_knn_on_too_few_rows_is_refused_before_training(
    params: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vaekit.train.loop

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(vaekit.train.loop, "fit", no_training)
    x = np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32)
    expected = r"neighbors=5 needs at least 6 training rows .*, got 5 sample\(s\)"
    with pytest.raises(ValueError, match=expected):
        VAEDetector(**params).fit(x)


def test_score_command_on_an_encoder_only_run(
    table: tuple[np.ndarray, np.ndarray], tmp_path: Path, capsys
) -> None:
    x, is_out = table
    normal = write_csv(tmp_path / "normal.csv", x[is_out == 0])
    data = write_csv(tmp_path / "all.csv", x)
    run = tmp_path / "run"
    rc, _, err = cli(capsys, "train", "--data", normal, "--out", run, "--standardize",
                     "--objective", "infomax", "--hidden", "32,16", "--latent-dim", "2",
                     "--epochs", "100", "--batch-size", "64", "--quiet", "--no-pictures")
    assert rc == 0, err
    out = tmp_path / "s.csv"
    rc, stdout, err = cli(capsys, "score", run, "--data", data, "--out", out,
                          "--score", "latent-knn", "--neighbors", "3")
    assert rc == 0, err
    assert "latent-knn >" in stdout
    rows = read_rows(out)
    s = np.array([float(r["score"]) for r in rows])
    assert len(rows) == len(x) and roc_auc_score(is_out, s) >= 0.9
    for bad in (["--score", "recon-error"], ["--score", "latent-knn", "--explain", "2"],
                ["--score", "latent-knn", "--neighbors", "0"]):
        target = tmp_path / "bad.csv"
        rc, _, err = cli(capsys, "score", run, "--data", data, "--out", target, *bad)
        assert rc != 0 and not target.exists()
        assert len(err.strip().splitlines()) == 1, err


def test_plot_draws_the_anomaly_pictures_of_an_encoder_only_run(tmp_path: Path, capsys) -> None:
    from PIL import Image

    run = tmp_path / "run"
    rc, _, err = cli(capsys, "train", "--data", "digits", "--out", run, "--objective", "infomax",
                     "--hidden", "16", "--latent-dim", "2", "--epochs", "2", "--quiet",
                     "--no-pictures")
    assert rc == 0, err
    rc, stdout, err = cli(capsys, "plot", run, "--data", "digits", "--score", "latent-knn")
    assert rc == 0, err
    for name in ("anomalies.png", "anomaly_scores.png"):
        assert f"wrote {run / name}" in stdout
        assert Image.open(run / name).size[0] > 100
    rc, stdout, err = cli(capsys, "plot", run, "--data", "digits")  # "auto": latent-knn here
    assert rc == 0, err
    assert f"wrote {run / 'anomalies.png'}" in stdout
    rc, _, err = cli(capsys, "plot", run, "--data", "digits", "--score", "recon-error")
    assert rc != 0 and "--score latent-knn" in err and len(err.strip().splitlines()) == 1
