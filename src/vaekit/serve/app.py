"""The explorer's FastAPI app: one page (static/) and a JSON API over a trained run.

Every input is validated (pydantic models, then the model's own checks) and every mistake is a
4xx with a one-line `detail`, never a 500. The app only reads: the run directory (safetensors
weights and JSON, never a pickle) and the run's data source; no endpoint writes a file.
Images travel as PNG data URLs; decoding runs under `torch.no_grad` (the model's methods).
"""

from __future__ import annotations

import base64
import binascii
import io
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vaekit.plots import as_images, latent_projection, manifold_latents
from vaekit.runs import Run

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD_BYTES = 1_000_000  # an uploaded image file; a 28x28 PNG is well under 1 kB
# base64 grows 4/3, plus the data-URL prefix and the JSON around it
MAX_BODY_BYTES = 4 * MAX_UPLOAD_BYTES // 3 + 4096
MAX_SCATTER = 2000  # points in the latent scatter: enough to see structure, quick to draw
Z_LIMIT = 1e4  # |z| beyond this is no place a prior puts mass; refuse rather than decode inf
MAX_LATENT = 4096
UPLOAD_FORMATS = ("PNG", "JPEG")

Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-Z_LIMIT, le=Z_LIMIT)]


class Strict(BaseModel):
    # strict: "3" is not a class and true is not 1; forbid: a misspelt field is an error
    model_config = ConfigDict(extra="forbid", strict=True)


class DecodeRequest(Strict):
    z: list[Coordinate] = Field(min_length=1, max_length=MAX_LATENT, description="a latent point")
    y: int | None = Field(None, description="class (conditional model); ignored by a clustering")


class Source(Strict):
    """One input: a row of the run's data (`index`) or an uploaded image (`image`)."""

    index: int | None = Field(None, ge=0, description="row of the run's test split")
    image: str | None = Field(
        None,
        max_length=MAX_BODY_BYTES,
        description="a PNG or JPEG of the model's image size: a data URL or plain base64",
    )

    @model_validator(mode="after")
    def one_of(self) -> Source:
        if (self.index is None) == (self.image is None):
            raise ValueError("give exactly one of index (a row of the run's data) or image")
        return self


class EncodeRequest(Source):
    y: int | None = Field(None, description="class of an uploaded image (conditional model)")


class SampleRequest(Strict):
    n: int = Field(1, ge=1, le=64, description="how many samples")
    y: int | None = Field(None, description="class (conditional) or cluster (clustering model)")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="for repeatable draws")


class InterpolateRequest(Strict):
    a: Source
    b: Source
    steps: int = Field(8, ge=2, le=64, description="points on the line, ends included")
    y: int | None = Field(None, description="class to decode with (conditional model)")


