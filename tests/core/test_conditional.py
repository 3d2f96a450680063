"""The class variable y: the conditional VAE (y observed) and the class-indexed prior it shares
with the clustering VAE (y inferred). Python API, files, training, and the CLI's refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clitools import FAST, assert_one_line_error, assert_same_training, checkpoint, run
from vaekit import VAE, ModelConfig
from vaekit.core.config import ConfigError, from_dict, to_dict
from vaekit.core.io import load_tensors, save_tensors
from vaekit.core.model import as_labels
from vaekit.core.posterior import DiagonalGaussian
from vaekit.core.priors import ClassGaussian
from vaekit.data import prepare
from vaekit.data.config import DataConfig
from vaekit.train.config import TrainConfig
from vaekit.train.evaluate import conditional_accuracy, evaluate
from vaekit.train.loop import fit

pytestmark = pytest.mark.usefixtures("one_thread")


def cvae(
    prior: str = "normal", *, arch: str = "mlp", latent: int = 4, hidden: int = 32, seed: int = 0
) -> VAE:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        event_shape=(1, 8, 8),
        latent_dim=latent,
        hidden=(hidden,),
        arch=arch,
        conv_channels=(4,),
        conditional=True,
        num_classes=10,
        prior=prior,
    )
    return VAE.from_config(cfg)


@pytest.fixture(scope="module")
def digits():
    return prepare(DataConfig(source="digits"))


# --- the parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_for_a_fixed_z_changing_y_changes_the_decoders_output(arch: str) -> None:
    model = cvae(arch=arch)
    z = torch.randn(5, 4)
    as_3, as_7 = model.decode(z, 3), model.decode(z, 7)
    assert as_3.shape == as_7.shape == (5, 1, 8, 8)
    assert (as_3 - as_7).abs().max() > 1e-3
    torch.testing.assert_close(model.decode(z, torch.full((5,), 3)), as_3)  # int == per-row
    x = torch.rand(5, 1, 8, 8)
    assert not torch.equal(model.encode(x, 3)[0], model.encode(x, 7)[0])  # q(z|x,y) sees y


def test_conditional_and_unconditional_models_refuse_the_wrong_call() -> None:
    model, plain = cvae(), VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=4))
    x, z = torch.rand(3, 1, 8, 8), torch.randn(3, 4)
    for call in (
        lambda: model.encode(x),
        lambda: model.decode(z),
        lambda: model.sample(3),
        lambda: model.elbo(x),
        lambda: model.reconstruct(x),
        lambda: model.log_likelihood(x, k=2),
    ):
        with pytest.raises(ValueError, match="conditional on a class y") as e:
            call()
        assert "\n" not in str(e.value)
    for call in (
        lambda: plain.encode(x, 1),
        lambda: plain.decode(z, 1),
        lambda: plain.sample(3, y=1),
        lambda: plain.elbo(x, torch.zeros(3, dtype=torch.long)),
    ):
        with pytest.raises(ValueError, match="not conditional and takes no labels"):
            call()


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (torch.tensor([0.0, math.nan, 1.0]), "whole numbers"),
        (np.array([0.5, 1.0, 2.0]), "whole numbers"),
        (torch.tensor([0, 1, 10]), "label 10 is out of range"),
        (torch.tensor([0, -1, 1]), "label -1 is out of range"),
        (torch.tensor([0, 1]), "2 labels for 3 examples"),
        (torch.zeros(3, 2, dtype=torch.long), "one per example"),
        (torch.tensor([True, False, True]), "integer class indices"),
    ],
)
def test_bad_labels_are_refused_in_one_line(y, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        as_labels(y, 10, 3)
    with pytest.raises(ValueError, match=match):
        cvae().elbo(torch.rand(3, 1, 8, 8), y)


def test_class_prior_kl_is_the_closed_form_kl_to_its_component() -> None:
    prior = ClassGaussian(3, 4, learn_variance=True, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        prior.logvars.uniform_(-1, 1)
    q = DiagonalGaussian(torch.randn(6, 3), torch.randn(6, 3) * 0.5)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    lv = prior.logvars[y]
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(q.mean, q.std),
        torch.distributions.Normal(prior.means[y], torch.exp(0.5 * lv)),
    ).sum(-1)
    torch.testing.assert_close(prior.kl(q, y), ref)
    # log p(z|y) picks the component, for (S, batch, latent) samples too
    z = q.rsample(5)
    comp = prior.component_log_prob(z)
    torch.testing.assert_close(
        prior.log_prob(z, y), comp.gather(-1, y.expand(5, 6)[..., None])[..., 0]
    )


def test_inferred_class_rate_matches_a_monte_carlo_estimate_of_the_same_bound() -> None:
    """rate(y inferred) = E_q(y|x)[KL(q(z|x)||p(z|y))] + KL(q(y|x)||p(y)), with q(y|x) the
    closed-form responsibilities: checked against sampling z ~ q(z|x), y ~ q(y|x)."""
    g = torch.Generator().manual_seed(0)
    prior = ClassGaussian(2, 3, learn_variance=True, learn_weights=True, generator=g)
    with torch.no_grad():
        prior.logvars.copy_(torch.randn(3, 2, generator=g) * 0.3)
        prior.logits.copy_(torch.randn(3, generator=g))
    q = DiagonalGaussian(torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g) * 0.3 - 1)
    log_qy = prior.class_log_posterior(q)  # (4, 3)
    torch.testing.assert_close(log_qy.exp().sum(-1), torch.ones(4))
    n = 400_000
    z = q.rsample(n, generator=g)  # (n, 4, 2)
    y = torch.multinomial(log_qy.exp(), n, replacement=True, generator=g).T  # (n, 4)
    log_p = prior.log_prob(z, y) + prior.log_weights()[y]
    log_q = q.log_prob(z) + log_qy.gather(-1, y.T).T
    mc = (log_q - log_p).mean(0)
    torch.testing.assert_close(prior.kl(q), mc, atol=0.02, rtol=0)
    # a looser bound than the marginal's KL(q(z|x) || p(z)), never tighter
    marginal = (q.log_prob(z) - prior.log_prob(z)).mean(0)
    assert (prior.kl(q) >= marginal - 0.02).all()


def test_with_a_point_posterior_q_y_is_the_responsibility_of_its_mean() -> None:
    prior = ClassGaussian(2, 3, learn_variance=True, learn_weights=True)
    q = DiagonalGaussian(torch.randn(5, 2), torch.full((5, 2), -16.0))
    resp = torch.log_softmax(prior.component_log_prob(q.mean) + prior.log_weights(), -1)
    torch.testing.assert_close(prior.class_log_posterior(q), resp, atol=1e-4, rtol=0)


def test_class_prior_samples_come_from_the_asked_component() -> None:
    prior = ClassGaussian(2, 3)
    z = prior.sample(20_000, y=torch.full((20_000,), 2), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z.mean(0), prior.means[2].detach(), atol=0.03, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(2), atol=0.03, rtol=0)


# --- training, files --------------------------------------------------------------------------


def test_a_short_training_generates_the_requested_class_far_above_chance(digits) -> None:
    model = cvae(latent=8, hidden=64)
    fit(
        model,
        digits.train.x,
        None,
        TrainConfig(epochs=30, seed=0),
        y_train=digits.train.y,
        progress=False,
    )
    got = conditional_accuracy(
        model, digits.train.x, digits.train.y, digits.test.x, digits.test.y, per_class=30
    )
    assert got["classifier_test_accuracy"] > 0.9  # the judge reads real digits
    assert got["conditional_accuracy"] > 0.5  # chance is 0.1
    figures = evaluate(model, digits.test.x, digits.test.y, k=10)
    assert figures["conditional"] and figures["log_likelihood"] < 0


@pytest.mark.parametrize("prior", ["normal", "class"])
def test_save_and_load_give_identical_outputs(tmp_path: Path, prior: str) -> None:
    model = cvae(prior)
    model.save(tmp_path / "m.safetensors")
    loaded = VAE.load(tmp_path / "m.safetensors")
    assert loaded.config == model.config and loaded.config.prior == prior
    x, y, z = torch.rand(6, 1, 8, 8), torch.arange(6), torch.randn(6, 4)
    for a, b in zip(model.encode(x, y), loaded.encode(x, y), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(model.decode(z, y), loaded.decode(z, y), rtol=0, atol=0)
    g = [torch.Generator().manual_seed(5) for _ in range(2)]
    torch.testing.assert_close(model.sample(6, y, g[0]), loaded.sample(6, y, g[1]))


def test_config_round_trips_and_old_model_files_still_load(tmp_path: Path) -> None:
    cfg = cvae("class").config
    assert from_dict(ModelConfig, json.loads(json.dumps(to_dict(cfg))), strict=True) == cfg
    # a file written before the class variable existed has no such fields: defaults apply
    plain = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=2))
    header = to_dict(plain.config)
    for name in ("num_classes", "conditional", "class_names"):
        del header[name]
    save_tensors(
        tmp_path / "old.safetensors",
        plain.state_dict(),
        {"format": "vaekit.model/1", "model": header},
    )
    assert VAE.load(tmp_path / "old.safetensors").config == plain.config
    with pytest.raises(ConfigError, match="set conditional=True"):
        ModelConfig(prior="class", num_classes=3)
    with pytest.raises(ConfigError, match="needs num_classes >= 2"):
        VAE.from_config(ModelConfig(conditional=True))


def test_bf16_training_of_a_conditional_model(digits) -> None:
    model = cvae("class")
    history = fit(
        model,
        digits.train.x[:256],
        digits.val.x,
        TrainConfig(epochs=2, precision="bf16"),
        y_train=digits.train.y[:256],
        y_val=digits.val.y,
        progress=False,
    )
    assert all(math.isfinite(r["val_loss"]) for r in history)
    with pytest.raises(ValueError, match="validation labels"):
        fit(
            model,
            digits.train.x[:64],
            digits.val.x,
            TrainConfig(epochs=1),
            y_train=digits.train.y[:64],
            y_val=None,
            progress=False,
        )


# --- the CLI ------------------------------------------------------------------------------------

COND = ["--conditional", "--latent-dim", "4", "--epochs", "2", *FAST]


def test_conditional_run_from_the_cli(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cvae"
    rc, stdout, err = run(
        capsys, "train", "--data", "digits", "--out", out, "--conditional-prior", "class", *COND
    )
    assert rc == 0, err
    assert "log p(x|y)" in stdout and "conditional accuracy" in stdout
    saved = json.loads((out / "config.json").read_text())["model"]
    assert saved["conditional"] and saved["num_classes"] == 10 and saved["prior"] == "class"
    rc, stdout, err = run(capsys, "evaluate", out, "--json", "--k", 3)
    figures = json.loads(stdout)
    assert figures["conditional"] is True and 0 <= figures["conditional_accuracy"] <= 1
    rc, _, err = run(capsys, "sample", out, "--label", 3, "-n", 5, "--out", tmp_path / "s.npz")
    assert rc == 0, err
    with np.load(tmp_path / "s.npz") as f:
        assert f["x"].shape == (5, 1, 8, 8) and (f["y"] == 3).all()
    rc, _, err = run(capsys, "encode", out, "--data", "digits", "--out", tmp_path / "e.npz")
    assert rc == 0, err
    rc, _, err = run(capsys, "reconstruct", out, "--data", "digits", "--out", tmp_path / "r.png")
    assert rc == 0, err
    rc, _, err = run(capsys, "plot", out)
    assert rc == 0, err
    assert (out / "classes.png").is_file() and (out / "style.png").is_file()


def test_resume_of_a_conditional_run_matches_an_uninterrupted_one(tmp_path: Path, capsys) -> None:
    common = ["--data", "digits", "--conditional", "--latent-dim", "3", "--seed", 2, *FAST]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run(capsys, "train", *common, "--out", straight, "--epochs", 3)[0] == 0
    assert run(capsys, "train", *common, "--out", resumed, "--epochs", 1)[0] == 0
    assert checkpoint(resumed)[1]["state"]["epoch"] == 1
    rc, _, err = run(
        capsys,
        "train",
        "--out",
        resumed,
        "--resume",
        "--epochs",
        3,
        "--quiet",
        "--no-pictures",
        "--k",
        5,
    )
    assert rc == 0, err
    assert_same_training(straight, resumed)


def test_class_names_from_folders_are_kept_and_accepted_by_sample(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    for name, level in (("cats", 40), ("dogs", 200)):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(level, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / name / f"{i}.png")
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--data", tmp_path / "img", "--out", out, *COND)
    assert rc == 0, err
    _, meta = load_tensors(out / "model.safetensors")
    assert meta["model"]["class_names"] == ["cats", "dogs"]
    rc, _, err = run(capsys, "sample", out, "--label", "dogs", "-n", 2, "--out", tmp_path / "d.npz")
    assert rc == 0, err
    rc, _, err = run(
        capsys, "sample", out, "--label", "birds", "-n", 2, "--out", tmp_path / "b.npz"
    )
    assert "not a class of this run; its classes are cats, dogs" in assert_one_line_error(rc, err)
    assert not (tmp_path / "b.npz").exists()
    rc, _, err = run(capsys, "encode", out, "--data", tmp_path / "img", "--out", tmp_path / "e.csv")
    assert rc == 0, err
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert lines[0].endswith(",label") and {r.rsplit(",", 1)[1] for r in lines[1:]} == {
        "cats",
        "dogs",
    }


def _npz(path: Path, y) -> Path:
    x = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    np.savez(path, x=x, y=y) if y is not None else np.savez(path, x=x)
    return path


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (None, "has no labels, which a conditional model needs"),
        (np.arange(39) % 3, "39 labels but 40 examples"),
        (np.where(np.arange(40) == 5, np.nan, np.arange(40) % 3), "non-integer values"),
        (np.arange(40) % 3 + 0.5, "non-integer values"),
    ],
    ids=["no-labels", "wrong-length", "nan", "non-integer"],
)
def test_bad_training_labels_are_one_line_errors_and_write_nothing(
    tmp_path: Path, capsys, labels, message: str
) -> None:
    data = _npz(tmp_path / "d.npz", labels)
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--data", data, "--out", out, *COND)
    assert message in assert_one_line_error(rc, err)
    assert not out.exists()


def test_label_errors_of_sample(tmp_path: Path, capsys) -> None:
    plain, cond = tmp_path / "plain", tmp_path / "cond"
    assert run(capsys, "train", "--data", "digits", "--out", plain, *COND[1:])[0] == 0
    assert run(capsys, "train", "--data", "digits", "--out", cond, *COND)[0] == 0
    target = tmp_path / "s.png"
    for where, label, message in (
        (plain, "3", "is not a conditional model, so --label has no meaning"),
        (cond, "10", "--label 10 is out of range: this run has classes 0..9"),
        (cond, "-1", "--label -1 is out of range"),
        (cond, "seven", "--label 'seven' is not a class of this run"),
    ):
        rc, _, err = run(capsys, "sample", where, "--label", label, "--out", target)
        assert message in assert_one_line_error(rc, err)
        assert not target.exists()
    rc, _, err = run(
        capsys,
        "train",
        "--data",
        "digits",
        "--out",
        tmp_path / "x",
        "--conditional-prior",
        "class",
        *COND[1:],
    )
    assert "--conditional" in assert_one_line_error(rc, err)
    assert not (tmp_path / "x").exists()


def test_a_conditional_model_defaults_to_the_class_full_prior() -> None:
    assert ModelConfig(conditional=True, num_classes=3).prior == "class-full"
    assert ModelConfig().prior == "normal"
    assert ModelConfig(conditional=True, num_classes=3, prior="normal").prior == "normal"


def test_the_cli_picks_class_full_unless_a_prior_is_chosen(tmp_path: Path, capsys) -> None:
    small = ["--data", "digits", "--conditional", "--epochs", 1, "--latent-dim", 2, *FAST]

    def prior(name: str) -> str:
        return json.loads((tmp_path / name / "config.json").read_text())["model"]["prior"]

    rc, _, err = run(capsys, "train", *small, "--out", tmp_path / "default")
    assert rc == 0, err
    assert prior("default") == "class-full"
    out = tmp_path / "normal"
    rc, _, err = run(capsys, "train", *small, "--conditional-prior", "normal", "--out", out)
    assert rc == 0, err
    assert prior("normal") == "normal"
    # a --config file that names the prior keeps it
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"model": {"conditional": True, "prior": "class"}}))
    rc, _, err = run(capsys, "train", *small, "--config", named, "--out", tmp_path / "named")
    assert rc == 0, err
    assert prior("named") == "class"
    # resuming keeps the prior the run was trained with
    rc, _, err = run(capsys, "train", "--out", out, "--resume", "--epochs", 2, *FAST)
    assert rc == 0, err
    assert prior("normal") == "normal"
