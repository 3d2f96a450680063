"""The conditional VAE's full-covariance class prior ("class-full"): trained as N(mu_y, I), then
refit by the trainer to each class's aggregate posterior. Closed forms, the refit, files, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_conditional import cvae

from clitools import FAST, assert_same_training, run
from vaekit import VAE, ModelConfig
from vaekit.core.config import ConfigError
from vaekit.core.io import load_tensors
from vaekit.core.posterior import DiagonalGaussian
from vaekit.core.priors import ClassFullGaussian, ClassGaussian
from vaekit.data import prepare
from vaekit.data.config import DataConfig
from vaekit.train.config import TrainConfig
from vaekit.train.loop import fit

pytestmark = pytest.mark.usefixtures("one_thread")


def random_prior(latent: int = 3, classes: int = 4, seed: int = 0) -> ClassFullGaussian:
    """A prior with non-trivial covariances: refit to random posteriors."""
    g = torch.Generator().manual_seed(seed)
    prior = ClassFullGaussian(latent, classes)
    mix = torch.randn(latent, latent, generator=g)
    mean = torch.randn(400, latent, generator=g) @ mix + torch.randn(latent, generator=g)
    var = torch.rand(400, latent, generator=g) + 0.1
    prior.fit_to_posterior(mean, var, torch.arange(400) % classes)
    return prior


def test_at_identity_covariances_it_is_the_class_prior() -> None:
    torch.manual_seed(0)
    full = ClassFullGaussian(3, 4)
    torch.manual_seed(0)
    diag = ClassGaussian(3, 4)
    torch.testing.assert_close(full.means, diag.means)  # the same start from the same seed
    q = DiagonalGaussian(torch.randn(6, 3), torch.randn(6, 3) * 0.5)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(full.kl(q, y), diag.kl(q, y))
    z = q.rsample(5)
    torch.testing.assert_close(full.log_prob(z, y), diag.log_prob(z, y))
    torch.testing.assert_close(full.log_prob(z), diag.log_prob(z))


def test_log_prob_and_kl_are_those_of_the_full_gaussian() -> None:
    prior = random_prior()
    assert (prior.scale_tril - torch.eye(3)).abs().max() > 0.1  # not the identity any more
    y = torch.tensor([0, 1, 2, 3, 2])
    p = torch.distributions.MultivariateNormal(prior.means[y], scale_tril=prior.scale_tril[y])
    q = DiagonalGaussian(torch.randn(5, 3), torch.randn(5, 3) * 0.5)
    z = q.rsample(7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(prior.log_prob(z, y), p.log_prob(z))
    qq = torch.distributions.MultivariateNormal(q.mean, scale_tril=torch.diag_embed(q.std))
    torch.testing.assert_close(prior.kl(q, y), torch.distributions.kl_divergence(qq, p))
    # and the closed form against Monte Carlo, log q - log p over many draws
    many = q.rsample(200_000, generator=torch.Generator().manual_seed(2))
    mc = (q.log_prob(many) - prior.log_prob(many, y)).mean(0)
    torch.testing.assert_close(prior.kl(q, y), mc, atol=0.03, rtol=0.01)
    assert prior.kl(q) is None  # without y: Monte Carlo on the equal-weight mixture


def test_samples_have_the_class_moments() -> None:
    prior = random_prior()
    y = torch.full((100_000,), 2)
    z = prior.sample(len(y), y, generator=torch.Generator().manual_seed(0))
    sigma = prior.scale_tril[2] @ prior.scale_tril[2].T
    torch.testing.assert_close(z.mean(0), prior.means[2], atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), sigma, atol=0.05, rtol=0.02)


def test_refit_sets_the_aggregate_posterior_moments() -> None:
    g = torch.Generator().manual_seed(3)
    mean, var = torch.randn(300, 3, generator=g), torch.rand(300, 3, generator=g)
    y = torch.randint(0, 2, (300,), generator=g)
    y[0] = 2  # class 2 has one row; class 3 has none and keeps its Gaussian
    prior = ClassFullGaussian(3, 4)
    before = prior.means[3].clone()
    prior.fit_to_posterior(mean, var, y)
    for c in range(3):
        m, v = mean[y == c].double().numpy(), var[y == c].double().numpy()
        cov = np.cov(m.T, bias=True).reshape(3, 3) + np.diag(v.mean(0))
        L = prior.scale_tril[c].double()
        np.testing.assert_allclose(prior.means[c].detach().numpy(), m.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose((L @ L.T).numpy(), cov, rtol=1e-4, atol=1e-6)
    assert torch.equal(prior.means[3], before) and torch.equal(prior.scale_tril[3], torch.eye(3))


def test_training_ends_with_the_refit_prior_saved(tmp_path: Path) -> None:
    digits = prepare(DataConfig(source="digits"))
    model = cvae("class-full")
    x, y = digits.train.x[:300], digits.train.y[:300]
    fit(model, x, digits.val.x, TrainConfig(epochs=2), y_train=y, y_val=digits.val.y,
        run_dir=tmp_path / "run", progress=False)
    mean, logvar = model.encode(x, y)
    expected = ClassFullGaussian(4, 10)
    expected.fit_to_posterior(mean, logvar.exp(), y)
    torch.testing.assert_close(model.prior.scale_tril, expected.scale_tril)
    torch.testing.assert_close(model.prior.means, expected.means)
    # the model file holds the refit prior; the checkpoint the prior training continues with
    loaded = VAE.load(tmp_path / "run" / "model.safetensors")
    torch.testing.assert_close(loaded.prior.scale_tril, model.prior.scale_tril, rtol=0, atol=0)
    ckpt, _ = load_tensors(tmp_path / "run" / "checkpoint.safetensors")
    tril = next(v for k, v in ckpt.items() if k.endswith("prior.scale_tril"))
    assert torch.equal(tril, torch.eye(4).repeat(10, 1, 1))
    z = torch.randn(6, 4)
    g = [torch.Generator().manual_seed(5) for _ in range(2)]
    torch.testing.assert_close(model.sample(6, 3, g[0]), loaded.sample(6, 3, g[1]), rtol=0, atol=0)
    torch.testing.assert_close(model.decode(z, 3), loaded.decode(z, 3), rtol=0, atol=0)
    xt, yt = digits.test.x[:20], digits.test.y[:20]
    torch.manual_seed(0)
    a = model.log_likelihood(xt, yt, k=4)
    torch.manual_seed(0)
    torch.testing.assert_close(a, loaded.log_likelihood(xt, yt, k=4), rtol=0, atol=0)


def test_class_full_needs_observed_labels() -> None:
    with pytest.raises(ConfigError, match=r"class-full.*set conditional=True"):
        ModelConfig(prior="class-full", num_classes=3)


def test_a_class_full_run_from_the_cli_resumes_to_the_same_model(tmp_path: Path, capsys) -> None:
    common = ["--data", "digits", "--conditional", "--conditional-prior", "class-full",
              "--latent-dim", "3", "--seed", 2, *FAST]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    rc, stdout, err = run(capsys, "train", *common, "--out", straight, "--epochs", 3)
    assert rc == 0, err
    assert "conditional accuracy" in stdout
    saved = json.loads((straight / "config.json").read_text())["model"]
    assert saved["prior"] == "class-full"
    assert run(capsys, "train", *common, "--out", resumed, "--epochs", 1)[0] == 0
    rc, _, err = run(capsys, "train", "--out", resumed, "--resume", "--epochs", 3, "--quiet",
                     "--no-pictures", "--k", 5)
    assert rc == 0, err
    assert_same_training(straight, resumed)  # checkpoints and model files, the refit included
    rc, _, err = run(capsys, "sample", straight, "--label", 3, "-n", 4, "--out", tmp_path / "s.npz")
    assert rc == 0, err


def test_the_training_shortcut_is_the_general_formula_and_loading_sets_it() -> None:
    prior = ClassFullGaussian(3, 4)
    q = DiagonalGaussian(torch.randn(6, 3), torch.randn(6, 3) * 0.5)
    y, z = torch.tensor([0, 1, 2, 3, 0, 1]), torch.randn(5, 6, 3)
    assert not prior.refit  # identity covariances: the shortcut
    fast = prior.kl(q, y), prior.log_prob(z, y)
    prior.refit = True  # the same identity through the triangular solves
    torch.testing.assert_close(prior.kl(q, y), fast[0])
    torch.testing.assert_close(prior.log_prob(z, y), fast[1])
    # the flag follows the weights a prior loads, refit or not
    fresh = ClassFullGaussian(3, 4)
    fresh.load_state_dict(random_prior().state_dict())
    assert fresh.refit
    fresh.load_state_dict(ClassFullGaussian(3, 4).state_dict())
    assert not fresh.refit
    model = cvae("class-full")
    model.prior.fit_to_posterior(torch.randn(50, 4), torch.rand(50, 4), torch.arange(50) % 10)
    copy = cvae("class-full", seed=1)
    copy.load_state_dict(model.state_dict())  # through the VAE: the prior's hook runs too
    assert copy.prior.refit
