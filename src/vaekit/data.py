"""Data: sources -> in-memory arrays -> seeded splits -> preprocessing.

Sources (`load_source`): ``"digits"`` (scikit-learn's 8x8 digits), MNIST IDX files (a folder
or the images file), ``.npz``, ``.npy``, ``.csv``, ``.mat`` and folders of PNG/JPEG images
(sub-folder names become labels). Everything comes back as float32: images as
(n, C, H, W) in [0, 1] (uint8 pixels are divided by 255), tabular data as (n, D) as given.

Problems raise `DataError` with a one-line message saying what is wrong and how to fix it.
Nothing here unpickles: NumPy files are always read with ``allow_pickle=False``.
"""

from __future__ import annotations

import csv
import gzip
import math
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.config import DataConfig

__all__ = [
    "DataError",
    "Dataset",
    "Preprocessor",
    "Split",
    "Splits",
    "dynamic_binarize",
    "load_like_run",
    "load_source",
    "prepare",
    "split_indices",
]

ACCEPTED = (
    "'digits', a folder of MNIST IDX files or of PNG/JPEG images (optionally in class "
    "sub-folders), an IDX images file, or a .npz, .npy, .csv or .mat file"
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# IDX type byte -> big-endian dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_IMAGES = re.compile(r"^(?P<prefix>.*?)[-_.]?images[-_.]idx3[-_.]ubyte(\.gz)?$", re.I)
_IDX_LABELS = re.compile(r"^(?P<prefix>.*?)[-_.]?labels[-_.]idx1[-_.]ubyte(\.gz)?$", re.I)
_FINITE_CHUNK = 1 << 24  # elements per chunk when scanning for NaN/inf (bounded memory on mmaps)


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


# --- loading ---------------------------------------------------------------------------------


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
    if _IDX_IMAGES.match(path.name):
        x, y = _load_idx_images(path)
        return x, y, None
    if _IDX_LABELS.match(path.name):
        raise DataError(f"{path} is an IDX labels file; give its images file or the folder")
    if suffix == ".npy":
        return _load_npy(path, mmap), None, None
    if suffix == ".npz":
        return _load_npz(path, label_column)
    if suffix == ".csv":
        return _load_csv(path, label_column)
    if suffix == ".mat":
        return _load_mat(path, shape, label_column)
    raise DataError(f"unknown file type {suffix or '(no extension)'!r} for {path}; give {ACCEPTED}")


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()  # shipped with scikit-learn: no download
    x = (d.images.astype(np.float32) / np.float32(16.0))[:, None]  # 0..16 -> [0, 1]
    return x, d.target.astype(np.int64)


# IDX (MNIST) ---------------------------------------------------------------------------------


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


def _load_idx_images(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """One images file plus the labels file beside it with the same prefix (if any)."""
    x = _read_idx(path, 3)
    prefix = _idx_prefix(path, _IDX_IMAGES)
    labels = [
        p for p in sorted(path.parent.iterdir())
        if p.is_file() and _IDX_LABELS.match(p.name) and _idx_prefix(p, _IDX_LABELS) == prefix
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


def _idx_order(path: Path) -> tuple[int, str]:
    prefix = _idx_prefix(path, _IDX_IMAGES)
    rank = 0 if prefix.startswith("train") else 1 if prefix.startswith("t10k") else 2
    return rank, path.name  # train, then t10k (MNIST's test set), then the rest by name


def _load_folder(path: Path) -> tuple[np.ndarray, Any, list[str] | None]:
    files = [p for p in path.iterdir() if not p.name.startswith(".")]
    idx = sorted((p for p in files if p.is_file() and _IDX_IMAGES.match(p.name)), key=_idx_order)
    if idx:
        parts = [_load_idx_images(p) for p in idx]
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
    return _load_image_folder(path)


# Image folders -------------------------------------------------------------------------------


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _load_image_folder(path: Path) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    top = sorted(p for p in path.iterdir() if _is_image(p))
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    by_class = {d.name: sorted(p for p in d.iterdir() if _is_image(p)) for d in subdirs}
    by_class = {k: v for k, v in by_class.items() if v}
    if top and by_class:
        raise DataError(
            f"{path} has images both at its top level and in sub-folders; put all images in "
            "class sub-folders (labelled) or all at the top level (unlabelled)"
        )
    if not top and not by_class:
        what = "is empty" if not any(path.iterdir()) else "holds no IDX files or PNG/JPEG images"
        raise DataError(f"folder {path} {what}; give {ACCEPTED}")
    if top:
        files, y, classes = top, None, None
    else:
        classes = list(by_class)  # sorted folder names; label i = classes[i]
        files = [p for c in classes for p in by_class[c]]
        y = np.repeat(np.arange(len(classes), dtype=np.int64), [len(by_class[c]) for c in classes])
    return _read_images(files, path), y, classes


def _read_images(files: list[Path], root: Path) -> np.ndarray:
    """Read image files into (n, C, H, W) uint8 (or float32 in [0, 1] for 16-bit images)."""
    from PIL import Image, UnidentifiedImageError

    arrays: list[np.ndarray] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for p in files:
        try:
            with Image.open(p) as im:
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    a = np.asarray(im, dtype=np.float32)[..., None] / np.float32(65535.0)
                elif im.mode in ("1", "L", "LA", "P") and _is_gray(im):
                    a = np.asarray(im.convert("L"))[..., None]
                else:
                    a = np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise DataError(f"cannot read image {p}: {e}; remove or re-save it") from None
        size = a.shape[:2]
        if first is None:
            first = (p, size)
        elif size != first[1]:
            raise DataError(
                f"images differ in size: {first[0].relative_to(root)} is {first[1][0]}x"
                f"{first[1][1]} but {p.relative_to(root)} is {size[0]}x{size[1]} (HxW); "
                "resize them to one size"
            )
        arrays.append(a)
    channels = {a.shape[2] for a in arrays}
    if len(channels) > 1:  # some grey, some colour: promote grey to RGB so they stack
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    if len({a.dtype for a in arrays}) > 1:
        arrays = [a.astype(np.float32) / np.float32(255.0) if a.dtype == np.uint8 else a
                  for a in arrays]
    return np.stack(arrays).transpose(0, 3, 1, 2)  # (n, H, W, C) -> (n, C, H, W)


def _is_gray(im: Any) -> bool:
    if im.mode != "P":
        return True
    rgb = np.asarray(im.convert("RGB"))  # a palette image is grey if its colours are
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


# NumPy ---------------------------------------------------------------------------------------


def _pickle_error(path: Path) -> DataError:
    return DataError(
        f"{path} holds a Python-object array, which vaekit never unpickles; save a numeric "
        "array instead (e.g. np.save(path, x.astype(np.float32)))"
    )


def _has_magic(path: Path, magic: bytes) -> bool:
    with path.open("rb") as f:
        return f.read(len(magic)) == magic


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
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


def _load_npz(path: Path, label_column: str | None) -> tuple[np.ndarray, Any, None]:
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


# CSV -----------------------------------------------------------------------------------------


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _load_csv(path: Path, label_column: str | None) -> tuple[np.ndarray, Any, None]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            first_line = f.readline()
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text: {e}; save the CSV as UTF-8") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if not first_line.strip():
        raise DataError(f"{path} is empty (0 examples); give a CSV with one example per row")
    delimiter = ","
    if "," not in first_line:  # tolerate tab- or semicolon-separated files saved as .csv
        delimiter = next((d for d in ("\t", ";") if d in first_line), ",")
    fields = [s.strip() for s in next(csv.reader([first_line], delimiter=delimiter))]
    label_index = _int_or_none(label_column)
    # A header is a first row with a non-numeric cell, not counting a label column given by
    # index (a header-less file may hold string labels there).
    skip = None if label_index is None else label_index % max(len(fields), 1)
    header = not all(_is_number(s) for i, s in enumerate(fields) if i != skip)
    names = fields if header else [str(i) for i in range(len(fields))]

    label_col = None
    if label_column is not None:
        if label_column in names:
            label_col = names.index(label_column)
        elif label_index is not None and -len(names) <= label_index < len(names):
            label_col = label_index % len(names)
        else:
            raise DataError(
                f"{path} has no column {label_column!r}; its columns are "
                f"{', '.join(names[:20])}{' ...' if len(names) > 20 else ''}"
            )
    feature_cols = [i for i in range(len(names)) if i != label_col]
    if not feature_cols:
        raise DataError(f"{path} has no feature columns besides the label column {label_column!r}")

    def read(cols: Any, dtype: Any) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Empty input file": we report 0 rows ourselves
            return np.loadtxt(
                path, delimiter=delimiter, skiprows=int(header), usecols=cols, dtype=dtype,
                ndmin=2 if isinstance(cols, list) else 1, comments=None, quotechar='"',
                encoding="utf-8",
            )

    try:
        x = read(feature_cols, np.float64)
        y = read(label_col, str) if label_col is not None else None
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text: {e}; save the CSV as UTF-8") from None
    except ValueError as e:
        raise _csv_error(path, delimiter, header, names, label_col, e) from None
    if len(x) == 0:
        raise DataError(f"{path} has a header but no rows (0 examples); add data rows")
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))
        r, c = (int(v) for v in bad[0])
        col = feature_cols[c]
        raise DataError(
            f"{path} has {len(bad)} NaN/inf value(s); the first is {x[r, c]} at row "
            f"{r + 1 + int(header)}, column {col + 1} ({names[col]!r}); remove or impute them"
        )
    if y is not None:
        y = np.char.strip(y)
    return x, y, None


def _int_or_none(s: str | None) -> int | None:
    if s is None:
        return None
    try:
        return int(s)
    except ValueError:
        return None


def _csv_error(
    path: Path, delimiter: str, header: bool, names: list[str], label_col: int | None,
    err: ValueError,
) -> DataError:
    """Find the first bad cell with the slow csv reader (only on the error path)."""
    with path.open(newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f, delimiter=delimiter), start=1):
            if (line_no == 1 and header) or not row:
                continue  # loadtxt skips blank lines too
            if len(row) != len(names):
                return DataError(
                    f"{path} row {line_no} has {len(row)} cells but the file has {len(names)} "
                    "columns; make every row the same length"
                )
            for i, cell in enumerate(row):
                if i != label_col and not _is_number(cell.strip()):
                    return DataError(
                        f"{path} row {line_no}, column {i + 1} ({names[i]!r}) holds non-numeric "
                        f"{cell!r}; fix the cell, or pass label_column if it is a label column"
                    )
    return DataError(f"cannot parse {path} as numbers: {err}")


