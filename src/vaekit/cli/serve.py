"""`vaekit serve`: the live latent-space explorer for a run, in the browser."""

from __future__ import annotations

import argparse
import secrets
import socket
from pathlib import Path
from typing import Any

from vaekit.cli.common import UserError, add_device

NAME = "serve"

EPILOG = """examples:
  vaekit serve runs/digits                   # then open http://127.0.0.1:8000/
  vaekit serve runs/cvae --port 8080         # a conditional run: a class selector
  vaekit serve runs/digits --host 0.0.0.0    # other machines too: open the URL with ?token=

The page: a 2-D pad over two chosen latent dimensions and a slider per dimension (moving them
decodes live), a class or cluster selector where the model has one, sample, interpolate
between two inputs (rows of the run's test split or an uploaded image of the model's size),
the clickable latent scatter of the test split, and the manifold grid for a 2-D latent.
The JSON API is under /api (see /docs for the API page; /openapi.json is the schema).
The server only reads the run directory and the run's data; it writes nothing.

Bound to loopback (the default), only this machine can connect and no token is needed. Bound
to any other address, the server makes a random token and prints the URL that carries it;
every API request without it is refused (401). --no-token drops it, for a server behind your
own authenticating proxy. Requests from pages of other sites are refused either way. Slow or
half-sent requests are closed (10 s for the headers, 30 s for a body) and at most 512
connections are held; SIGTERM or Ctrl-C stops the server within a few seconds."""

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="explore a run's latent space live in the browser",
        description="Serve a page that decodes a run's latent space live as you move through it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--port", type=int, default=8000, help="TCP port [8000]")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind; anything but loopback lets other machines in [127.0.0.1]",
    )
    p.add_argument(
        "--no-token",
        action="store_true",
        help="off loopback, serve without a token (only behind your own authenticating proxy)",
    )
    add_device(p)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be 1..65535, got {args.port}")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError:
        raise UserError(
            "vaekit serve needs fastapi and uvicorn: pip install 'vaekit[serve]'"
        ) from None
    from vaekit.serve import server
    from vaekit.serve.app import create_app

    try:
        addresses = server.bind_addresses(args.host)
    except ValueError as e:
        raise UserError(str(e)) from None
    loopback = server.is_loopback(args.host)
    token = None if loopback or args.no_token else secrets.token_hex(24)
    # On loopback, accept only loopback Host headers: a page on another site cannot then reach
    # the server through DNS rebinding. Off loopback the token does that job.
    hosts = [*LOOPBACK_NAMES, args.host.strip("[]"), *addresses] if loopback else None
    app = create_app(args.run, device=args.device, allowed_hosts=hosts, token=token)
    for line in announce(args, addresses, loopback, token):
        print(f"vaekit serve: {line}", flush=True)
    server.serve(app, host=args.host, port=args.port)
    return 0


def announce(
    args: argparse.Namespace, addresses: list[str], loopback: bool, token: str | None
) -> list[str]:
    """What `vaekit serve` prints: the URL(s) to open, and what is bound, accurately."""
    from vaekit.serve.server import describe

    query = f"?token={token}" if token else ""
    names = [args.host]
    if any(a in ("0.0.0.0", "::") for a in addresses):
        names = [socket.gethostname(), "127.0.0.1"]  # what a browser can open
    urls = [f"http://{f'[{n}]' if ':' in n else n}:{args.port}/{query}" for n in names]
    lines = [f"{args.run} at {urls[0]} (Ctrl-C stops)", *(f"  or {u}" for u in urls[1:])]
    bound = describe(addresses)
    if loopback:
        lines.append(f"bound to loopback ({bound}): only this machine can connect")
    elif token:
        lines.append(
            f"bound to {bound}: other machines can connect; the API needs the token in the URL"
        )
    else:
        lines.append(
            f"warning: bound to {bound}: other machines can connect, and with --no-token there "
            "is no authentication: put your own authenticating proxy in front"
        )
    return lines
