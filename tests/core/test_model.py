"""The core parts against the math: KL, reparameterization, densities, bounds, save/load."""

from __future__ import annotations

import json
import math
import os
import signal
import struct

import pytest
import torch
import torch.distributions as D
import torch.nn.functional as F

from vaekit import VAE, ModelConfig
from vaekit.core.config import ConfigError, from_dict, to_dict
from vaekit.core.io import CheckpointError, Terminated, atomic_write, terminate_as_interrupt
from vaekit.core.likelihoods import Bernoulli, Gaussian, LearnedGaussian
from vaekit.core.objectives import elbo_loss, iwae_loss, log_likelihood
from vaekit.core.posterior import DiagonalGaussian
from vaekit.core.precision import networks_in
from vaekit.core.priors import MixturePrior, StandardNormal
from vaekit.runs.config import RunConfig


def test_analytic_kl_matches_formula_library_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    q = DiagonalGaussian(mean, logvar)
    kl = StandardNormal(3).kl(q)
    sigma2 = logvar.exp()
    by_formula = 0.5 * (mean**2 + sigma2 - torch.log(sigma2) - 1).sum(-1)
    torch.testing.assert_close(kl, by_formula)
    lib = D.kl_divergence(
        D.Independent(D.Normal(mean, (0.5 * logvar).exp()), 1),
        D.Independent(D.Normal(torch.zeros(3), torch.ones(3)), 1),
    )
    torch.testing.assert_close(kl, lib)
    # Monte Carlo: mean of log q - log p over many samples, within 4 standard errors.
    z = q.rsample(200_000, generator=g)
    terms = q.log_prob(z) - StandardNormal(3).log_prob(z)
    stderr = terms.std(0) / math.sqrt(len(z))
    assert ((terms.mean(0) - kl).abs() < 4 * stderr).all()


def test_gradients_reach_mean_and_logvar_through_the_sample():
    mean = torch.zeros(4, 2, requires_grad=True)
    logvar = torch.zeros(4, 2, requires_grad=True)
    z = DiagonalGaussian(mean, logvar).rsample(3)
    assert z.shape == (3, 4, 2)
    (z**2).sum().backward()
    assert mean.grad is not None and logvar.grad is not None
    assert mean.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0


def test_model_encoder_gets_gradient_for_both_heads_from_distortion_alone():
    torch.manual_seed(0)
    model = VAE.from_config(ModelConfig(event_shape=(6,), latent_dim=2, hidden=(8,)))
    x = torch.rand(16, 6)
    # beta=0: no KL, so the log-variance head can learn only through the sample.
    elbo_loss(model, x, beta=0.0).total.backward()
    head = model.encoder.net[-1].weight.grad  # rows: 2 for the mean, then 2 for the log-variance
    assert head[:2].abs().sum() > 0 and head[2:].abs().sum() > 0


def test_densities_equal_torch_distributions():
    g = torch.Generator().manual_seed(1)
    params = torch.randn(2, 5, 1, 4, 4, generator=g)
    x = torch.rand(5, 1, 4, 4, generator=g)
    binary = x.round()
    lib = D.Independent(D.Bernoulli(logits=params), 3).log_prob(binary.expand_as(params))
    torch.testing.assert_close(Bernoulli((1, 4, 4)).log_prob(params, binary), lib)
    lib = D.Independent(D.Normal(params, 0.3), 3).log_prob(x.expand_as(params))
    torch.testing.assert_close(Gaussian((1, 4, 4), 0.3).log_prob(params, x), lib)
    learned = LearnedGaussian((1, 4, 4), 0.3, per_dim=True)
    torch.testing.assert_close(learned.log_prob(params, x), lib)

    prior = MixturePrior(3, 4, generator=g)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(4, generator=g))
        prior.logvars.copy_(0.5 * torch.randn(4, 3, generator=g))
    mix = D.MixtureSameFamily(
        D.Categorical(logits=prior.logits),
        D.Independent(D.Normal(prior.means, (0.5 * prior.logvars).exp()), 1),
    )
    z = torch.randn(7, 5, 3, generator=g)
    torch.testing.assert_close(prior.log_prob(z), mix.log_prob(z))
    q = DiagonalGaussian(torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g))
    lib_q = D.Independent(D.Normal(q.mean, q.std), 1).log_prob(z)
    torch.testing.assert_close(q.log_prob(z), lib_q)


