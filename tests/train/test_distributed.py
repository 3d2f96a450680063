"""Distributed training (vaekit.train.distributed): rank shards, gradients equal to one process's,
rank-0-only files, resume, and whole jobs under torchrun that end cleanly when a rank fails or
the launcher is interrupted. Two CPU processes with gloo; every job is bounded in time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from vaekit import VAE, ModelConfig, TrainConfig
from vaekit.core.io import load_tensors
from vaekit.data import prepare
from vaekit.data.config import DataConfig
from vaekit.train.distributed import World

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
TIMEOUT = 240  # seconds: a job that hangs fails the test instead of the suite

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="no torch.distributed")


def test_shards_are_disjoint_and_weighted_to_the_batch_mean() -> None:
    """Every rank's part of a global batch (uneven sizes too): disjoint, together the batch,
    and the ranks' weighted means average to the batch mean (what DDP's averaging computes)."""
    loss = torch.randn(1000, dtype=torch.float64)
    for size in (2, 3, 4):
        for n in (size, 37, 128):
            batch = torch.randperm(1000)[:n]
            parts = [World(r, size, True).shard(batch) for r in range(size)]
            assert torch.equal(torch.cat([p for p, _ in parts]), batch)
            averaged = sum(w * loss[p].mean() for p, w in parts) / size
            torch.testing.assert_close(averaged, loss[batch].mean())
    # a last global batch with fewer rows than ranks is left out; one process keeps it
    perm = torch.arange(10)
    assert [len(b) for b in World(0, 3, True).batches(perm, 4)] == [4, 4]
    assert [len(b) for b in World(0, 4, True).batches(perm, 4)] == [4, 4]
    assert [len(b) for b in World().batches(perm, 4)] == [4, 4, 2]
    assert World().shard(perm) == (perm, 1.0)


# --- two processes through fit (torch.multiprocessing, gloo) --------------------------------


def _fixed_noise_rsample(self, samples=1, generator=None):
    """Posterior noise held fixed: a function of the row's own posterior mean, so a row gets
    the same eps whichever rank (or one process) sees it."""
    eps = torch.sin(1e3 * self.mean.detach()).expand(samples, *self.mean.shape)
    return self.mean + self.std * eps


def _fit_recording(rank: int, world: int, store: str, out: str, epochs: int, resume: bool):
    """fit on rank `rank` of `world` (world 0: one process, no group), with fixed noise;
    records every step's gradients and which ranks ran the save unit. It patches vaekit's
    classes: run it only in a process of its own."""
    from vaekit.core import priors
    from vaekit.train import loop as train

    torch.set_num_threads(1)
    if world:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    priors.DiagonalGaussian.rsample = _fixed_noise_rsample
    grads: dict[str, torch.Tensor] = {}
    steps = [0]
    original_step, original_save = train.step_optimizer, train._save_epoch

    def step(model, optimizer, loss, grad_clip=None):
        original_step(model, optimizer, loss, grad_clip)
        steps[0] += 1
        for name, p in model.named_parameters():
            grads[f"step{steps[0]}.{name}"] = p.grad.detach().clone()

    def save(*args, **kwargs):
        Path(out, f"saved_by_rank{rank}").touch()
        original_save(*args, **kwargs)

    train.step_optimizer, train._save_epoch = step, save
    splits = prepare(DataConfig(source="digits"))
    x, v = splits.train.x[:102], splits.val.x[:50]  # batches of 51: ranks get 26 and 25 rows
    torch.manual_seed(0)
    model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=2, hidden=(16,)))
    cfg = TrainConfig(epochs=epochs, batch_size=51, seed=1)
    run_dir = Path(out, "run")
    history = train.fit(model, x, v, cfg, run_dir=run_dir, resume=resume, progress=False)
    tag = f"rank{rank}" if world else "single"
    save_file(grads, str(Path(out, f"grads_{tag}_{epochs}.safetensors")))
    save_file(model.state_dict(), str(Path(out, f"weights_{tag}_{epochs}.safetensors")))
    Path(out, f"history_{tag}_{epochs}.json").write_text(json.dumps(history))
    if world:
        dist.barrier()  # leave together, as vaekit.train.distributed.stop does
        dist.destroy_process_group()


def _spawn(tmp: Path, epochs: int, resume: bool = False) -> None:
    store = tmp / f"store_{epochs}_{resume}"
    mp.spawn(_fit_recording, args=(2, str(store), str(tmp), epochs, resume), nprocs=2, join=True)


def test_two_processes_take_the_single_process_steps_and_only_rank_0_writes(
    tmp_path: Path,
) -> None:
    """With the posterior noise fixed, each step of 2 gloo processes (each its shard of the
    global batch of 51 rows, 26 + 25) has the gradients of one process on the whole batch, so
    the weights and the reduced metrics match too; only rank 0 ran the save unit."""
    single = tmp_path / "single"
    single.mkdir()
    mp.spawn(_fit_recording, args=(0, "", str(single), 2, False), nprocs=1)  # its own process
    _spawn(tmp_path, 2)
    one = load_file(str(single / "grads_single_2.safetensors"))
    for rank in (0, 1):
        two = load_file(str(tmp_path / f"grads_rank{rank}_2.safetensors"))
        assert two.keys() == one.keys() and len(one) > 4  # 2 epochs x 2 steps
        for name, g in one.items():
            torch.testing.assert_close(two[name], g, rtol=1e-4, atol=1e-6, msg=name)
    w1 = load_file(str(single / "weights_single_2.safetensors"))
    w2 = load_file(str(tmp_path / "weights_rank1_2.safetensors"))
    for name, t in w1.items():
        torch.testing.assert_close(w2[name], t, rtol=1e-4, atol=1e-5, msg=name)
    h1 = json.loads((single / "history_single_2.json").read_text())
    h2 = json.loads((tmp_path / "history_rank1_2.json").read_text())
    for key in ("train_loss", "val_loss", "val_rate"):
        assert [r[key] for r in h2] == pytest.approx([r[key] for r in h1], rel=1e-4), key
    assert (tmp_path / "saved_by_rank0").exists() and not (tmp_path / "saved_by_rank1").exists()
    _, meta = load_tensors(tmp_path / "run" / "checkpoint.safetensors")
    assert len(meta["state"]["history"]) == 2


def test_a_distributed_run_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    straight.mkdir(), halves.mkdir()
    _spawn(straight, 3)
    _spawn(halves, 2)
    _spawn(halves, 3, resume=True)
    a = load_file(str(straight / "weights_rank0_3.safetensors"))
    b = load_file(str(halves / "weights_rank0_3.safetensors"))
    for name, t in a.items():
        assert torch.equal(b[name], t), name


# --- whole jobs under torchrun ---------------------------------------------------------------


def _torchrun(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [*TORCHRUN, "-m", "vaekit", *(str(a) for a in args)]
    env = dict(os.environ, TQDM_DISABLE="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def _elbo(run_dir: Path) -> float:
    return json.loads((run_dir / "evaluation.json").read_text())["elbo"]


def test_torchrun_writes_one_run_directory_as_good_as_one_process(tmp_path: Path) -> None:
    """2 CPU processes (gloo): one run directory, one report printed, a test ELBO within 1 nat
    of one process with the same global batch; --resume goes on under torchrun."""
    common = ["--data", "digits", "--epochs", 8, "--k", 20, "--quiet", "--no-pictures"]
    two = tmp_path / "two"
    job = _torchrun("train", *common, "--out", two, cwd=tmp_path)
    assert job.returncode == 0, job.stderr[-2000:]
    assert job.stdout.count("run directory:") == 1  # rank 0 reports
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]
    single = tmp_path / "single"
    proc = subprocess.run(
        [sys.executable, "-m", "vaekit", "train", *map(str, common), "--out", str(single)],
        capture_output=True, text=True, timeout=TIMEOUT, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert abs(_elbo(two) - _elbo(single)) < 1.0
    job = _torchrun("train", "--resume", "--out", two, "--epochs", 9, "--quiet", cwd=tmp_path)
    assert job.returncode == 0, job.stderr[-2000:]
    rows = (two / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "no/such/folder"], "error:"),
        (["--data", "digits", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--data", "digits", "--batch-size", "1"], "--batch-size 1 is the global batch"),
    ],
)
def test_a_failing_rank_ends_the_job_with_one_line(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    out = tmp_path / "run"
    job = _torchrun("train", *argv, "--out", out, "--quiet", cwd=tmp_path)  # no hang: timeout
    assert job.returncode != 0
    # each rank that got as far as its message (torchrun stops the rest) printed one line
    ours = [line for line in job.stderr.splitlines() if re.match(r"vaekit[ :]", line)]
    ours = [line for line in ours if line != "vaekit FAILED"]  # torchrun's report
    assert ours and all(message in line for line in ours), job.stderr[-2000:]
    # the ranks print one line each; torchrun's own failure report (with its traceback) follows
    assert "Traceback" not in job.stderr.split("failed (exitcode")[0]
    assert not out.exists()


def test_ctrl_c_on_the_launcher_ends_every_rank_with_the_checkpoint_intact(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    cmd = [*TORCHRUN, "-m", "vaekit", "train", "--data", "digits", "--out", str(out),
           "--epochs", "500", "--quiet", "--no-pictures", "--k", "5"]  # fmt: skip
    job = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # SIGINT to the launcher only, as a terminal's Ctrl-C would
    )  # fmt: skip
    checkpoint = out / "checkpoint.safetensors"
    deadline = time.monotonic() + TIMEOUT
    while not checkpoint.exists() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), "no checkpoint appeared"
    time.sleep(1.0)  # into a later epoch
    job.send_signal(signal.SIGINT)
    try:
        _, err = job.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        pytest.fail("the job did not end after Ctrl-C")
    assert job.returncode != 0
    assert "continue with: torchrun [the same options] -m vaekit train --resume" in err
    _, meta = load_tensors(checkpoint)  # complete, and loads
    epoch = meta["state"]["epoch"]
    assert 1 <= epoch < 500
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + epoch  # metrics agree with the checkpoint
    deadline = time.monotonic() + 10
    while _processes_naming(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_naming(out), "a rank outlived the launcher"
    resumed = _torchrun("train", "--resume", "--out", out, "--epochs", epoch + 1, "--quiet",
                        "--no-pictures", "--k", 5, cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def _processes_naming(path: Path) -> list[int]:
    """PIDs whose command line names `path` (the job's ranks and launcher)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(path) in (proc / "cmdline").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _early_stopping_worker(rank: int, store: str, out: str) -> None:
    """Each rank's own validation sums say the opposite (rank 0: better every epoch, rank 1:
    much worse); the sums reduced across ranks get worse, so both stop after `patience`."""
    from vaekit.train import loop as train

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    calls = [0]

    def sums(model, x, idx, *args, **kwargs):
        calls[0] += 1
        value = 100.0 - calls[0] if rank == 0 else 10.0 * calls[0]
        return torch.tensor([value * len(x) / 2, 0.0, 0.0])

    train.loss_sums = sums
    splits = prepare(DataConfig(source="digits"))
    torch.manual_seed(0)
    model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=2, hidden=(16,)))
    cfg = TrainConfig(epochs=20, batch_size=128, seed=1, patience=2)
    history = train.fit(model, splits.train.x[:256], splits.val.x[:20], cfg, progress=False)
    Path(out, f"epochs_rank{rank}").write_text(str(len(history)))
    dist.barrier()  # leave together, as vaekit.train.distributed.stop does
    dist.destroy_process_group()


