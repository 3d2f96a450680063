"""The clustering estimator with an encoder-only model (objective="infomax"): the recipe's
stages with the decoder's reconstruction replaced by a mutual-information estimate. Clusters,
features, files, pictures and the CLI; what needs a decoder refuses in one line."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cluster import CLI_TINY, TINY, _csv_data, blobs_through_net

from vaekit.cli import main
from vaekit.cluster.estimator import VAEClusterer, hungarian_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted() -> tuple[VAEClusterer, np.ndarray, np.ndarray]:
    x, y = blobs_through_net()
    return VAEClusterer(4, random_state=0, objective="infomax", **TINY).fit(x), x, y


def test_encoder_only_clustering_recovers_the_mixture(fitted) -> None:
    est, x, y = fitted
    assert not est.model_.has_decoder and est.model_.critic is not None
    assert hungarian_accuracy(y, est.labels_) >= 0.95
    p = est.predict_proba(x)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(est.labels_, p.argmax(1))
    assert est.transform(x).shape == (len(x), 2)
    assert est.n_iter_ == TINY["pretrain_epochs"] + TINY["pull_epochs"] + TINY["epochs"]


def test_what_needs_a_decoder_refuses_in_one_line(fitted) -> None:
    est, x, _ = fitted
    with pytest.raises(ValueError, match="no decoder") as e:
        est.sample(3, cluster=1)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="objective must be 'elbo' or 'infomax'"):
        VAEClusterer(4, objective="vae").fit(x)


def test_score_is_the_infomax_objective_and_prefers_the_data(fitted) -> None:
    """Without a decoder, score is minus the infomax loss (as KMeans.score is minus inertia):
    seeded, and higher on the data than on the same rows with their features shuffled."""
    from vaekit.core.critic import infomax_figures
    from vaekit.train.config import TrainConfig

    est, x, _ = fitted
    s = est.score(x)
    assert s == est.score(x)
    xt = torch.from_numpy(est._prepare(x).numpy())
    cfg = TrainConfig(objective="infomax")
    loss = infomax_figures(est.model_, xt, estimator=cfg.mi_estimator, mi_weight=cfg.mi_weight)
    assert s == pytest.approx(-loss["loss"])
    rng = np.random.default_rng(0)
    scrambled = np.stack([rng.permutation(col) for col in x.T], axis=1)
    assert s > est.score(scrambled)


def test_encoder_only_save_load_round_trip(fitted, tmp_path: Path) -> None:
    est, x, _ = fitted
    est.save(tmp_path / "c.safetensors")
    back = VAEClusterer.load(tmp_path / "c.safetensors")
    assert back.get_params() == est.get_params() and not back.model_.has_decoder
    np.testing.assert_allclose(back.predict_proba(x), est.predict_proba(x), atol=1e-12)
    np.testing.assert_array_equal(back.transform(x), est.transform(x))


def test_pictures_show_members_instead_of_samples(fitted, tmp_path: Path) -> None:
    from PIL import Image

    from vaekit.cluster.plots import draw_clusters

    _, x, y = fitted
    images = np.clip(x.reshape(-1, 1, 3, 4) * 0.2 + 0.5, 0, 1)
    small = VAEClusterer(4, random_state=0, objective="infomax",
                         **{**TINY, "pretrain_epochs": 2, "pull_epochs": 1, "epochs": 1})
    out = draw_clusters(small.fit(images), images, y, tmp_path / "img")
    assert set(out) == {"cluster_samples", "cluster_latent", "cluster_latent_labels"}
    assert Image.open(out["cluster_samples"]).size[0] > 100


def test_cli_cluster_with_the_infomax_objective(tmp_path: Path) -> None:
    data = _csv_data(tmp_path)
    out = tmp_path / "run"
    assert main(["cluster", "--data", str(data), "--label-column", "label", "--k", "4",
                 "--objective", "infomax", "--out", str(out), *CLI_TINY]) == 0
    rows = list(csv.DictReader((out / "clusters.csv").open()))
    assert len(rows) == 80 and all(0 <= int(r["cluster"]) < 4 for r in rows)
    assert (out / "metrics.json").is_file()
