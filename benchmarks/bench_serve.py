"""`vaekit serve` under load: throughput and latency per endpoint, memory over a long run, and
a flood of half-sent connections.

    python benchmarks/bench_serve.py                                  # the full run, minutes
    python benchmarks/bench_serve.py --quick --out-dir /tmp/serve      # a smoke run, seconds

Every server is the real command (`python -m vaekit.cli serve RUN --port P`, OMP_NUM_THREADS=1)
in a subprocess on 127.0.0.1; the clients are a raw asyncio HTTP/1.1 client in this process
(one keep-alive connection per concurrent client), so the client costs little of the shared
cores. The model: an untrained 1x28x28 MLP VAE, hidden 512,256 (decoding costs the same
whatever the weights), with a 16-D latent, and a 2-D one for the manifold.

1. Per endpoint at concurrency 1, 8 and 32: requests/s, p50 and p99 latency as the client sees
   it (queueing included), errors; and the decode endpoint's own time (its `ms` field).
2. Memory: a fresh server, 50,000 requests at concurrency 32 (a mix of every endpoint); RSS
   and threads at start, after the first 1,000 and onwards. Bar: RSS after 50,000 within 20%
   of RSS after 1,000.
3. Flood: 20,000 half-sent connections (nothing, part of the headers, part of a body) opened
   by two client processes that hold them, while a valid /api/decode is sent every 0.25 s;
   the server's descriptors, RSS and log lines; then SIGTERM with the connections held.

Writes benchmarks/results/serve_cpu.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import io
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import common as bc

HOST = "127.0.0.1"  # loopback only: nothing leaves this machine
SCRIPT = Path(__file__).resolve()
HALF_SENT = [
    b"",
    b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    b'POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 300\r\n\r\n{"z": [',
]


def make_runs(root: Path) -> dict[str, Path]:
    """Run directories holding untrained 1x28x28 MLP VAEs: latent 16 ("z16") and 2 ("z2")."""
    import torch

    from vaekit.cli import main
    from vaekit.core import VAE
    from vaekit.runs import load_run_config, save_json

    digits = root / "digits"
    args = ["train", "--data", "digits", "--out", str(digits), "--epochs", "1"]
    if main([*args, "--hidden", "32", "--quiet", "--no-pictures", "--k", "2"]) != 0:
        raise SystemExit("could not train the scaffold run")
    runs = {}
    for name, latent in (("z16", 16), ("z2", 2)):
        run = root / name
        shutil.copytree(digits, run)
        cfg = load_run_config(run / "config.json")
        model = dataclasses.replace(
            cfg.model, event_shape=(1, 28, 28), hidden=(512, 256), latent_dim=latent, arch="mlp"
        )
        save_json(dataclasses.replace(cfg, model=model), run / "config.json")
        torch.manual_seed(0)
        VAE.from_config(model).save(run / "model.safetensors")
        runs[name] = run
    return runs


# --- requests ------------------------------------------------------------------------------------


def png_url(seed: int) -> str:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def request(port: int, method: str, path: str, body: Any = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    data = json.dumps(body).encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


def endpoint_requests(port: int, latent: int) -> dict[str, list[bytes]]:
    """A few distinct requests per endpoint (random z, two uploaded 28x28 PNGs)."""
    rng = np.random.default_rng(0)
    a, b = png_url(1), png_url(2)
    decode = [
        request(port, "POST", "/api/decode", {"z": rng.standard_normal(latent).round(4).tolist()})
        for _ in range(64)
    ]
    return {
        "info": [request(port, "GET", "/api/info")],
        "decode": decode,
        "sample": [request(port, "POST", "/api/sample", {"n": 1, "seed": s}) for s in range(64)],
        "encode": [request(port, "POST", "/api/encode", {"image": u}) for u in (a, b)],
        "interpolate": [
            request(port, "POST", "/api/interpolate", {"a": {"image": a}, "b": {"image": b}})
        ],
        "manifold": [request(port, "GET", "/api/manifold?n=15")],
    }


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[int, bytes]:
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return status, await reader.readexactly(length)


async def load(port: int, reqs: list[bytes], n: int, clients: int, on: Any = None) -> dict:
    """n requests (cycling through `reqs`) from `clients` keep-alive connections."""
    latencies: list[float] = []
    errors: list[str] = []
    handler_ms: list[float] = []
    next_i = iter(range(n))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        for i in next_i:
            t0 = time.perf_counter()
            try:
                status, body = await exchange(reader, writer, reqs[i % len(reqs)])
            except (OSError, asyncio.IncompleteReadError) as e:
                errors.append(type(e).__name__)
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
                continue
            latencies.append(1000 * (time.perf_counter() - t0))
            if status != 200:
                errors.append(f"{status} {body[:80]!r}")
            elif b'"ms":' in body:
                handler_ms.append(json.loads(body)["ms"])
            if on is not None:
                on(i + 1)
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    q = np.percentile(latencies, [50, 99]) if latencies else [float("nan")] * 2
    return {
        "requests": n,
        "clients": clients,
        "errors": len(errors),
        "first_errors": errors[:3],
        "requests_per_s": round(n / wall, 1),
        "p50_ms": round(float(q[0]), 2),
        "p99_ms": round(float(q[1]), 2),
        "handler_p99_ms": round(float(np.percentile(handler_ms, 99)), 2) if handler_ms else None,
    }


# --- the server ----------------------------------------------------------------------------------


class Server:
    """`vaekit serve RUN` in a subprocess on a free port; its RSS, threads and descriptors."""

    def __init__(self, run: Path, log: Path) -> None:
        with socket.socket() as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        self.log = log
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        args = [sys.executable, "-m", "vaekit.cli", "serve", str(run), "--port", str(self.port)]
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {log.read_text()[-500:]}")
            time.sleep(0.3)

    def answers(self, timeout: float = 2.0) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=timeout) as s:
                s.sendall(request(self.port, "GET", "/api/info"))
                return s.recv(12).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def status(self) -> dict[str, float]:
        proc = Path(f"/proc/{self.proc.pid}")
        fields = dict(
            line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line
        )
        return {
            "rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "threads": int(fields["Threads"]),
            "fds": len(os.listdir(proc / "fd")),
        }

    def stop(self) -> float:
        """SIGTERM; seconds until the process has exited (killed after 60)."""
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return float("inf")
        return round(time.perf_counter() - t0, 2)

    def log_lines(self) -> tuple[int, int]:
        text = self.log.read_bytes()
        return text.count(b"\n"), len(text)


def per_endpoint(runs: dict[str, Path], tmp: Path, n: int) -> list[dict[str, Any]]:
    rows = []
    for run, names in ((runs["z16"], ["info", "decode", "sample", "encode", "interpolate"]),
                       (runs["z2"], ["manifold"])):
        server = Server(run, tmp / "table.log")
        reqs = endpoint_requests(server.port, 16 if run == runs["z16"] else 2)
        for name in names:
            count = n // 5 if name in ("manifold", "interpolate") else n
            asyncio.run(load(server.port, reqs[name], 20, 1))  # warm up
            for clients in (1, 8, 32):
                row = asyncio.run(load(server.port, reqs[name], count, clients))
                rows.append({"endpoint": name, **row})
                print(f"{name} c={clients}: {row['requests_per_s']}/s p50 {row['p50_ms']} ms "
                      f"p99 {row['p99_ms']} ms, {row['errors']} errors", flush=True)
        server.stop()
    return rows


def soak(run: Path, tmp: Path, n: int) -> dict[str, Any]:
    """n mixed requests at concurrency 32 on a fresh server, its RSS and threads on the way."""
    server = Server(run, tmp / "soak.log")
    reqs = endpoint_requests(server.port, 2)
    mix = [*reqs["decode"][:6], reqs["sample"][0], reqs["encode"][0], reqs["interpolate"][0],
           reqs["info"][0], *reqs["decode"][6:12], reqs["sample"][1], reqs["manifold"][0]]
    marks = sorted({1000, *range(n // 10, n + 1, n // 10)} & set(range(1, n + 1)))
    seen = {"start": server.status()}

    def on(done: int) -> None:
        if done in marks:
            seen[str(done)] = server.status()
            print(f"soak {done}: {seen[str(done)]}", flush=True)

    result = asyncio.run(load(server.port, mix, n, 32, on))
    seen["end"] = server.status()
    server.stop()
    first, last = seen.get("1000", seen["start"]), seen["end"]
    ratio = last["rss_mb"] / first["rss_mb"]
    return {"load": result, "status": seen, "rss_ratio_end_over_1000": round(ratio, 3),
            "bar_met": ratio <= 1.2}


# --- the flood -----------------------------------------------------------------------------------


def flood_client(port: int, count: int, hold: float) -> None:
    """(In its own process.) Open `count` half-sent connections and hold them; after `hold`
    seconds report how many the server has closed; then hold them until killed."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held, failed = [], 0
    for i in range(count):
        try:
            s = socket.create_connection((HOST, port), timeout=5)
            if HALF_SENT[i % 3]:
                s.sendall(HALF_SENT[i % 3])
            held.append(s)
        except OSError:
            failed += 1
    print(json.dumps({"opened": len(held), "failed": failed}), flush=True)
    time.sleep(hold)
    closed = 0
    for s in held:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    print(json.dumps({"closed_by_server": closed}), flush=True)
    time.sleep(3600)


