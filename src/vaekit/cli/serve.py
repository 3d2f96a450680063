"""`vaekit serve`: the live latent-space explorer for a run, in the browser."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vaekit.cli.common import UserError, add_device

NAME = "serve"

EPILOG = """examples:
  vaekit serve runs/digits                   # then open http://127.0.0.1:8000/
  vaekit serve runs/cvae --port 8080         # a conditional run: a class selector
  vaekit serve runs/digits --host 0.0.0.0    # reachable from other machines (no auth!)

The page: a 2-D pad over two chosen latent dimensions and a slider per dimension (moving them
decodes live), a class or cluster selector where the model has one, sample, interpolate
between two inputs (rows of the run's test split or an uploaded image of the model's size),
the clickable latent scatter of the test split, and the manifold grid for a 2-D latent.
The JSON API is under /api (see /docs for the OpenAPI page; /openapi.json is the schema).
The server only reads the run directory and the run's data; it writes nothing."""

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
    add_device(p)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be 1..65535, got {args.port}")
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ModuleNotFoundError:
        raise UserError(
            "vaekit serve needs fastapi and uvicorn: pip install 'vaekit[serve]'"
        ) from None
    from vaekit.serve.app import create_app, is_loopback

    loopback = is_loopback(args.host)
    # On loopback, accept only loopback Host headers: a page on another site cannot then reach
    # the server through DNS rebinding.
    app = create_app(
        args.run, device=args.device, allowed_hosts=LOOPBACK_NAMES if loopback else None
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"vaekit serve: {args.run} at http://{shown}:{args.port}/ (Ctrl-C stops)", flush=True)
    if loopback:
        print("vaekit serve: bound to loopback: only this machine can connect", flush=True)
    else:
        print(
            f"vaekit serve: warning: bound to {args.host}: other machines can connect, and there "
            "is no authentication",
            flush=True,
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
