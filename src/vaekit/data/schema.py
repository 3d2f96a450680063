"""The schema of a mixed table: each column's kind, levels and fitted transform, as JSON; and the
encoding of a table into the rows the composite likelihood (`vaekit.core.composite`) reads.

Kinds, as `infer_schema` tells them from the observed (non-missing) cells of a column:
- `binary`: exactly two distinct values, any two (yes/no, true/false, 0/1, "M"/"F", 3/7);
- numeric (every observed cell is a finite number), more than two distinct values:
  `categorical` when all are whole numbers, at most `max_int_levels` (10) distinct and each
  seen twice on average (a year of three values, a rating 1-5); else `integer` when all are
  whole numbers, `continuous` otherwise;
- text (some observed cell is not a number): `categorical`. Refused: a column with one level
  per row (an identifier: distinct values in >= 95% of 10 or more observed rows), and a column
  of numbers (over `max_int_levels` distinct) with a few stray words (<= 10%: a typo).
A column with a single distinct value is categorical with one level.

Encoded rows (`encode`): x (n, C) float32, one value per column in the schema's order: a
numeric column's transformed value, a categorical column's level index 0..K-1, a binary
column's 0/1 (its levels[1] is 1). A missing cell is NaN, which is how the composite likelihood
masks it out; `mask` (n, C) bool says the same (True: observed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.core.composite import KINDS, NUMERIC, Block
from vaekit.data.base import DataError
from vaekit.data.tabular import (
    TRANSFORMS,
    Table,
    as_columns,
    as_number,
    check_transform,
    fit_transform,
    forward,
    inverse,
    is_missing,
    level_key,
    plain,
)

FORMAT = "vaekit.schema/1"
MAX_INT_LEVELS = 10
FALSE_LEVELS = frozenset({"0", "false", "no", "n", "f", "off", "negative", "neg"})


@dataclass
class ColumnSpec:
    """One column: its name, kind (continuous | integer | categorical | binary), its levels
    (categorical, binary: JSON scalars, index order) and its transform (numeric: the JSON of
    `vaekit.data.tabular.fit_transform`, or {"name": ...} alone before fitting)."""

    name: str
    kind: str
    levels: list[Any] = field(default_factory=list)
    transform: dict[str, Any] | None = None

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC

    @property
    def fitted(self) -> bool:
        if self.numeric:
            return self.transform is not None and len(self.transform) > 1
        return bool(self.levels)

    @property
    def block(self) -> Block:
        return Block(self.kind, 0 if self.numeric else len(self.levels))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.numeric:
            if self.transform is not None:
                d["transform"] = dict(self.transform)
        else:
            d["levels"] = list(self.levels)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ColumnSpec:
        """Validate one column of a schema JSON (possibly hand-written: levels and transform
        may be left out, to be fitted; transform may be a bare name)."""
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"]:
            raise DataError(f"{where}: a column is an object with a non-empty 'name', got {d!r}")
        where = f"{where} column {d['name']!r}"
        extra = sorted(set(d) - {"name", "kind", "levels", "transform"})
        if extra:
            raise DataError(f"{where}: unknown field(s) {', '.join(extra)}")
        kind = d.get("kind")
        if kind not in KINDS:
            raise DataError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        levels, transform = d.get("levels", []), d.get("transform")
        if kind in NUMERIC:
            if levels:
                raise DataError(f"{where}: a {kind} column has no levels; drop 'levels'")
            if isinstance(transform, str):
                transform = {"name": transform}
            if transform is not None:
                if not isinstance(transform, dict) or transform.get("name") not in TRANSFORMS:
                    raise DataError(
                        f"{where}: transform is one of {', '.join(TRANSFORMS)} (a name, or the "
                        f"object of a fitted one), got {str(transform)[:80]}"
                    )
                if set(transform) != {"name"}:
                    check_transform(transform, where)
            return cls(d["name"], kind, [], None if transform is None else dict(transform))
        if transform is not None:
            raise DataError(f"{where}: a {kind} column has no transform; drop 'transform'")
        scalar = (str, int, float, bool)
        if not isinstance(levels, list) or not all(isinstance(v, scalar) for v in levels):
            raise DataError(f"{where}: levels must be a list of strings or numbers")
        if len({level_key(v) for v in levels}) < len(levels):
            raise DataError(f"{where}: levels repeat a value; list each level once")
        if kind == "binary" and levels and len(levels) != 2:
            raise DataError(f"{where}: a binary column has 2 levels, got {len(levels)}")
        return cls(d["name"], kind, list(levels), None)


@dataclass
class Schema:
    """The columns of a table, in order. JSON round trip: `to_dict`/`from_dict`, `save`/`load`."""

    columns: list[ColumnSpec]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def blocks(self) -> list[Block]:
        """The composite likelihood's description of the columns (needs a fitted schema)."""
        self.check_fitted()
        return [c.block for c in self.columns]

    def check_fitted(self) -> None:
        for c in self.columns:
            if not c.fitted:
                what = "transform" if c.numeric else "levels"
                raise DataError(
                    f"schema column {c.name!r} has no fitted {what}; fit the schema on the "
                    "training table (infer_schema(table, schema=...))"
                )

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, d: Any, where: str = "schema") -> Schema:
        if not isinstance(d, dict) or not isinstance(d.get("columns"), list) or not d["columns"]:
            raise DataError(f"{where}: expected an object with a non-empty 'columns' list")
        extra = sorted(set(d) - {"format", "columns"})
        if extra:
            raise DataError(f"{where}: unknown field(s) {', '.join(extra)}")
        if d.get("format", FORMAT) != FORMAT:
            raise DataError(f"{where}: format {d['format']!r} is not {FORMAT!r}")
        columns = [ColumnSpec.from_dict(c, where) for c in d["columns"]]
        names = [c.name for c in columns]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise DataError(f"{where}: column(s) {', '.join(map(repr, twice))} appear twice")
        return cls(columns)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"cannot read the schema {path}: {e}") from None
        return cls.from_dict(d, where=str(path))