def flood(run: Path, tmp: Path, attempts: int) -> dict[str, Any]:
    server = Server(run, tmp / "flood.log")
    before = server.status()
    args = [sys.executable, str(SCRIPT), "--flood-client", str(attempts // 2),
            "--port", str(server.port)]
    flooders = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    probes: list[float] = []
    peak = dict(before)
    decode = endpoint_requests(server.port, 16)["decode"]
    reports: list[dict[str, int]] = []

    def two_lines(f: subprocess.Popen[str]) -> list[str]:
        assert f.stdout is not None
        return [f.stdout.readline(), f.stdout.readline()]

    async def probe_until_reported() -> None:
        loop = asyncio.get_running_loop()
        pending = [loop.run_in_executor(None, two_lines, f) for f in flooders]
        while not all(p.done() for p in pending):
            t0 = time.perf_counter()
            try:
                r = await asyncio.wait_for(load(server.port, decode, 1, 1), 30)
                probes.append(1000 * (time.perf_counter() - t0) if r["errors"] == 0 else -1)
            except (OSError, TimeoutError):
                probes.append(-1)
            for k, v in server.status().items():
                peak[k] = max(peak[k], v)
            await asyncio.sleep(0.25)
        for p in pending:
            reports.extend(json.loads(line) for line in await p if line.strip())

    asyncio.run(probe_until_reported())
    during = server.status()
    stop_s = server.stop()  # the flood's connections are still held
    for f in flooders:
        f.kill()
        f.wait()
    answered = [p for p in probes if p >= 0]
    lines, size = server.log_lines()
    return {
        "attempts": attempts,
        "opened": sum(r.get("opened", 0) for r in reports),
        "failed_to_connect": sum(r.get("failed", 0) for r in reports),
        "closed_by_server": sum(r.get("closed_by_server", 0) for r in reports),
        "probes": len(probes),
        "probes_answered": len(answered),
        "probe_p50_ms": round(float(np.median(answered)), 1) if answered else None,
        "probe_max_ms": round(max(answered), 1) if answered else None,
        "server_before": before, "server_peak": peak, "server_after": during,
        "log_lines": lines, "log_bytes": size, "sigterm_to_exit_s": stop_s,
    }


# --- the report ----------------------------------------------------------------------------------


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(result: dict[str, Any]) -> str:
    soaked, fl = result["soak"], result["flood"]
    lines = [
        "# vaekit serve: throughput, latency, memory and a half-sent flood (cpu)",
        "",
        f"Model: {result['model']}. Machine: {result['machine']}, {result['cpus']} CPU cores "
        "shared with other work; the clients run on the same cores. Server: the `vaekit serve` "
        "command on 127.0.0.1. Command: `" + result["command"] + "`",
        "",
        "## Per endpoint (latency as the client sees it, queueing included)",
        "",
        row("endpoint", "clients", "requests", "errors", "requests/s", "p50 ms", "p99 ms"),
        row(*["---"] * 7),
    ]
    for r in result["endpoints"]:
        lines.append(row(r["endpoint"], r["clients"], r["requests"], r["errors"],
                         r["requests_per_s"], r["p50_ms"], r["p99_ms"]))
    one = next(r for r in result["endpoints"] if r["endpoint"] == "decode" and r["clients"] == 1)
    lines += [
        "",
        f"The decode endpoint's own time (its `ms` field), p99 at 1 client: "
        f"{one['handler_p99_ms']} ms (the bar: under 50 ms on a CPU).",
        "",
        f"## Memory: {soaked['load']['requests']} mixed requests from 32 clients, fresh server",
        "",
        row("after requests", "RSS MB", "threads", "descriptors"),
        row(*["---"] * 4),
        *(row(k, v["rss_mb"], v["threads"], v["fds"]) for k, v in soaked["status"].items()),
        "",
        f"{soaked['load']['requests_per_s']} requests/s, {soaked['load']['errors']} errors. "
        f"RSS at the end / after 1,000: {soaked['rss_ratio_end_over_1000']} (bar: at most 1.2, "
        f"{'met' if soaked['bar_met'] else 'NOT met'}).",
        "",
        f"## Flood: {fl['attempts']} half-sent connections held by 2 client processes",
        "",
        row("what", "value"),
        row("---", "---"),
        row("opened / failed to connect", f"{fl['opened']} / {fl['failed_to_connect']}"),
        row("closed by the server while held (3 s after opening)", fl["closed_by_server"]),
        row("valid /api/decode probes answered during the flood",
            f"{fl['probes_answered']} of {fl['probes']}"),
        row("probe latency p50 / max ms", f"{fl['probe_p50_ms']} / {fl['probe_max_ms']}"),
        row("server descriptors before / peak", f"{fl['server_before']['fds']} / "
            f"{fl['server_peak']['fds']}"),
        row("server RSS MB before / peak", f"{fl['server_before']['rss_mb']} / "
            f"{fl['server_peak']['rss_mb']}"),
        row("server threads before / peak", f"{fl['server_before']['threads']} / "
            f"{fl['server_peak']['threads']}"),
        row("server log, whole run: lines / bytes", f"{fl['log_lines']} / {fl['log_bytes']}"),
        row("SIGTERM to exit, connections held (s)", fl["sigterm_to_exit_s"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000,
                        help="requests per endpoint and concurrency [1000; a fifth for the "
                        "manifold and interpolate]")
    parser.add_argument("--soak", type=int, default=50_000, help="memory run requests [50000]")
    parser.add_argument("--flood", type=int, default=20_000, help="half-sent connections [20000]")
    parser.add_argument("--quick", action="store_true", help="100 / 2,000 / 2,000: a smoke run")
    parser.add_argument("--flood-client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    bc.add_out_dir(parser)
    args = parser.parse_args()
    if args.flood_client is not None:
        flood_client(args.port, args.flood_client, hold=3.0)
        return 0
    if args.quick:
        args.requests, args.soak, args.flood = 100, 2000, 2000
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        runs = make_runs(Path(tmp))
        result = {
            "model": "untrained MLP VAE, 1x28x28 Bernoulli, hidden 512,256, latent 16 (2 for "
            "the manifold and the memory run)",
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
            "cpus": os.cpu_count(),
            "command": " ".join(["python benchmarks/bench_serve.py", *sys.argv[1:]]),
            "endpoints": per_endpoint(runs, Path(tmp), args.requests),
            "soak": soak(runs["z2"], Path(tmp), args.soak),
            "flood": flood(runs["z16"], Path(tmp), args.flood),
        }
    bc.write_result(args.out_dir / "serve_cpu", markdown(result), result)
    errors = sum(r["errors"] for r in result["endpoints"]) + result["soak"]["load"]["errors"]
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
