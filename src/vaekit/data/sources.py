"""`load_source`: a source name or path to a checked float32 `Dataset` (one format module per
family: idx, images, arrays, tables)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.arrays import load_mat, load_npy, load_npz
from vaekit.data.base import ACCEPTED, DataError, Dataset
from vaekit.data.idx import IDX_IMAGES, IDX_LABELS, idx_order, load_idx_images
from vaekit.data.images import load_image_folder
from vaekit.data.tables import load_csv

_FINITE_CHUNK = 1 << 24  # elements per chunk when scanning for NaN/inf (bounded memory on mmaps)


def load_source(
    source: str,
    *,
    image_shape: tuple[int, ...] | None = None,
    label_column: str | None = None,
    mmap: bool = False,
) -> Dataset:
    """Load `source` (see module docstring) into a `Dataset`.

    image_shape: (H, W) or (C, H, W); reshapes flat rows (or any examples of that size) to
        images. label_column: CSV column name (or 0-based index for a header-less CSV), or
        the labels array's name in a .npz/.mat. mmap: memory-map a .npy instead of reading it.
    """
    shape = _normalise_image_shape(image_shape)
    if source == "digits":
        x, y, name, classes = *_load_digits(), "digits", None
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"no such file or folder: {source!r}; give {ACCEPTED}")
        name = path.name
        x, y, classes = _load_path(path, shape, label_column, mmap)
    return _finalise(x, y, name, shape, classes)


def _load_path(
    path: Path, shape: tuple[int, ...] | None, label_column: str | None, mmap: bool
) -> tuple[np.ndarray, Any, list[str] | None]:
    if path.is_dir():
        return _load_folder(path)
    suffix = path.suffix.lower()
    if IDX_IMAGES.match(path.name):
        x, y = load_idx_images(path)
        return x, y, None
    if IDX_LABELS.match(path.name):
        raise DataError(f"{path} is an IDX labels file; give its images file or the folder")
    if suffix == ".npy":
        return load_npy(path, mmap), None, None
    if suffix == ".npz":
        return load_npz(path, label_column)
    if suffix == ".csv":
        return load_csv(path, label_column)
    if suffix == ".mat":
        return load_mat(path, shape, label_column)
    raise DataError(f"unknown file type {suffix or '(no extension)'!r} for {path}; give {ACCEPTED}")


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()  # shipped with scikit-learn: no download
    x = (d.images.astype(np.float32) / np.float32(16.0))[:, None]  # 0..16 -> [0, 1]
    return x, d.target.astype(np.int64)


def _load_folder(path: Path) -> tuple[np.ndarray, Any, list[str] | None]:
    files = [p for p in path.iterdir() if not p.name.startswith(".")]
    idx = sorted((p for p in files if p.is_file() and IDX_IMAGES.match(p.name)), key=idx_order)
    if idx:
        parts = [load_idx_images(p) for p in idx]
        xs = [x for x, _ in parts]
        if len({x.shape[1:] for x in xs}) > 1:
            sizes = ", ".join(f"{p.name} {x.shape[1:]}" for p, x in zip(idx, xs, strict=True))
            raise DataError(f"IDX image files in {path} differ in image size ({sizes}); load one")
        x = xs[0] if len(xs) == 1 else np.concatenate(xs)
        ys = [y for _, y in parts]
        if all(y is not None for y in ys):
            y = ys[0] if len(ys) == 1 else np.concatenate(ys)
        else:
            missing = [p.name for p, yy in zip(idx, ys, strict=True) if yy is None]
            if len(missing) < len(ys):
                warnings.warn(
                    f"no labels file for {', '.join(missing)} in {path}; loading without labels",
                    stacklevel=3,
                )
            y = None
        return x, y, None
    return load_image_folder(path)


# Common checks -------------------------------------------------------------------------------


def _normalise_image_shape(shape: Any) -> tuple[int, ...] | None:
    if shape is None:
        return None
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise DataError(
            "image_shape (--image-shape) must be (H, W) or (C, H, W) of positive sizes, "
            f"got {shape}"
        )
    return shape


def _finalise(
    x: np.ndarray,
    y: Any,
    name: str,
    shape: tuple[int, ...] | None,
    classes: list[str] | None,
) -> Dataset:
    """Validate and convert to float32 (n, *event_shape); decide kind; encode labels."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{name}: data has dtype {x.dtype}; give a numeric array")
    if x.ndim == 0:
        raise DataError(f"{name} holds a single value, not an array of examples; give (n, ...)")
    if x.shape[0] == 0:
        raise DataError(f"{name} is empty (0 examples); give a source with at least one example")
    n = x.shape[0]
    row = math.prod(x.shape[1:])
    if shape is not None:
        if row != math.prod(shape):
            raise DataError(
                f"{name}: image_shape {shape} holds {math.prod(shape)} values but each example "
                f"has {row} ({x.shape[1:]}); fix image_shape (--image-shape)"
            )
        x, kind = x.reshape(n, *shape), "image"
    elif x.ndim == 1:
        x, kind = x.reshape(n, 1), "tabular"
    elif x.ndim == 2:
        kind = "tabular"
    elif x.ndim == 3:
        x, kind = x[:, None], "image"  # (n, H, W) grey images
    elif x.ndim == 4:
        if x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = x.transpose(0, 3, 1, 2)  # channels-last (n, H, W, C), as PIL/NumPy save images
        kind = "image"
    else:
        raise DataError(
            f"{name}: cannot tell the layout of shape {x.shape}; give image_shape (--image-shape)"
        )

    if x.dtype == np.uint8:  # (a uint8 memmap is scaled in memory: --mmap wants float32 files)
        x = x.astype(np.float32) / np.float32(255.0)  # pixels -> [0, 1]
    elif x.dtype != np.float32:
        with np.errstate(over="ignore"):  # values beyond float32 become inf: reported below
            x = x.astype(np.float32)
    elif not isinstance(x, np.memmap) and not x.flags.writeable:
        x = x.copy()  # e.g. np.frombuffer: torch wants writeable memory
    _check_finite(x, name)

    if y is not None:
        y, classes = _encode_labels(np.asarray(y), name, classes)
        if len(y) != n:
            raise DataError(
                f"{name} has {len(y)} labels but {n} examples; give one label per example"
            )
    return Dataset(x=x, y=y, name=name, kind=kind, classes=classes)