def test_bernoulli_evaluation_path_equals_bce_for_grey_levels():
    """log_prob without autograd takes a faster route (x.l - softplus(l)); same values."""
    g = torch.Generator().manual_seed(3)
    params = 8 * torch.randn(6, 5, 1, 4, 4, generator=g)  # large logits: softplus's linear range
    x = torch.rand(5, 1, 4, 4, generator=g)  # grey levels read as probabilities
    lik = Bernoulli((1, 4, 4))
    ref = -F.binary_cross_entropy_with_logits(params, x.expand_as(params), reduction="none")
    ref = ref.flatten(2).sum(-1)
    with torch.no_grad():
        fast = lik.log_prob(params, x)
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(lik.log_prob(params.requires_grad_(), x), ref)


def test_networks_in_sets_the_precision_for_a_block_and_restores_it():
    model = VAE.from_config(ModelConfig(event_shape=(6,), latent_dim=2, hidden=(8,)))
    x = torch.rand(4, 6)
    with networks_in(model, "bf16"):
        assert model.low_precision is not None
        outer = model.low_precision
        mean_bf16 = model.encode(x)[0]
        with networks_in(model, "fp32"):  # fp32 means fp32, even inside a bf16 block
            assert model.low_precision is None
            torch.testing.assert_close(model.encode(x)[0], model.encoder(x).chunk(2, -1)[0])
        assert model.low_precision is outer
    assert model.low_precision is None
    assert not torch.equal(mean_bf16, model.encode(x)[0])  # bf16 really ran
    torch.testing.assert_close(mean_bf16, model.encode(x)[0], atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="precision 'fp16' is not one of fp32, bf16"):
        networks_in(model, "fp16").__enter__()


def test_mixture_prior_samples_follow_its_density():
    g = torch.Generator().manual_seed(2)
    prior = MixturePrior(1, 2, generator=g)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-3.0], [3.0]]))
        prior.logits.copy_(torch.tensor([0.0, math.log(3.0)]))  # weights 1/4, 3/4
    z = prior.sample(40_000, generator=g)
    assert abs((z > 0).float().mean().item() - 0.75) < 0.01
    assert prior.kl(DiagonalGaussian(z[:2], z[:2])) is None  # no closed form: Monte Carlo


@pytest.mark.parametrize("bad", [3.7, -1.0])
def test_bernoulli_rejects_data_outside_support(bad):
    model = VAE.from_config(ModelConfig(event_shape=(4,), hidden=(8,), latent_dim=2))
    x = torch.rand(3, 4)
    x[1, 2] = bad
    with pytest.raises(ValueError, match=r"needs data in \[0, 1\].*--likelihood gaussian"):
        model.elbo(x)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian-learned"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_every_likelihood_rejects_non_finite_data(likelihood, bad):
    model = VAE.from_config(
        ModelConfig(event_shape=(4,), hidden=(8,), latent_dim=2, likelihood=likelihood)
    )
    x = torch.rand(3, 4)
    x[0, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.elbo(x)


def test_wrong_input_shape_is_a_clear_error():
    model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=2, hidden=(8,)))
    with pytest.raises(ValueError, match=r"shape \(batch, 1, 8, 8\), got \(5, 64\).*reshape"):
        model.encode(torch.rand(5, 64))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian-learned"])
@pytest.mark.parametrize("prior", ["normal", "mixture"])
def test_models_build_and_train_one_step(arch, shape, likelihood, prior):
    torch.manual_seed(0)
    cfg = ModelConfig(
        event_shape=shape,
        latent_dim=3,
        arch=arch,
        hidden=(16,),
        conv_channels=(4, 8),
        likelihood=likelihood,
        prior=prior,
        mixture_components=3,
    )
    model = VAE.from_config(cfg)
    x = torch.rand(4, *shape)
    loss = model.loss(x, samples=2)
    assert loss.total.shape == () and torch.isfinite(loss.total)
    loss.total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    if prior == "mixture":
        assert model.prior.means.grad.abs().sum() > 0  # the prior learns (Monte-Carlo KL)
    assert model.reconstruct(x).shape == x.shape
    assert model.sample(5).shape == (5, *shape)
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (4, 3)


