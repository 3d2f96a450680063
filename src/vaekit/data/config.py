"""How the data is found and prepared: enough to rebuild the splits of a run."""

from __future__ import annotations

from dataclasses import dataclass

from vaekit.core.config import ConfigError, check_choice


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
