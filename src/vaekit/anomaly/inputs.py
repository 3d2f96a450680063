"""What `VAEDetector` accepts: its parameters (`check_params`) and its data (`as_array`: an
array, tensor, DataFrame or source path to float32 (n, *event_shape), with a one-line error for
what cannot be scored; `fit_input`: the same, or a mixed table encoded under a schema fitted on
it; `model_space`: new data checked against the fit; `warn_if_flat_images` for tables that look
like flattened images)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.anomaly.scores import FEATURE_SCORES, check_samples, check_score
from vaekit.core.precision import PRECISIONS


def check_params(det: Any) -> None:
    """Refuse a `VAEDetector`'s parameters that cannot work, in one line each."""
    c = det.contamination
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c <= 0.5:
        raise ValueError(f"contamination must be in (0, 0.5], got {c!r}")
    if det.scoring != "auto":
        check_score(det.scoring)
    if det.objective not in ("elbo", "infomax"):
        raise ValueError(f"objective must be elbo or infomax, got {det.objective!r}")
    if det.objective == "infomax" and det.scoring not in ("auto", *FEATURE_SCORES):
        raise ValueError(
            f"objective='infomax' trains an encoder-only model, which has no decoder for "
            f"scoring={det.scoring!r}; use scoring='latent-knn'"
        )
    k = det.neighbors
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"neighbors must be an integer >= 1, got {det.neighbors!r}")
    if det.threshold is not None and not math.isfinite(float(det.threshold)):
        raise ValueError(f"threshold must be a finite number, got {det.threshold!r}")
    if det.samples is not None:
        check_samples(det.samples)
    if det.precision not in ("auto", *PRECISIONS):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {det.precision!r}")
    if det.likelihood not in (None, "bernoulli", "gaussian", "gaussian-learned"):
        raise ValueError(
            f"likelihood must be bernoulli, gaussian or gaussian-learned, got "
            f"{det.likelihood!r}"
        )


def warn_if_flat_images(x: np.ndarray, stacklevel: int = 3) -> None:
    """Warn when a table looks like flattened square images: (n, s*s) with s >= 8 and every
    value in [0, 1]. As a table it is standardised, modelled with a Gaussian and scored by elbo;
    as (n, s, s) images it gets the Bernoulli likelihood and smooth-error, the better detector
    (figures: the docs' anomaly benchmark page). stacklevel: the frames up to fit's caller,
    where the warning points."""
    side = math.isqrt(x.shape[1])
    if side >= 8 and side * side == x.shape[1] and x.min() >= 0 and x.max() <= 1:
        import warnings

        warnings.warn(
            f"X has {x.shape[1]} columns in [0, 1]: if its rows are {side}x{side} images, pass "
            f"X.reshape(-1, {side}, {side}) to detect with the image defaults (Bernoulli, "
            "smooth-error); as it is, X is treated as a table",
            UserWarning,
            stacklevel=stacklevel,
        )


def as_array(X: Any, name: str) -> tuple[np.ndarray, str]:
    """X (array, tensor, DataFrame or source path) -> float32 (n, *event_shape) and its kind
    ("image" or "tabular"); a one-line ValueError for what cannot be scored."""
    if isinstance(X, (str, Path)):
        from vaekit.data import load_source

        ds = load_source(str(X))
        return ds.x, ds.kind
    import scipy.sparse

    if scipy.sparse.issparse(X):
        raise ValueError(f"{name} is a sparse matrix; sparse data is not supported: use .toarray()")
    if isinstance(X, torch.Tensor):
        x = X.detach().cpu().numpy()
    else:
        try:
            x = np.asarray(X)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} cannot be read as an array: {e}") from None
    if x.dtype.kind == "c":
        raise ValueError(f"{name} holds complex numbers: Complex data not supported; pass X.real")
    if x.dtype.kind == "O":  # numbers held as objects (e.g. a DataFrame's .values) convert
        try:
            x = x.astype(np.float64)
        except ValueError as e:  # text
            raise ValueError(
                f"{name} holds non-numeric values ({e}); convert or drop text columns"
            ) from None
        except TypeError as e:  # "float() argument must be a string or a real number, not ..."
            raise TypeError(f"{name} holds values that are not numbers: {e}") from None
    if x.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} holds non-numeric values (dtype {x.dtype}); convert or drop text columns"
        )
    if x.ndim < 2 or x.ndim > 4:
        raise ValueError(
            f"{name} must be (n, features), (n, H, W) or (n, C, H, W), got shape {x.shape}. "
            "Reshape your data: X.reshape(1, -1) for a single row, X.reshape(-1, 1) for a "
            "single feature"
        )
    if len(x) == 0:
        raise ValueError(f"{name} has 0 rows")
    if x.ndim == 2 and x.shape[1] == 0:
        raise ValueError(
            f"{name} has 0 feature(s) (shape={x.shape}) while a minimum of 1 is required; "
            "give at least one column"
        )
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255.0)
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(x), -1).any(1))
        raise ValueError(
            f"{name} has {len(rows)} row(s) with NaN or infinite values (first: row {rows[0]}); "
            "drop or impute them first"
        )
    if x.ndim == 3:
        x = x[:, None]
    return x, "tabular" if x.ndim == 2 else "image"


