"""The explorer's FastAPI app: one page (static/) and a JSON API over a trained run.

Every input is validated (pydantic models, then the model's own checks) and every mistake is a
4xx with a one-line `detail`, never a 500. The app only reads: the run directory (safetensors
weights and JSON, never a pickle) and the run's data source; no endpoint writes a file.
This module is the HTTP shell: the Host and body-size checks, the error handlers, the page and
its static files; the endpoints are in `vaekit.serve.api`, the loaded run in
`vaekit.serve.explorer`, the request bodies and their limits in `vaekit.serve.schema`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from vaekit.serve.api import add_api
from vaekit.serve.explorer import Explorer
from vaekit.serve.schema import MAX_BODY_BYTES, MAX_UPLOAD_BYTES

STATIC = Path(__file__).with_name("static")


def create_app(
    run_dir: str | Path, *, device: str = "cpu", allowed_hosts: list[str] | None = None
) -> FastAPI:
    """The explorer for the run in `run_dir`: the page at /, the JSON API under /api.

    allowed_hosts: Host header values to accept (None: any). `vaekit serve` on loopback passes
    the loopback names, so a web page elsewhere cannot reach the server by DNS rebinding.
    """
    ex = Explorer(run_dir, device=device)
    app = FastAPI(
        title="vaekit explorer",
        description=f"Move through the latent space of the run in {ex.run.path}.",
        version="1",
    )
    add_guard(app, None if allowed_hosts is None else {h.lower() for h in allowed_hosts})
    add_error_handlers(app)
    add_page(app)
    add_api(app, ex)
    app.state.explorer = ex
    return app


# --- checks before a request is read ---------------------------------------------------------


def add_guard(app: FastAPI, hosts: set[str] | None) -> None:
    """Refuse a request whose Host is not in `hosts` (None: any), and a POST whose body is
    missing its length or too large, before the body is read."""

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if hosts is not None and host_name(request.headers.get("host", "")) not in hosts:
            return JSONResponse(
                {"detail": "unexpected Host header; open the address vaekit serve printed"},
                status_code=400,
            )
        # Refuse an oversized body before reading it; h11 holds a body to its Content-Length.
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"detail": "send a Content-Length header"}, status_code=411)
            if not length.isdigit():
                return JSONResponse({"detail": "Content-Length is not a number"}, status_code=400)
            if int(length) > MAX_BODY_BYTES:
                return JSONResponse(
                    {"detail": f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}"},
                    status_code=413,
                )
        return await call_next(request)


def host_name(header: str) -> str:
    """The name in a Host header, port dropped: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:80" ->
    "::1" (starlette's TrustedHostMiddleware cuts an IPv6 address at its first colon)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server to this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
    """The page at /, its files under /static (from the package, no CDN), and no favicon."""

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # no icon; say so rather than 404 in the console

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


__all__ = ["MAX_UPLOAD_BYTES", "create_app", "is_loopback"]
