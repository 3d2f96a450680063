"""Seeded splits of a source, preprocessed, as tensors (or memory-mapped rows): what the
trainer and the applications read."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.data.base import DataError, Dataset
from vaekit.data.config import DataConfig
from vaekit.data.preprocess import Preprocessor
from vaekit.data.sources import load_source
from vaekit.data.tables import csv_lacks_column


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
    schema: Any = None  # a table's fitted Schema (vaekit.data.mixed); None for arrays


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

    A table (cfg.table "on", a schema given, or "auto" and a CSV the numeric loader refuses:
    text cells or gaps) takes `vaekit.data.mixed.prepare_table` instead.
    """
    from vaekit.data import mixed

    table = mixed.wants_table(cfg)
    if table:
        return _prepare_table(cfg)
    try:
        ds = load_source(
            cfg.source, image_shape=cfg.image_shape, label_column=cfg.label_column, mmap=cfg.mmap
        )
    except DataError:
        if table is None and mixed.may_be_table(cfg):
            return _prepare_table(cfg)
        raise
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
        train=make(train_idx, x_train),
        val=make(val_idx),
        test=make(test_idx),
        preprocessor=pre,
        kind=ds.kind,
        event_shape=tuple(ds.x.shape[1:]),
        name=ds.name,
        classes=ds.classes,
    )


def _prepare_table(cfg: DataConfig) -> Splits:
    """cfg.source read as a mixed table (`vaekit.data.mixed`): seeded splits of its encoded
    rows (x: (n, C) float32, NaN where missing; y None), the fitted schema in `schema` (kinds
    and levels from all rows, numeric transforms from the training split)."""
    from vaekit.data import mixed

    table = mixed.read_source(cfg)
    n = len(next(iter(table.values())))
    parts = split_indices(n, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    schema = mixed.fit_schema(table, parts[0], cfg.schema)
    x = mixed.encode_rows(table, schema)
    train, val, test = (Split(x=x[torch.from_numpy(i)], y=None) for i in parts)
    return Splits(
        train=train,
        val=val,
        test=test,
        preprocessor=Preprocessor(kind="tabular"),
        kind="tabular",
        event_shape=(len(schema.columns),),
        name=Path(str(cfg.source)).name,
        schema=schema,
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
        train=make(train_idx),
        val=make(val_idx),
        test=make(test_idx),
        preprocessor=pre,
        kind=ds.kind,
        event_shape=tuple(ds.x.shape[1:]),
        name=ds.name,
        classes=ds.classes,
    )


def load_like_run(
    source: str,
    cfg: DataConfig,
    pre: Preprocessor,
    *,
    event_shape: tuple[int, ...] | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """New data through a trained run's loading options and preprocessing (no split).

    Returns x (n, *event_shape) float32 and y (n,) int64 or None. event_shape (optional, the
    model's): flat rows of the right size are reshaped to it, other shapes raise DataError.
    image_shape: how to read the source's examples, where it differs from the run's (a .mat
    file needs one; without it an image model's own shape is taken). A CSV without the run's
    label column loads unlabelled. A table run (cfg.table "on") reads a mixed CSV under its
    schema (`vaekit.data.mixed.load_table_like_run`): NaN where a cell is missing.
    """
    if cfg.table == "on":
        from vaekit.data.mixed import load_table_like_run

        return load_table_like_run(source, cfg)
    label_column = cfg.label_column
    if label_column is not None and csv_lacks_column(source, label_column):
        label_column = None
    shape = image_shape or cfg.image_shape
    if shape is None and str(source).endswith(".mat") and event_shape and len(event_shape) == 3:
        shape = tuple(event_shape)
    ds = load_source(source, image_shape=shape, label_column=label_column, mmap=cfg.mmap)
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


def dynamic_binarize(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A fresh binary sample of x (values in [0, 1]): each entry is 1 with probability x."""
    return torch.bernoulli(x, generator=generator)