class Explorer:
    """The loaded run and what the endpoints share: its test split and the scatter."""

    def __init__(self, run_dir: str | Path, *, device: str = "cpu") -> None:
        self.run = Run.load(run_dir, device=device)
        self.model = self.run.model.eval()
        cfg = self.model.config
        self.latent_dim = int(cfg.latent_dim)
        self.event_shape = tuple(int(s) for s in cfg.event_shape)
        probe = as_images(np.zeros((1, *self.event_shape), np.float32), self.event_shape)
        self.image_shape = None if probe is None else tuple(probe.shape[1:])
        self.conditional = bool(cfg.conditional)
        self.clustering = cfg.prior == "cluster"
        self.num_classes = int(cfg.num_classes or 0)
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.data_error: str | None = None
        try:
            self.x, self.y = self.run.data(split="test")
        except Exception as e:
            self.data_error = f"the run's data could not be loaded: {' '.join(str(e).split())}"
        self._scatter: dict[str, Any] | None = None

    # --- checks -------------------------------------------------------------------------

    def label(self, y: int | None, *, required: bool) -> int | None:
        """A validated class/cluster index, or None."""
        if y is None:
            if required and self.conditional:
                raise HTTPException(
                    422, f"this model is conditional: give y, a class 0..{self.num_classes - 1}"
                )
            return None
        if not (self.conditional or self.clustering):
            raise HTTPException(422, "this model has no classes or clusters; drop y")
        if not 0 <= y < self.num_classes:
            what = "class" if self.conditional else "cluster"
            raise HTTPException(422, f"y must be a {what} 0..{self.num_classes - 1}, got {y}")
        return y

    def need_decoder(self) -> None:
        if not self.model.has_decoder:
            raise HTTPException(
                409, "this model has no decoder (an encoder-only infomax model); it only encodes"
            )

    def latent(self, z: list[float]) -> torch.Tensor:
        if len(z) != self.latent_dim:
            raise HTTPException(
                422, f"z must have {self.latent_dim} values (the latent size), got {len(z)}"
            )
        return torch.tensor([z], dtype=torch.float32, device=self.run.device)

    def data_row(self, index: int) -> tuple[torch.Tensor, int | None]:
        if self.x is None:
            raise HTTPException(409, self.data_error or "this run has no data to pick from")
        if index >= len(self.x):
            raise HTTPException(
                422, f"index must be 0..{len(self.x) - 1} (the run's test split), got {index}"
            )
        y = None if self.y is None else int(self.y[index])
        return self.x[index : index + 1], y

    def uploaded(self, text: str) -> torch.Tensor:
        """An uploaded PNG/JPEG as a (1, *event_shape) model-space tensor."""
        from PIL import Image, UnidentifiedImageError

        if self.image_shape is None:
            raise HTTPException(422, "this run's data are not images; pick an index instead")
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(
                400, "image is not valid base64 (send a data URL or base64)"
            ) from None
        if len(raw) > MAX_UPLOAD_BYTES:
            raise HTTPException(
                413, f"image is {len(raw)} bytes; the limit is {MAX_UPLOAD_BYTES} bytes"
            )
        c, h, w = self.image_shape
        try:
            im = Image.open(io.BytesIO(raw), formats=UPLOAD_FORMATS)
            # the size is in the header: check it before decoding any pixels
            if im.size != (w, h):
                raise HTTPException(
                    422,
                    f"image is {im.size[0]}x{im.size[1]} but this model takes {w}x{h} "
                    "(width x height); resize it",
                )
            arr = np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise HTTPException(400, "image is not a readable PNG or JPEG file") from None
        arr = arr[None] if c == 1 else arr.transpose(2, 0, 1)
        x = torch.from_numpy(np.ascontiguousarray(arr)).reshape(1, *self.event_shape)
        return self.run.preprocessor.transform(x).to(self.run.device)

    def source(self, s: Source, y: int | None) -> tuple[torch.Tensor, int | None]:
        """(x, its label) for a data row (the row's own label) or an upload (the given y)."""
        if s.index is not None:
            return self.data_row(s.index)
        assert s.image is not None
        return self.uploaded(s.image), self.label(y, required=True)

    # --- computing ----------------------------------------------------------------------

    def encode(self, x: torch.Tensor, y: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(x, None if not self.conditional else y)

    def decode(self, z: torch.Tensor, y: int | None) -> torch.Tensor:
        self.need_decoder()
        return self.model.decode(z, y if self.conditional else None)

    def pictures(self, x: torch.Tensor) -> dict[str, Any]:
        """Model-space x (n, *event_shape) as PNG data URLs, or raw values for non-images."""
        shown = self.run.to_display(x.detach().float().cpu())
        images = as_images(shown, self.event_shape)
        if images is None:
            rows = np.nan_to_num(shown.reshape(len(shown), -1).numpy()).round(5)
            return {"images": None, "values": rows.tolist()}
        return {"images": [png(im) for im in images], "values": None}

    def scatter(self) -> dict[str, Any]:
        """The test split's posterior means, projected to 2-D (computed once)."""
        if self._scatter is None:
            if self.x is None:
                raise HTTPException(409, self.data_error or "this run has no data to encode")
            n = min(len(self.x), MAX_SCATTER)
            y = None if self.y is None else self.y[:n]
            if self.conditional and y is None:
                raise HTTPException(409, "the run's data have no labels for its conditional model")
            means = torch.cat(
                [
                    self.model.encode(
                        self.x[i : i + 512], None if not self.conditional else y[i : i + 512]
                    )[0]
                    for i in range(0, n, 512)
                ]
            )
            coords, axes = latent_projection(means)
            if coords.shape[1] == 1:
                coords = np.concatenate([coords, np.zeros_like(coords)], axis=1)
            self._scatter = {
                "points": np.round(coords, 4).tolist(),
                "labels": None if y is None else [int(v) for v in y],
                "axes": list(axes),
            }
        return self._scatter


def png(image: np.ndarray) -> str:
    """(C, H, W) float in [0, 1] -> a PNG data URL."""
    from PIL import Image

    a = np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0)
    a = (a * 255 + 0.5).astype(np.uint8)
    pil = Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0))
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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
    hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

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

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(ValueError)
    async def model_refused(_: Request, exc: ValueError) -> JSONResponse:
        # the model's own checks (input support, labels) are one-line ValueErrors
        return JSONResponse({"detail": _one_line(str(exc))}, status_code=422)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # no icon; say so rather than 404 in the console

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info", summary="What the run is: latent size, shapes, classes, data")
    def info() -> dict[str, Any]:
        cfg = ex.model.config
        names = list(cfg.class_names) if getattr(cfg, "class_names", None) else None
        return {
            "run": ex.run.path.name,
            "latent_dim": ex.latent_dim,
            "event_shape": list(ex.event_shape),
            "image_shape": None if ex.image_shape is None else list(ex.image_shape),
            "has_decoder": ex.model.has_decoder,
            "conditional": ex.conditional,
            "prior": cfg.prior,
            "selector": "class" if ex.conditional else "cluster" if ex.clustering else None,
            "num_classes": ex.num_classes,
            "class_names": names,
            "n_data": 0 if ex.x is None else len(ex.x),
            "data_error": ex.data_error,
            "manifold": ex.latent_dim == 2 and ex.model.has_decoder and ex.image_shape is not None,
            "max_upload_bytes": MAX_UPLOAD_BYTES,
        }

    @app.post("/api/decode", summary="Decode one latent point (E[x|z], E[x|z,y])")
    def decode(req: DecodeRequest) -> dict[str, Any]:
        start = time.perf_counter()
        z = ex.latent(req.z)
        y = ex.label(req.y, required=True)
        out = ex.pictures(ex.decode(z, y))
        return {
            "image": out["images"][0] if out["images"] else None,
            "values": out["values"][0] if out["values"] else None,
            "ms": round(1000 * (time.perf_counter() - start), 3),
        }

    @app.post("/api/encode", summary="Encode a data row or an uploaded image")
    def encode(req: EncodeRequest) -> dict[str, Any]:
        x, y = ex.source(req, req.y)
        mean, logvar = ex.encode(x, y)
        shown = ex.pictures(x)
        recon = ex.pictures(ex.decode(mean, y)) if ex.model.has_decoder else None
        return {
            "mean": mean[0].tolist(),
            "logvar": logvar[0].tolist(),
            "y": y,
            "input": shown["images"][0] if shown["images"] else shown["values"][0],
            "reconstruction": None
            if recon is None
            else recon["images"][0]
            if recon["images"]
            else recon["values"][0],
        }

    @app.post("/api/sample", summary="Draw from the prior (p(z|y) for a class or cluster)")
    def sample(req: SampleRequest) -> dict[str, Any]:
        ex.need_decoder()
        y = ex.label(req.y, required=True)
        gen = torch.Generator(device=ex.run.device)
        gen.manual_seed(req.seed if req.seed is not None else int(torch.seed() % 2**63))
        labels = None if y is None else torch.full((req.n,), y, dtype=torch.long)
        prior_y = labels if (ex.conditional or ex.clustering) else None
        with torch.no_grad():
            z = ex.model.prior.sample(
                req.n, y=None if prior_y is None else ex.model.prior_labels(prior_y), generator=gen
            )
        out = ex.pictures(ex.decode(z, y))
        return {"z": z.tolist(), **out}

    @app.post("/api/interpolate", summary="Encode two inputs and decode the line between them")
    def interpolate(req: InterpolateRequest) -> dict[str, Any]:
        ex.need_decoder()
        y_req = ex.label(req.y, required=False)
        xa, ya = ex.source(req.a, req.y)
        xb, yb = ex.source(req.b, req.y)
        za, zb = ex.encode(xa, ya)[0], ex.encode(xb, yb)[0]
        t = torch.linspace(0, 1, req.steps, device=za.device)[:, None]
        z = (1 - t) * za + t * zb
        y = y_req if y_req is not None else ya  # a conditional walk keeps one class
        out = ex.pictures(ex.decode(z, y))
        ends = ex.pictures(torch.cat([xa, xb]))
        return {
            "z": z.tolist(),
            **out,
            "a": ends["images"][0] if ends["images"] else ends["values"][0],
            "b": ends["images"][1] if ends["images"] else ends["values"][1],
            "y": y,
        }

    @app.get("/api/scatter", summary="The run's test split encoded, projected to 2-D")
    def scatter() -> dict[str, Any]:
        return ex.scatter()

    @app.get("/api/manifold", summary="The 2-D manifold: decodes of an n x n quantile grid")
    def manifold(n: int = 15, y: int | None = None) -> dict[str, Any]:
        ex.need_decoder()
        if ex.latent_dim != 2:
            raise HTTPException(
                409, f"the manifold needs a 2-D latent; this one is {ex.latent_dim}-D"
            )
        if not 2 <= n <= 30:
            raise HTTPException(422, f"n must be 2..30, got {n}")
        y = ex.label(y, required=True)
        z, q = manifold_latents(n)
        decoded = ex.decode(z.to(ex.run.device), y)
        shown = as_images(ex.run.to_display(decoded.cpu()), ex.event_shape)
        if shown is None:
            raise HTTPException(409, "this run's data are not images; there is no manifold to draw")
        c, h, w = shown.shape[1:]
        grid = shown.reshape(n, n, c, h, w).transpose(2, 0, 3, 1, 4).reshape(c, n * h, n * w)
        return {"image": png(grid), "n": n, "quantiles": [round(float(v), 4) for v in q]}

    app.state.explorer = ex
    return app


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


__all__ = ["MAX_UPLOAD_BYTES", "create_app", "is_loopback"]
