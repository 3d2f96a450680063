"""The clustering VAE (vaekit.cluster): its bound, the estimator, the recipe's guards, the CLI.

Tiny networks and synthetic data throughout; one thread (conftest's `one_thread`).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.cli import main
from vaekit.cluster.estimator import (
    EXPECTED_FAILED_CHECKS,
    VAEClusterer,
    clustering_scores,
    hungarian_accuracy,
    mixture_moments,
    reseed_empty,
    responsibilities,
)
from vaekit.core.config import ModelConfig
from vaekit.core.model import VAE
from vaekit.core.posterior import DiagonalGaussian

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(
    latent_dim=2, hidden=(32,), pretrain_epochs=30, pull_epochs=15, epochs=5, n_init=3,
    batch_size=64, lr=3e-3,
)


def blobs_through_net(n_per: int = 60, k: int = 4, d: int = 12, seed: int = 0):
    """k well-separated Gaussian clusters in 2-D, passed through a fixed random nonlinearity
    into d dimensions: X (k * n_per, d) float32, y (k * n_per,)."""
    g = torch.Generator().manual_seed(seed)
    angles = torch.arange(k) * (2 * math.pi / k)
    centres = 6.0 * torch.stack([angles.cos(), angles.sin()], 1)
    y = torch.arange(k).repeat_interleave(n_per)
    z = centres[y] + 0.5 * torch.randn(len(y), 2, generator=g)
    w1 = torch.randn(2, 32, generator=g)
    w2 = torch.randn(32, d, generator=g) / math.sqrt(32)
    x = torch.tanh(z @ w1 / 3) @ w2
    return x.numpy().astype(np.float32), y.numpy()


@pytest.fixture(scope="module")
def fitted() -> tuple[VAEClusterer, np.ndarray, np.ndarray]:
    x, y = blobs_through_net()
    return VAEClusterer(4, random_state=0, **TINY).fit(x), x, y


# --- the bound ---------------------------------------------------------------------------------


def test_rate_matches_monte_carlo_of_the_bound() -> None:
    """prior.kl(q) (y inferred) equals a Monte-Carlo estimate of
    E_q(y|x)[KL(q(z|x) || p(z|y))] + KL(q(y|x) || p(y)) with q(y|x) the closed-form
    responsibilities: log q(z|x) - log p(z|y) + log q(y|x) - log p(y), z ~ q(z|x), y ~ q(y|x)."""
    torch.manual_seed(0)
    model = VAE.from_config(
        ModelConfig(event_shape=(5,), latent_dim=3, hidden=(8,), prior="cluster", num_classes=4,
                    likelihood="gaussian")
    )
    prior = model.prior
    with torch.no_grad():
        prior.logvars.copy_(torch.randn(4, 3) * 0.5)
        prior.logits.copy_(torch.randn(4))
    q = DiagonalGaussian(torch.randn(6, 3), torch.randn(6, 3) * 0.3)
    exact = prior.kl(q)
    log_qy = prior.class_log_posterior(q)  # (6, K)
    s = 200_000
    z = q.rsample(s)  # (S, 6, latent)
    comp = prior.component_log_prob(z)  # (S, 6, K)
    per_y = q.log_prob(z).unsqueeze(-1) - comp  # log q(z|x) - log p(z|y), for every y
    mc = (log_qy.exp() * (per_y + log_qy - prior.log_weights())).sum(-1).mean(0)
    se = (log_qy.exp() * per_y).sum(-1).std(0) / math.sqrt(s)
    assert torch.all((mc - exact).abs() < 5 * se + 1e-3), (mc, exact, se)
    # and q(y|x) is the optimum: any other q(y|x) gives a larger rate
    other = torch.softmax(log_qy + torch.randn_like(log_qy), -1)
    expected = prior.expected_log_prob(q)
    neg_entropy = -0.5 * (q.logvar + 1 + math.log(2 * math.pi)).sum(-1)
    rate_other = neg_entropy + (
        other * (-expected + other.log() - prior.log_weights())
    ).sum(-1)
    assert torch.all(rate_other >= exact - 1e-5)


# --- scores -----------------------------------------------------------------------------------


def test_hungarian_accuracy_is_one_to_one() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    assert hungarian_accuracy(y, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    # majority-label purity would give 1.0 here (each cluster is pure); one-to-one gives 4/6
    assert hungarian_accuracy(y, np.array([0, 0, 1, 1, 1, 1])) == pytest.approx(4 / 6)
    s = clustering_scores(y, np.array([1, 1, 0, 0, 2, 2]))
    assert s == {"hungarian_accuracy": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}


# --- the estimator -----------------------------------------------------------------------------


def test_synthetic_mixture_is_recovered(fitted) -> None:
    est, x, y = fitted
    assert hungarian_accuracy(y, est.labels_) >= 0.95
    assert hungarian_accuracy(y, est.predict(x)) >= 0.95


def test_stage_lengths_give_small_data_enough_steps() -> None:
    from vaekit.cluster.recipe import INPUT_PRETRAIN_STEPS, JOINT_STEPS, PRETRAIN_STEPS, PULL_STEPS

    est = VAEClusterer(10)
    # MNIST-sized (40 steps an epoch): the pretraining's and the pull's steps bind, the joint
    # stage's minimum epochs
    lengths = (PRETRAIN_STEPS // 40, PULL_STEPS // 40, 10)
    assert est.stage_lengths("codes", 40) == lengths == (50, 40, 10)
    assert est.stage_lengths("pooled", 40) == (50, 40, 10)
    assert est.stage_lengths("input", 40) == (25, 40, 10)
    # digits-sized (8 steps an epoch): the minimum steps bind; an initial clustering on the
    # inputs alone shortens the pretraining, which then only starts the networks and the prior
    pre, pull, joint = est.stage_lengths("pooled", 8)
    assert (pre * 8, pull * 8, joint * 8) == (PRETRAIN_STEPS, PULL_STEPS, JOINT_STEPS)
    assert est.stage_lengths("codes", 8) == (pre, pull, joint)
    assert est.stage_lengths("input", 8) == (max(25, INPUT_PRETRAIN_STEPS // 8), pull, joint)
    # given lengths are kept as given
    given = VAEClusterer(10, pretrain_epochs=3, pull_epochs=4, epochs=5)
    assert given.stage_lengths("input", 8) == (3, 4, 5)
    assert given.stage_lengths("pooled", 8) == (3, 4, 5)


def test_auto_init_space_pools_codes_and_inputs_for_wide_inputs() -> None:
    from vaekit.cluster.recipe import AUTO_INPUT_FEATURES, resolve_space

    assert resolve_space("auto", AUTO_INPUT_FEATURES) == "input"
    assert resolve_space("auto", AUTO_INPUT_FEATURES + 1) == "pooled"
    for space in ("codes", "input", "pooled"):
        assert resolve_space(space, 8) == resolve_space(space, 784) == space
    with pytest.raises(ValueError, match="init_space must be 'auto', 'pooled'"):
        VAEClusterer(2, init_space="pixels").fit(np.random.rand(20, 3))


def test_pooled_restarts_choose_the_partition_both_spaces_reproduce() -> None:
    """Two spaces of the same points: one holds the clusters, the other is noise. Restarts on
    the noise disagree with each other; the chosen restart is the one agreeing most with all
    others (not the most likely), and it comes from the space with the clusters."""
    from vaekit.cluster.recipe import agreement, initial_clustering

    x, y = blobs_through_net(n_per=50, k=4, d=2)
    noise = np.random.default_rng(0).uniform(size=(len(x), 2))
    init = initial_clustering({"codes": noise, "input": x}, 4, method="gmm", n_init=4, seed=1)
    assert [r["space"] for r in init.restarts] == ["codes"] * 4 + ["input"] * 4
    assert len(init.candidates) == 8
    ags = [r["agreement"] for r in init.restarts]
    for r, lab in enumerate(init.candidates):
        others = init.candidates[:r] + init.candidates[r + 1:]
        assert ags[r] == pytest.approx(agreement(lab, others))
    assert init.chosen == int(np.argmax(ags))
    assert init.restarts[init.chosen]["space"] == "input"
    assert hungarian_accuracy(y, init.labels) >= 0.95
    np.testing.assert_array_equal(init.labels, init.candidates[init.chosen])


def test_pooled_fit_records_each_restarts_space_and_the_final_agreement() -> None:
    from vaekit.cluster.recipe import agreement

    x, y = blobs_through_net(n_per=40)
    est = VAEClusterer(4, random_state=0, init_space="pooled", **TINY).fit(x)
    assert [r["space"] for r in est.init_restarts_] == ["codes"] * 3 + ["input"] * 3
    assert set(est._init_embeddings) == {"codes", "input"}
    assert est.final_agreement_ == pytest.approx(agreement(est.labels_, est._init_candidates))
    np.testing.assert_array_equal(est.labels_, est.predict(x))  # labels_ is q(y|x)'s argmax
    assert hungarian_accuracy(y, est.labels_) >= 0.9


def test_outputs_and_fitted_attributes(fitted) -> None:
    est, x, _ = fitted
    p = est.predict_proba(x)
    assert p.shape == (len(x), 4)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(est.predict(x), p.argmax(1))
    np.testing.assert_array_equal(est.labels_, est.predict(x))
    assert est.transform(x).shape == (len(x), 2)
    assert est.weights_.shape == (4,) and est.weights_.sum() == pytest.approx(1.0)
    assert est.means_.shape == (4, 2) and est.covariances_.shape == (4, 2)
    assert np.all(est.covariances_ > 0)
    assert est.n_iter_ == TINY["pretrain_epochs"] + TINY["pull_epochs"] + TINY["epochs"]
    elbo = est.score(x)
    assert math.isfinite(elbo) and elbo < 0
    samples = est.sample(5, cluster=2)
    assert samples.shape == (5, x.shape[1])
    # decoded samples of a cluster are assigned back to it
    assert (est.predict(est.sample(20, cluster=1, random_state=3)) == 1).mean() >= 0.8


def test_save_load_round_trip(fitted, tmp_path: Path) -> None:
    est, x, _ = fitted
    est.save(tmp_path / "c.safetensors")
    back = VAEClusterer.load(tmp_path / "c.safetensors")
    np.testing.assert_array_equal(back.predict(x), est.predict(x))
    np.testing.assert_allclose(back.predict_proba(x), est.predict_proba(x), atol=1e-12)
    np.testing.assert_array_equal(back.labels_, est.labels_)
    assert back.get_params() == est.get_params()
    assert back.init_restarts_ == est.init_restarts_
    assert back.final_agreement_ == est.final_agreement_
    # a file of another kind is refused with one line
    torch_file = tmp_path / "m.safetensors"
    est.model_.save(torch_file)
    with pytest.raises(Exception, match="not a vaekit clusterer file"):
        VAEClusterer.load(torch_file)


def test_clone_is_unfitted_with_same_params(fitted) -> None:
    from sklearn.base import clone

    est, _, _ = fitted
    c = clone(est)
    assert c.get_params() == est.get_params()
    assert not hasattr(c, "model_") and not hasattr(c, "labels_")
    c.set_params(n_clusters=3)
    assert c.n_clusters == 3 and est.n_clusters == 4


@pytest.mark.parametrize(
    "k, message",
    [(1, r"n_clusters \(--k\) must be >= 2"), (2.5, r"n_clusters \(--k\) must be an integer"),
     ("3", r"n_clusters \(--k\) must be an integer"), (500, "larger than the number of samples")],
)
def test_bad_n_clusters(k, message) -> None:
    x, _ = blobs_through_net(n_per=10)
    est = VAEClusterer(k, **TINY)
    with pytest.raises(ValueError, match=message):
        est.fit(x)
    assert not hasattr(est, "model_")


def test_nan_and_wrong_shape(fitted) -> None:
    est, x, _ = fitted
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        VAEClusterer(4, **TINY).fit(bad)
    with pytest.raises(ValueError, match="NaN"):
        est.predict(bad)
    with pytest.raises(ValueError, match="features"):
        est.predict(x[:, :5])


# Small but trained enough that the codes carry the blobs of check_clustering (with 2 epochs,
# or 20 at lr 1e-3, the posterior noise swamps the codes and a cluster can stay empty).
SMALL = dict(latent_dim=2, hidden=(16,), pretrain_epochs=20, pull_epochs=5, epochs=2, n_init=1,
             lr=1e-2, batch_size=32, init="gmm")


# check_estimator: the checks VAEClusterer fails by design, and why. Each sets n_clusters=1
# before fitting (the checks assign `estimator.n_clusters = 1` themselves; scikit-learn gives a
# third-party estimator no way to choose the parameters of a check), and VAEClusterer refuses
# one cluster: a one-component mixture clusters nothing. What each checks holds with
# n_clusters=2 (test_checks_that_set_one_cluster_hold_for_two runs them so).
ONE_CLUSTER = "sets n_clusters=1, which VAEClusterer refuses: one cluster is no clustering"
EXPECTED_ONE_CLUSTER_CHECKS = {
    "check_dont_overwrite_parameters": ONE_CLUSTER,  # fit leaves every parameter as given
    "check_fit2d_predict1d": ONE_CLUSTER,  # 1-D X to predict: "Reshape your data"
    "check_methods_subset_invariance": ONE_CLUSTER,  # a row's answers, alone or with others
    "check_fit2d_1feature": ONE_CLUSTER,  # one feature: fit works (or names 1 feature(s))
}


def failed_checks(estimator: object, expected: dict[str, str]) -> dict[str, list[str]]:
    """check_estimator run to the end: {check name: [exception text, ...]} of every check that
    did not pass and was not skipped, and {check name + ':status': [status, ...]}."""
    from sklearn.utils.estimator_checks import check_estimator

    out: dict[str, list[str]] = {}
    results = check_estimator(estimator, expected_failed_checks=expected, on_fail=None,
                              on_skip=None)
    for r in results:
        if r["status"] not in ("passed", "skipped"):
            out.setdefault(r["check_name"], []).append(str(r["exception"]))
            out.setdefault(r["check_name"] + ":status", []).append(r["status"])
    return out


@pytest.mark.parametrize("objective", ["elbo", "infomax"])
def test_check_estimator(objective: str) -> None:
    """scikit-learn's checks: exactly the expected ones fail (none is stale), each for the
    stated reason (the refusal of n_clusters=1), and the estimator module lists the same."""
    est = VAEClusterer(3, random_state=0, objective=objective, **SMALL)
    failed = failed_checks(est, EXPECTED_ONE_CLUSTER_CHECKS)
    statuses = {k[: -len(":status")]: v for k, v in failed.items() if k.endswith(":status")}
    assert statuses == {name: ["xfail"] for name in EXPECTED_ONE_CLUSTER_CHECKS}
    for name in EXPECTED_ONE_CLUSTER_CHECKS:
        assert r"n_clusters (--k) must be >= 2, got 1" in failed[name][0], failed[name]
    assert set(EXPECTED_FAILED_CHECKS) == set(EXPECTED_ONE_CLUSTER_CHECKS)


@pytest.mark.filterwarnings("ignore:.*cluster")  # untrained: clusters may come out tiny
def test_a_rows_prediction_does_not_depend_on_the_other_rows() -> None:
    """predict_proba, predict and transform of a row alone, among 100 rows or shuffled: bit
    for bit the same (networks wide enough that float32 kernels chosen by the batch shape
    round differently; the estimator evaluates fixed-shape blocks)."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(100, 32)) + np.repeat([[0.0], [4.0]], 50, 0)).astype(np.float32)
    est = VAEClusterer(2, hidden=(128,), pretrain_epochs=0, pull_epochs=0, epochs=0, n_init=1,
                       init="gmm", random_state=0).fit(x)
    order = rng.permutation(len(x))
    for method in ("predict_proba", "predict", "transform"):
        f = getattr(est, method)
        whole = f(x)
        assert np.array_equal(np.concatenate([f(x[i : i + 1]) for i in range(len(x))]), whole)
        assert np.array_equal(f(x[order]), whole[order]), method
    assert np.array_equal(est.labels_, est.predict(x))


