"""smooth-error: the squared error of the Gaussian-smoothed residual, the default anomaly score
for images. The window, why it separates a missing stroke from edge noise, the score and its
per-pixel parts, the detector's "auto" score, refusal on tables, and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score
from test_anomaly import FAST, cli, planted, read_rows

from vaekit.anomaly.estimator import VAEDetector
from vaekit.anomaly.scores import gaussian_smooth, smoothing_width

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("shape", "width"),
    [((2, 1, 28, 28), (1.0, 1.0)), ((1, 3, 8, 6), (8 / 28, 6 / 28)), ((2, 2, 10, 12), (2.0, 0.5))],
)
def test_window_is_a_gaussian_filter_with_zeros_outside(shape: tuple, width: tuple) -> None:
    r = torch.randn(*shape)
    ours = gaussian_smooth(r, width)
    ref = gaussian_filter(r.numpy(), sigma=(0, 0, *width), mode="constant", truncate=3.0)
    assert ours.shape == r.shape
    assert np.allclose(ours.numpy(), ref, atol=1e-5)


def test_the_window_scales_with_the_image_and_refuses_tables() -> None:
    assert smoothing_width((1, 28, 28)) == (1.0, 1.0)
    assert smoothing_width((3, 8, 14)) == (8 / 28, 0.5)
    with pytest.raises(ValueError, match=r"needs images.*use recon-error"):
        smoothing_width((12,))


def test_a_missing_stroke_survives_the_window_and_edge_noise_does_not() -> None:
    """The reason for the score: a stroke drawn one pixel off leaves a thin + / - pair along
    its edges; a stroke the model cannot draw leaves a blob of one sign. The same plain squared
    error, but the window keeps about 3x as much of the blob's as of the pair's (0.47 and
    0.17 of it here)."""
    shifted = torch.zeros(1, 1, 28, 28)
    shifted[..., 6:22, 10] = 1.0  # x's stroke at columns 10-11, x_hat's at 11-12
    shifted[..., 6:22, 12] = -1.0
    missing = torch.zeros(1, 1, 28, 28)
    missing[..., 6:22, 11:13] = 1.0  # a 2-pixel-wide stroke x has and x_hat lacks
    plain = [float(r.pow(2).sum()) for r in (shifted, missing)]
    assert plain[0] == plain[1]
    kept = [float(gaussian_smooth(r, (1.0, 1.0)).pow(2).sum()) / p
            for r, p in zip((shifted, missing), plain, strict=True)]
    assert kept[1] > 2.5 * kept[0]


@pytest.fixture(scope="module")
def digits_detector() -> tuple[VAEDetector, np.ndarray, np.ndarray]:
    """The default detector (score "auto") on digit-0 images with a few 1s planted."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    images = np.concatenate([x[d.target == 0][:170], x[d.target == 1][:10]])
    is_out = np.r_[np.zeros(170), np.ones(10)]
    det = VAEDetector(contamination=0.05, hidden=(64, 32), latent_dim=4, epochs=60).fit(images)
    return det, images, is_out


def test_auto_is_smooth_error_on_images_and_it_is_what_it_is_named(
    digits_detector: tuple[VAEDetector, np.ndarray, np.ndarray],
) -> None:
    det, images, is_out = digits_detector
    assert det.scoring == "auto" and det.score_ == "smooth-error"
    s = det.decision_function(images)
    assert roc_auc_score(is_out, s) >= 0.9
    xt = torch.from_numpy(images[:, None])
    residual = xt - det.model_.reconstruct(xt).detach()
    named = gaussian_smooth(residual, smoothing_width((1, 8, 8))).pow(2).flatten(1).sum(1)
    assert np.allclose(s, named.double().numpy(), rtol=1e-4)
    parts = det.explain(images[:5])  # per-pixel parts add up to the score
    assert parts.shape == (5, 1, 8, 8)
    assert np.allclose(parts.reshape(5, -1).sum(1), s[:5], rtol=1e-4)


def test_auto_detector_round_trips_with_its_score(
    digits_detector: tuple[VAEDetector, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    det, images, _ = digits_detector
    det.save(tmp_path / "det.safetensors")
    back = VAEDetector.load(tmp_path / "det.safetensors")
    assert back.scoring == "auto" and back.score_ == "smooth-error"
    assert np.array_equal(back.decision_function(images), det.decision_function(images))


def test_auto_on_tables_and_encoder_only_models() -> None:
    x, _ = planted()
    fast = dict(FAST, epochs=2)
    assert VAEDetector(**fast).fit(x).score_ == "elbo"
    assert VAEDetector(objective="infomax", **fast).fit(x).score_ == "latent-knn"


def test_smooth_error_on_a_table_is_refused_before_training() -> None:
    x, _ = planted()
    det = VAEDetector(scoring="smooth-error", **FAST)
    with pytest.raises(ValueError, match="needs images"):
        det.fit(x)
    assert not hasattr(det, "history_")  # refused before any epoch ran


def test_score_command_takes_smooth_error_on_images_and_refuses_it_on_tables(
    digits_run: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "s.csv"
    rc, stdout, err = cli(capsys, "score", digits_run, "--data", "digits", "--out", out,
                          "--explain", 3)
    assert rc == 0, err
    assert "smooth-error >" in stdout  # "auto" on an image run
    scores = {int(r["index"]): float(r["score"]) for r in read_rows(out)}
    for r in read_rows(tmp_path / "s_explain.csv"):
        parts = sum(float(v) for k, v in r.items() if k not in ("index", "score"))
        assert parts == pytest.approx(scores[int(r["index"])], rel=1e-4)

    x, _ = planted()
    table = tmp_path / "t.csv"
    np.savetxt(table, x, delimiter=",", header=",".join(f"f{i}" for i in range(12)),
               comments="")
    rc, _, err = cli(capsys, "train", "--data", table, "--out", tmp_path / "trun", "--hidden",
                     "8", "--latent-dim", "2", "--epochs", "1", "--standardize", "--likelihood",
                     "gaussian", "--quiet", "--no-pictures")
    assert rc == 0, err
    bad = tmp_path / "bad.csv"
    rc, _, err = cli(capsys, "score", tmp_path / "trun", "--data", table, "--out", bad,
                     "--score", "smooth-error")
    assert rc != 0 and "needs images" in err and len(err.strip().splitlines()) == 1
    assert not bad.exists()


def test_flat_images_get_a_hint_to_reshape() -> None:
    """(n, 64) rows in [0, 1] are a table to the detector; it says how to get the image path."""
    from sklearn.datasets import load_digits

    flat = (load_digits().data[:60] / 16.0).astype(np.float32)
    with pytest.warns(UserWarning, match=r"pass X.reshape\(-1, 8, 8\)"):
        det = VAEDetector(**dict(FAST, epochs=1)).fit(flat)
    assert det.kind_ == "tabular"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither images nor an ordinary table warn
        VAEDetector(**dict(FAST, epochs=1)).fit(flat.reshape(-1, 8, 8))
        VAEDetector(**dict(FAST, epochs=1)).fit(planted()[0])
