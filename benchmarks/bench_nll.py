"""Importance-sampled log-likelihood: Pythae's `get_nll` vs vaekit's `model.log_likelihood`
on the same weights and data (issue 4).

One model is trained briefly with the plain loop (benchcommon.train_plain); its weights are
then used as they are by three estimators:
  reference  this script's batched estimator (benchcommon.importance_log_likelihood)
  pythae     pythae VAE around the same nets: model.get_nll(x, n_samples=K, batch_size=B)
             under torch.no_grad() (get_nll itself does not disable autograd). It loops over
             examples one at a time, K/B forward passes of B copies each, and returns the MEAN
             log p(x) (a negative number, despite the name). K must be a multiple of B.
  vaekit     vaekit.models.VAE with the weights copied in: model.log_likelihood(x, k=K)
             (skipped until it exists, or if the weights cannot be mapped)

    python benchmarks/bench_nll.py --data mnist --k 1000 --n-eval 500
    python benchmarks/bench_nll.py --data mnist --device cuda --tag _gpu   # make bench-gpu
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import benchcommon as bc

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn: Any) -> tuple[torch.Tensor | float, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", choices=("digits", "mnist"), default="mnist")
    p.add_argument("--mnist-path", type=Path, default=bc.MNIST_TEST)
    p.add_argument("--k", type=int, default=1000, help="importance samples per example")
    p.add_argument("--n-eval", type=int, default=500, help="test examples to evaluate")
    p.add_argument("--train-epochs", type=int, default=5)
    p.add_argument("--pythae-batch", type=int, default=100, help="get_nll batch_size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds; median seconds")
    p.add_argument(
        "--pythae-autograd",
        action="store_true",
        help="also time get_nll as called, without torch.no_grad (slower still)",
    )
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where every arm runs [cpu]")
    p.add_argument("--tag", default="", help="suffix of the result files' names")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.k % args.pythae_batch and args.k > args.pythae_batch:
        p.error("--k must be a multiple of --pythae-batch (get_nll drops the remainder)")

    train, test = bc.load_data(args.data, args.seed, args.mnist_path)
    x_train, x = torch.from_numpy(train), torch.from_numpy(test[: args.n_eval])
    d = x.shape[1]
    torch.manual_seed(args.seed)
    ref = bc.MLPVAE(d)
    train_s = sum(bc.train_plain(ref, x_train, args.train_epochs))
    ref.eval().to(args.device)
    x = x.to(args.device)
    print(f"{args.data}: trained {args.train_epochs} epochs in {train_s:.1f}s; "
          f"evaluating {len(x)} examples, K={args.k}", flush=True)  # fmt: skip

    # name -> fn() returning per-example log p(x) (or None) and the mean; run alternately
    arms: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}

    def reference() -> tuple[torch.Tensor, float]:
        ll = bc.importance_log_likelihood(ref.encode, ref.decode_logits, x, args.k)
        return ll, float(ll.mean())

    arms["reference"] = reference
    neg_elbo = bc.test_neg_elbo(ref.encode, ref.decode_logits, x, samples=10)

    version = bc.pythae_version()
    if version is None:
        rows["pythae"] = {"status": "skipped", "note": "pythae not importable"}
        print("pythae: skipped (not importable)")
    else:
        pmodel = bc.make_pythae_vae(d, ref.enc, ref.dec).eval().to(args.device)

        def pythae() -> tuple[None, float]:
            with torch.no_grad():
                return None, float(
                    pmodel.get_nll(x, n_samples=args.k, batch_size=args.pythae_batch)
                )

        def pythae_as_called() -> tuple[None, float]:
            return None, float(pmodel.get_nll(x, n_samples=args.k, batch_size=args.pythae_batch))

        arms["pythae"] = pythae
        if args.pythae_autograd:
            arms["pythae, autograd on"] = pythae_as_called

    try:
        import vaekit.models
    except Exception as exc:
        rows["vaekit"] = {"status": "skipped", "note": f"vaekit.models not importable ({exc})"}
        print(f"vaekit: skipped ({exc})")
    else:
        vmodel = bc.vaekit_model(d).to(args.device)
        reason = bc.copy_into_vaekit(ref, vmodel, x[:64])
        if reason:
            rows["vaekit"] = {"status": "skipped", "note": f"weights not copied: {reason}"}
            print(f"vaekit: skipped ({reason})")
        else:
            for precision in ("fp32", "bf16"):

                def vaekit(precision: str = precision) -> tuple[torch.Tensor, float]:
                    ll = vmodel.log_likelihood(x, k=args.k, precision=precision)
                    return ll, float(ll.mean())

                arms["vaekit" if precision == "fp32" else "vaekit bf16"] = vaekit

    times: dict[str, list[float]] = {name: [] for name in arms}
    results: dict[str, tuple[torch.Tensor | None, float]] = {}
    for r in range(args.rounds):
        for name, fn in arms.items():
            torch.manual_seed(args.seed + 1)  # the same draws every round: only time varies
            out, secs = timed(fn)
            times[name].append(secs)
            results.setdefault(name, out)
            print(f"round {r + 1}: {name:20s} log p(x) {out[1]:10.3f} nats in {secs:7.2f} s",
                  flush=True)  # fmt: skip
    for name in arms:
        per_example, mean = results[name]
        row: dict[str, Any] = {
            "status": "ok",
            "seconds": statistics.median(times[name]),
            "seconds_all": times[name],
            "mean_log_px": mean,
        }
        if per_example is not None:
            row["sem_over_examples"] = float(per_example.std() / math.sqrt(len(per_example)))
        rows[name] = row
    if "vaekit bf16" in results:
        diff = results["vaekit bf16"][0] - results["vaekit"][0]  # same eps: a paired difference
        rows["vaekit bf16"]["minus_fp32_mean"] = float(diff.mean())
        rows["vaekit bf16"]["minus_fp32_mean_abs"] = float(diff.abs().mean())

    ratios = {}
    if rows.get("pythae", {}).get("status") == "ok":
        for name in ("reference", "vaekit", "vaekit bf16", "pythae, autograd on"):
            if rows.get(name, {}).get("status") == "ok":
                # per-round ratios (the arms of one round ran back to back), then their median:
                # steadier on a shared VM than a ratio of medians
                per_round = [a / b for a, b in zip(times["pythae"], times[name], strict=True)]
                ratios[f"pythae/{name} seconds"] = statistics.median(per_round)
                ratios[f"pythae/{name} seconds, min-max over rounds"] = [
                    min(per_round),
                    max(per_round),
                ]
                ratios[f"{name}-pythae log p(x)"] = (
                    rows[name]["mean_log_px"] - rows["pythae"]["mean_log_px"]
                )
    result = {
        "benchmark": "bench_nll",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": {
            "data": args.data,
            "k": args.k,
            "n_eval": len(x),
            "train_epochs": args.train_epochs,
            "pythae_batch_size": args.pythae_batch,
            "seed": args.seed,
            "rounds": args.rounds,
        },
        "env": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pythae": version,
            "threads": torch.get_num_threads(),
            "device": args.device,
            "gpu": torch.cuda.get_device_name(args.device) if args.device != "cpu" else None,
        },
        "test_neg_elbo": neg_elbo,
        "estimators": rows,
        "ratios": ratios,
    }
    lines = [
        f"# Log-likelihood evaluation, {args.data} ({len(x)} test examples, K={args.k})",
        "",
        f"Same weights for all (plain loop, {args.train_epochs} epochs); torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, pythae {version or '-'}. "
        f"Test -ELBO of the model: {neg_elbo:.2f} nats.",
        "",
        "| estimator | mean log p(x) (nats) | +- s.e. over examples | median seconds |",
        "|---|---|---|---|",
    ]
    for name, row in rows.items():
        if row["status"] != "ok":
            lines.append(f"| {name} | skipped: {row['note']} | | |")
            continue
        sem = row.get("sem_over_examples")
        sem_text = f"{sem:.2f}" if sem is not None else "-"
        lines.append(f"| {name} | {row['mean_log_px']:.3f} | {sem_text} | {row['seconds']:.2f} |")
    if ratios:
        lines += ["", "| comparison | value |", "|---|---|"]
        for key, val in ratios.items():
            if isinstance(val, list):
                text = f"{val[0]:.1f}-{val[1]:.1f}x"
            else:
                text = f"{val:+.3f} nats" if "log p" in key else f"{val:.1f}x"
            lines.append(f"| {key} | {text} |")
    if "minus_fp32_mean" in rows.get("vaekit bf16", {}):
        b = rows["vaekit bf16"]
        lines += [
            "",
            f"vaekit bf16 minus vaekit fp32, same draws: {b['minus_fp32_mean']:+.3f} nats on "
            f"average, {b['minus_fp32_mean_abs']:.3f} nats per example in absolute value.",
        ]
    lines += [
        "",
        f"Seconds: median of {args.rounds} alternated rounds; ratios: median of the per-round "
        "ratios. Every arm sees the same seed each round. "
        "vaekit: `model.log_likelihood(x, k, precision=...)`; bf16 runs the networks in bfloat16 "
        "with the densities in fp32.",
        "",
        f"pythae: `model.get_nll(x, n_samples={args.k}, batch_size={args.pythae_batch})` under "
        "torch.no_grad (one example at a time; Bernoulli via sigmoid + F.binary_cross_entropy). "
        "reference: this script's batched estimator (BCE with logits). The estimates differ "
        "only by Monte Carlo noise (the s.e. column bounds the between-example spread).",
    ]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"nll_{args.data}{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    print(f"\nwrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