def test_early_stopping_stops_every_rank_together(tmp_path: Path) -> None:
    mp.spawn(_early_stopping_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    epochs = {(tmp_path / f"epochs_rank{r}").read_text() for r in (0, 1)}
    assert epochs == {"3"}  # epoch 1 the best, 2 and 3 worse: stop after patience 2


CLUSTER_QUICK = ["--k", 4, "--pretrain-epochs", 2, "--pull-epochs", 2, "--epochs", 2,
                 "--n-init", 2, "--init", "gmm"]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "flags", "written"),
    [
        ("train", ["--conditional", "--conditional-prior", "class"], "model.safetensors"),
        ("train", ["--objective", "infomax"], "model.safetensors"),
        ("train", ["--prior", "mixture"], "model.safetensors"),
        ("cluster", CLUSTER_QUICK, "clusterer.safetensors"),
    ],
)
def test_the_other_models_train_under_torchrun(
    tmp_path: Path, command: str, flags: list[object], written: str
) -> None:
    """The conditional, infomax, mixture-prior and clustering models, 2 gloo processes: one
    result, written once (an anomaly model is a `vaekit train` run like the others)."""
    out = tmp_path / "run"
    extra = ["--epochs", 2, "--k", 5, "--no-pictures"] if command == "train" else []
    job = _torchrun(command, "--data", "digits", "--out", out, "--quiet", *extra, *flags,
                    cwd=tmp_path)  # fmt: skip
    assert job.returncode == 0, job.stderr[-2000:]
    assert (out / written).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
