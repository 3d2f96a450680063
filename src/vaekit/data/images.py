"""Folders of PNG/JPEG images: at the top level (unlabelled) or in class sub-folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.base import ACCEPTED, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def load_image_folder(path: Path) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
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
        arrays = [
            a.astype(np.float32) / np.float32(255.0) if a.dtype == np.uint8 else a for a in arrays
        ]
    return np.stack(arrays).transpose(0, 3, 1, 2)  # (n, H, W, C) -> (n, C, H, W)


def _is_gray(im: Any) -> bool:
    if im.mode != "P":
        return True
    rgb = np.asarray(im.convert("RGB"))  # a palette image is grey if its colours are
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
