"""Importance-sampled log-likelihood: Pythae's `get_nll` vs vaekit's `model.log_likelihood`
on the same weights and data (issue 4).

One model is trained briefly with the plain loop (common.train_plain); its weights are then
used as they are by every estimator, alternated for --rounds rounds with the same draws:
  reference    this script's batched estimator (`importance_log_likelihood` below)
  pythae       a pythae VAE around the same nets: model.get_nll(x, n_samples=K, batch_size=B)
               under torch.no_grad() (it loops over examples one at a time, K/B forward passes
               of B copies each, and returns the MEAN log p(x)); skipped where pythae is not
               installed. --pythae-autograd adds get_nll as usually called (autograd on).
  vaekit       vaekit's VAE with the weights copied in: model.log_likelihood(x, k=K), in fp32
               and with precision="bf16"

    python benchmarks/bench_nll.py --data mnist --k 1000 --n-eval 500   # nll_mnist.{md,json}
    python benchmarks/bench_nll.py --data mnist --device cuda           # nll_mnist_gpu
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import common as bc

Estimate = Callable[[], tuple[torch.Tensor | None, float]]  # () -> (per example or None, mean)


@torch.no_grad()
def importance_log_likelihood(
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    decode_logits: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    k: int = 1000,
    rows: int = 32768,
) -> torch.Tensor:
    """log p(x) per example by importance sampling with q(z|x), K samples, batched over
    examples and samples (about `rows` decoder rows at a time): the reference estimator."""
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
        log_px = -F.binary_cross_entropy_with_logits(
            decode_logits(z), xb.expand(k, *xb.shape), reduction="none"
        ).sum(-1)
        out.append(torch.logsumexp(log_px + log_pz - log_q, dim=0) - math.log(k))
    return torch.cat(out)


def copy_into_vaekit(src: bc.MLPVAE, model: Any, probe: torch.Tensor) -> str | None:
    """Copy `src`'s weights into a vaekit VAE by matching nn.Linear layers in order (the
    2*latent encoder head may be one layer or split into mean/logvar layers). Checks the result
    on `probe`; returns None on success or a reason it could not be done."""
    lat = bc.LATENT
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
        elif (lin.out_features == 2 * lat and j + 1 < len(dst_lin)
              and dst.weight.shape == dst_lin[j + 1].weight.shape == (lat, lin.in_features)):
            pairs.append((dst, lin.weight[:lat], lin.bias[:lat]))
            pairs.append((dst_lin[j + 1], lin.weight[lat:], lin.bias[lat:]))
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


def estimators(args: argparse.Namespace, ref: bc.MLPVAE, x: torch.Tensor,
               rows: dict[str, dict[str, Any]]) -> dict[str, Estimate]:
    """name -> estimate; an estimator that cannot run gets a 'skipped' row in `rows`."""
    d = x.shape[1]

    def reference() -> tuple[torch.Tensor, float]:
        ll = importance_log_likelihood(ref.encode, ref.decode_logits, x, args.k)
        return ll, float(ll.mean())

    arms: dict[str, Estimate] = {"reference": reference}
    if bc.peer_version("pythae") is None:
        rows["pythae"] = {"status": "skipped", "note": "pythae is not installed"}
        print("pythae: skipped (not installed)")
    else:
        pmodel = bc.make_pythae_vae(d, ref.enc, ref.dec).eval().to(args.device)

        def pythae(grad: bool = False) -> tuple[None, float]:
            with torch.set_grad_enabled(grad):
                return None, float(pmodel.get_nll(x, n_samples=args.k,
                                                  batch_size=args.pythae_batch))

        arms["pythae"] = pythae
        if args.pythae_autograd:
            arms["pythae, autograd on"] = lambda: pythae(True)
    vmodel = bc.vaekit_model(d).to(args.device)
    reason = copy_into_vaekit(ref, vmodel, x[:64])
    if reason:
        rows["vaekit"] = {"status": "skipped", "note": f"weights not copied: {reason}"}
        print(f"vaekit: skipped ({reason})")
        return arms
    for precision, name in (("fp32", "vaekit"), ("bf16", "vaekit bf16")):

        def vaekit(precision: str = precision) -> tuple[torch.Tensor, float]:
            ll = vmodel.log_likelihood(x, k=args.k, precision=precision)
            return ll, float(ll.mean())

        arms[name] = vaekit
    return arms


def measure(args: argparse.Namespace, arms: dict[str, Estimate],
            rows: dict[str, dict[str, Any]]) -> dict[str, list[float]]:
    """Alternated rounds, the same draws every round (only time varies); fills `rows`."""
    times: dict[str, list[float]] = {name: [] for name in arms}
    results: dict[str, tuple[torch.Tensor | None, float]] = {}
    for r in range(args.rounds):
        for name, fn in arms.items():
            torch.manual_seed(args.seed + 1)
            out, secs = bc.timed(fn)
            times[name].append(secs)
            results.setdefault(name, out)
            print(f"round {r + 1}: {name:20s} log p(x) {out[1]:10.3f} nats in {secs:7.2f} s",
                  flush=True)  # fmt: skip
    for name in arms:
        per_example, mean = results[name]
        rows[name] = {"status": "ok", "seconds": statistics.median(times[name]),
                      "seconds_all": times[name], "mean_log_px": mean}
        if per_example is not None:
            n = len(per_example)
            rows[name]["sem_over_examples"] = float(per_example.std() / math.sqrt(n))
    if "vaekit bf16" in results:
        diff = results["vaekit bf16"][0] - results["vaekit"][0]  # same eps: a paired difference
        rows["vaekit bf16"]["minus_fp32_mean"] = float(diff.mean())
        rows["vaekit bf16"]["minus_fp32_mean_abs"] = float(diff.abs().mean())
    return times


def ratios_to_pythae(rows: dict[str, dict[str, Any]],
                     times: dict[str, list[float]]) -> dict[str, Any]:
    """Per-round speed ratios to pythae (the arms of one round ran back to back), their median
    and range, and each estimate's difference from pythae's."""
    ratios: dict[str, Any] = {}
    if rows.get("pythae", {}).get("status") != "ok":
        return ratios
    for name in ("reference", "vaekit", "vaekit bf16", "pythae, autograd on"):
        if rows.get(name, {}).get("status") == "ok":
            per_round = [a / b for a, b in zip(times["pythae"], times[name], strict=True)]
            ratios[f"pythae/{name} seconds"] = statistics.median(per_round)
            ratios[f"pythae/{name} seconds, min-max over rounds"] = [min(per_round),
                                                                      max(per_round)]
            ratios[f"{name}-pythae log p(x)"] = (rows[name]["mean_log_px"]
                                                 - rows["pythae"]["mean_log_px"])
    return ratios


def markdown(result: dict[str, Any]) -> str:
    cfg, env, rows = result["config"], result["env"], result["estimators"]
    lines = [
        f"# Log-likelihood evaluation, {cfg['data']} ({cfg['n_eval']} test examples, "
        f"K={cfg['k']})",
        "",
        f"Same weights for all (plain loop, {cfg['train_epochs']} epochs); torch {env['torch']}, "
        f"{env['threads']} threads, pythae {env['pythae'] or '-'}"
        + (f", on {env['gpu']}" if env["gpu"] else "")
        + f". Test -ELBO of the model: {result['test_neg_elbo']:.2f} nats.",
        "",
        "| estimator | mean log p(x) (nats) | +- s.e. over examples | median seconds |",
        "|---|---|---|---|",
    ]
    for name, row in rows.items():
        if row["status"] != "ok":
            lines.append(f"| {name} | skipped: {row['note']} | | |")
            continue
        sem = row.get("sem_over_examples")
        lines.append(f"| {name} | {row['mean_log_px']:.3f} | "
                     f"{'-' if sem is None else f'{sem:.2f}'} | {row['seconds']:.2f} |")
    if result["ratios"]:
        lines += ["", "| comparison | value |", "|---|---|"]
        for key, val in result["ratios"].items():
            if isinstance(val, list):
                text = f"{val[0]:.1f}-{val[1]:.1f}x"
            else:
                text = f"{val:+.3f} nats" if "log p" in key else f"{val:.1f}x"
            lines.append(f"| {key} | {text} |")
    if "minus_fp32_mean" in rows.get("vaekit bf16", {}):
        b = rows["vaekit bf16"]
        lines += ["", f"vaekit bf16 minus vaekit fp32, same draws: {b['minus_fp32_mean']:+.3f} "
                  f"nats on average, {b['minus_fp32_mean_abs']:.3f} nats per example in "
                  "absolute value."]
    lines += [
        "",
        f"Seconds: median of {cfg['rounds']} alternated rounds; ratios: median of the per-round "
        "ratios. Every arm sees the same seed each round. vaekit: `model.log_likelihood(x, k, "
        "precision=...)`; bf16 runs the networks in bfloat16 with the densities in fp32.",
        "",
        f"pythae: `model.get_nll(x, n_samples={cfg['k']}, batch_size={cfg['pythae_batch_size']})`"
        " under torch.no_grad (one example at a time; Bernoulli via sigmoid + "
        "F.binary_cross_entropy). reference: this script's batched estimator (BCE with logits). "
        "The estimates differ only by Monte Carlo noise (the s.e. column bounds the "
        "between-example spread).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=("digits", "mnist"), default="mnist")
    p.add_argument("--mnist-path", type=Path, default=bc.MNIST_TEST)
    p.add_argument("--k", type=int, default=1000, help="importance samples per example")
    p.add_argument("--n-eval", type=int, default=500, help="test examples to evaluate")
    p.add_argument("--train-epochs", type=int, default=5)
    p.add_argument("--pythae-batch", type=int, default=100, help="get_nll batch_size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds; median seconds")
    p.add_argument("--pythae-autograd", action="store_true",
                   help="also time get_nll as usually called, without torch.no_grad")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where every arm runs [cpu]")
    bc.add_out_dir(p)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.k % args.pythae_batch and args.k > args.pythae_batch:
        p.error("--k must be a multiple of --pythae-batch (get_nll drops the remainder)")

    train, test = bc.load_data(args.data, args.seed, args.mnist_path)
    x_train, x = torch.from_numpy(train), torch.from_numpy(test[: args.n_eval])
    torch.manual_seed(args.seed)
    ref = bc.MLPVAE(x.shape[1])
    train_s = sum(bc.train_plain(ref, x_train, args.train_epochs))
    ref.eval()
    neg_elbo = bc.test_neg_elbo(ref.encode, ref.decode_logits, x, samples=10)
    ref, x = ref.to(args.device), x.to(args.device)
    print(f"{args.data}: trained {args.train_epochs} epochs in {train_s:.1f}s; "
          f"evaluating {len(x)} examples, K={args.k}", flush=True)  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    arms = estimators(args, ref, x, rows)
    times = measure(args, arms, rows)
    result = {
        "benchmark": "bench_nll",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": {"data": args.data, "k": args.k, "n_eval": len(x),
                   "train_epochs": args.train_epochs, "pythae_batch_size": args.pythae_batch,
                   "seed": args.seed, "rounds": args.rounds},
        "env": {"python": platform.python_version(), "torch": torch.__version__,
                "pythae": bc.peer_version("pythae"), "threads": torch.get_num_threads(),
                "device": args.device,
                "gpu": torch.cuda.get_device_name(args.device) if args.device != "cpu" else None},
        "test_neg_elbo": neg_elbo,
        "estimators": rows,
        "ratios": ratios_to_pythae(rows, times),
    }
    name = f"nll_{args.data}" + ("_gpu" if args.device != "cpu" else "")
    bc.write_result(args.out_dir / name, markdown(result), result)


if __name__ == "__main__":
    main()