class _OneAsTwo(VAEClusterer):
    """For the checks that set n_clusters=1 (refused by design): fit with 2 instead, leaving
    the parameter as the check set it."""

    def fit(self, X, y=None):
        if self.n_clusters != 1:
            return super().fit(X, y)
        self.n_clusters = 2
        try:
            return super().fit(X, y)
        finally:
            self.n_clusters = 1


@pytest.mark.parametrize("check", sorted(EXPECTED_FAILED_CHECKS))
def test_checks_that_set_one_cluster_hold_for_two(check: str) -> None:
    from sklearn.utils import estimator_checks

    getattr(estimator_checks, check)("VAEClusterer", _OneAsTwo(3, random_state=0, **SMALL))


# --- guards -----------------------------------------------------------------------------------


def test_variance_floor_keeps_unused_dimensions_from_collapsing() -> None:
    """A latent dimension that is constant inside every cluster still gets a prior variance
    of at least the posterior variance (the cause of collapse into one cluster)."""
    rng = np.random.default_rng(0)
    z = np.c_[rng.normal(size=(100, 1)) + np.repeat([0, 8], 50)[:, None], np.zeros((100, 1))]
    z_var = np.full_like(z, 0.01)
    labels = np.repeat([0, 1], 50)
    _, variances, weights = mixture_moments(z, z_var, labels, 2)
    assert np.all(variances[:, 1] >= 0.01)
    np.testing.assert_allclose(weights, [0.5, 0.5])


