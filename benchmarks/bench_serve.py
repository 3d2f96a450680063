"""`vaekit serve`: how long one decode request takes for a 28x28 model, and a load check.

    python benchmarks/bench_serve.py                     # 2,000 requests from 8 clients
    python benchmarks/bench_serve.py --requests 400 --clients 4 --out-dir /tmp/serve   # quick

The model: a 784-dim (1x28x28) MLP VAE with vaekit's benchmark sizes (hidden 512,256; a 16-D
latent), untrained: decoding costs the same whatever the weights, so no MNIST training is
needed. Its run directory is a copy of a one-epoch digits run with the model swapped in (the
server reads only the model for /api/decode).

1. Per request, in process (FastAPI's TestClient; no sockets): the whole /api/decode request
   (validation, decode under no_grad, PNG data URL, JSON) and, for comparison, model.decode
   alone. The issue's bar: the request under 50 ms on a CPU.
2. Load check: the real server (uvicorn, in a subprocess) on 127.0.0.1 only, N requests from C
   concurrent keep-alive clients, each a random z; zero errors required; median and p99
   latency as the clients see it, and the throughput.

Writes benchmarks/results/serve_cpu.json and .md (it measures the server on the CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import common as bc

HOST = "127.0.0.1"  # loopback only: the load check never leaves this machine


def make_run(root: Path) -> Path:
    """A run directory holding an untrained 1x28x28 MLP VAE."""
    from vaekit.cli import main
    from vaekit.core import VAE
    from vaekit.runs import load_run_config, save_json

    digits = root / "digits"
    args = ["train", "--data", "digits", "--out", str(digits), "--epochs", "1"]
    code = main([*args, "--hidden", "32", "--quiet", "--no-pictures", "--k", "2"])
    if code != 0:
        raise SystemExit("could not train the scaffold run")
    run = root / "mnist28"
    shutil.copytree(digits, run)
    cfg = load_run_config(run / "config.json")
    model = dataclasses.replace(
        cfg.model, event_shape=(1, 28, 28), hidden=(512, 256), latent_dim=16, arch="mlp"
    )
    cfg = dataclasses.replace(cfg, model=model)
    save_json(cfg, run / "config.json")
    torch.manual_seed(0)
    VAE.from_config(model).save(run / "model.safetensors")
    return run


def quantiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "n": len(ms),
        "median_ms": round(float(np.median(a)), 3),
        "p90_ms": round(float(np.percentile(a, 90)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
    }


def in_process(run: Path, n: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from vaekit.serve import create_app

    app = create_app(run)
    client = TestClient(app)
    model = app.state.explorer.model
    rng = np.random.default_rng(0)
    zs = rng.standard_normal((n, 16)).round(4).tolist()
    for z in zs[:20]:  # warm up
        assert client.post("/api/decode", json={"z": z}).status_code == 200
    request_ms, handler_ms, model_ms = [], [], []
    for z in zs:
        t0 = time.perf_counter()
        r = client.post("/api/decode", json={"z": z})
        request_ms.append(1000 * (time.perf_counter() - t0))
        assert r.status_code == 200, r.text
        handler_ms.append(r.json()["ms"])  # timed inside the endpoint: no client or transport
        t0 = time.perf_counter()
        model.decode(torch.tensor([z]))
        model_ms.append(1000 * (time.perf_counter() - t0))
    return {
        "request": quantiles(request_ms),
        "handler": quantiles(handler_ms),
        "model_decode_only": quantiles(model_ms),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def load_check(run: Path, requests: int, clients: int) -> dict[str, Any]:
    import httpx

    port = free_port()
    code = (
        "import sys, uvicorn; from vaekit.serve import create_app; "
        "uvicorn.run(create_app(sys.argv[1]), host=sys.argv[2], port=int(sys.argv[3]), "
        "log_level='warning')"
    )
    server = subprocess.Popen([sys.executable, "-c", code, str(run), HOST, str(port)])
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/info", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        per_client = [requests // clients + (i < requests % clients) for i in range(clients)]
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(clients + 1)

        def client(i: int, count: int) -> None:
            rng = np.random.default_rng(100 + i)
            mine, bad = [], []
            with httpx.Client(base_url=base, timeout=30) as c:
                start.wait()
                for _ in range(count):
                    z = rng.standard_normal(16).round(4).tolist()
                    t0 = time.perf_counter()
                    try:
                        r = c.post("/api/decode", json={"z": z})
                        ok = r.status_code == 200 and r.json()["image"].startswith("data:")
                        if not ok:
                            bad.append(f"{r.status_code} {r.text[:80]}")
                    except httpx.HTTPError as e:
                        bad.append(f"{type(e).__name__}: {e}")
                    mine.append(1000 * (time.perf_counter() - t0))
            with lock:
                latencies.extend(mine)
                errors.extend(bad)

        threads = [threading.Thread(target=client, args=(i, k)) for i, k in enumerate(per_client)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(10)
    return {
        "host": HOST,
        "clients": clients,
        "requests": requests,
        "errors": len(errors),
        "first_errors": errors[:5],
        "wall_s": round(wall, 3),
        "requests_per_s": round(requests / wall, 1),
        **quantiles(latencies),
    }


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def stats(label: str, q: dict[str, float]) -> str:
    return row(label, q["n"], q["median_ms"], q["p90_ms"], q["p99_ms"], q["max_ms"])


def markdown(result: dict[str, Any]) -> str:
    one, load = result["in_process"], result["load"]
    bar = "met" if one["handler"]["p99_ms"] < 50 else "NOT met"
    lines = [
        "# vaekit serve: decode latency and load check (cpu)",
        "",
        f"Model: {result['model']}. Machine: {result['machine']}, {result['cpus']} CPU cores "
        "shared with other work. Command: `" + result["command"] + "`",
        "",
        "## One /api/decode request at a time, in process (no sockets)",
        "",
        row("what", "n", "median ms", "p90 ms", "p99 ms", "max ms"),
        row(*["---"] * 6),
        stats("whole request through TestClient (validate, decode, PNG, JSON)", one["request"]),
        stats("the endpoint itself (its `ms` field: checks, decode, PNG)", one["handler"]),
        stats("model.decode alone", one["model_decode_only"]),
        "",
        f"The issue's bar, the decode request under 50 ms on a CPU: {bar} (endpoint p99).",
        "",
        f"## Load check: uvicorn on {load['host']}, {load['clients']} concurrent clients",
        "",
        row("requests", "errors", "median ms", "p99 ms", "max ms", "requests/s", "wall s"),
        row(*["---"] * 7),
        row(
            load["requests"],
            load["errors"],
            load["median_ms"],
            load["p99_ms"],
            load["max_ms"],
            load["requests_per_s"],
            load["wall_s"],
        ),
        "",
        f"Latency as the clients see it, queueing included: {load['clients']} keep-alive clients",
        "share one server process, and the clients run on the same cores as the server.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="load check requests [2000]")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients [8]")
    parser.add_argument("--single", type=int, default=500, help="in-process requests [500]")
    bc.add_out_dir(parser)
    args = parser.parse_args()
    if args.requests < 1 or args.clients < 1 or args.single < 1:
        parser.error("--requests, --clients and --single must be >= 1")
    torch.set_num_threads(1)  # the server's decodes are tiny: one thread is steadier
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the server subprocess too
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp))
        result = {
            "model": "untrained MLP VAE, 1x28x28 Bernoulli, hidden 512,256, latent 16",
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
            "cpus": os.cpu_count(),
            "command": " ".join(["python benchmarks/bench_serve.py", *sys.argv[1:]]),
            "in_process": in_process(run, args.single),
            "load": load_check(run, args.requests, args.clients),
        }
    bc.write_result(args.out_dir / "serve_cpu", markdown(result), result)
    return 0 if result["load"]["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