# MATLAB --------------------------------------------------------------------------------------


def _load_mat(
    path: Path, shape: tuple[int, ...] | None, label_column: str | None
) -> tuple[np.ndarray, Any, None]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 files are HDF5
        raise DataError(f"{path} is a MATLAB v7.3 (HDF5) file; re-save it with save(..., '-v7')") \
            from None
    except (ValueError, OSError, TypeError, scipy.io.matlab.MatReadError) as e:
        raise DataError(f"cannot read {path} as a .mat file: {e}; re-save it in MATLAB") from None
    arrays = {
        k: v for k, v in mat.items()
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
            f"{path}: a .mat array {x.shape} needs image_shape to tell examples from pixels "
            "(e.g. image_shape=(28, 20) for Frey faces)"
        )
    size = math.prod(shape)
    if x.shape[1] == size:
        pass  # rows are examples
    elif x.shape[0] == size:
        x = x.T  # MATLAB habit: one example per column
    else:
        raise DataError(
            f"{path}: neither axis of {key} {x.shape} has {size} values = prod(image_shape "
            f"{shape}); give the image shape of one example"
        )
    if y is not None:
        y = y.reshape(-1)
    return x, y, None


# Common checks -------------------------------------------------------------------------------


def _normalise_image_shape(shape: Any) -> tuple[int, ...] | None:
    if shape is None:
        return None
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise DataError(f"image_shape must be (H, W) or (C, H, W) of positive sizes, got {shape}")
    return shape