def _check_finite(x: np.ndarray, name: str) -> None:
    if x.dtype.kind in "biu":
        return  # integers are always finite
    flat = x.reshape(-1)
    count, first = 0, None
    for start in range(0, flat.size, _FINITE_CHUNK):  # chunks: no full-size mask for mmaps
        bad = np.flatnonzero(~np.isfinite(flat[start : start + _FINITE_CHUNK]))
        if bad.size and first is None:
            first = start + int(bad[0])
        count += int(bad.size)
    if first is not None:
        where = np.unravel_index(first, x.shape)
        example, pos = int(where[0]), tuple(int(i) for i in where[1:])
        raise DataError(
            f"{name} has {count} NaN/inf value(s); the first is {flat[first]} in example {example} "
            f"at position {pos}; remove or impute them"
        )


def _encode_labels(
    y: np.ndarray, name: str, classes: list[str] | None
) -> tuple[np.ndarray, list[str] | None]:
    if y.ndim != 1:
        if y.ndim == 2 and 1 in y.shape:
            y = y.reshape(-1)  # column or row vector (e.g. from MATLAB)
        else:
            raise DataError(f"{name}: labels must be one per example (n,), got shape {y.shape}")
    if y.dtype.kind in "US":
        try:  # numeric strings from a CSV column: keep their values
            as_float = y.astype(np.float64)
        except ValueError:
            names, codes = np.unique(y, return_inverse=True)
            return codes.astype(np.int64).reshape(-1), [str(s) for s in names]
        y = as_float
    if y.dtype.kind == "b":
        return y.astype(np.int64), classes
    if y.dtype.kind == "f" and (not np.isfinite(y).all() or (y != np.round(y)).any()):
        raise DataError(f"{name}: labels must be integers or strings, got non-integer values")
    if y.dtype.kind not in "iuf":
        raise DataError(f"{name}: labels have unsupported dtype {y.dtype}")
    return y.astype(np.int64), classes
