"""Shared pieces of the benchmark scripts: paths and data (the seeded splits every script
uses), timing (alternated rounds), writing a result file, the reference MLP VAE and the plain
training loop, the one test -ELBO function every arm is scored with, the Pythae wrappers, and
the bridge to vaekit.

The scripts run as files (`python benchmarks/bench_X.py`), so `benchmarks/` is on sys.path and
they `import common as bc`. Optional peers (pythae, pyod) are imported lazily; nothing here
needs them.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "benchmarks" / "results"
MNIST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"  # ../shared/data/mnist beside the repo
MNIST_TEST = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
LATENT = 16
HIDDEN = (512, 256)

# ------------------------------------------------------------------------------------ results


def add_out_dir(parser: argparse.ArgumentParser) -> None:
    """--out-dir: where the result files go (a smoke run writes elsewhere, e.g. /tmp/bench)."""
    parser.add_argument("--out-dir", type=Path, default=RESULTS,
                        help="where the result files go [benchmarks/results]")


def write_result(stem: Path, md: str, data: dict[str, Any] | None = None) -> None:
    """Write STEM.md (and STEM.json when `data` is given), then print the table."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        stem.with_suffix(".json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    stem.with_suffix(".md").write_text(md if md.endswith("\n") else md + "\n")
    print("\n" + md)
    print(f"wrote {stem}.md" + (" and .json" if data is not None else ""), flush=True)


def peer_version(name: str) -> str | None:
    """The installed version of an optional peer (pythae, pyod), None where it is missing."""
    try:
        from importlib.metadata import version

        __import__(name)
        return version(name)
    except Exception:
        return None


# ------------------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def alternated_speed(
    arms: dict[str, Callable[[int], float]], rounds: int, new: str, base: str
) -> dict[str, Any]:
    """Speed of two (or more) arms measured side by side: each round runs every arm once in
    turn (A B A B ...), `arms[name](round)` returning its samples/s; the ratio new/base is the
    median of the per-round ratios (robust to a round slowed by other load), with its range."""
    per_round: dict[str, list[float]] = {name: [] for name in arms}
    for r in range(rounds):
        for name, run in arms.items():
            per_round[name].append(run(r))
        print(f"speed round {r}: "
              + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in per_round.items()), flush=True)
    ratios = [a / b for a, b in zip(per_round[new], per_round[base], strict=True)]
    return {
        "samples_per_s": {k: statistics.median(v) for k, v in per_round.items()},
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "rounds": rounds,
    }


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), MB."""
    peak = _status_mb("VmHWM:")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return peak


def current_rss_mb() -> float:
    rss = _status_mb("VmRSS:")
    return float("nan") if rss is None else rss


# --------------------------------------------------------------------------------------- data


def read_idx_images(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX3 image file into a uint8 array (n, rows, cols)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    magic, n, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in range(0, 16, 4))
    if magic != 2051:
        raise ValueError(f"{path}: not an IDX3 image file (magic {magic})")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def read_idx_labels(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if int.from_bytes(raw[:4], "big") != 2049:
        raise ValueError(f"{path}: not an IDX1 labels file")
    return np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64)


def load_all(name: str, mnist_path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every example of `name` as float32 (n, D) rows in [0, 1], with its labels: the 1,797
    8x8 digits / 16, or the 10,000 MNIST test-set images / 255."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.data.astype(np.float32) / 16.0, d.target.astype(np.int64)
    if name != "mnist":
        raise ValueError(f"unknown data {name!r}")
    path = mnist_path or MNIST_TEST
    if not path.is_file():
        raise SystemExit(f"no MNIST images at {path} (../shared/data/mnist beside the repo)")
    images = read_idx_images(path)
    labels = read_idx_labels(path.with_name("t10k-labels-idx1-ubyte.gz"))
    return images.reshape(len(images), -1).astype(np.float32) / 255.0, labels


def load_labelled(
    name: str, seed: int = 0, mnist_path: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test), split with a fixed seed: digits 1,437 train / 360
    test; MNIST's test-set images 8,000 train / 2,000 test."""
    x, y = load_all(name, mnist_path)
    n_train = 1437 if name == "digits" else 8000
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm], y[perm]
    test = slice(n_train, n_train + 2000)
    return (np.ascontiguousarray(x[:n_train]), y[:n_train], np.ascontiguousarray(x[test]),
            y[test])