def _finalise(
    x: np.ndarray, y: Any, name: str, shape: tuple[int, ...] | None,
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
                f"has {row} ({x.shape[1:]}); fix image_shape"
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
        raise DataError(f"{name}: cannot tell the layout of shape {x.shape}; give image_shape")

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


# --- splits ----------------------------------------------------------------------------------


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint (train, val, test) int64 index arrays covering range(n), each sorted.

    A seeded permutation decides membership (same n and seed -> same split). Sizes are
    round(n * fraction), at least 1 when the fraction is positive; train gets the rest.
    """
    if n < 1:
        raise DataError(f"cannot split {n} examples; the source is empty")
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise DataError(f"{label} must be in [0, 1), got {frac}")

    def size(frac: float) -> int:
        return max(1, round(n * frac)) if frac > 0 else 0

    n_test, n_val = size(test_fraction), size(val_fraction)
    if n - n_test - n_val < 1:
        raise DataError(
            f"{n} examples leave no training data with val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}; lower the fractions or add data"
        )
    perm = np.random.default_rng(seed).permutation(n)
    test, val, train = np.split(perm, [n_test, n_test + n_val])
    # Sorted: ascending reads are faster on memory-mapped sources; training shuffles anyway.
    return np.sort(train), np.sort(val), np.sort(test)


# --- preprocessing ---------------------------------------------------------------------------


@dataclass
class Preprocessor:
    """Fitted on the train split only; stored with a run as JSON (`to_dict`/`from_dict`).

    standardize: z-score with `mean`/`std` (floats for images: one global value; lists of
    length prod(event_shape) for tabular: per feature). binarize: none | static | dynamic;
    `transform` applies only static (x > 0.5); dynamic is drawn by the trainer each epoch.
    """

    standardize: bool = False
    binarize: str = "none"
    mean: list[float] | float | None = None
    std: list[float] | float | None = None
    kind: str = "image"

    @classmethod
    def fit(cls, x_train: np.ndarray, cfg: DataConfig, kind: str) -> Preprocessor:
        """x_train: (n, *event_shape) float32, the training split only."""
        if cfg.binarize != "none":
            lo, hi = float(np.min(x_train)), float(np.max(x_train))
            if lo < 0 or hi > 1:
                raise DataError(
                    f"binarize={cfg.binarize} needs data in [0, 1] but it spans [{lo:g}, {hi:g}]; "
                    "use standardize or rescale the data"
                )
        mean = std = None
        if cfg.standardize:
            flat = np.asarray(x_train).reshape(len(x_train), -1)
            if kind == "image":  # one value: keeps pixels comparable across positions
                mean = float(flat.mean(dtype=np.float64))
                std = _safe_std(float(flat.std(dtype=np.float64)))
            else:
                m = flat.mean(axis=0, dtype=np.float64)
                s = flat.std(axis=0, dtype=np.float64)
                mean = [float(v) for v in m]
                std = [_safe_std(float(v)) for v in s]
        return cls(standardize=cfg.standardize, binarize=cfg.binarize, mean=mean, std=std,
                   kind=kind)

    def _stats(self, event_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        if mean.ndim:
            if mean.size != math.prod(event_shape):
                raise DataError(
                    f"the run standardizes {mean.size} features but this data has "
                    f"{math.prod(event_shape)} per example ({event_shape}); give matching data"
                )
            mean, std = mean.reshape(event_shape), std.reshape(event_shape)
        return mean, std

    def transform(self, x: Any) -> Any:
        """x: (n, *event_shape) array (or tensor) -> float32 of the same shape and type."""
        if self.standardize:
            mean, std = self._stats(tuple(x.shape[1:]))
            if isinstance(x, torch.Tensor):
                return (x.float() - torch.from_numpy(mean).to(x.device)) / torch.from_numpy(
                    std
                ).to(x.device)
            return ((np.asarray(x, dtype=np.float32) - mean) / std).astype(np.float32)
        if self.binarize == "static":
            if isinstance(x, torch.Tensor):
                return (x > 0.5).float()
            return (np.asarray(x) > 0.5).astype(np.float32)
        if isinstance(x, torch.Tensor):
            return x.float()
        return np.asarray(x, dtype=np.float32)

    def inverse(self, x: Any) -> Any:
        """Undo standardization (for display); same type as x. Binarization is not undone."""
        if not self.standardize:
            return x
        mean, std = self._stats(tuple(x.shape[1:]))
        if isinstance(x, torch.Tensor):
            return x * torch.from_numpy(std).to(x) + torch.from_numpy(mean).to(x)
        return (np.asarray(x) * std + mean).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"standardize": self.standardize, "binarize": self.binarize, "mean": self.mean,
                "std": self.std, "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        if not isinstance(d, dict):
            raise DataError(f"preprocessor: expected a JSON object, got {type(d).__name__}")
        known = {"standardize", "binarize", "mean", "std", "kind"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"preprocessor: unknown field(s) {', '.join(unknown)}")
        pre = cls(**d)
        if not isinstance(pre.standardize, bool) or pre.binarize not in ("none", "static",
                                                                           "dynamic"):
            raise DataError(f"preprocessor: bad standardize/binarize in {d}")
        if pre.kind not in ("image", "tabular"):
            raise DataError(f"preprocessor: kind must be image or tabular, got {pre.kind!r}")
        if pre.standardize:
            ok = (isinstance(pre.mean, (int, float)) and isinstance(pre.std, (int, float))) or (
                isinstance(pre.mean, list) and isinstance(pre.std, list)
                and len(pre.mean) == len(pre.std)
            )
            if not ok:
                raise DataError("preprocessor: standardize needs mean and std of the same shape")
        return pre


def _safe_std(s: float) -> float:
    return s if s > 1e-8 else 1.0  # constant features (e.g. MNIST borders): shift, don't divide


# --- splits as tensors -----------------------------------------------------------------------


@dataclass
class Split:
    """x: (n, *event_shape) float32 contiguous; y: (n,) int64 or None."""

    x: torch.Tensor
    y: torch.Tensor | None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    preprocessor: Preprocessor
    kind: str
    event_shape: tuple[int, ...]
    name: str
    classes: list[str] | None = None  # label names, when the source had them


def _to_split(x: np.ndarray, y: np.ndarray | None) -> Split:
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = None if y is None else torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    return Split(x=xt, y=yt)


class LazyRows:
    """Rows of a memory-mapped array, read a batch at a time: data larger than memory.

    `rows[idx]` with an index tensor (positions within this split) reads just those rows, in
    file order (sequential reads), applies the preprocessing and returns float32
    (len(idx), *event_shape). The file must hold float32 (other dtypes are converted in memory
    by `load_source`, so they do not stay on disk). The trainer and `evaluate` take it in place of
    a tensor.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray, pre: Preprocessor):
        self.array, self.rows, self.pre = array, np.asarray(rows, dtype=np.int64), pre

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.array.shape[1:])

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, slice):
            idx = torch.arange(len(self.rows))[idx]
        sel = self.rows[np.asarray(idx, dtype=np.int64).reshape(-1)]
        order = np.argsort(sel, kind="stable")
        block = np.empty((len(sel), *self.array.shape[1:]), dtype=np.float32)
        block[order] = self.array[sel[order]]
        return torch.from_numpy(self.pre.transform(block))


