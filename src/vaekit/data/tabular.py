"""Mixed tables as columns of cells: reading and writing CSV, missing cells, numbers and level
keys, and the fitted transforms of numeric columns (stored as JSON, never pickled).

A table here is a dict name -> list of cells (the column order is the dict's order): strings as
read from a CSV, or Python/NumPy scalars from a DataFrame. pandas is never imported: a
DataFrame is read through its `columns` and `df[name].tolist()`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from vaekit.data.base import DataError

Table = dict[str, list[Any]]
MISSING_TEXT = frozenset({"", "na", "nan", "null", "n/a", "<na>"})
QUANTILES = 1000  # knots of a quantile transform, at most


def is_missing(cell: Any) -> bool:
    """Missing: None, a float NaN, pandas' NA/NaT, or a string that is empty, "NA", "NaN",
    "null", "N/A" (any case, surrounding spaces ignored)."""
    if cell is None:
        return True
    if isinstance(cell, str):
        return cell.strip().lower() in MISSING_TEXT
    if isinstance(cell, (float, np.floating)):
        return math.isnan(cell)
    return type(cell).__name__ in ("NAType", "NaTType")


def as_number(cell: Any) -> float | None:
    """The cell as a finite float, or None when it is not a number (text, inf, a bool)."""
    if isinstance(cell, (bool, np.bool_)):
        return None
    try:
        v = float(cell.strip() if isinstance(cell, str) else cell)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def level_key(cell: Any) -> str:
    """The identity of a category: a number by its value ("1", 1 and 1.0 are one level), a
    bool as "true"/"false", anything else by its text without surrounding spaces."""
    if isinstance(cell, (bool, np.bool_)):
        return "true" if cell else "false"
    v = as_number(cell)
    if v is not None:
        return str(int(v)) if v.is_integer() else repr(v)
    return str(cell).strip()


def plain(cell: Any) -> Any:
    """A JSON-able scalar for a level value: str, int, float or bool (NumPy scalars unwrapped);
    text loses its surrounding spaces."""
    if isinstance(cell, np.generic):
        cell = cell.item()
    if isinstance(cell, str):
        return cell.strip()
    if isinstance(cell, (bool, int, float)):
        return cell
    return str(cell)


def as_columns(table: Any) -> Table:
    """A table as a dict name -> list of cells, from a mapping of sequences or a DataFrame
    (anything with `columns` whose items have `tolist()`); a DataError for an empty table or
    columns of different lengths."""
    if isinstance(table, Mapping):
        cols = {str(k): list(v) for k, v in table.items()}
    elif hasattr(table, "columns") and hasattr(table, "__getitem__"):
        cols = {str(k): list(table[k].tolist()) for k in table.columns}
    else:
        raise DataError(
            f"a table is a dict of columns or a pandas DataFrame, got {type(table).__name__}"
        )
    if not cols:
        raise DataError("the table has no columns; give at least one column")
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"{k!r}: {len(v)}" for k, v in cols.items())
        raise DataError(f"the table's columns differ in length ({sizes}); give equal columns")
    if lengths == {0}:
        raise DataError("the table has no rows (0 examples); give at least one row")
    return cols


def read_table(path: str | Path) -> Table:
    """A mixed CSV as columns of strings: UTF-8, a header row naming the columns, one row per
    example, blank lines skipped; a DataError naming the line of a ragged row."""
    path = Path(path).expanduser()
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [(i, row) for i, row in enumerate(csv.reader(f), start=1) if row]
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text: {e}; save the CSV as UTF-8") from None
    except (OSError, csv.Error) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if not rows:
        raise DataError(f"{path} is empty; give a CSV with a header row and one row per example")
    names = [s.strip() for s in rows[0][1]]
    if any(not n for n in names) or len(set(names)) < len(names):
        raise DataError(
            f"{path}: the header row must name every column once, got {', '.join(names)}"
        )
    for line, row in rows[1:]:
        if len(row) != len(names):
            raise DataError(
                f"{path} line {line} has {len(row)} cells but the header has {len(names)} "
                "columns; make every row the same length"
            )
    if len(rows) == 1:
        raise DataError(f"{path} has a header but no rows (0 examples); add data rows")
    return {n: [row[j] for _, row in rows[1:]] for j, n in enumerate(names)}


def write_table(path: str | Path, table: Mapping[str, list[Any]]) -> None:
    """Write columns as a UTF-8 CSV with a header; a missing cell (None) is an empty field."""
    names = list(table)
    n = len(table[names[0]]) if names else 0
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(names)
        for i in range(n):
            w.writerow(["" if table[c][i] is None else table[c][i] for c in names])


# --- transforms of numeric columns: fit on observed values, forward, inverse ---------------


def fit_transform(name: str, values: np.ndarray) -> dict[str, Any]:
    """Fit a transform on the observed values (n,) of a numeric column: its JSON parameters.

    "quantile": the empirical CDF through knots (up to 1000 quantiles), then the standard
    normal's inverse CDF: skew and heavy tails become a normal shape (its extremes at about
    +-Phi^-1(1 - 1/(2n))). "standard": (v - mean) / std. Both record the observed min and max
    (the inverse clips to them) and the decimal places the values are written with, up to 6
    ("decimals", absent when more: the inverse rounds to them).
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    out: dict[str, Any] = {"name": name, "min": float(v[0]), "max": float(v[-1])}
    places = decimals(v)
    if places is not None:
        out["decimals"] = places
    if name == "standard":
        std = float(v.std())
        out.update(mean=float(v.mean()), std=std if std > 0 else 1.0)
    elif name == "quantile":
        m = min(QUANTILES, len(v))
        q = np.quantile(v, np.linspace(0, 1, m)) if m > 1 else v[:1]
        out.update(quantiles=[float(t) for t in q], tail=0.5 / max(len(v), 2))
    else:
        raise DataError(f"unknown transform {name!r}; use one of {', '.join(TRANSFORMS)}")
    return out