# --- inference --------------------------------------------------------------------------


def infer_schema(
    table: Any,
    schema: Schema | dict[str, Any] | None = None,
    *,
    transform: str = "quantile",
    max_int_levels: int = MAX_INT_LEVELS,
) -> Schema:
    """The fitted schema of a table (dict of columns, or a DataFrame).

    schema: a (partial) schema to keep: its kinds, levels and transforms stay, what it leaves
    out is fitted here; its columns must be the table's. transform: quantile | standard, for
    numeric columns whose transform is not given.
    """
    if transform not in TRANSFORMS:
        raise DataError(f"transform {transform!r} is not one of {', '.join(TRANSFORMS)}")
    cols = as_columns(table)
    if schema is None:
        return Schema([_infer_column(n, v, transform, max_int_levels) for n, v in cols.items()])
    if isinstance(schema, dict):
        schema = Schema.from_dict(schema)
    _check_names(cols, schema)
    return Schema([_fit_column(c, cols[c.name], transform) for c in schema.columns])


def _infer_column(name: str, cells: list[Any], transform: str, max_int_levels: int) -> ColumnSpec:
    observed = [(i, c) for i, c in enumerate(cells) if not is_missing(c)]
    if not observed:
        raise DataError(
            f"column {name!r} is all missing ({len(cells)} rows); drop it or fill it in"
        )
    nums = [as_number(c) for _, c in observed]
    distinct = {level_key(c) for _, c in observed}
    if len(distinct) == 2:
        return _fit_column(ColumnSpec(name, "binary"), cells, transform)
    if all(v is not None for v in nums):
        whole = all(v.is_integer() for v in nums)
        few = len(distinct) <= max_int_levels and 2 * len(distinct) <= len(observed)
        kind = "categorical" if len(distinct) == 1 or (whole and few) else None
        kind = kind or ("integer" if whole else "continuous")
        return _fit_column(ColumnSpec(name, kind), cells, transform)
    words = [(i, c) for (i, c), v in zip(observed, nums, strict=True) if v is None]
    if (
        len(words) <= 0.1 * len(observed)
        and len({v for v in nums if v is not None}) > max_int_levels
    ):
        i, c = words[0]
        raise DataError(
            f"column {name!r} holds numbers but row {i + 1} holds {c!r}; fix the cell or leave "
            "it empty (missing), or declare the column categorical in a schema"
        )
    if len(distinct) >= 0.95 * len(observed) and len(observed) >= 10:
        raise DataError(
            f"column {name!r} looks like an identifier (one level per row: {len(distinct)} "
            f"levels in {len(observed)} rows): delete the column from the table (an "
            "identifier has no pattern to learn), or declare it categorical in a schema "
            "(--schema) to model it anyway"
        )
    return _fit_column(ColumnSpec(name, "categorical"), cells, transform)


def _fit_column(spec: ColumnSpec, cells: list[Any], transform: str) -> ColumnSpec:
    """Fill in what the spec lacks (levels, or a numeric transform) from the observed cells."""
    if spec.fitted:
        return spec
    if spec.numeric:
        v = _numbers(spec, cells)
        v = v[~np.isnan(v)]
        if not len(v):
            raise DataError(f"column {spec.name!r} is all missing; drop it or fill it in")
        name = spec.transform["name"] if spec.transform else transform
        return ColumnSpec(spec.name, spec.kind, [], fit_transform(name, v))
    first: dict[str, Any] = {}
    for c in cells:
        if not is_missing(c):
            first.setdefault(level_key(c), _level_value(c))
    if not first:
        raise DataError(f"column {spec.name!r} is all missing; drop it or fill it in")
    if spec.kind == "binary" and len(first) != 2:
        shown = ", ".join(sorted(first)[:5])
        raise DataError(
            f"column {spec.name!r} is binary in the schema but holds {len(first)} distinct "
            f"value(s) ({shown}); make it categorical"
        )
    return ColumnSpec(spec.name, spec.kind, _ordered(first, spec.kind), None)


