"""The explorer's FastAPI app: one page (static/) and a JSON API over a trained run.

Every input is validated (pydantic models, then the model's own checks) and every mistake is a
4xx with a one-line `detail`, never a 500. The app only reads: the run directory (safetensors
weights and JSON, never a pickle) and the run's data source; no endpoint writes a file.
This module is the HTTP shell: the error handlers, the page, its static files and the API page;
the checks before a request is read (Host, Origin, token, body size) are in
`vaekit.serve.guard`, the endpoints in `vaekit.serve.api`, the bounded pool they run in in
`vaekit.serve.pool`, the loaded run in `vaekit.serve.explorer`, the request bodies and their
limits in `vaekit.serve.schema`, and the server (deadlines, connection cap) in
`vaekit.serve.server`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from vaekit.serve.api import add_api
from vaekit.serve.apidocs import docs_page
from vaekit.serve.explorer import Explorer
from vaekit.serve.guard import Guard, host_name
from vaekit.serve.pool import WorkPool
from vaekit.serve.schema import MAX_BODY_BYTES, MAX_UPLOAD_BYTES
from vaekit.serve.server import is_loopback

STATIC = Path(__file__).with_name("static")


def create_app(
    run_dir: str | Path,
    *,
    device: str = "cpu",
    allowed_hosts: list[str] | None = None,
    token: str | None = None,
    pool: WorkPool | None = None,
) -> FastAPI:
    """The explorer for the run in `run_dir`: the page at /, the JSON API under /api.

    allowed_hosts: Host header values to accept (None: any). `vaekit serve` on loopback passes
    the loopback names, so a web page elsewhere cannot reach the server by DNS rebinding.
    token: a secret every request but the page's own files must carry (None: none needed).
    pool: where the model work runs (default: `WorkPool()`, 2 threads, 64 requests at most).
    """
    ex = Explorer(run_dir, device=device)
    work = pool or WorkPool()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        work.close()

    app = FastAPI(
        title="vaekit explorer",
        description=f"Move through the latent space of the run in {ex.run.path}.",
        version="1",
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN; add_page serves our own
        redoc_url=None,
        lifespan=lifespan,
    )
    hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
    app.add_middleware(Guard, hosts=hosts, token=token)
    add_error_handlers(app)
    add_page(app)
    add_api(app, ex, work)
    app.state.explorer = ex
    app.state.pool = work
    return app


# --- errors as one-line 422s -----------------------------------------------------------------


def add_error_handlers(app: FastAPI) -> None:
    """A request the models refuse (pydantic or the model's own checks) is a one-line 422."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(ValueError)
    async def model_refused(_: Request, exc: ValueError) -> JSONResponse:
        # the model's own checks (input support, labels) are one-line ValueErrors
        return JSONResponse({"detail": _one_line(str(exc))}, status_code=422)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _validation_detail(exc: RequestValidationError) -> str:
    """FastAPI's list of errors as one line: the first error and a count of the rest."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    e = errors[0]
    loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
    msg = e.get("msg", "invalid value")
    if e.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    if e.get("type") == "missing" and loc == "body":
        return "send a JSON body (Content-Type: application/json)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _one_line(f"{loc}: {msg}{more}")


# --- the page ----------------------------------------------------------------------------------


def add_page(app: FastAPI) -> None:
    """The page at /, its files under /static and the API page at /docs, all from the package
    (no CDN), and no favicon."""
    page_html = (STATIC / "index.html").read_bytes()

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(page_html, media_type="text/html; charset=utf-8")

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request) -> HTMLResponse:
        token = request.query_params.get("token")
        return HTMLResponse(docs_page(app.openapi(), f"?token={token}" if token else ""))

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)  # no icon; say so rather than 404 in the console

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


__all__ = ["MAX_BODY_BYTES", "MAX_UPLOAD_BYTES", "create_app", "host_name", "is_loopback"]
