"""Data: sources -> in-memory arrays -> seeded splits -> preprocessing.

Sources (`load_source`): ``"digits"`` (scikit-learn's 8x8 digits), MNIST IDX files (a folder
or the images file), ``.npz``, ``.npy``, ``.csv``, ``.mat`` and folders of PNG/JPEG images
(sub-folder names become labels). Everything comes back as float32: images as
(n, C, H, W) in [0, 1] (uint8 pixels are divided by 255), tabular data as (n, D) as given.

Problems raise `DataError` with a one-line message saying what is wrong and how to fix it.
Nothing here unpickles: NumPy files are always read with ``allow_pickle=False``.

The package, one module per concept: `config` (DataConfig), `base` (DataError, Dataset), the
formats (`idx`, `images`, `arrays`, `tables`), `sources` (load_source: dispatch and the common
checks), `preprocess` (Preprocessor) and `splits` (split_indices, prepare, LazyRows,
load_like_run).
"""

from vaekit.data.base import ACCEPTED, DataError, Dataset
from vaekit.data.config import DataConfig
from vaekit.data.preprocess import Preprocessor
from vaekit.data.sources import load_source
from vaekit.data.splits import (
    MMAP_FIT_ROWS,
    LazyRows,
    Split,
    Splits,
    dynamic_binarize,
    load_like_run,
    prepare,
    split_indices,
)

__all__ = [
    "ACCEPTED",
    "MMAP_FIT_ROWS",
    "DataConfig",
    "DataError",
    "Dataset",
    "LazyRows",
    "Preprocessor",
    "Split",
    "Splits",
    "dynamic_binarize",
    "load_like_run",
    "load_source",
    "prepare",
    "split_indices",
]