def prepare(cfg: DataConfig) -> Splits:
    """Load cfg.source, split with cfg.split_seed, fit preprocessing on train, transform all.

    With cfg.mmap (a .npy source) the splits are `LazyRows` over the memory-mapped file and
    nothing is loaded whole; the preprocessing statistics are then fitted on at most
    `MMAP_FIT_ROWS` training rows spread evenly over the split.
    """
    ds = load_source(cfg.source, image_shape=cfg.image_shape, label_column=cfg.label_column,
                     mmap=cfg.mmap)
    train_idx, val_idx, test_idx = split_indices(
        len(ds.x), cfg.val_fraction, cfg.test_fraction, cfg.split_seed
    )
    if isinstance(ds.x, np.memmap):
        return _prepare_lazy(ds, cfg, train_idx, val_idx, test_idx)
    x_train = ds.x[train_idx]  # fancy indexing copies (and reads a memmap once)
    pre = Preprocessor.fit(x_train, cfg, ds.kind)

    def make(idx: np.ndarray, x: np.ndarray | None = None) -> Split:
        xs = ds.x[idx] if x is None else x
        return _to_split(pre.transform(xs), None if ds.y is None else ds.y[idx])

    return Splits(
        train=make(train_idx, x_train), val=make(val_idx), test=make(test_idx),
        preprocessor=pre, kind=ds.kind, event_shape=tuple(ds.x.shape[1:]), name=ds.name,
        classes=ds.classes,
    )


