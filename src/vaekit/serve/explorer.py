"""The run the explorer serves: the loaded model, its test split, and the checks and
computations its endpoints share.

Every check raises an HTTPException with a one-line `detail` (a 4xx, never a 500). The explorer
only reads: the run directory (safetensors weights and JSON, never a pickle) and the run's data
source. Images travel as PNG data URLs; decoding runs under `torch.no_grad` (the model's methods).
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import HTTPException

from vaekit.runs.run import Run
from vaekit.serve.schema import MAX_UPLOAD_BYTES, Source
from vaekit.viz import as_images, latent_projection

MAX_SCATTER = 2000  # points in the latent scatter: enough to see structure, quick to draw
UPLOAD_FORMATS = ("PNG", "JPEG")


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
