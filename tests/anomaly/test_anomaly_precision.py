"""VAEDetector(precision="auto"): bf16 training only where it is faster (AMX and a big MLP),
fp32 scoring everywhere, the precision used kept in the file. `native_bf16` is patched so
both branches run on any machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from vaekit.anomaly import estimator as anomaly
from vaekit.anomaly.estimator import VAEDetector
from vaekit.core import precision as models
from vaekit.core.config import ModelConfig
from vaekit.core.model import VAE
from vaekit.core.precision import resolve_precision

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
# digits of one class, 8x8, and a detector small enough to train in a second
FAST = {"hidden": (256,), "latent_dim": 4, "epochs": 20, "batch_size": 64}


@pytest.fixture
def amx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "native_bf16", lambda device: device.type == "cpu")


@pytest.fixture
def no_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "native_bf16", lambda device: False)


@pytest.fixture
def bf16_pays(amx: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """As if bf16 were faster for FAST's small network too."""
    monkeypatch.setattr(models, "BF16_MIN_WEIGHTS", 0)


def images() -> np.ndarray:
    d = load_digits()
    return (d.data[d.target == 0] / 16.0).reshape(-1, 8, 8).astype(np.float32)


def vae(d: int, hidden: tuple[int, ...], **kw: object) -> VAE:
    return VAE.from_config(ModelConfig(event_shape=(d,), latent_dim=16, hidden=hidden, **kw))


@pytest.mark.usefixtures("amx")
def test_auto_is_bf16_only_for_a_big_mlp_where_bf16_is_native() -> None:
    mnist = vae(784, (512, 256))  # 1.08M weights: VAEDetector's default on MNIST
    assert resolve_precision("auto", mnist, CPU) == "bf16"
    assert resolve_precision("auto", vae(64, (512, 256)), CPU) == "fp32"  # the digits: 342k
    assert resolve_precision("auto", vae(30, (64, 32)), CPU) == "fp32"  # a table's
    conv = VAE.from_config(ModelConfig(event_shape=(1, 28, 28), arch="conv", hidden=(512,)))
    assert resolve_precision("auto", conv, CPU) == "fp32"  # not measured: fp32
    assert resolve_precision("auto", mnist, torch.device("cuda")) == "fp32"


@pytest.mark.usefixtures("no_amx")
def test_auto_is_fp32_without_native_bf16_and_explicit_choices_stand() -> None:
    assert resolve_precision("auto", vae(784, (512, 256)), CPU) == "fp32"
    assert resolve_precision("bf16", vae(30, (64,)), CPU) == "bf16"
    assert resolve_precision("fp32", vae(784, (512, 256)), CPU) == "fp32"
    with pytest.raises(ValueError, match="not one of auto, fp32, bf16"):
        resolve_precision("fp16", vae(30, (64,)), CPU)


def test_native_bf16_is_a_bool_on_this_machine() -> None:
    assert models.native_bf16(CPU) in (True, False)
    assert models.native_bf16(torch.device("meta")) is False


@pytest.mark.usefixtures("bf16_pays")
def test_auto_trains_in_bf16_scores_in_fp32_and_the_file_keeps_both(tmp_path: Path) -> None:
    x = images()
    det = VAEDetector(**FAST).fit(x)
    assert det.get_params()["precision"] == "auto"
    assert det.precision_ == "bf16" and det.scoring_precision == "fp32"
    xt = torch.from_numpy(det.preprocessor_.transform(x[:, None]))  # (n, 1, 8, 8)
    fp32 = anomaly.score_samples(det.model_, xt, det.score_, seed=det.random_state)
    assert np.array_equal(det.decision_scores_, fp32.double().numpy())
    bf16 = anomaly.score_samples(det.model_, xt, det.score_, precision="bf16")
    assert not np.array_equal(det.decision_scores_, bf16.double().numpy())

    path = tmp_path / "det.safetensors"
    det.save(path)
    back = VAEDetector.load(path)
    assert back.precision_ == "bf16" and back.scoring_precision == "fp32"
    assert np.array_equal(back.decision_function(x), det.decision_function(x))


@pytest.mark.usefixtures("amx")
def test_auto_trains_small_networks_in_fp32_and_explicit_fp32_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(200, 6)).astype(np.float32)
    assert VAEDetector(epochs=2).fit(table).precision_ == "fp32"  # hidden (64, 32)
    assert VAEDetector(**FAST).fit(images()).precision_ == "fp32"  # 37k weights
    monkeypatch.setattr(models, "BF16_MIN_WEIGHTS", 0)
    assert VAEDetector(precision="fp32", **FAST).fit(images()).precision_ == "fp32"


@pytest.mark.usefixtures("bf16_pays")
def test_auto_and_fp32_train_different_weights_from_the_same_seed() -> None:
    """bf16 training is what auto changed: the weights differ, the ranking barely does."""
    x = images()
    auto, fp32 = VAEDetector(**FAST).fit(x), VAEDetector(precision="fp32", **FAST).fit(x)
    w_auto = next(auto.model_.parameters())
    w_fp32 = next(fp32.model_.parameters())
    assert not torch.equal(w_auto, w_fp32)
    a, b = auto.decision_scores_, fp32.decision_scores_
    assert np.corrcoef(a, b)[0, 1] > 0.9


def test_unknown_precision_is_refused_before_training() -> None:
    with pytest.raises(ValueError, match="precision must be auto, fp32 or bf16, got 'fp16'"):
        VAEDetector(precision="fp16", **FAST).fit(images())
