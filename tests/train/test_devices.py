"""Devices: the names users give, the one-line refusals, and device-free files. Runs on the
CPU everywhere; the tests marked `gpu` run only where torch sees a CUDA GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clitools import FAST, assert_one_line_error, run
from vaekit import VAE, ModelConfig, TrainConfig
from vaekit.core.io import load_tensors
from vaekit.data import prepare
from vaekit.data.config import DataConfig
from vaekit.train.devices import DeviceError, resolve_device
from vaekit.train.loop import fit

pytestmark = pytest.mark.usefixtures("one_thread")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_auto_picks_cuda_then_mps_then_the_cpu(monkeypatch, no_accelerator) -> None:
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_explicit_names(two_gpus) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)


@pytest.mark.parametrize(
    ("name", "fixture", "message"),
    [
        ("cuda", "no_accelerator", "torch sees no CUDA GPU here"),
        ("cuda:0", "no_accelerator", "torch sees no CUDA GPU here"),
        ("cuda:7", "two_gpus", "this machine has 2 CUDA GPU(s), cuda:0 to cuda:1"),
        ("mps", "no_accelerator", "torch reports no MPS"),
        ("nonsense", "no_accelerator", "is not a device name; use auto, cpu, cuda, cuda:N or mps"),
        ("tpu", "no_accelerator", "is not a device name"),
    ],
)
def test_a_missing_device_is_a_one_line_error(
    request, tmp_path: Path, capsys, name: str, fixture: str, message: str
) -> None:
    request.getfixturevalue(fixture)
    with pytest.raises(DeviceError, match=r"^device") as e:
        resolve_device(name)
    assert message in str(e.value) and "\n" not in str(e.value)
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--data", "digits", "--out", out, "--device", name, *FAST)
    assert message in assert_one_line_error(rc, err)
    assert not out.exists()  # nothing written


def test_cpu_and_auto_train_todays_weights_bit_for_bit(tmp_path: Path, capsys) -> None:
    """Without a GPU, --device cpu, --device auto and the Python API's default (the model's
    own device) give the same weights, bit for bit."""
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("auto is not the CPU here")
    common = ["--data", "digits", "--latent-dim", "3", "--epochs", "2", "--seed", 4, *FAST]
    for name in ("cpu", "auto"):
        rc, stdout, err = run(capsys, "train", *common, "--out", tmp_path / name, "--device", name)
        assert rc == 0, err
        assert "device: cpu" in stdout
    a = load_tensors(tmp_path / "cpu" / "model.safetensors")[0]
    b = load_tensors(tmp_path / "auto" / "model.safetensors")[0]
    splits = prepare(DataConfig(source="digits"))
    torch.manual_seed(4)
    model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=3, hidden=(64, 32)))
    fit(model, splits.train.x, splits.val.x, TrainConfig(epochs=2, seed=4), progress=False)
    for name, t in a.items():
        assert torch.equal(t, b[name]), name
        assert torch.equal(t, model.state_dict()[name]), name
    figures = json.loads((tmp_path / "auto" / "evaluation.json").read_text())
    assert figures["device"] == "cpu"


def test_checkpoints_hold_no_device_and_resume_anywhere(tmp_path: Path) -> None:
    """Every tensor of a checkpoint is stored from the CPU, with nothing naming a device; a
    fit told device='cpu' resumes from one written by a fit left on the model's device to the
    weights of an uninterrupted run."""
    splits = prepare(DataConfig(source="digits"))
    x, v = splits.train.x[:300], splits.val.x

    def fresh() -> VAE:
        torch.manual_seed(0)
        return VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=2, hidden=(16,)))

    straight = fresh()
    fit(straight, x, v, TrainConfig(epochs=3, seed=1), progress=False)
    run_dir = tmp_path / "run"
    fit(fresh(), x, v, TrainConfig(epochs=1, seed=1), run_dir=run_dir, progress=False)
    tensors, meta = load_tensors(run_dir / "checkpoint.safetensors")
    assert all(t.device.type == "cpu" for t in tensors.values())
    assert "cuda" not in json.dumps(meta) and "rng.cuda" not in tensors  # written on the CPU
    resumed = fresh()
    fit(
        resumed,
        x,
        v,
        TrainConfig(epochs=3, seed=1),
        run_dir=run_dir,
        resume=True,
        progress=False,
        device="cpu",
    )
    for name, t in straight.state_dict().items():
        assert torch.equal(t, resumed.state_dict()[name]), name


# --- on a GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
@needs_gpu
def test_gpu_training_files_load_on_the_cpu_and_resume_there(tmp_path: Path, capsys) -> None:
    common = ["--data", "digits", "--latent-dim", "3", "--seed", 2, *FAST]
    gpu = tmp_path / "gpu"
    rc, stdout, err = run(capsys, "train", *common, "--out", gpu, "--epochs", 2, "--device", "cuda")
    assert rc == 0, err
    assert "device: cuda" in stdout
    tensors, _ = load_tensors(gpu / "checkpoint.safetensors")
    assert "rng.cuda" in tensors and all(t.device.type == "cpu" for t in tensors.values())
    model = VAE.load(gpu / "model.safetensors")  # on the CPU
    assert next(model.parameters()).device.type == "cpu"
    rc, _, err = run(
        capsys,
        "train",
        "--out",
        gpu,
        "--resume",
        "--epochs",
        4,
        "--device",
        "cpu",
        "--quiet",
        "--no-pictures",
        "--k",
        5,
    )
    assert rc == 0, err
    rc, stdout, err = run(capsys, "evaluate", gpu, "--json", "--k", 5, "--device", "cuda")
    assert rc == 0, err
    assert json.loads(stdout)["elbo"] < 0


def _smooth_fixed_noise(self, samples=1, generator=None):
    """Posterior "noise" as a smooth function of the posterior mean: the same on every device
    (each device has its own random generator, so real noise differs between them)."""
    eps = torch.tanh(3.0 * self.mean.detach()).expand(samples, *self.mean.shape)
    return self.mean + self.std * eps


@pytest.mark.gpu
@needs_gpu
def test_gpu_and_cpu_training_agree_within_float_tolerance(monkeypatch) -> None:
    from vaekit.core.posterior import DiagonalGaussian

    monkeypatch.setattr(DiagonalGaussian, "rsample", _smooth_fixed_noise)
    splits = prepare(DataConfig(source="digits"))
    models = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=2, hidden=(32,)))
        fit(
            model,
            splits.train.x,
            None,
            TrainConfig(epochs=1, seed=0, compile="off"),
            progress=False,
            device=device,
        )
        models.append(model.cpu())
    x = splits.test.x[:50]
    a, b = (m.encode(x)[0] for m in models)
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
@needs_gpu
def test_gpu_graphed_step_trains_the_eager_weights_within_float_tolerance() -> None:
    """On a GPU, --compile auto captures the step in CUDA graphs; it follows the eager run's
    noise (fallback_random) and ends at its weights within float tolerance."""
    splits = prepare(DataConfig(source="digits"))
    weights = []
    for mode in ("off", "auto"):
        torch.manual_seed(0)
        model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=3, hidden=(64,)))
        cfg = TrainConfig(epochs=2, seed=0, batch_size=128, warmup_epochs=1, compile=mode)
        fit(model, splits.train.x, None, cfg, progress=False, device="cuda")
        weights.append({k: v.cpu() for k, v in model.state_dict().items()})
    for name, t in weights[0].items():
        torch.testing.assert_close(weights[1][name], t, atol=1e-4, rtol=1e-4)


# --- the compiled step -----------------------------------------------------------------------


def _digits_fit(cfg: TrainConfig, n: int = 600) -> VAE:
    splits = prepare(DataConfig(source="digits"))
    torch.manual_seed(0)
    model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=3, hidden=(32,)))
    fit(model, splits.train.x[:n], splits.val.x, cfg, progress=False)
    return model


def test_the_compiled_step_trains_the_eager_weights_within_float_tolerance() -> None:
    """--compile on (torch.compile of the step; on the CPU without CUDA graphs) follows the
    eager run's noise and ends at its weights within float tolerance; the last batch of each
    epoch has another size (600 rows, batch 128), so the varying batch is covered too."""
    common = dict(epochs=2, seed=3, batch_size=128, warmup_epochs=1)  # beta varies per step
    eager = _digits_fit(TrainConfig(**common, compile="off"))
    compiled = _digits_fit(TrainConfig(**common, compile="on"))
    for name, t in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[name], t, atol=1e-4, rtol=1e-4)


def test_auto_compiles_only_on_cuda() -> None:
    from vaekit.train.steps import compiles

    cfg = TrainConfig()
    assert cfg.compile == "auto"
    assert compiles(cfg, torch.device("cuda", 0))
    assert not compiles(cfg, torch.device("cuda", 0), distributed=True)  # not measured yet
    assert not compiles(cfg, torch.device("cpu")) and not compiles(cfg, torch.device("mps"))
    assert compiles(TrainConfig(compile="on"), torch.device("cpu"))
    assert not compiles(TrainConfig(compile="off"), torch.device("cuda", 0))


def test_a_failing_compiler_falls_back_to_eager_or_is_one_line(monkeypatch) -> None:
    """Where torch.compile fails: `auto` warns once and trains eagerly (the eager weights,
    bit for bit); `on` stops with a one-line CompileError naming --compile off."""
    from vaekit.train import steps

    def broken(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("no C++ compiler found\nlong inductor traceback")

        return call

    monkeypatch.setattr(steps.torch, "compile", broken)
    monkeypatch.setattr(steps, "compiles", lambda cfg, device, *_: cfg.compile != "off")
    eager = _digits_fit(TrainConfig(epochs=1, compile="off"), n=300)
    with pytest.warns(UserWarning, match="torch.compile failed .no C.. compiler found.; training"):
        fallback = _digits_fit(TrainConfig(epochs=1, compile="auto"), n=300)
    for name, t in eager.state_dict().items():
        assert torch.equal(fallback.state_dict()[name], t), name
    with pytest.raises(steps.CompileError, match=r"^torch.compile failed here .* --compile off$"):
        _digits_fit(TrainConfig(epochs=1, compile="on"), n=300)


def test_every_model_command_refuses_a_missing_device(tmp_path: Path, capsys, no_accelerator):
    """--device on the commands beyond train: each a one-line error, nothing written."""
    trained = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--data", "digits", "--out", trained, "--epochs", 1, *FAST)
    assert rc == 0, err
    before = sorted(p.name for p in trained.iterdir())
    out = tmp_path / "out.csv"
    commands = [
        ["evaluate", trained],
        ["sample", trained, "--out", tmp_path / "s.png"],
        ["reconstruct", trained, "--data", "digits", "--out", tmp_path / "r.png"],
        ["encode", trained, "--data", "digits", "--out", out],
        ["score", trained, "--data", "digits", "--out", out],
        ["cluster", "--data", "digits", "--out", tmp_path / "clusters", "--k", 3],
        ["serve", trained],
        ["plot", trained],
    ]
    for argv in commands:
        rc, _, err = run(capsys, *argv, "--device", "cuda")
        assert "torch sees no CUDA GPU here" in assert_one_line_error(rc, err), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in trained.iterdir()) == before
