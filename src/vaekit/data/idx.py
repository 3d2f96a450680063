"""MNIST's IDX files: one images file (gzip or raw) and the labels file beside it."""

from __future__ import annotations

import gzip
import math
import re
from pathlib import Path

import numpy as np

from vaekit.data.base import DataError

# IDX type byte -> big-endian dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_IMAGES = re.compile(r"^(?P<prefix>.*?)[-_.]?images[-_.]idx3[-_.]ubyte(\.gz)?$", re.I)
IDX_LABELS = re.compile(r"^(?P<prefix>.*?)[-_.]?labels[-_.]idx1[-_.]ubyte(\.gz)?$", re.I)


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse one IDX file (gzip or raw): big-endian magic 0x00 0x00 <type> <ndim>, uint32 dims."""
    try:
        with path.open("rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":  # gzip magic: decide by content, not by name
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}; re-download or unpack it") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES or raw[3] != ndim:
        raise DataError(
            f"{path} is not an IDX file with {ndim} dimension(s) (magic "
            f"{raw[:4].hex() or 'empty'}, expected 000008{ndim:02x}); check the file"
        )
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: header says shape {dims} ({expected} bytes) but the file holds {len(raw)} "
            "bytes (truncated or corrupt); re-download it"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def _idx_prefix(path: Path, pattern: re.Pattern[str]) -> str:
    m = pattern.match(path.name)
    assert m is not None
    return m.group("prefix").lower()


def load_idx_images(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """One images file plus the labels file beside it with the same prefix (if any)."""
    x = _read_idx(path, 3)
    prefix = _idx_prefix(path, IDX_IMAGES)
    labels = [
        p
        for p in sorted(path.parent.iterdir())
        if p.is_file() and IDX_LABELS.match(p.name) and _idx_prefix(p, IDX_LABELS) == prefix
    ]
    if not labels:
        return x, None
    y = _read_idx(labels[0], 1)
    if len(y) != len(x):
        raise DataError(
            f"{labels[0].name} has {len(y)} labels but {path.name} has {len(x)} images; "
            "use the matching labels file or remove it"
        )
    return x, y.astype(np.int64)


def idx_order(path: Path) -> tuple[int, str]:
    prefix = _idx_prefix(path, IDX_IMAGES)
    rank = 0 if prefix.startswith("train") else 1 if prefix.startswith("t10k") else 2
    return rank, path.name  # train, then t10k (MNIST's test set), then the rest by name