def test_empty_cluster_is_reseeded() -> None:
    torch.manual_seed(0)
    model = VAE.from_config(
        ModelConfig(event_shape=(2,), latent_dim=2, hidden=(4,), prior="cluster", num_classes=3,
                    likelihood="gaussian")
    )
    with torch.no_grad():  # an identity-like encoder: codes = x
        model.encoder.net[0].weight.zero_()
        model.encoder.net[0].bias.zero_()
        model.encoder.net[-1].weight.zero_()
        model.encoder.net[-1].bias.fill_(-8.0)
    x = torch.cat([torch.randn(40, 2) * 0.3 + 5, torch.randn(40, 2) * 0.3 - 5])
    model.encoder = torch.nn.Sequential(_Codes())
    # two components sit on the two groups, the third far away: it is empty
    model.prior.set_mixture([[5, 5], [-5, -5], [50, 50]], np.ones((3, 2)), [0.4, 0.4, 0.2])
    assert responsibilities(model, x).argmax(1).bincount(minlength=3)[2] == 0
    assert reseed_empty(model, x, min_size=5) == [2]
    sizes = responsibilities(model, x).argmax(1).bincount(minlength=3)
    assert sizes.min() >= 5
    assert float(torch.softmax(model.prior.logits.detach(), -1).sum()) == pytest.approx(1)