@pytest.mark.parametrize("shape", [(1, 28, 20), (3, 9, 13)])
def test_conv_decoder_retraces_any_image_size(shape):
    model = VAE.from_config(ModelConfig(event_shape=shape, arch="conv", latent_dim=2))
    assert model.decode(torch.randn(2, 2)).shape == (2, *shape)


def test_beta_weights_the_rate_and_iwae1_is_the_monte_carlo_elbo():
    model = VAE.from_config(ModelConfig(event_shape=(5,), hidden=(8,), latent_dim=2))
    x = torch.rand(10, 5)
    torch.manual_seed(3)
    a = elbo_loss(model, x, beta=0.25)
    torch.testing.assert_close(a.total, a.distortion + 0.25 * a.rate)
    torch.manual_seed(4)
    iw = iwae_loss(model, x, k=1)
    torch.manual_seed(4)
    mc = elbo_loss(model, x, analytic_kl=False)
    torch.testing.assert_close(iw.total, mc.total)


# --- probabilistic PCA: log p(x) in closed form ---------------------------------------------


def _ppca(seed: int = 0, latent: int = 2, dim: int = 6, sigma: float = 0.4, shrink: float = 0.8):
    """A linear-Gaussian VAE (x = W z + b + sigma * noise) with a mean-field encoder."""
    g = torch.Generator().manual_seed(seed)
    cfg = ModelConfig(
        event_shape=(dim,), latent_dim=latent, hidden=(), likelihood="gaussian", sigma=sigma
    )
    model = VAE.from_config(cfg)
    w = torch.randn(dim, latent, generator=g)
    b = torch.randn(dim, generator=g)
    # Exact posterior: N(M^-1 W^T (x - b), sigma^2 M^-1), M = W^T W + sigma^2 I. The encoder is
    # set to an imperfect diagonal proposal (mean shrunk by `shrink`, marginal variances times 2),
    # as a trained encoder would be: the bounds then differ by more than sampling noise, and
    # importance sampling still converges, the proposal being wider than the posterior.
    m_inv = torch.linalg.inv(w.T @ w + sigma**2 * torch.eye(latent))
    a = shrink * m_inv @ w.T
    with torch.no_grad():
        dec, enc = model.decoder.net[0], model.encoder.net[0]
        dec.weight.copy_(w)
        dec.bias.copy_(b)
        enc.weight.zero_()
        enc.weight[:latent] = a
        enc.bias[:latent] = -a @ b
        enc.bias[latent:] = torch.log(2 * sigma**2 * torch.diagonal(m_inv))
    exact = D.MultivariateNormal(b, w @ w.T + sigma**2 * torch.eye(dim))
    x = exact.sample((400,))
    return model, x, exact.log_prob(x)


def test_importance_sampled_log_likelihood_matches_ppca_closed_form():
    model, x, exact = _ppca()
    torch.manual_seed(0)
    est = model.log_likelihood(x, k=1000)
    assert (est - exact).abs().mean() < 0.5
    assert abs(float(est.mean() - exact.mean())) < 0.05


def test_bounds_are_ordered_elbo_iwae5_iwae50_exact():
    model, x, exact = _ppca()
    torch.manual_seed(0)
    with torch.no_grad():
        elbo = -elbo_loss(model, x).total
        iw5 = -iwae_loss(model, x, k=5).total
        iw50 = -iwae_loss(model, x, k=50).total
    assert elbo < iw5 < iw50 <= exact.mean()


def test_log_likelihood_in_tiny_chunks_still_matches_the_closed_form():
    model, x, exact = _ppca()
    torch.manual_seed(1)
    # Chunks of 3 samples x 7 examples: the running log-sum-exp must give the same estimator.
    chunked = log_likelihood(model, x[:100], k=1000, batch_size=7, max_elements=6 * 7 * 3)
    assert chunked.shape == (100,)
    assert (chunked - exact[:100]).abs().mean() < 0.5
    assert abs(float(chunked.mean() - exact[:100].mean())) < 0.05