MMAP_FIT_ROWS = 20_000


def _prepare_lazy(
    ds: Dataset, cfg: DataConfig, train_idx: np.ndarray, val_idx: np.ndarray, test_idx: np.ndarray
) -> Splits:
    identity = Preprocessor(kind=ds.kind)
    step = max(1, len(train_idx) // MMAP_FIT_ROWS)
    sample = LazyRows(ds.x, train_idx[::step], identity)[slice(None)].numpy()
    pre = Preprocessor.fit(sample, cfg, ds.kind)

    def make(idx: np.ndarray) -> Split:
        y = None if ds.y is None else torch.from_numpy(np.asarray(ds.y[idx], dtype=np.int64))
        return Split(x=LazyRows(ds.x, idx, pre), y=y)  # type: ignore[arg-type]

    return Splits(
        train=make(train_idx), val=make(val_idx), test=make(test_idx), preprocessor=pre,
        kind=ds.kind, event_shape=tuple(ds.x.shape[1:]), name=ds.name, classes=ds.classes,
    )


def load_like_run(
    source: str, cfg: DataConfig, pre: Preprocessor, *, event_shape: tuple[int, ...] | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """New data through a trained run's loading options and preprocessing (no split).

    Returns x (n, *event_shape) float32 and y (n,) int64 or None. event_shape (optional, the
    model's): flat rows of the right size are reshaped to it, other shapes raise DataError.
    A CSV without the run's label column loads unlabelled.
    """
    label_column = cfg.label_column
    if label_column is not None and _csv_lacks_column(source, label_column):
        label_column = None
    ds = load_source(source, image_shape=cfg.image_shape, label_column=label_column,
                     mmap=cfg.mmap)
    x = ds.x
    if event_shape is not None:
        event_shape = tuple(int(s) for s in event_shape)
        if tuple(x.shape[1:]) != event_shape:
            if math.prod(x.shape[1:]) != math.prod(event_shape):
                raise DataError(
                    f"{ds.name} has examples of shape {tuple(x.shape[1:])} but the run expects "
                    f"{event_shape}; give data like the training data"
                )
            x = x.reshape(len(x), *event_shape)
    split = _to_split(pre.transform(x), ds.y)
    return split.x, split.y


def _csv_lacks_column(source: str, column: str) -> bool:
    path = Path(source).expanduser()
    if path.suffix.lower() != ".csv" or not path.is_file() or _int_or_none(column) is not None:
        return False
    try:
        with path.open(newline="", encoding="utf-8") as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError):
        return False  # load_source reports it
    delimiter = "," if "," in line else next((d for d in ("\t", ";") if d in line), ",")
    fields = [s.strip() for s in next(csv.reader([line], delimiter=delimiter), [])]
    return column not in fields


def dynamic_binarize(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A fresh binary sample of x (values in [0, 1]): each entry is 1 with probability x."""
    return torch.bernoulli(x, generator=generator)
