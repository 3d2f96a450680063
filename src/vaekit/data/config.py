"""How the data is found and prepared: enough to rebuild the splits of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vaekit.core.config import ADDED, ConfigError, check_choice


@dataclass
class DataConfig:
    """Where the data comes from and how it is prepared; enough to rebuild the splits."""

    source: str = "digits"  # 'digits' or a path (IDX folder, .npz, .npy, .csv, image folder, .mat)
    image_shape: tuple[int, ...] | None = None  # reshape flat rows to (C, H, W) or (H, W)
    label_column: str | None = None  # CSV column holding labels
    binarize: str = "none"  # none | static | dynamic
    standardize: bool = False  # per-feature (tabular) or global (images) z-scoring
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    mmap: bool = False  # memory-map a .npy larger than memory instead of loading it
    # A mixed table (vaekit.data.mixed): "on" reads a CSV as columns of kinds (continuous,
    # integer, categorical, binary; gaps allowed) under a schema; "off" reads numbers only;
    # "auto" (training) is "on" for a CSV with a text cell or a gap, or with a schema given.
    # A run stores what "auto" resolved to; files written before tables are "off".
    table: str = field(default="auto", metadata={**ADDED, "saved_default": "off"})
    # The table's schema (vaekit.data.schema, its JSON): given (possibly partly: kinds only)
    # before training, fitted (levels, transforms on the training split) in the run's config.
    schema: dict[str, Any] | None = field(default=None, metadata=ADDED)

    def __post_init__(self) -> None:
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)
        check_choice("binarize", self.binarize, ("none", "static", "dynamic"))
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("val_fraction + test_fraction must leave some training data")
        if self.binarize != "none" and self.standardize:
            raise ConfigError("binarize and standardize exclude each other; pick one")
        check_choice("table", self.table, ("auto", "on", "off"))
        if self.schema is not None:
            if hasattr(self.schema, "to_dict"):  # a Schema object (Python: schema=...)
                self.schema = self.schema.to_dict()
            from vaekit.data.schema import Schema

            Schema.from_dict(self.schema)  # a one-line DataError naming what is wrong
            if self.table == "off":
                raise ConfigError("a schema describes a table: drop it or set table='on'")
        table = self.table != "off" and (self.schema is not None or self.table == "on")
        if table and (self.standardize or self.binarize != "none" or self.mmap):
            raise ConfigError(
                "a table's numeric columns are transformed by its schema (quantile or "
                "standard): drop standardize, binarize and mmap (--standardize ...)"
            )
