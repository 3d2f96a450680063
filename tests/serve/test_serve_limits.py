"""`vaekit serve` exposed: the token off loopback, the Origin and Host rules, the API page from
the package, and the server's limits: deadlines on half-sent requests, the connection cap,
logs that do not flood, a bounded work pool, and a stop on SIGTERM with connections open.

The network tests talk to 127.0.0.1 only, on a port the OS picks, with bounded counts and
waits; every server they start stops by itself. They check behaviour (a connection is closed,
a request is answered, the process exits), not speed: the figures are in
benchmarks/bench_serve.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx
from fastapi import HTTPException
from fastapi.testclient import TestClient

from vaekit.cli import main
from vaekit.serve import create_app
from vaekit.serve.pool import WorkPool
from vaekit.serve.server import Limits, OncePerInterval, is_loopback, loop_errors, make_server

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--hidden", "32", "--quiet", "--no-pictures", "--k", "2", "--epochs", "1"]
HOST = "127.0.0.1"
WAIT_S = 60  # the most any step waits for the server; a passing run takes far less
DECODE = b'{"z": [' + b", ".join([b"0.1"] * 16) + b"]}"
# three ways to leave a request half-sent: nothing, part of the headers, part of the body
HALF_SENT = [
    b"",
    b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 200\r\n\r\n{"z": [',
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    out = tmp_path_factory.mktemp("serve_limits") / "digits"
    assert main(["train", "--data", "digits", "--out", str(out), *FAST]) == 0
    return out


# --- helpers: servers on an OS-chosen port, and raw sockets -------------------------------------


@contextlib.contextmanager
def server_thread(app: Any, limits: Limits) -> Iterator[int]:
    """The real server (uvicorn with the explorer's protocol) in a thread; yields its port."""
    server = make_server(app, HOST, 0, limits)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(WAIT_S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def half_sent(port: int, count: int, gap_s: float = 0.0) -> list[socket.socket]:
    """`count` connections, each left in one of the HALF_SENT states; gap_s seconds between
    them, so that the server has read each one's bytes before the next arrives (its idea of
    which waited longest is then the order they were opened, even on a loaded machine)."""
    held = []
    for i in range(count):
        s = socket.create_connection((HOST, port), timeout=WAIT_S)
        if HALF_SENT[i % len(HALF_SENT)]:
            s.sendall(HALF_SENT[i % len(HALF_SENT)])
        held.append(s)
        time.sleep(gap_s)
    return held


def closed_by_server(s: socket.socket, wait_s: float = WAIT_S) -> bool:
    """Whether the server has closed `s` (EOF or reset) within `wait_s`; never sends. What the
    server still had to say (the rest of an answer) is read and dropped."""
    deadline = time.monotonic() + wait_s
    try:
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            if s.recv(65536) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        pass
    return False


def closed_now(s: socket.socket) -> bool:
    """Whether the server has already closed `s`, without waiting (answers read and dropped)."""
    s.setblocking(False)
    try:
        while s.recv(65536):
            pass
        return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def decode_request(port: int) -> httpx.Response:
    return httpx.post(
        f"http://{HOST}:{port}/api/decode",
        content=DECODE,
        headers={"content-type": "application/json"},
        timeout=WAIT_S,
    )


# --- the token, Origin and Host rules -----------------------------------------------------------


def test_with_a_token_every_api_request_needs_it_and_the_page_does_not(run: Path) -> None:
    c = TestClient(create_app(run, token="s3cret"))
    for path in ("/api/info", "/api/scatter", "/openapi.json", "/docs", "/api/nowhere"):
        r = c.get(path)
        assert r.status_code == 401, path
        assert "needs its token" in r.json()["detail"] and "\n" not in r.json()["detail"]
    r = c.post("/api/decode", json={"z": [0.0] * 16})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    wrong = c.get("/api/info", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "wrong token" in wrong.json()["detail"]
    bearer = {"Authorization": "Bearer s3cret"}
    assert c.get("/api/info", headers=bearer).status_code == 200
    assert c.post("/api/decode", json={"z": [0.0] * 16}, headers=bearer).status_code == 200
    assert c.get("/api/info", params={"token": "s3cret"}).status_code == 200  # the printed URL
    docs = c.get("/docs", params={"token": "s3cret"})
    assert docs.status_code == 200 and "/openapi.json?token=s3cret" in docs.text
    for path in ("/", "/static/app.js", "/static/style.css", "/favicon.ico"):
        assert c.get(path).status_code in (200, 204), path  # the page holds no data
    # the page sends the token from its URL on every API call
    js = c.get("/static/app.js").text
    assert 'get("token")' in js and "Authorization" in js


def test_requests_from_another_origin_are_refused(run: Path) -> None:
    c = TestClient(create_app(run, allowed_hosts=["127.0.0.1"]), base_url="http://127.0.0.1:8123")
    body = {"z": [0.0] * 16}
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9999", "file://"):
        r = c.post("/api/decode", json=body, headers={"Origin": origin})
        assert r.status_code == 403, origin
        assert "refused" in r.json()["detail"] and "\n" not in r.json()["detail"]
    assert c.get("/api/info", headers={"Origin": "http://evil.example"}).status_code == 403
    # the server's own page, and clients that send no Origin (scripts, curl), are served
    own = c.post("/api/decode", json=body, headers={"Origin": "http://127.0.0.1:8123"})
    assert own.status_code == 200
    assert c.post("/api/decode", json=body).status_code == 200


def test_answers_carry_headers_that_keep_the_page_to_itself(run: Path) -> None:
    c = TestClient(create_app(run))
    page = c.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"  # the token never leaks in a Referer
    assert page.headers["x-frame-options"] == "DENY"


def test_the_api_page_comes_from_the_package(run: Path) -> None:
    c = TestClient(create_app(run))
    docs = c.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "http://" not in docs.text and "https://" not in docs.text  # nothing from outside
    for path in ("/api/decode", "/api/encode", "/api/sample", "/api/manifold", "DecodeRequest"):
        assert path in docs.text
    assert c.get("/redoc").status_code == 404  # FastAPI's CDN pages are off


def test_serve_off_loopback_prints_a_token_url_and_requires_it(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit.serve import server

    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda app, **kw: seen.update(app=app, **kw))
    assert main(["serve", str(run), "--host", "0.0.0.0", "--port", "8124"]) == 0
    out = capsys.readouterr().out
    assert "?token=" in out and "every interface (0.0.0.0)" in out
    assert "the API needs the token" in out and "warning" not in out
    token = out.split("?token=")[1].split()[0]
    assert len(token) >= 32
    c = TestClient(seen["app"], base_url="http://some-host.lan:8124")  # any Host: the token rules
    assert c.get("/api/info").status_code == 401
    assert c.get("/api/info", params={"token": token}).status_code == 200
    assert c.get("/").status_code == 200
    # a new token each start
    assert main(["serve", str(run), "--host", "0.0.0.0", "--port", "8124"]) == 0
    assert token not in capsys.readouterr().out


def test_no_token_off_loopback_warns_and_serves_without_one(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit.serve import server

    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda app, **kw: seen.update(app=app, **kw))
    assert main(["serve", str(run), "--host", "0.0.0.0", "--no-token"]) == 0
    out = capsys.readouterr().out
    assert "token=" not in out
    assert "warning: bound to every interface" in out and "no authentication" in out
    assert TestClient(seen["app"]).get("/api/info").status_code == 200


def test_a_loopback_address_written_short_is_loopback(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit.serve import server

    assert is_loopback("127.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda app, **kw: seen.update(app=app, **kw))
    assert main(["serve", str(run), "--host", "127.1", "--port", "8125"]) == 0
    out = capsys.readouterr().out
    assert "bound to loopback (127.0.0.1)" in out and "warning" not in out
    assert "token" not in out and "http://127.1:8125/" in out
    # the Host check stays on, and accepts the name the URL uses
    assert TestClient(seen["app"], base_url="http://127.1:8125").get("/api/info").status_code == 200
    evil = TestClient(seen["app"], base_url="http://evil.example:8125")
    assert evil.get("/api/info").status_code == 400


def test_an_unresolvable_host_is_a_one_line_error(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(run), "--host", "no such host!"]) == 1
    err = capsys.readouterr().err
    assert "--host no such host!" in err and err.count("\n") == 1


# --- deadlines, the connection cap, logs ---------------------------------------------------------


def test_half_sent_requests_and_idle_connections_are_closed(run: Path) -> None:
    limits = Limits(header_s=0.5, body_s=0.5, keep_alive_s=1)
    with server_thread(create_app(run), limits) as port:
        held = half_sent(port, 6)
        idle = socket.create_connection((HOST, port), timeout=WAIT_S)
        idle.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"200 OK" in idle.recv(65536)  # answered, then left open and silent
        assert all(closed_by_server(s) for s in [*held, idle])
        assert decode_request(port).status_code == 200
        for s in [*held, idle]:
            s.close()


def test_a_chunked_body_past_its_declared_length_is_refused(run: Path) -> None:
    # h11 frames a body by Transfer-Encoding when Content-Length is there too: the guard counts
    with server_thread(create_app(run), Limits()) as port:
        s = socket.create_connection((HOST, port), timeout=WAIT_S)
        chunk = b"0" * 65536
        s.sendall(
            b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        with contextlib.suppress(OSError):  # the server may answer before all is sent
            for _ in range(40):  # 2.6 MB, twice the limit
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        answer = b""
        while b"over the limit" not in answer:  # headers and body may come in two packets
            try:
                part = s.recv(65536)
            except OSError:
                break
            if not part:
                break
            answer += part
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"over the limit" in answer
        s.close()


def test_a_drip_fed_request_does_not_extend_its_deadline(run: Path) -> None:
    with server_thread(create_app(run), Limits(header_s=1.0)) as port:
        s = socket.create_connection((HOST, port), timeout=WAIT_S)
        s.sendall(b"GET /api/info HTTP/1.1\r\n")
        closed = False
        for _ in range(int(WAIT_S / 0.2)):  # a header line every 0.2 s, never the blank line
            try:
                s.sendall(b"X-Drip: 1\r\n")
            except OSError:
                closed = True
                break
            if closed_now(s):
                closed = True
                break
            time.sleep(0.2)
        assert closed
        s.close()


def test_at_the_cap_the_longest_waiting_connections_are_closed(run: Path) -> None:
    limits = Limits(max_connections=8, header_s=WAIT_S, body_s=WAIT_S)
    with server_thread(create_app(run), limits) as port:
        held = half_sent(port, 20, gap_s=0.05)
        # a valid request still gets in: it closes the oldest half-sent connection
        assert decode_request(port).status_code == 200
        time.sleep(0.5)  # let the server's closes arrive
        closed = [closed_now(s) for s in held]
        # 12 closed for the newer half-sent ones, one for the valid request; the oldest go
        # first (a half-sent body's wait starts with its body, so neighbours may swap)
        assert sum(closed) == 20 - 8 + 1
        assert all(closed[:11])
        for s in held:
            s.close()


def test_resource_errors_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    limiter = OncePerInterval(interval=3600)
    log = logging.getLogger("vaekit.test_limits")
    log.addFilter(limiter)
    try:
        with caplog.at_level(logging.WARNING, logger="vaekit.test_limits"):
            for i in range(10_000):
                log.warning("closed %d connections", i)
        assert len(caplog.records) == 1
        for entry in limiter.seen.values():  # the interval is over: the next one says how
            entry[0] -= 3600  # many were held back
        with caplog.at_level(logging.WARNING, logger="vaekit.test_limits"):
            log.warning("closed %d connections", 1)
        assert "(9999 more like it in 3600 s)" in caplog.records[-1].getMessage()
    finally:
        log.removeFilter(limiter)
    # the event loop's "Too many open files" on accept is one line, not a traceback
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    serve_log = logging.getLogger("vaekit.serve")
    serve_log.addHandler(handler)
    try:
        error = OSError(errno.EMFILE, "Too many open files")
        loop_errors(asyncio.new_event_loop(), {"message": "accept", "exception": error})
    finally:
        serve_log.removeHandler(handler)
    assert records and "Too many open files" in records[-1].getMessage()
    assert records[-1].exc_info is None


# --- the bounded pool ---------------------------------------------------------------------------


def test_the_pool_answers_503_when_full_instead_of_queueing() -> None:
    pool = WorkPool(workers=1, max_jobs=2)
    release = threading.Event()

    async def scenario() -> list[Any]:
        held = [asyncio.ensure_future(pool.run(release.wait, WAIT_S)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(HTTPException) as refused:
            await pool.run(sum, [1, 2])
        release.set()
        return [refused.value, *(await asyncio.gather(*held)), await pool.run(sum, [1, 2])]

    try:
        refused, *done, after = asyncio.run(scenario())
    finally:
        release.set()
        pool.close()
    assert refused.status_code == 503 and "busy" in refused.detail
    assert refused.headers["Retry-After"] == "1"
    assert done == [True, True] and after == 3  # once there is room, work runs again


# --- the real command: few descriptors, many half-sent connections, SIGTERM ---------------------


def start_command(run: Path, port: int, nofile: int | None = None) -> subprocess.Popen[bytes]:
    """`vaekit serve` in a subprocess (with RLIMIT_NOFILE lowered to `nofile`)."""

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "vaekit.cli", "serve", str(run), "--port", str(port)]
    proc = subprocess.Popen(
        args, env=env, preexec_fn=limit, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if httpx.get(f"http://{HOST}:{port}/api/info", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"vaekit serve did not start: {proc.communicate()[1][-2000:]!r}")
        time.sleep(0.2)


def test_a_valid_request_is_answered_among_hundreds_of_half_sent_connections(run: Path) -> None:
    # 160 descriptors: a cap of 48 connections, so 400 half-sent ones would exhaust them
    port = free_port()
    proc = start_command(run, port, nofile=160)
    held: list[socket.socket] = []
    try:
        held = half_sent(port, 400)
        answers = [decode_request(port) for _ in range(5)]
        assert [r.status_code for r in answers] == [200] * 5
        assert all(r.json()["image"].startswith("data:image/png") for r in answers)
        closed = sum(closed_now(s) for s in held)
        assert closed >= 400 - 48  # the server let go of the excess, oldest first
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        for s in held:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = err.decode().splitlines()
    # one line per kind of trouble per interval, not one per connection
    assert len(lines) < 20, lines[:40]
    assert not any("Traceback" in line for line in lines)


def test_sigterm_stops_the_server_with_half_sent_connections_open(run: Path) -> None:
    port = free_port()
    proc = start_command(run, port)
    held: list[socket.socket] = []
    try:
        held = half_sent(port, 60)
        busy = socket.create_connection((HOST, port), timeout=WAIT_S)
        busy.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # idle keep-alive
        held.append(busy)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT_S)  # today's uvicorn default would wait on them forever
        assert all(closed_by_server(s, 5) for s in held)
    finally:
        for s in held:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM  # the CLI's clean exit on SIGTERM
