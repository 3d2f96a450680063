"""The explorer's JSON API under /api: what the run is, decoding (a point, prior samples, the
2-D manifold) and encoding (an input, the line between two inputs, the test split's scatter).

Each endpoint's work is a function of the `Explorer` and the validated request, run in the
bounded `WorkPool` (the event loop only parses, checks and answers); `add_api` registers them
on the app, in the order the API page lists them.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from fastapi import FastAPI, HTTPException

from vaekit.serve.explorer import Explorer, png
from vaekit.serve.pool import WorkPool
from vaekit.serve.schema import (
    MAX_UPLOAD_BYTES,
    DecodeRequest,
    EncodeRequest,
    InterpolateRequest,
    SampleRequest,
)
from vaekit.viz import as_images, manifold_latents


def add_api(app: FastAPI, ex: Explorer, pool: WorkPool) -> None:
    """The /api endpoints of `app`, over the run `ex` holds; the model work runs in `pool`."""

    @app.get("/api/info", summary="What the run is: latent size, shapes, classes, data")
    async def info() -> dict[str, Any]:
        return run_info(ex)

    @app.post("/api/decode", summary="Decode one latent point (E[x|z], E[x|z,y])")
    async def decode(req: DecodeRequest) -> dict[str, Any]:
        return await pool.run(decode_point, ex, req)

    @app.post("/api/encode", summary="Encode a data row or an uploaded image")
    async def encode(req: EncodeRequest) -> dict[str, Any]:
        return await pool.run(encode_input, ex, req)

    @app.post("/api/sample", summary="Draw from the prior (p(z|y) for a class or cluster)")
    async def sample(req: SampleRequest) -> dict[str, Any]:
        return await pool.run(sample_prior, ex, req)

    @app.post("/api/interpolate", summary="Encode two inputs and decode the line between them")
    async def interpolate(req: InterpolateRequest) -> dict[str, Any]:
        return await pool.run(interpolate_inputs, ex, req)

    @app.get("/api/scatter", summary="The run's test split encoded, projected to 2-D")
    async def scatter() -> dict[str, Any]:
        return await pool.run(ex.scatter)

    @app.get("/api/manifold", summary="The 2-D manifold: decodes of an n x n quantile grid")
    async def manifold(n: int = 15, y: int | None = None) -> dict[str, Any]:
        return await pool.run(manifold_grid, ex, n, y)


# --- the run ---------------------------------------------------------------------------------


def run_info(ex: Explorer) -> dict[str, Any]:
    """What the page needs to lay itself out: sizes, shapes, classes, data, decoder or not."""
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


# --- decoding --------------------------------------------------------------------------------


def decode_point(ex: Explorer, req: DecodeRequest) -> dict[str, Any]:
    """One latent point decoded, and how long it took (ms)."""
    start = time.perf_counter()
    z = ex.latent(req.z)
    y = ex.label(req.y, required=True)
    out = ex.pictures(ex.decode(z, y))
    return {
        "image": out["images"][0] if out["images"] else None,
        "values": out["values"][0] if out["values"] else None,
        "ms": round(1000 * (time.perf_counter() - start), 3),
    }


def sample_prior(ex: Explorer, req: SampleRequest) -> dict[str, Any]:
    """n draws from the prior (of a class or cluster) and their decodes."""
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


def manifold_grid(ex: Explorer, n: int, y: int | None) -> dict[str, Any]:
    """A 2-D latent's decodes at an n x n grid of prior quantiles, as one PNG."""
    ex.need_decoder()
    if ex.latent_dim != 2:
        raise HTTPException(409, f"the manifold needs a 2-D latent; this one is {ex.latent_dim}-D")
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


# --- encoding --------------------------------------------------------------------------------


def encode_input(ex: Explorer, req: EncodeRequest) -> dict[str, Any]:
    """A data row or an upload: its posterior mean and log-variance, and its reconstruction."""
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


def interpolate_inputs(ex: Explorer, req: InterpolateRequest) -> dict[str, Any]:
    """Two inputs encoded, and the straight line between their means decoded."""
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
