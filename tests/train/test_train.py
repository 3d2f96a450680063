"""vaekit.train through the Python API: resume, Ctrl-C, non-finite losses, early stopping, and
the issue's quality target on the digits."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import pytest
import torch

import vaekit.train.loop as train_module
from vaekit.cli import main
from vaekit.core.config import ModelConfig
from vaekit.core.io import load_tensors
from vaekit.core.model import VAE
from vaekit.data import prepare
from vaekit.data.config import DataConfig
from vaekit.train.config import TrainConfig
from vaekit.train.loop import COLUMNS, TrainingError, TrainingInterrupted, evaluate_loss, fit

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits' train and validation splits, (n, 1, 8, 8) in [0, 1]."""
    splits = prepare(DataConfig(source="digits"))
    return splits.train.x, splits.val.x


def small_model(seed: int = 0, latent: int = 4) -> VAE:
    torch.manual_seed(seed)
    return VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=latent, hidden=(32,)))


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_equal_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def saved_model(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run_dir / "model.safetensors")[0]


def saved_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = load_tensors(run_dir / "checkpoint.safetensors")
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, meta


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == list(COLUMNS)
        return list(reader)


def without_wallclock(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


# --- resume --------------------------------------------------------------------------------------


def test_fit_resume_is_bit_identical(digits, tmp_path: Path) -> None:
    """Dynamic binarization, beta warm-up and gradient clipping all depend on the step and the
    RNG: 2 epochs + resume to 5 must equal 5 epochs straight, bit for bit."""
    x_train, x_val = digits
    cfg = dict(batch_size=100, seed=5, warmup_epochs=3, grad_clip=5.0, lr=2e-3)

    straight = small_model()
    h_straight = fit(
        straight,
        x_train,
        x_val,
        TrainConfig(epochs=5, **cfg),
        run_dir=tmp_path / "a",
        progress=False,
        dynamic_binarize=True,
    )

    first = small_model()
    fit(
        first,
        x_train,
        x_val,
        TrainConfig(epochs=2, **cfg),
        run_dir=tmp_path / "b",
        progress=False,
        dynamic_binarize=True,
    )
    assert saved_checkpoint(tmp_path / "b")[1]["state"]["epoch"] == 2
    torch.manual_seed(12345)  # the global RNG in between must not matter: the checkpoint has it
    resumed = small_model(seed=99)  # nor the fresh weights: they are replaced
    h_resumed = fit(
        resumed,
        x_train,
        x_val,
        TrainConfig(epochs=5, **cfg),
        run_dir=tmp_path / "b",
        resume=True,
        progress=False,
        dynamic_binarize=True,
    )

    assert [r["epoch"] for r in h_resumed] == [1, 2, 3, 4, 5]
    assert without_wallclock(h_resumed) == without_wallclock(h_straight)
    assert_equal_weights(weights(resumed), weights(straight))
    assert_equal_weights(saved_model(tmp_path / "a"), saved_model(tmp_path / "b"))
    ca, ma = saved_checkpoint(tmp_path / "a")
    cb, mb = saved_checkpoint(tmp_path / "b")
    assert_equal_weights(ca, cb)
    sa, sb = ma["state"], mb["state"]
    assert without_wallclock(sa.pop("history")) == without_wallclock(sb.pop("history"))
    assert sa == sb
    assert without_wallclock(metrics_rows(tmp_path / "a")) == without_wallclock(
        metrics_rows(tmp_path / "b")
    )
    # the beta warm-up really ran (so the comparison covered it)
    assert h_straight[0]["beta"] < h_straight[-1]["beta"] == 1.0


def test_resume_needs_a_checkpoint(digits, tmp_path: Path) -> None:
    x_train, x_val = digits
    with pytest.raises(ValueError, match="resume"):
        fit(small_model(), x_train, x_val, TrainConfig(epochs=1), run_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="resume"):
        fit(small_model(), x_train, x_val, TrainConfig(epochs=1), resume=True)


def interrupted_in_epoch(model: VAE, done: list[int], epoch: int) -> VAE:
    """`model` whose training loss raises KeyboardInterrupt (Ctrl-C) in `epoch`, where `done`
    lists the finished epochs (fill it with fit's on_epoch)."""
    original = model.loss

    def loss(*args, **kw):
        if len(done) == epoch - 1 and model.training:
            raise KeyboardInterrupt
        return original(*args, **kw)

    model.loss = loss  # type: ignore[method-assign]
    return model


@pytest.mark.parametrize("where", ["step", "validation"])
def test_interrupt_saves_and_resumes(
    digits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Ctrl-C in epoch 3 (in a step, or in the validation pass): TrainingInterrupted naming
    --resume, epochs 1-2 on disk, and resuming gives the uninterrupted run's weights."""
    monkeypatch.setattr(train_module, "CHECKPOINT_EVERY_S", 0.0)  # a save after every epoch
    x_train, x_val = digits
    cfg = TrainConfig(epochs=4, batch_size=128, seed=2)
    done: list[int] = []

    if where == "step":
        model = interrupted_in_epoch(small_model(), done, 3)
    else:
        model = small_model()
        original_eval = train_module.loss_sums  # the validation pass's sums

        def evaluate(*args, **kw):
            if len(done) == 2:
                raise KeyboardInterrupt
            return original_eval(*args, **kw)

        monkeypatch.setattr(train_module, "loss_sums", evaluate)

    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as excinfo:
        fit(
            model,
            x_train,
            x_val,
            cfg,
            run_dir=run_dir,
            progress=False,
            on_epoch=lambda row: done.append(int(row["epoch"])),
        )
    assert isinstance(excinfo.value, KeyboardInterrupt)  # plain Ctrl-C handlers still work
    msg = str(excinfo.value)
    assert "\n" not in msg and "--resume" in msg and "epoch 3" in msg
    assert saved_checkpoint(run_dir)[1]["state"]["epoch"] == 2
    assert len(metrics_rows(run_dir)) == 2
    monkeypatch.undo()

    resumed = small_model(seed=7)
    fit(resumed, x_train, x_val, cfg, run_dir=run_dir, resume=True, progress=False)
    straight = small_model()
    fit(straight, x_train, x_val, cfg, run_dir=tmp_path / "straight", progress=False)
    assert_equal_weights(weights(resumed), weights(straight))
    assert_equal_weights(saved_checkpoint(run_dir)[0], saved_checkpoint(tmp_path / "straight")[0])


def test_saves_by_time_keep_the_first_and_last_epochs_and_resume_exactly(
    digits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saves come after epoch 1, then once CHECKPOINT_EVERY_S has passed, and after the last
    epoch: with a long interval, Ctrl-C in epoch 4 says epoch 1 is saved, the files agree on
    it, and resuming reaches the uninterrupted run's weights and best model. (That the best
    model is saved when its epoch was not a save: test_early_stopping_keeps_the_best_epoch.)"""
    monkeypatch.setattr(train_module, "CHECKPOINT_EVERY_S", 1e9)
    x_train, x_val = digits
    cfg = TrainConfig(epochs=5, batch_size=128, seed=3)
    done: list[int] = []
    model = interrupted_in_epoch(small_model(), done, 4)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match="epochs up to 1 are saved"):
        fit(model, x_train, x_val, cfg, run_dir=run_dir, progress=False,
            on_epoch=lambda row: done.append(int(row["epoch"])))  # fmt: skip
    assert saved_checkpoint(run_dir)[1]["state"]["epoch"] == 1
    assert len(metrics_rows(run_dir)) == 1

    resumed = small_model(seed=7)
    fit(resumed, x_train, x_val, cfg, run_dir=run_dir, resume=True, progress=False)
    straight = small_model()
    fit(straight, x_train, x_val, cfg, run_dir=tmp_path / "straight", progress=False)
    assert saved_checkpoint(tmp_path / "straight")[1]["state"]["epoch"] == 5  # the last epoch
    assert len(metrics_rows(tmp_path / "straight")) == 5
    assert_equal_weights(weights(resumed), weights(straight))
    assert_equal_weights(saved_model(run_dir), saved_model(tmp_path / "straight"))


# --- non-finite losses ---------------------------------------------------------------------------


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(digits, tmp_path: Path) -> None:
    """From epoch 2 on the loss is inf (its gradients wreck the weights in memory): training
    stops with TrainingError, the checkpoint still holds epoch 1, the model is finite again."""
    x_train, x_val = digits
    model = small_model()
    original = model.loss
    after_epoch_1: dict[str, torch.Tensor] = {}

    def loss(*args, **kw):
        result = original(*args, **kw)
        if after_epoch_1 and model.training:
            return type(result)(*(t * math.inf for t in result))
        return result

    model.loss = loss  # type: ignore[method-assign]

    def on_epoch(row: dict) -> None:
        after_epoch_1.update(weights(model))

    run_dir = tmp_path / "run"
    with pytest.raises(TrainingError) as excinfo:
        fit(
            model,
            x_train,
            x_val,
            TrainConfig(epochs=5, batch_size=128),
            run_dir=run_dir,
            progress=False,
            on_epoch=on_epoch,
        )
    msg = str(excinfo.value)
    assert "\n" not in msg and "epoch 2" in msg and "--lr" in msg and "epoch 1" in msg

    checkpoint, meta = saved_checkpoint(run_dir)
    assert meta["state"]["epoch"] == 1
    assert_equal_weights(checkpoint, after_epoch_1)
    assert all(torch.isfinite(v).all() for v in checkpoint.values())
    assert len(metrics_rows(run_dir)) == 1
    assert_equal_weights(saved_model(run_dir), after_epoch_1)
    # the model in memory went non-finite during epoch 2 and is back at the good weights
    now = weights(model)
    assert all(torch.isfinite(v).all() for v in now.values())
    assert_equal_weights(now, after_epoch_1)
    # and the kept checkpoint resumes (here with the loss fixed)
    model.loss = original  # type: ignore[method-assign]
    history = fit(
        small_model(),
        x_train,
        x_val,
        TrainConfig(epochs=2, batch_size=128),
        run_dir=run_dir,
        resume=True,
        progress=False,
    )
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(math.isfinite(r["train_loss"]) for r in history)


def test_non_finite_loss_in_epoch_1_restores_the_initial_weights(digits, tmp_path: Path) -> None:
    x_train, x_val = digits
    model = small_model()
    initial = weights(model)
    original = model.loss

    def loss(*args, **kw):
        result = original(*args, **kw)
        return type(result)(*(t * math.nan for t in result))

    model.loss = loss  # type: ignore[method-assign]
    with pytest.raises(TrainingError) as excinfo:
        fit(model, x_train, x_val, TrainConfig(epochs=3), run_dir=tmp_path, progress=False)
    msg = str(excinfo.value)
    assert "epoch 1" in msg and "epoch 0" not in msg and "\n" not in msg
    assert not (tmp_path / "checkpoint.safetensors").exists()
    assert_equal_weights(weights(model), initial)


# --- early stopping ------------------------------------------------------------------------------


def test_early_stopping_keeps_the_best_epoch(
    digits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation losses 10, 8, 9, 9.5, ... with patience 2: stop after epoch 4, keep epoch 2."""
    x_train, x_val = digits
    losses = iter([10.0, 8.0, 9.0, 9.5, 1.0, 1.0, 1.0])
    monkeypatch.setattr(train_module, "_validate", lambda *a, **k: [next(losses), 0.5, 0.5])
    model = small_model()
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    run_dir = tmp_path / "run"
    history = fit(
        model,
        x_train,
        x_val,
        TrainConfig(epochs=20, patience=2),
        run_dir=run_dir,
        progress=False,
        on_epoch=lambda row: snapshots.__setitem__(int(row["epoch"]), weights(model)),
    )
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert [r["val_loss"] for r in history] == [10.0, 8.0, 9.0, 9.5]
    assert_equal_weights(saved_model(run_dir), snapshots[2])
    assert_equal_weights(weights(model), snapshots[2])
    assert any(not torch.equal(snapshots[2][k], snapshots[4][k]) for k in snapshots[2])
    checkpoint, meta = saved_checkpoint(run_dir)
    assert meta["state"]["epoch"] == 4 and meta["state"]["best_epoch"] == 2
    assert_equal_weights(checkpoint, snapshots[4])  # the checkpoint is the latest, for resume
    assert len(metrics_rows(run_dir)) == 4


def test_without_validation_there_is_no_early_stopping(digits) -> None:
    x_train, _ = digits
    model = small_model()
    history = fit(model, x_train, None, TrainConfig(epochs=3, patience=1), progress=False)
    assert len(history) == 3
    assert all(math.isnan(r["val_loss"]) for r in history)
    assert not model.training


def test_training_lowers_the_validation_loss(digits) -> None:
    x_train, x_val = digits
    model = small_model()
    before = evaluate_loss(model, x_val)[0]
    history = fit(model, x_train, x_val, TrainConfig(epochs=3, lr=3e-3), progress=False)
    after = evaluate_loss(model, x_val)[0]
    assert after < before
    assert after == pytest.approx(min(r["val_loss"] for r in history), rel=0.05)
    for r in history:
        assert r["train_loss"] == pytest.approx(r["train_rate"] + r["train_distortion"], rel=1e-4)


# --- bad data through the API --------------------------------------------------------------------


def test_with_beta_below_one_the_best_model_is_chosen_by_the_objective_trained(digits) -> None:
    """The validation total weighs the rate by beta, as the training loss does: at beta 0.1 the
    beta-1 ELBO may be best in the first epochs while the objective trained still improves."""
    x_train, x_val = digits
    model = small_model()
    cfg = TrainConfig(epochs=4, lr=3e-3, beta=0.1)
    history = fit(model, x_train, x_val, cfg, progress=False)
    for r in history:
        assert r["val_loss"] == pytest.approx(r["val_distortion"] + 0.1 * r["val_rate"], rel=1e-4)
    _, rate, distortion = evaluate_loss(model, x_val)
    assert distortion + 0.1 * rate == pytest.approx(min(r["val_loss"] for r in history), rel=0.05)


def test_without_validation_the_warm_up_epochs_compare_at_the_beta_they_ramp_to(
    digits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training figures [loss, rate, distortion] at beta 0 then 2 (warm-up to 2): epoch 1's
    loss as logged (10) is the lowest, but at beta 2 it is 10 + 2 * 5 = 20 against epoch 2's
    12, so epoch 2 is the best model."""
    x_train, _ = digits
    n = len(x_train)
    figures = iter([([10.0, 5.0, 10.0], 0.0), ([12.0, 1.0, 10.0], 2.0)])

    def epoch(*args, **kwargs):
        sums, beta = next(figures)
        return torch.tensor(sums) * n, beta

    monkeypatch.setattr(train_module, "_train_epoch", epoch)
    run_dir = tmp_path / "run"
    cfg = TrainConfig(epochs=2, warmup_epochs=1, beta=2.0)
    history = fit(small_model(), x_train, None, cfg, run_dir=run_dir, progress=False)
    assert [r["train_loss"] for r in history] == pytest.approx([10.0, 12.0])
    assert saved_checkpoint(run_dir)[1]["state"]["best_epoch"] == 2


def test_fit_rejects_bad_data(digits) -> None:
    x_train, x_val = digits
    with pytest.raises(ValueError, match="gaussian"):
        fit(small_model(), x_train * 5, x_val, TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="empty"):
        fit(small_model(), x_train[:0], x_val, TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="shape"):
        fit(small_model(), x_train.reshape(len(x_train), -1), None, TrainConfig(epochs=1))


# --- the quality target ------------------------------------------------------------------


@pytest.mark.slow
def test_digits_quality_target(tmp_path: Path) -> None:
    """`vaekit train --data digits --hidden 512,256 --latent-dim 16 --epochs 30 --seed 0`:
    test -ELBO <= 26.0 nats per example (a hand-written loop gets 25.3 on an 80/20 split)."""
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--data",
            "digits",
            "--hidden",
            "512,256",
            "--latent-dim",
            "16",
            "--epochs",
            "30",
            "--seed",
            "0",
            "--out",
            str(out),
            "--quiet",
            "--no-pictures",
            "--k",
            "100",
        ]
    )
    assert rc == 0
    figures = json.loads((out / "evaluation.json").read_text())
    assert figures["split"] == "test"
    assert -figures["elbo"] <= 26.0, figures
    assert figures["log_likelihood"] >= figures["elbo"] - 0.1
    assert len(metrics_rows(out)) == 30


def test_fit_flushes_denormals_in_every_thread_and_restores_them():
    """torch.set_flush_denormal alone covers only the calling thread; fit covers all."""
    from vaekit.train import denormals

    big = torch.full((2_000_000,), 1e-40)  # large enough to be split across threads

    def survivors() -> int:
        # Count by bit pattern: a float comparison would itself flush denormals (DAZ).
        return int(((big * 1.0).view(torch.int32) != 0).sum())

    seen: list[int] = []
    model = VAE.from_config(ModelConfig(event_shape=(4,), hidden=(8,), latent_dim=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit(model, torch.rand(64, 4), None, TrainConfig(epochs=1), progress=False,
            on_epoch=lambda row: seen.append(survivors()))
        after = survivors()
    finally:
        torch.set_num_threads(threads)
    assert seen == [0]  # during training: no denormal survives in any thread
    assert after == big.numel() and not denormals.is_flushing()  # restored afterwards


def test_tensorboard_scalars_are_written_when_tensorboard_is_installed(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = VAE.from_config(ModelConfig(event_shape=(6,), hidden=(8,), latent_dim=2))
    history = fit(model, torch.rand(40, 6), torch.rand(10, 6), TrainConfig(epochs=2),
                  run_dir=tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train_loss", "val_loss", "train_rate", "val_distortion"} <= tags
    logged = [e.value for e in events.Scalars("val_loss")]
    assert logged == pytest.approx([row["val_loss"] for row in history])


def test_bf16_copies_match_autocast_and_leave_the_model_fp32():
    """--precision bf16: the networks run on bf16 copies; grads land on the fp32 parameters."""
    from vaekit.core.precision import LowPrecision

    torch.manual_seed(0)
    model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), hidden=(64, 32), latent_dim=4))
    x = torch.rand(32, 1, 8, 8)
    keys = {k: (v.dtype, v.shape) for k, v in model.state_dict().items()}

    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the reference: autocast on the nets
        ref = model.loss(x)
    ref.total.backward()
    ref_grads = [p.grad.clone() for p in model.encoder.parameters()]
    model.zero_grad(set_to_none=True)

    model.low_precision = LowPrecision(model)
    model.low_precision.pull()
    torch.manual_seed(1)
    got = model.loss(x)
    got.total.backward()
    model.low_precision.push_grads()
    torch.testing.assert_close(got.total, ref.total.float(), rtol=2e-2, atol=0.0)
    for g, r in zip((p.grad for p in model.encoder.parameters()), ref_grads, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, r, rtol=0.1, atol=1e-3)
    model.low_precision = None

    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, torch.rand(64, 1, 8, 8), None, TrainConfig(epochs=1, precision="bf16"),
        progress=False)
    assert model.low_precision is None  # fit removes the copies
    after = model.state_dict()
    assert {k: (v.dtype, v.shape) for k, v in after.items()} == keys  # still fp32, same tensors
    assert any(not torch.equal(before[k], after[k]) for k in keys)  # and trained


def test_the_progress_bar_names_each_figure_for_what_it_is(capsys):
    from vaekit.train.progress import figure_names

    assert figure_names(TrainConfig()) == ("-elbo", "rate", "distortion")
    assert figure_names(TrainConfig(beta=4.0))[0] == "loss"  # beta-weighted: not -ELBO
    assert figure_names(TrainConfig(objective="iwae", samples=5)) == (
        "-iwae(k=5)",
        "rate(mc)",
        "distortion(mc)",
    )
    torch.manual_seed(0)
    model = VAE.from_config(ModelConfig(event_shape=(4,), latent_dim=2, hidden=(8,)))
    x = torch.rand(64, 4)
    fit(model, x, None, TrainConfig(epochs=1, objective="iwae", samples=3), progress=True)
    err = capsys.readouterr().err
    assert "-iwae(k=3)" in err and "rate(mc)" in err and "-elbo" not in err


def test_evaluation_shows_its_progress_and_warns_of_emulated_bf16(capsys, monkeypatch):
    from vaekit.core import precision
    from vaekit.train.evaluate import evaluate

    torch.manual_seed(0)
    model = VAE.from_config(ModelConfig(event_shape=(4,), latent_dim=2, hidden=(8,)))
    x = torch.rand(40, 4)
    evaluate(model, x, k=4, batch_size=8, progress=True)
    assert "log p(x), K=4" in capsys.readouterr().err
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    with pytest.warns(UserWarning, match="without native bf16"):
        evaluate(model, x, k=2, precision="bf16")
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(model, x, k=2, precision="bf16")  # native: no warning
