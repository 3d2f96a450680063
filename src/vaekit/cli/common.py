"""What every `vaekit` command module shares: the parser class, the user-error type, and
writing an output file safely (suffix check, no overwrite without --force, atomic)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 2, 1, 130


class UserError(Exception):
    """A mistake the user can fix; printed as one line."""


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No prefix matching: a typo like --dat must be an error, not silently --data.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def hidden_sizes(text: str) -> tuple[int, ...]:
    return () if text.strip() in ("", "none") else ints(text)


def add_device(parser: Any, what: str = "where the model runs") -> None:
    """--device, for every command that runs a model."""
    parser.add_argument(
        "--device",
        default="auto",
        help=f"{what}: auto (a CUDA GPU, else MPS, else the CPU), cpu, cuda, cuda:N or mps [auto]",
    )


# --- helpers -----------------------------------------------------------------------------------


def plots() -> Any:
    from vaekit import viz as plots

    return plots


def check_out(path: Path, suffixes: tuple[str, ...], force: bool) -> None:
    if path.suffix not in suffixes:
        raise UserError(f"--out must end in {' or '.join(suffixes)}, got {path.name}")
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it or choose another --out")


def write_atomic(path: Path, write: Any) -> None:
    """Write through a temp file with the same suffix (numpy/matplotlib go by the suffix)."""
    from vaekit.core.io import atomic_write

    def write_tmp(tmp: Path) -> None:
        named = tmp.with_name(tmp.name + path.suffix)
        try:
            write(named)
            named.replace(tmp)
        finally:
            named.unlink(missing_ok=True)

    atomic_write(path, write_tmp)


def write_images(run: Any, x: Any, out: Path, draw: Any) -> None:
    images = plots().as_images(x.numpy(), run.config.model.event_shape)
    if images is None:
        raise UserError("this run's data are not images; write .npz instead of .png")
    write_atomic(out, lambda f: draw(images, f))
