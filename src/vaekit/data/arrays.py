"""NumPy (.npy, .npz) and MATLAB (.mat) files; never unpickled."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.base import DataError


def _pickle_error(path: Path) -> DataError:
    return DataError(
        f"{path} holds a Python-object array, which vaekit never unpickles; save a numeric "
        "array instead (e.g. np.save(path, x.astype(np.float32)))"
    )


def _has_magic(path: Path, magic: bytes) -> bool:
    with path.open("rb") as f:
        return f.read(len(magic)) == magic


def load_npy(path: Path, mmap: bool) -> np.ndarray:
    # np.load treats a file without the NumPy header as a pickle; say what it really is.
    if not _has_magic(path, b"\x93NUMPY"):
        raise DataError(f"{path} is not a .npy file (no NumPy header); re-save it with np.save")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as e:
        if "pickle" in str(e) or "object" in str(e).lower():
            raise _pickle_error(path) from None
        raise DataError(f"cannot read {path} as .npy: {e}; re-save it with np.save") from None
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path} as .npy: {e}; re-save it with np.save") from None


def load_npz(path: Path, label_column: str | None) -> tuple[np.ndarray, Any, None]:
    label_key = label_column or "y"
    if not _has_magic(path, b"PK"):
        raise DataError(f"{path} is not a .npz file (not a zip archive); re-save it with np.savez")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.files)
            if "x" in keys:
                x_key = "x"
            elif len(keys) == 1:
                x_key = keys[0]
            else:
                raise DataError(
                    f"{path} holds arrays {', '.join(keys) or '(none)'}; name the data 'x' "
                    "(and labels 'y') when saving: np.savez(path, x=x, y=y)"
                )
            if label_column is not None and label_column not in keys:
                raise DataError(f"{path} has no array {label_column!r}; it has {', '.join(keys)}")
            x = f[x_key]
            y = f[label_key] if label_key in keys and label_key != x_key else None
    except ValueError as e:
        if isinstance(e, DataError):
            raise
        if "pickle" in str(e) or "object" in str(e).lower():
            raise _pickle_error(path) from None
        raise DataError(f"cannot read {path} as .npz: {e}; re-save it with np.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path} as .npz: {e}; re-save it with np.savez") from None
    return x, y, None


def load_mat(
    path: Path, shape: tuple[int, ...] | None, label_column: str | None
) -> tuple[np.ndarray, Any, None]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 files are HDF5
        raise DataError(
            f"{path} is a MATLAB v7.3 (HDF5) file; re-save it with save(..., '-v7')"
        ) from None
    except (ValueError, OSError, TypeError, scipy.io.matlab.MatReadError) as e:
        raise DataError(f"cannot read {path} as a .mat file: {e}; re-save it in MATLAB") from None
    arrays = {
        k: v
        for k, v in mat.items()
        if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "biuf"
    }
    label_key = label_column or "y"
    y = arrays.pop(label_key, None)
    if label_column is not None and y is None:
        raise DataError(f"{path} has no numeric variable {label_column!r}; it has {', '.join(mat)}")
    data = {k: v for k, v in arrays.items() if v.ndim == 2}
    if "x" in data:
        key = "x"
    elif len(data) == 1:
        (key,) = data
    else:
        found = ", ".join(f"{k} {v.shape}" for k, v in arrays.items()) or "none"
        raise DataError(
            f"{path} must hold one 2-D numeric array (examples x values), found: {found}; "
            "name the data 'x'"
        )
    x = data[key]
    if shape is None:
        raise DataError(
            f"{path}: a .mat array {x.shape} needs image_shape (--image-shape) to tell examples "
            "from pixels (e.g. image_shape=(28, 20), --image-shape 28,20 for Frey faces)"
        )
    size = math.prod(shape)
    if x.shape[1] == size:
        pass  # rows are examples
    elif x.shape[0] == size:
        x = x.T  # MATLAB habit: one example per column
    else:
        raise DataError(
            f"{path}: neither axis of {key} {x.shape} has {size} values = prod(image_shape "
            f"{shape}); give the image shape of one example (--image-shape)"
        )
    if y is not None:
        y = y.reshape(-1)
    return x, y, None
