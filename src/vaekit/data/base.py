"""What every data module shares: the error type, a loaded source, and the accepted sources."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACCEPTED = (
    "'digits', a folder of MNIST IDX files or of PNG/JPEG images (optionally in class "
    "sub-folders), an IDX images file, or a .npz, .npy, .csv or .mat file"
)


class DataError(ValueError):
    """A data source is missing, malformed, or does not fit the requested options."""


@dataclass
class Dataset:
    """A loaded source. x: (n, *event_shape) float32; y: (n,) int64 or None."""

    x: np.ndarray
    y: np.ndarray | None
    name: str
    kind: str  # "image" (x is (n, C, H, W)) | "tabular" (x is (n, D))
    classes: list[str] | None = None  # label names when labels came from strings/folders

    def __len__(self) -> int:
        return int(self.x.shape[0])


def is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def int_or_none(s: str | None) -> int | None:
    if s is None:
        return None
    try:
        return int(s)
    except ValueError:
        return None
