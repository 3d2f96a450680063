"""CSV tables: numbers, an optional header, an optional label column (by name or index)."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.base import DataError, int_or_none, is_number


def load_csv(path: Path, label_column: str | None) -> tuple[np.ndarray, Any, None]:
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
    label_index = int_or_none(label_column)
    # A header is a first row with a non-numeric cell, not counting a label column given by
    # index (a header-less file may hold string labels there).
    skip = None if label_index is None else label_index % max(len(fields), 1)
    header = not all(is_number(s) for i, s in enumerate(fields) if i != skip)
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
                path,
                delimiter=delimiter,
                skiprows=int(header),
                usecols=cols,
                dtype=dtype,
                ndmin=2 if isinstance(cols, list) else 1,
                comments=None,
                quotechar='"',
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


def _csv_error(
    path: Path,
    delimiter: str,
    header: bool,
    names: list[str],
    label_col: int | None,
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
                if i != label_col and not is_number(cell.strip()):
                    return DataError(
                        f"{path} row {line_no}, column {i + 1} ({names[i]!r}) holds non-numeric "
                        f"{cell!r}; fix the cell, or name it as the label column (label_column, "
                        "--label-column)"
                    )
    return DataError(f"cannot parse {path} as numbers: {err}")


def csv_lacks_column(source: str, column: str) -> bool:
    path = Path(source).expanduser()
    if path.suffix.lower() != ".csv" or not path.is_file() or int_or_none(column) is not None:
        return False
    try:
        with path.open(newline="", encoding="utf-8") as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError):
        return False  # load_source reports it
    delimiter = "," if "," in line else next((d for d in ("\t", ";") if d in line), ",")
    fields = [s.strip() for s in next(csv.reader([line], delimiter=delimiter), [])]
    return column not in fields