class _Codes(torch.nn.Module):
    """x -> (mean = x, logvar = -8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.full_like(x, -8.0)], -1)


# --- the CLI ----------------------------------------------------------------------------------

CLI_TINY = ["--latent-dim", "2", "--hidden", "32", "--pretrain-epochs", "3", "--pull-epochs",
            "2", "--epochs", "1", "--n-init", "2", "--quiet"]


def _csv_data(tmp_path: Path, labels: bool = True) -> Path:
    x, y = blobs_through_net(n_per=20)
    path = tmp_path / "blobs.csv"
    cols = [f"f{i}" for i in range(x.shape[1])] + (["label"] if labels else [])
    rows = [list(map(str, r)) + ([str(c)] if labels else []) for r, c in zip(x, y, strict=True)]
    path.write_text("\n".join([",".join(cols), *(",".join(r) for r in rows)]) + "\n")
    return path


def test_cli_train_assign_and_metrics(tmp_path: Path, capsys) -> None:
    data = _csv_data(tmp_path)
    out = tmp_path / "run"
    code = main(["cluster", "--data", str(data), "--label-column", "label", "--k", "4",
                 "--out", str(out), *CLI_TINY])
    assert code == 0
    rows = list(csv.DictReader((out / "clusters.csv").open()))
    assert len(rows) == 80 and set(rows[0]) == {"index", "cluster", "probability"}
    assert all(0 <= int(r["cluster"]) < 4 and 0 < float(r["probability"]) <= 1 for r in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"hungarian_accuracy", "nmi", "ari"}
    assert "accuracy" not in metrics and "purity" not in metrics
    assigned = tmp_path / "new.csv"
    assert main(["cluster", str(out), "--data", str(data), "--label-column", "label",
                 "--out", str(assigned)]) == 0
    again = list(csv.DictReader(assigned.open()))
    assert [r["cluster"] for r in again] == [r["cluster"] for r in rows]


def test_cli_no_labels_no_metrics(tmp_path: Path) -> None:
    data = _csv_data(tmp_path, labels=False)
    out = tmp_path / "run"
    assert main(["cluster", "--data", str(data), "--k", "3", "--out", str(out), *CLI_TINY]) == 0
    assert (out / "clusters.csv").is_file() and not (out / "metrics.json").exists()


@pytest.mark.parametrize("k", ["1", "1000"])
def test_cli_bad_k_writes_nothing(tmp_path: Path, capsys, k: str) -> None:
    data = _csv_data(tmp_path)
    out = tmp_path / "run"
    code = main(["cluster", "--data", str(data), "--k", k, "--out", str(out), *CLI_TINY])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and "n_clusters" in err
    assert not out.exists()


def test_cli_k_not_integer(tmp_path: Path, capsys) -> None:
    data = _csv_data(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["cluster", "--data", str(data), "--k", "2.5", "--out", str(tmp_path / "r")])
    assert e.value.code != 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cli_nan_and_wrong_shape_write_nothing(tmp_path: Path, capsys) -> None:
    data = _csv_data(tmp_path, labels=False)
    bad = tmp_path / "nan.csv"
    lines = data.read_text().splitlines()
    lines[3] = "nan" + lines[3][lines[3].index(","):]
    bad.write_text("\n".join(lines) + "\n")
    code = main(["cluster", "--data", str(bad), "--k", "3", "--out", str(tmp_path / "r"),
                 *CLI_TINY])
    err = capsys.readouterr().err
    assert code == 1 and "NaN" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()

    out = tmp_path / "run"
    assert main(["cluster", "--data", str(data), "--k", "3", "--out", str(out), *CLI_TINY]) == 0
    capsys.readouterr()
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("a,b\n1,2\n3,4\n")
    code = main(["cluster", str(out), "--data", str(narrow), "--out", str(tmp_path / "a.csv")])
    err = capsys.readouterr().err
    assert code == 1 and "features" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.csv").exists()


# --- pictures ---------------------------------------------------------------------------------


def test_draw_clusters_from_estimator_and_run(fitted, tmp_path: Path) -> None:
    from vaekit.cluster.plots import draw_clusters

    est, x, y = fitted
    out = draw_clusters(est, x, y, tmp_path / "figs")
    assert set(out) == {"cluster_latent", "cluster_latent_labels"}  # tables: no sample grid
    assert all(p.is_file() and p.stat().st_size > 0 for p in out.values())

    images = np.clip(x.reshape(-1, 1, 3, 4) * 0.2 + 0.5, 0, 1)  # tiny images in [0, 1]
    small = VAEClusterer(4, random_state=0, **{**TINY, "pretrain_epochs": 2, "pull_epochs": 1,
                                               "epochs": 1})
    out = draw_clusters(small.fit(images), images, None, tmp_path / "img")
    assert set(out) == {"cluster_samples", "cluster_latent"}

    data = _csv_data(tmp_path)
    run = tmp_path / "run"
    assert main(["cluster", "--data", str(data), "--label-column", "label", "--k", "4",
                 "--out", str(run), *CLI_TINY]) == 0
    out = draw_clusters(run)  # reads the run's data again; writes into the run directory
    assert set(out) == {"cluster_latent", "cluster_latent_labels"}
    assert all(p.parent == run for p in out.values())


def test_mixture_refit_to_the_pulled_codes() -> None:
    """After the pull the mixture is set to the moments of the pulled codes per initial
    cluster (no joint stage here, so nothing moves it afterwards)."""
    x, _ = blobs_through_net(n_per=30)
    est = VAEClusterer(4, random_state=0, **{**TINY, "epochs": 0}).fit(x)
    z = est.transform(x)
    means, _, _ = mixture_moments(z, np.zeros_like(z), est.init_labels_, 4)
    np.testing.assert_allclose(est.means_, means, atol=1e-4)


def test_negative_joint_beta_is_refused() -> None:
    x, _ = blobs_through_net(n_per=10)
    est = VAEClusterer(4, joint_beta=-1.0, **TINY)
    with pytest.raises(ValueError, match="joint_beta >= 0"):
        est.fit(x)
    assert not hasattr(est, "model_")


def test_empty_or_tiny_clusters_are_named_with_their_fix():
    from vaekit.cluster.recipe import small_clusters_message

    balanced = np.repeat(np.arange(4), 25)
    assert small_clusters_message(balanced, 4) is None
    lopsided = np.array([0] * 98 + [1] * 2)  # clusters 2 and 3 empty, 1 tiny (2 < 2.5 rows)
    message = small_clusters_message(lopsided, 4)
    assert message is not None and message.startswith("3 of 4 clusters are empty or tiny")
    assert "2 empty" in message and "--epochs" in message and "--k" in message