def _level_value(cell: Any) -> Any:
    v = plain(cell)
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _ordered(first: dict[str, Any], kind: str) -> list[Any]:
    """Levels in index order: numbers ascending, then text; a binary column's "no"-like level
    (0, false, no, n, f, off, negative) first."""

    def order(key: str) -> tuple[int, float, str]:
        v = as_number(key)
        return (0, v, "") if v is not None else (1, 0.0, key)

    keys = sorted(first, key=order)
    if kind == "binary" and keys[1].lower() in FALSE_LEVELS and keys[0].lower() not in FALSE_LEVELS:
        keys.reverse()
    return [first[k] for k in keys]


# --- encoding ---------------------------------------------------------------------------


def _check_names(cols: Table, schema: Schema) -> None:
    lacking = [n for n in schema.names if n not in cols]
    if lacking:
        raise DataError(
            f"the table lacks column {lacking[0]!r} of the schema"
            f"{f' (and {len(lacking) - 1} more)' if len(lacking) > 1 else ''}; add it (empty "
            "cells are fine: they are missing)"
        )
    extra = [n for n in cols if n not in schema.names]
    if extra:
        raise DataError(
            f"the table has column {extra[0]!r} that the schema does not know"
            f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}; drop it, or add it "
            "to the schema and retrain"
        )


def _numbers(spec: ColumnSpec, cells: list[Any]) -> np.ndarray:
    """A numeric column's cells as float64 (n,), NaN where missing; a DataError for text, or
    for a fraction in an integer column."""
    out = np.full(len(cells), np.nan)
    for i, c in enumerate(cells):
        if is_missing(c):
            continue
        v = as_number(c)
        if v is None:
            raise DataError(
                f"column {spec.name!r} is {spec.kind} but row {i + 1} holds {c!r}; fix the cell "
                "or leave it empty (missing)"
            )
        if spec.kind == "integer" and not v.is_integer():
            raise DataError(
                f"column {spec.name!r} is integer but row {i + 1} holds {c!r}; round it, or "
                "make the column continuous in the schema"
            )
        out[i] = v
    return out


def _indices(spec: ColumnSpec, cells: list[Any]) -> np.ndarray:
    """A categorical or binary column's cells as level indices (n,) float64, NaN if missing."""
    index = {level_key(v): j for j, v in enumerate(spec.levels)}
    out = np.full(len(cells), np.nan)
    for i, c in enumerate(cells):
        if is_missing(c):
            continue
        j = index.get(level_key(c))
        if j is None:
            shown = ", ".join(map(str, spec.levels[:10])) + (
                " ..." if len(spec.levels) > 10 else ""
            )
            raise DataError(
                f"column {spec.name!r} has category {plain(c)!r} (row {i + 1}) that the schema "
                f"does not know (levels: {shown}); fix the cell, leave it empty, or retrain "
                "with it"
            )
        out[i] = j
    return out


def encode(
    table: Any, schema: Schema, *, missing: float = float("nan")
) -> tuple[np.ndarray, np.ndarray]:
    """A table -> (x, mask): x (n, C) float32 in the schema's column order (transformed
    numbers, level indices, 0/1), `missing` (NaN: what the composite likelihood reads as
    missing) in missing cells; mask (n, C) bool, True where a cell is observed."""
    schema.check_fitted()
    cols = as_columns(table)
    _check_names(cols, schema)
    n = len(next(iter(cols.values())))
    x = np.empty((n, len(schema.columns)), dtype=np.float64)
    for j, spec in enumerate(schema.columns):
        if spec.numeric:
            v = _numbers(spec, cols[spec.name])
            x[:, j] = np.where(np.isnan(v), np.nan, forward(spec.transform, np.nan_to_num(v)))
        else:
            x[:, j] = _indices(spec, cols[spec.name])
    mask = ~np.isnan(x)
    x[~mask] = missing
    return x.astype(np.float32), mask


def decode(values: Any, schema: Schema) -> Table:
    """Encoded rows (n, C) (e.g. the composite likelihood's `mean` or `sample`) -> a table in
    the schema's column order: numbers in their original range (integers as int), levels as
    their original values (a binary value >= 0.5 is levels[1]); a NaN cell -> None."""
    schema.check_fitted()
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != len(schema.columns):
        raise DataError(
            f"decode takes rows of {len(schema.columns)} values (one per column), got shape "
            f"{v.shape}"
        )
    out: Table = {}
    for j, spec in enumerate(schema.columns):
        col, missing = v[:, j], np.isnan(v[:, j])
        if spec.numeric:
            num = inverse(spec.transform, np.nan_to_num(col))
            cells = [int(t) for t in np.rint(num)] if spec.kind == "integer" else num.tolist()
        else:
            k = len(spec.levels)
            idx = (col >= 0.5) if spec.kind == "binary" else np.rint(np.nan_to_num(col))
            idx = np.clip(idx.astype(np.int64), 0, k - 1)
            cells = [spec.levels[i] for i in idx]
        out[spec.name] = [None if m else c for c, m in zip(cells, missing, strict=True)]
    return out