# --- files ------------------------------------------------------------------------------------


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(
        event_shape=(1, 8, 8),
        arch="conv",
        latent_dim=3,
        prior="mixture",
        likelihood="gaussian-learned",
        conv_channels=(4, 8),
    )
    model = VAE.from_config(cfg).eval()
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = VAE.load(path)
    assert loaded.config == cfg
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(loaded.encode(x), model.encode(x), rtol=0, atol=0)
    z = torch.randn(5, 3)
    torch.testing.assert_close(loaded.decode(z), model.decode(z), rtol=0, atol=0)


def _header(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write_with_meta(path, header, body, meta):
    header["__metadata__"]["vaekit"] = json.dumps(meta)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + body)


def test_load_refuses_a_shape_mismatch_naming_the_tensor(tmp_path):
    path = tmp_path / "m.safetensors"
    VAE.from_config(ModelConfig(event_shape=(6,), latent_dim=2, hidden=(8,))).save(path)
    header, body = _header(path)
    meta = json.loads(header["__metadata__"]["vaekit"])
    meta["model"]["hidden"] = [9]  # the config now disagrees with the stored weights
    _write_with_meta(path, header, body, meta)
    with pytest.raises(CheckpointError, match=r"tensor 'encoder.net.0.weight' has shape \(8, 6\)"):
        VAE.load(path)


def test_load_refuses_a_missing_config_field(tmp_path):
    path = tmp_path / "m.safetensors"
    VAE.from_config(ModelConfig(event_shape=(6,), latent_dim=2, hidden=(8,))).save(path)
    header, body = _header(path)
    meta = json.loads(header["__metadata__"]["vaekit"])
    del meta["model"]["latent_dim"]
    _write_with_meta(path, header, body, meta)
    with pytest.raises(CheckpointError, match=r"missing field.*latent_dim"):
        VAE.load(path)


def test_load_refuses_a_truncated_file_and_a_missing_one(tmp_path):
    path = tmp_path / "m.safetensors"
    VAE.from_config(ModelConfig(event_shape=(6,), latent_dim=2, hidden=(8,))).save(path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        VAE.load(path)
    with pytest.raises(CheckpointError, match="no such file"):
        VAE.load(tmp_path / "absent.safetensors")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "m.safetensors"
    model = VAE.from_config(ModelConfig(event_shape=(6,), latent_dim=2, hidden=(8,)))
    model.save(path)
    model.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_ctrl_c_during_a_save_waits_for_the_rename_and_leaves_no_temp_file(tmp_path):
    """The CI failure this guards: a SIGINT landing inside atomic_write left a .tmp behind."""
    path = tmp_path / "a.txt"
    path.write_text("old")
    written = []

    def write_then_get_interrupted(tmp):
        tmp.write_text("new")
        os.kill(os.getpid(), signal.SIGINT)  # delivered now, held until the rename is done
        written.append(tmp.read_text())

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write_then_get_interrupted)
    assert written == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert path.read_text() == "new"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    with terminate_as_interrupt(), pytest.raises(Terminated):  # SIGTERM is held the same way
        atomic_write(path, lambda tmp: (tmp.write_text("newer"), os.kill(os.getpid(), 15)))
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert path.read_text() == "newer"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def write_then_fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, write_then_fail)
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert path.read_text() == "newer"  # the old file stays whole


def test_config_round_trips_through_json_and_rejects_unknown_or_bad_fields():
    cfg = RunConfig()
    cfg.model.hidden = (64, 32)
    cfg.data.image_shape = (28, 20)
    again = from_dict(RunConfig, json.loads(json.dumps(to_dict(cfg))), strict=True)
    assert again == cfg
    with pytest.raises(ConfigError, match=r"unknown field.*latnt_dim"):
        from_dict(ModelConfig, {"latnt_dim": 3})
    with pytest.raises(ConfigError, match="likelihood='poisson' is not one of"):
        from_dict(ModelConfig, {"likelihood": "poisson"})
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(ModelConfig, {"latent_dim": "three"})