def check_transform(t: Any, where: str) -> None:
    """A one-line DataError unless t is a valid fitted transform (e.g. from a user's JSON)."""
    if not isinstance(t, dict) or t.get("name") not in TRANSFORMS:
        raise DataError(
            f"{where}: the transform must be an object whose name is one of "
            f"{', '.join(TRANSFORMS)}, got {str(t)[:80]}"
        )
    need = TRANSFORM_FIELDS[t["name"]]
    missing = [k for k in need if k not in t]
    extra = sorted(set(t) - {"name", "decimals", *need})
    if missing or extra:
        raise DataError(
            f"{where}: transform {t['name']!r} takes {', '.join(need)} and optional decimals "
            f"(missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'})"
        )
    try:
        q = np.asarray(t.get("quantiles", [0.0]), dtype=np.float64)
        lo, hi = float(t["min"]), float(t["max"])
        ok = q.ndim == 1 and len(q) >= 1 and np.isfinite(q).all() and bool((np.diff(q) >= 0).all())
        ok = ok and lo <= hi and (t["name"] != "quantile" or 0 < float(t["tail"]) < 0.5)
        ok = ok and (t["name"] != "standard" or float(t["std"]) > 0)
        places = t.get("decimals", 0)
        ok = ok and isinstance(places, int) and not isinstance(places, bool) and 0 <= places <= 15
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(
            f"{where}: transform {t['name']!r} has invalid parameters (quantiles ascending and "
            "finite, 0 < tail < 0.5, std > 0, min <= max, decimals an integer 0..15)"
        )


def forward(t: dict[str, Any], v: np.ndarray) -> np.ndarray:
    """Original values (n,) -> transformed values (n,) (about N(0, 1) on the training data).

    A quantile transform goes on linearly beyond its end knots (at the slope of the whole
    range: (last - first knot) per 2 Phi^-1(1 - tail)), so a value far outside the training
    range lies far out in the transformed scale too (an anomaly score sees it) instead of at
    the extreme knot."""
    v = np.asarray(v, dtype=np.float64)
    if t["name"] == "standard":
        return (v - t["mean"]) / t["std"]
    q = np.asarray(t["quantiles"])
    if len(q) == 1:
        return np.zeros_like(v)
    p = np.linspace(0, 1, len(q))
    # ties (repeated knots, as in integer columns) map to the middle of their probability run
    u = 0.5 * (np.interp(v, q, p) - np.interp(-v, -q[::-1], -p[::-1]))
    a = t["tail"]
    z = ndtri(a + (1 - 2 * a) * u)
    edge = float(ndtri(1 - a))
    per_unit = 2 * edge / (q[-1] - q[0]) if q[-1] > q[0] else 0.0
    z = np.where(v > q[-1], edge + (v - q[-1]) * per_unit, z)
    return np.where(v < q[0], -edge + (v - q[0]) * per_unit, z)


def inverse(t: dict[str, Any], z: np.ndarray) -> np.ndarray:
    """Transformed values (n,) -> original values (n,), clipped to the observed [min, max]."""
    z = np.asarray(z, dtype=np.float64)
    if t["name"] == "standard":
        v = z * t["std"] + t["mean"]
    else:
        q = np.asarray(t["quantiles"])
        a = t["tail"]
        u = np.clip((ndtr(z) - a) / (1 - 2 * a), 0.0, 1.0)
        v = np.interp(u, np.linspace(0, 1, len(q)), q) if len(q) > 1 else np.full_like(z, q[0])
    v = np.clip(v, t["min"], t["max"])
    return v if t.get("decimals") is None else np.round(v, t["decimals"])


def decimals(values: np.ndarray, most: int = 6) -> int | None:
    """The fewest decimal places (0..most) that write every value exactly, None if more are
    needed: the precision of the data, which the inverse transform rounds to."""
    v = np.asarray(values, dtype=np.float64)
    for d in range(most + 1):
        if np.allclose(np.round(v, d), v, rtol=1e-12, atol=0):
            return d
    return None


# The transforms a schema may name. Mode-specific normalisation (CTGAN/TVAE: a Gaussian mixture
# per column, a value as its mode and a scalar within it) would join here as a transform of
# width > 1, with a block of its own in vaekit.core.composite.
TRANSFORMS = ("quantile", "standard")
TRANSFORM_FIELDS = {
    "quantile": ("min", "max", "quantiles", "tail"),
    "standard": ("min", "max", "mean", "std"),
}
