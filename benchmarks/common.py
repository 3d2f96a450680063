"""Shared pieces of the benchmark scripts: data, the reference MLP VAE, the plain training
loop, the one test -ELBO function every arm is scored with, the Pythae wrappers, and the
bridge to vaekit.

Imported by `bench_train.py` and `bench_nll.py` (run as scripts, so `benchmarks/` is on
sys.path). Optional peers (pythae, vaekit) are imported lazily; nothing here needs them.
"""

from __future__ import annotations

import gzip
import itertools
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_TEST = REPO_ROOT.parent / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
LATENT = 16
HIDDEN = (512, 256)

# ------------------------------------------------------------------------------------- timing


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


def load_data(
    name: str, seed: int = 0, mnist_path: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) as float32 (n, D) arrays in [0, 1], split with a fixed seed.

    digits: sklearn's 1,797 8x8 digits /16 -> 1,437 train / 360 test.
    mnist: the 10,000 MNIST test-set images /255 -> 8,000 train / 2,000 test.
    """
    rng = np.random.default_rng(seed)
    if name == "digits":
        from sklearn.datasets import load_digits

        x = load_digits().data.astype(np.float32) / 16.0
        n_train = 1437
    elif name == "mnist":
        images = read_idx_images(mnist_path or MNIST_TEST)
        x = images.reshape(len(images), -1).astype(np.float32) / 255.0
        n_train = 8000
    else:
        raise ValueError(f"unknown data {name!r}")
    perm = rng.permutation(len(x))
    x = x[perm]
    return np.ascontiguousarray(x[:n_train]), np.ascontiguousarray(x[n_train : n_train + 2000])


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
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> list[float]:
    """The minimal loop an expert writes: data as one tensor, randperm index batches, plain
    Adam, no host sync per step (the epoch loss is read once per epoch). Returns epoch seconds.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = x.shape[0]
    times = []
    model.train()
    for epoch in range(epochs):
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
        epoch_loss = total.item() / n
        times.append(time.perf_counter() - t0)
        if on_epoch is not None:
            on_epoch(epoch, times[-1], epoch_loss)
    return times


# ------------------------------------------------------------------------- the one test metric


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


@torch.no_grad()
def importance_log_likelihood(
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    decode_logits: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    k: int = 1000,
    rows: int = 32768,
) -> torch.Tensor:
    """log p(x) per example by importance sampling with q(z|x), K samples, batched over
    examples and samples (about `rows` decoder rows at a time). Reference for bench_nll."""
    chunk = max(1, rows // k)
    out = []
    for i in range(0, x.shape[0], chunk):
        xb = x[i : i + chunk]
        mean, logvar = encode(xb)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn((k, *mean.shape), device=mean.device)
        z = mean + std * eps  # (k, b, latent)
        log_q = -0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi)).sum(-1)
        log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
        logits = decode_logits(z)
        log_px = -F.binary_cross_entropy_with_logits(
            logits, xb.expand(k, *xb.shape), reduction="none"
        ).sum(-1)
        out.append(torch.logsumexp(log_px + log_pz - log_q, dim=0) - math.log(k))
    return torch.cat(out)


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# ------------------------------------------------------------------------------------ Pythae


def pythae_version() -> str | None:
    try:
        from importlib.metadata import version

        import pythae  # noqa: F401

        return version("pythae")
    except Exception:
        return None


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


# ------------------------------------------------------------------------------------ vaekit


def vaekit_model(d: int) -> Any:
    from vaekit.config import ModelConfig
    from vaekit.models import VAE

    return VAE.from_config(
        ModelConfig(event_shape=(d,), latent_dim=LATENT, hidden=HIDDEN, likelihood="bernoulli")
    )


def vaekit_decode_logits(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """Bernoulli logits of a vaekit model: `decoder_params` (the likelihood's parameters are
    the logits for Bernoulli); the logit of the clamped mean only as a fallback."""
    for name in ("decoder_params", "decode_logits"):
        fn = getattr(model, name, None)
        if callable(fn):
            return fn
    eps = 1e-7
    return lambda z: torch.logit(model.decode(z).float().clamp(eps, 1 - eps))


def copy_into_vaekit(src: MLPVAE, model: Any, probe: torch.Tensor) -> str | None:
    """Copy `src`'s weights into a vaekit VAE by matching nn.Linear layers in order (the
    2*latent encoder head may be one layer or split into mean/logvar layers). Checks the result
    on `probe`; returns None on success or a reason it could not be done."""
    src_lin = [m for m in src.modules() if isinstance(m, nn.Linear)]
    dst_lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
    pairs: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]] = []
    j = 0
    for lin in src_lin:
        if j >= len(dst_lin):
            return "vaekit model has fewer Linear layers than the reference"
        dst = dst_lin[j]
        if dst.weight.shape == lin.weight.shape:
            pairs.append((dst, lin.weight, lin.bias))
            j += 1
        elif (
            lin.out_features == 2 * LATENT
            and j + 1 < len(dst_lin)
            and dst.weight.shape == (LATENT, lin.in_features)
            and dst_lin[j + 1].weight.shape == (LATENT, lin.in_features)
        ):
            pairs.append((dst, lin.weight[:LATENT], lin.bias[:LATENT]))
            pairs.append((dst_lin[j + 1], lin.weight[LATENT:], lin.bias[LATENT:]))
            j += 2
        else:
            return f"cannot match Linear {tuple(lin.weight.shape)} to {tuple(dst.weight.shape)}"
    if j != len(dst_lin):
        return "vaekit model has extra Linear layers"
    with torch.no_grad():
        for dst, w, b in pairs:
            dst.weight.copy_(w)
            dst.bias.copy_(b)
        model.eval()
        m1, v1 = src.encode(probe)
        m2, v2 = model.encode(probe)
        p1 = torch.sigmoid(src.decode_logits(m1))
        p2 = model.decode(m1).reshape(p1.shape)
    if not (torch.allclose(m1, m2, atol=1e-5) and torch.allclose(v1, v2, atol=1e-5)):
        return "encoder outputs differ after copying weights (layer order or head layout?)"
    if not torch.allclose(p1, p2, atol=1e-5):
        return "decoder outputs differ after copying weights"
    return None
