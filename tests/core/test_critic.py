"""Features without a decoder: the MI estimators against closed-form I(x; z), and the
encoder-only loss (MI rises with training on structured data, near zero without structure)."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.core.config import ModelConfig
from vaekit.core.critic import (
    SeparableCritic,
    build_critic,
    check_estimator,
    critic_view,
    infomax_figures,
    infomax_loss,
    infomax_terms,
    mi_infonce,
    mi_jsd,
    mi_matched,
)
from vaekit.core.model import VAE
from vaekit.data import prepare
from vaekit.data.config import DataConfig
from vaekit.train.config import TrainConfig
from vaekit.train.loop import fit

pytestmark = pytest.mark.usefixtures("one_thread")


def correlated(n: int, d: int, rho: float, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """x ~ N(0, I_d), z = rho x + sqrt(1 - rho^2) eps: I(x; z) = -d/2 log(1 - rho^2) nats."""
    x = torch.randn(n, d, generator=g)
    return x, rho * x + math.sqrt(1 - rho**2) * torch.randn(n, d, generator=g)


def train_critic(
    estimator: str, d: int, rho: float, steps: int = 300, batch: int = 128
) -> torch.nn.Module:
    """A fresh critic trained on its own to maximize one estimator on correlated Gaussians
    (rho = 0: independent). Hidden layers on both sides: the log density ratio has terms in
    |x|^2 and |z|^2 that the JSD optimum needs (build_critic's x side is linear, fine for
    InfoNCE, which cancels terms in x alone)."""
    torch.manual_seed(0)
    critic = SeparableCritic(d, d, (64,), (64,), 32, "relu")
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    objective = mi_infonce if estimator == "infonce" else mi_jsd
    for _ in range(steps):
        loss = -objective(critic(*correlated(batch, d, rho, g)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return critic


@torch.no_grad()
def held_out(critic: torch.nn.Module, d: int, rho: float) -> dict[str, float]:
    """Each estimate on fresh pairs, 16 batches of 256 (log 256 = 5.5 nats: the InfoNCE cap)."""
    x, z = correlated(4096, d, rho, torch.Generator().manual_seed(2))
    out = {"infonce": 0.0, "jsd": 0.0, "matched": 0.0}
    for xb, zb in zip(x.split(256), z.split(256), strict=True):
        s = critic(xb, zb)
        out["infonce"] += float(mi_infonce(s)) / 16
        out["jsd"] += float(mi_jsd(s)) / 16
        out["matched"] += float(mi_matched(s)) / 16
    return out


def test_estimators_on_hand_made_scores():
    b = 8
    # a critic that scores every pair alike knows nothing: both estimates are exactly 0
    flat = torch.full((b, b), 0.7)
    assert float(mi_infonce(flat)) == pytest.approx(0.0, abs=1e-6)
    assert float(mi_jsd(torch.zeros(b, b))) == pytest.approx(0.0, abs=1e-6)
    # a perfect critic: InfoNCE reaches its ceiling log B, the JSD bound its ceiling log 4
    sharp = torch.eye(b) * 100 - 50
    assert float(mi_infonce(sharp)) == pytest.approx(math.log(b), abs=1e-4)
    assert float(mi_jsd(sharp)) == pytest.approx(math.log(4), abs=1e-4)
    # the off-diagonal mean of softplus, not the whole matrix's: a shifted diagonal moves only
    # the matched term
    s = torch.randn(b, b, generator=torch.Generator().manual_seed(0))
    off = ~torch.eye(b, dtype=torch.bool)
    expected = (
        -torch.nn.functional.softplus(-s.diagonal()).mean()
        - torch.nn.functional.softplus(s[off]).mean()
        + math.log(4)
    )
    torch.testing.assert_close(mi_jsd(s), expected)
    # one example: no shuffled pair, a zero that still carries a graph
    one = torch.randn(1, 1, requires_grad=True)
    v = mi_jsd(one)
    v.backward()
    assert float(v.detach()) == 0.0 and one.grad is not None
    with pytest.raises(ValueError, match="square"):
        mi_infonce(torch.zeros(3, 4))
    # the model's critic: every pair scored, (batch, batch), from a linear x side
    critic = build_critic(ModelConfig(event_shape=(1, 4, 4), latent_dim=3, decoder=False))
    assert critic(torch.rand(5, 1, 4, 4), torch.randn(5, 3)).shape == (5, 5)
    with pytest.raises(ValueError, match="not one of jsd, infonce"):
        check_estimator("nwj")


@pytest.mark.parametrize("spread", [1.0, 300.0])
def test_infonce_is_the_definition_to_float_rounding_even_for_widely_spread_scores(spread: float):
    # mi_infonce goes through cross_entropy; it must stay mean(T_ii - logsumexp_j T_ij) + log B
    # (computed here in float64) in value and gradient, also where rows span hundreds of nats
    b = 64
    g = torch.Generator().manual_seed(1)
    s = torch.randn(b, b, generator=g) * spread
    s.diagonal().add_(spread)
    s64 = s.double().requires_grad_()
    ref = (s64.diagonal() - torch.logsumexp(s64, dim=1)).mean() + math.log(b)
    ref.backward()
    s32 = s.clone().requires_grad_()
    v = mi_infonce(s32)
    v.backward()
    value = float(v.detach())
    assert v.dtype == torch.float32 and math.isfinite(value)
    assert value == pytest.approx(float(ref.detach()), abs=1e-5 * max(1.0, abs(value)))
    torch.testing.assert_close(s32.grad.double(), s64.grad, atol=1e-7, rtol=1e-5)


def test_infonce_recovers_the_closed_form_mutual_information():
    d, rho = 2, 0.8  # I = -log(0.36) = 1.02 nats, well below log 256
    truth = -d / 2 * math.log(1 - rho**2)
    est = held_out(train_critic("infonce", d, rho), d, rho)
    assert truth - 0.15 < est["infonce"] <= truth + 0.05  # a lower bound, up to noise


def test_jsd_critic_estimates_the_density_ratio_so_its_matched_mean_is_the_mi():
    """The JSD bound itself is not I(x; z) (it is capped at log 4 and on another scale), but its
    critic's optimum is log q(x, z) / (p(x) q(z)), so E_joint[T] is I(x; z) in nats."""
    d, rho = 2, 0.8
    truth = -d / 2 * math.log(1 - rho**2)
    est = held_out(train_critic("jsd", d, rho), d, rho)
    assert abs(est["matched"] - truth) < 0.2 * truth
    assert 0 < est["jsd"] < math.log(4)
    assert abs(est["infonce"] - truth) < 0.2 * truth  # InfoNCE holds for any critic