def mixed_table(X: Any) -> Any:
    """X as a dict of columns when it is a mixed table, else None: a dict of columns; a
    DataFrame with a cell that is not a finite number (text, a gap, a bool); a CSV path that the
    numeric loader refuses (a text cell or a gap)."""
    from vaekit.data import DataError
    from vaekit.data.tabular import as_columns, as_number, read_table

    if isinstance(X, (str, Path)):
        if Path(X).suffix.lower() != ".csv":
            return None
        from vaekit.data.tables import load_csv

        try:
            load_csv(Path(X).expanduser(), None)
            return None
        except DataError:
            return read_table(X)
    import scipy.sparse

    if scipy.sparse.issparse(X):  # (a DOK matrix is a dict): as_array refuses it in one line
        return None
    if isinstance(X, Mapping):
        return as_columns(X)
    if hasattr(X, "columns") and hasattr(X, "dtypes"):  # a DataFrame
        cols = as_columns(X)
        numbers = all(as_number(c) is not None for cells in cols.values() for c in cells)
        return None if numbers else cols
    return None


def fit_input(det: Any, X: Any) -> tuple[np.ndarray, str]:
    """X for `VAEDetector.fit`: `as_array`'s (x, kind), or for a mixed table (`mixed_table`)
    its rows encoded under a schema fitted on X: (n, C) float32 with NaN in missing cells, kind
    "table"; sets det.schema_ (the `vaekit.data.schema.Schema`, None for arrays)."""
    det.schema_ = None
    table = mixed_table(X)
    if table is None:
        x, kind = as_array(X, "X")
        if kind == "tabular":  # (warn_if_flat_images < fit_input < fit < fit's caller)
            warn_if_flat_images(x, stacklevel=4)
        return x, kind
    if det.likelihood is not None or det.standardize:
        raise ValueError(
            "X is a mixed table: its likelihood is one block per column (Gaussian on the "
            "schema's transform, categorical, Bernoulli); leave likelihood and standardize None"
        )
    from vaekit.data.schema import encode, infer_schema

    det.schema_ = infer_schema(table)
    x, _ = encode(table, det.schema_)
    return x, "table"


def table_kinds(det: Any) -> tuple[str, ...]:
    """ModelConfig.column_kinds of a detector fitted on a mixed table (() otherwise)."""
    from vaekit.data.mixed import column_kinds

    schema = getattr(det, "schema_", None)
    return () if schema is None else column_kinds(schema)


def model_space(det: Any, X: Any) -> torch.Tensor:
    """New data for the fitted detector `det`: X read by `as_array`, checked against the
    training data's shape (flat rows of the right size are reshaped) and the likelihood's
    support, in model space (det's preprocessing): (n, *event_shape). A detector fitted on a
    mixed table reads X (a CSV path, dict of columns, DataFrame) under its schema: one-line
    errors for a missing or extra column, an unknown category."""
    if getattr(det, "schema_", None) is not None:
        from vaekit.data.schema import encode
        from vaekit.data.tabular import as_columns, read_table

        table = read_table(X) if isinstance(X, (str, Path)) else as_columns(X)
        return torch.from_numpy(encode(table, det.schema_)[0])
    x, _ = as_array(X, "X")
    if tuple(x.shape[1:]) != det.event_shape_:
        if x.ndim == 2 and len(det.event_shape_) == 1:
            raise ValueError(
                f"X has {x.shape[1]} features, but VAEDetector is expecting "
                f"{det.event_shape_[0]} features as input; give the columns of the "
                "training data, in the same order"
            )
        if math.prod(x.shape[1:]) != det.n_features_in_:
            raise ValueError(
                f"X has examples of shape {tuple(x.shape[1:])} but the detector was "
                f"fitted on {det.event_shape_}; give data like the training data"
            )
        x = x.reshape(len(x), *det.event_shape_)
    xt = torch.from_numpy(det.preprocessor_.transform(x))
    if det.model_.likelihood is not None:  # an encoder-only model has none
        try:
            det.model_.likelihood.check_support(xt)
        except ValueError as e:
            raise ValueError(f"X: {e}") from None
    return xt