def load_data(
    name: str, seed: int = 0, mnist_path: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) of `load_labelled`, without the labels."""
    x_train, _, x_test, _ = load_labelled(name, seed, mnist_path)
    return x_train, x_test


# ------------------------------------------------------------------------------ reference model


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPVAE(nn.Module):
    """D-512-256-(2*16) encoder, 16-256-512-D decoder of Bernoulli logits."""

    def __init__(self, d: int, latent: int = LATENT, hidden: tuple[int, ...] = HIDDEN) -> None:
        super().__init__()
        self.enc = mlp([d, *hidden, 2 * latent])
        self.dec = mlp([latent, *reversed(hidden), d])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.enc(x).chunk(2, dim=-1)
        return mean, logvar

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)


def train_plain(
    model: MLPVAE,
    x: torch.Tensor,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
) -> list[float]:
    """The minimal loop an expert writes: data as one tensor, randperm index batches, plain
    Adam, no host sync per step (the epoch loss is read once per epoch). Returns epoch seconds.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = x.shape[0]
    times = []
    model.train()
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=x.device)
        total = torch.zeros((), device=x.device)
        for i in range(0, n, batch_size):
            xb = x[perm[i : i + batch_size]]
            mean, logvar = model.encode(xb)
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
            logits = model.decode_logits(z)
            rec = F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(-1)
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
            loss = (rec + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * xb.shape[0]
        total.item()  # the epoch's one host sync
        times.append(time.perf_counter() - t0)
    return times


@torch.no_grad()
def test_neg_elbo(
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    decode_logits: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    samples: int = 10,
    seed: int = 1234,
    batch: int = 500,
) -> float:
    """Test -ELBO in nats/example, the same for every arm: analytic KL to N(0, I) plus the
    Bernoulli negative log-likelihood (BCE with logits, summed over pixels), averaged over
    `samples` posterior samples (fixed generator seed) and over the examples of `x`."""
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch]
        mean, logvar = encode(xb)
        mean, logvar = mean.float(), logvar.float()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
        std = torch.exp(0.5 * logvar)
        rec = torch.zeros_like(kl)
        for _ in range(samples):
            z = mean + std * torch.randn(mean.shape, generator=gen)
            logits = decode_logits(z).float().reshape(xb.shape)
            rec += F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(-1)
        total += float((kl + rec / samples).double().sum())
    return total / x.shape[0]


# ------------------------------------------------------------------------------------ Pythae


def make_pythae_vae(d: int, enc: nn.Module, dec: nn.Module) -> Any:
    """A pythae VAE (VAEConfig(reconstruction_loss='bce')) around our encoder/decoder nets.

    Pythae's BCE is `F.binary_cross_entropy` on probabilities, so the decoder returns
    sigmoid(logits); `.net` keeps the logits for the shared test metric."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, net: nn.Module) -> None:
            BaseEncoder.__init__(self)
            self.net = net

        def forward(self, x: torch.Tensor) -> ModelOutput:
            mean, logvar = self.net(x.reshape(x.shape[0], -1)).chunk(2, dim=-1)
            return ModelOutput(embedding=mean, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self, net: nn.Module) -> None:
            BaseDecoder.__init__(self)
            self.net = net

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    config = VAEConfig(input_dim=(d,), latent_dim=LATENT, reconstruction_loss="bce")
    return VAE(model_config=config, encoder=Encoder(enc), decoder=Decoder(dec))


def quiet_pythae() -> None:
    """Silence Pythae's console logging and tqdm bars (removes their overhead, not its work)."""
    import functools
    import logging

    import pythae.trainers.training_callbacks as cb
    from tqdm.auto import tqdm

    cb.tqdm = functools.partial(tqdm, disable=True)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)


def train_pythae(train_x: torch.Tensor, epochs: int, batch_size: int, lr: float, seed: int,
                 device: str = "cpu") -> tuple[Any, list[float]]:
    """Train the reference model with pythae's TrainingPipeline (BaseTrainerConfig, Adam, no
    saving or sampling during training, console output off): (model, epoch seconds), timed
    from on_epoch_begin to on_epoch_end (the loop over its DataLoader plus its per-epoch
    best-model deepcopy, part of its epoch; not the final save)."""
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    quiet_pythae()
    seconds: list[float] = []

    class EpochTimer(TrainingCallback):
        def on_epoch_begin(self, training_config: Any, **kwargs: Any) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, training_config: Any, **kwargs: Any) -> None:
            seconds.append(time.perf_counter() - self.t0)

    torch.manual_seed(seed)
    ref = MLPVAE(train_x.shape[1])
    model = make_pythae_vae(train_x.shape[1], ref.enc, ref.dec)
    with tempfile.TemporaryDirectory(prefix="bench_pythae_") as out:
        config = BaseTrainerConfig(
            output_dir=out, per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=batch_size, num_epochs=epochs, learning_rate=lr,
            optimizer_cls="Adam", steps_saving=None, steps_predict=None, seed=seed,
            no_cuda=device == "cpu",
        )
        TrainingPipeline(model=model, training_config=config)(
            train_data=train_x, callbacks=[EpochTimer()]
        )
    return model, seconds


# ------------------------------------------------------------------------------------ vaekit


def vaekit_model(d: int, hidden: tuple[int, ...] = HIDDEN) -> Any:
    """vaekit's VAE with the reference sizes: MLP d-512-256-16, Bernoulli."""
    from vaekit.core import VAE, ModelConfig

    return VAE.from_config(
        ModelConfig(event_shape=(d,), latent_dim=LATENT, hidden=hidden, likelihood="bernoulli")
    )


def vaekit_decode_logits(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """Bernoulli logits of a vaekit model: its likelihood's parameters are the logits."""
    return model.decoder_params