@pytest.mark.parametrize("estimator", ["infonce", "jsd"])
def test_mi_is_near_zero_when_z_is_independent_of_x(estimator: str):
    d = 2
    est = held_out(train_critic(estimator, d, 0.0), d, 0.0)
    assert abs(est["infonce"]) < 0.03
    assert abs(est["matched"]) < 0.05
    assert abs(est["jsd"]) < 0.03


# --- the encoder-only model through the trainer ---------------------------------------------


def encoder_only(d: int = 64, latent: int = 4, **kw: object) -> VAE:
    torch.manual_seed(0)
    cfg = ModelConfig(
        event_shape=(d,), latent_dim=latent, hidden=(64,), critic_hidden=(64,), critic_dim=32,
        decoder=False, **kw,
    )
    return VAE.from_config(cfg)


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    splits = prepare(DataConfig(source="digits", val_fraction=0.1, test_fraction=0.2))
    return splits.train.x.flatten(1), splits.val.x.flatten(1)


def test_loss_terms_gradients_and_the_noisy_critic_view():
    model = encoder_only(d=6, latent=2).train()
    x = torch.rand(32, 6)
    torch.manual_seed(1)
    loss = infomax_loss(model, x, beta=0.5, mi_weight=3.0, estimator="infonce")
    torch.manual_seed(1)
    rate, mi, nats = infomax_terms(model, x, estimator="infonce")
    torch.testing.assert_close(loss.total, 0.5 * rate - 3.0 * mi)
    torch.testing.assert_close(loss.distortion, -nats)  # the slot holds minus the MI in nats
    loss.total.backward()
    for part in (model.encoder, model.critic):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    # noise only in training mode, scaled by the batch's spread; eval scores x itself
    assert not torch.equal(critic_view(model, x), x)
    assert torch.equal(critic_view(model.eval(), x), x)
    assert model.loss(x).rate.shape == ()  # the model routes an encoder-only loss here


def test_mi_rises_with_training_on_digits_and_figures_are_seeded():
    x_train, x_val = digits()
    model = encoder_only()
    before = infomax_figures(model, x_val, estimator="infonce")
    rng = torch.get_rng_state()
    again = infomax_figures(model, x_val, estimator="infonce")
    assert torch.equal(rng, torch.get_rng_state()) and again == before  # seeded, RNG untouched
    cfg = TrainConfig(
        epochs=15, objective="infomax", mi_estimator="infonce", mi_weight=20.0, seed=0
    )
    history = fit(model, x_train, x_val, cfg, progress=False)
    after = infomax_figures(model, x_val, estimator="infonce", mi_weight=20.0)
    assert abs(before["mi_nats"]) < 0.05  # a fresh critic knows nothing yet
    assert 1.0 < after["mi_nats"] <= after["mi_nats_cap"]
    # the distortion column is minus the MI estimate: it falls as MI rises
    assert history[-1]["train_distortion"] < history[0]["train_distortion"] - 0.5
    assert after["mi_estimator"] == "infonce" and after["mi"] == after["mi_infonce"]
    assert after["loss"] == pytest.approx(after["rate"] - 20.0 * after["mi"])


def test_mi_is_near_zero_when_the_prior_term_wins():
    """With the information term weighted far below the prior term the codes forget x (q(z|x)
    -> p(z) for every x): z is independent of x and the estimate says so."""
    x_train, x_val = digits()
    model = encoder_only()
    cfg = TrainConfig(epochs=8, objective="infomax", mi_estimator="infonce", mi_weight=0.01)
    fit(model, x_train, None, cfg, progress=False)
    f = infomax_figures(model, x_val, estimator="infonce")
    assert f["rate"] < 0.1
    assert abs(f["mi_nats"]) < 0.05
