"""The explorer's HTTP server: uvicorn's h11 protocol with a deadline on every connection, a cap
on connections, logs that cannot flood, and a stop that does not wait on idle clients.

uvicorn's h11 protocol has no deadline while it waits for a request (a client that sends half
its headers, or half its body, is held forever), and `limit_concurrency` answers 503 only once a
request's headers are in, so half-open connections still pile up until the process runs out of
file descriptors. `GuardedH11` adds, per connection:

- a deadline for each phase the server waits on the client: the request headers (`header_s`
  from the connection, or from the end of the previous response), the body (`body_s` from the
  end of the headers), and the response (`response_s` from the end of the request: the work
  is bounded by the pool, so only a client that does not read its answer reaches it). The
  deadlines are absolute, so a client that drips a byte a second gains nothing.
- a cap on open connections (`max_connections`, below the file-descriptor limit): at the cap a
  new connection closes the connection that has waited longest on its client (half-sent,
  or idle between requests); a connection whose request is complete is never closed for
  another. A flood of half-open connections therefore cycles through the oldest slots while a
  valid request, which completes at once, is still answered; only when every slot is busy with
  a complete request is the newcomer refused (closed).

Resource errors (the accept loop's "Too many open files", refused and expired connections,
malformed requests) are logged once per `log_interval_s` per kind with a count of the rest,
not once per attempt. On SIGTERM or Ctrl-C the connections that wait on their client close at
once and the rest get `graceful_s` to finish, so the server stops within a few seconds.
Figures (requests/s, latency, RSS, the half-open flood): the docs' explorer benchmark page.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import logging
import resource
import socket
import time
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("vaekit.serve")
RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
FD_RESERVE = 64  # descriptors kept for the process itself (the run's files, torch, logging)


@dataclasses.dataclass(frozen=True)
class Limits:
    """How long the server waits on a client, and how many clients it holds (seconds, counts).

    header_s: a request's headers, from the connection (or the previous response);
    body_s: its body, from the end of the headers (1.3 MB, the largest body, at 45 kB/s);
    response_s: from a read request to its last byte sent (the pool answers in well under 1 s,
    or refuses with 503 at once, so this only closes clients that do not read);
    keep_alive_s: idle between requests (uvicorn's own timer);
    max_connections: open connections, also kept under half the descriptor limit;
    backlog: connections the kernel queues for the server, which is also how many asyncio
    accepts at once before the cap closes any (at most the cap, so a burst cannot run the
    process out of descriptors, nor close a connection before its request has been read);
    graceful_s: on SIGTERM/Ctrl-C, how long running requests get before they are cancelled.
    """

    header_s: float = 10.0
    body_s: float = 30.0
    response_s: float = 60.0
    keep_alive_s: int = 5
    max_connections: int = 512
    backlog: int = 128
    graceful_s: int = 2
    log_interval_s: float = 10.0
    max_header_bytes: int = 16 * 1024


def connection_cap(limits: Limits) -> int:
    """`limits.max_connections`, lowered to keep the process under its descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limits.max_connections
    return max(8, min(limits.max_connections, (soft - FD_RESERVE) // 2))


# --- logs that cannot flood ---------------------------------------------------------------------


class OncePerInterval(logging.Filter):
    """Let a log message through once per `interval` seconds per kind (its format string), and
    say on the next one let through how many were held back."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self.seen: dict[str, list[float]] = {}  # kind -> [time let through, held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        kind = str(record.msg)
        now = time.monotonic()
        last = self.seen.get(kind)
        if last is not None and now - last[0] < self.interval:
            last[1] += 1
            return False
        held = 0 if last is None else int(last[1])
        self.seen[kind] = [now, 0]
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it in {self.interval:g} s)"
            record.args = ()
        return True


def quiet_logs(interval: float) -> OncePerInterval:
    """Rate-limit uvicorn's error log and ours; returns the filter (tests read its counts)."""
    limiter = OncePerInterval(interval)
    for name in ("uvicorn.error", "vaekit.serve", "asyncio"):
        log = logging.getLogger(name)
        for old in [f for f in log.filters if isinstance(f, OncePerInterval)]:
            log.removeFilter(old)
        log.addFilter(limiter)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("vaekit serve: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    return limiter


def loop_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's error handler: one line (no traceback), rate-limited by the log filter.

    On descriptor exhaustion asyncio's accept loop reports the same error for every pending
    connection, thousands a second; here each is one rate-limited line."""
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
        logger.warning("out of a system resource, connections wait: %s", exc.strerror)
        return
    logger.error("event loop: %s: %r", context.get("message", "error"), exc)


# --- the protocol --------------------------------------------------------------------------------


class Shared:
    """What the connections of one server share: the limits, the open connections, and the
    connections that wait on their client, oldest first (a dict keeps insertion order)."""

    def __init__(self, limits: Limits, cap: int) -> None:
        self.limits = limits
        self.cap = cap
        self.open: set[GuardedH11] = set()
        self.waiting: dict[GuardedH11, None] = {}


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with per-phase deadlines and the connection cap (see the module)."""

    shared: Shared  # set on the subclass `protocol_class` makes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.deadline: asyncio.TimerHandle | None = None
        self.phase: str | None = None
        shared = self.shared
        shared.open.add(self)
        if len(shared.open) > shared.cap:
            oldest = next(iter(shared.waiting), None)
            if oldest is None:
                logger.warning("at the cap of %d connections, all busy: refused one", shared.cap)
                self.close()
                return
            logger.warning(
                "at the cap of %d connections: closed the one that waited longest on its client",
                shared.cap,
            )
            oldest.close()
        self.wait("headers", shared.limits.header_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.settle()
        self.shared.open.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.wait("headers", self.shared.limits.header_s)  # the next request, or idle
            self.track()  # a pipelined request may already be in

    def shutdown(self) -> None:
        """On SIGTERM/Ctrl-C: a connection waiting on its client closes now; one with a
        request in hand finishes it (uvicorn's own shutdown)."""
        if self.phase in ("headers", "body"):
            self.close()
        else:
            super().shutdown()

    # --- phases ----------------------------------------------------------------------------

    def track(self) -> None:
        """Set the deadline for what the connection now waits on, from h11's state of the client."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self.phase != "body":
                self.wait("body", self.shared.limits.body_s)
        elif state is h11.IDLE:
            if self.phase != "headers":
                self.wait("headers", self.shared.limits.header_s)
        elif self.phase != "response":
            self.settle()  # the request is read: not evictable, one deadline for the answer
            self.phase = "response"
            self.deadline = self.loop.call_later(
                self.shared.limits.response_s, self.expire, "response"
            )

    def wait(self, phase: str, seconds: float) -> None:
        self.settle()
        self.phase = phase
        self.shared.waiting[self] = None
        self.deadline = self.loop.call_later(seconds, self.expire, phase)

    def settle(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.phase = None
        self.shared.waiting.pop(self, None)

    def expire(self, phase: str) -> None:
        self.deadline = None
        logger.warning("closed a connection that took too long: its %s deadline passed", phase)
        self.close()

    def close(self) -> None:
        self.settle()
        self.shared.open.discard(self)
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(limits: Limits, cap: int) -> type[GuardedH11]:
    """A `GuardedH11` subclass whose connections share one `Shared` (one per server)."""
    return type("GuardedH11", (GuardedH11,), {"shared": Shared(limits, cap)})


# --- running it ----------------------------------------------------------------------------------


class Server(uvicorn.Server):
    """uvicorn's server with the one-line, rate-limited event loop error handler."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(loop_errors)
        await super().startup(sockets=sockets)


def make_server(app: Any, host: str, port: int, limits: Limits | None = None) -> Server:
    """The server for `app` on host:port with `limits` (defaults: `Limits()`)."""
    limits = limits or Limits()
    cap = connection_cap(limits)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(limits, cap),
        backlog=min(limits.backlog, cap),
        log_level="warning",
        access_log=False,
        timeout_keep_alive=limits.keep_alive_s,
        timeout_graceful_shutdown=limits.graceful_s,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        lifespan="on",
    )
    quiet_logs(limits.log_interval_s)
    return Server(config)


def serve(app: Any, host: str, port: int, limits: Limits | None = None) -> None:
    """Run the server until SIGTERM or Ctrl-C."""
    make_server(app, host, port, limits).run()


# --- what a host binds to ------------------------------------------------------------------------


def bind_addresses(host: str) -> list[str]:
    """The addresses binding to `host` listens on, as the server resolves it."""
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as e:
        raise ValueError(f"--host {host}: not an address this machine can bind ({e})") from None
    return sorted({str(info[4][0]) for info in infos})


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server to this machine (every address loopback)."""
    try:
        addresses = bind_addresses(host)
    except ValueError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def describe(addresses: list[str]) -> str:
    """The bound addresses in words: "127.0.0.1", "every interface (0.0.0.0)"."""
    wild = [a for a in addresses if ipaddress.ip_address(a).is_unspecified]
    text = ", ".join(addresses)
    return f"every interface ({text})" if wild else text
