"""Safe files: atomic writes and safetensors with JSON metadata. Nothing here unpickles."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointError(ValueError):
    """A weights or checkpoint file is missing, corrupt, or does not match the model."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `kill` and job schedulers send), raised like Ctrl-C so that the same
    clean-up runs: the last finished epoch saved, no half-written file left behind."""

    signum = signal.SIGTERM


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """For the block, SIGTERM raises `Terminated` (a KeyboardInterrupt) instead of killing.

    Only in the main thread and only where nobody else handles SIGTERM; the CLI wraps its
    commands in this.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT), and SIGTERM under `terminate_as_interrupt`, until the block ends,
    then raise the KeyboardInterrupt (or `Terminated`) they would have raised.

    A KeyboardInterrupt can otherwise land between any two bytecodes, e.g. just after
    mkstemp created a temp file and before the cleanup handler is armed, or between the
    model file and the checkpoint that must agree with it. Only the main thread can hold
    signals, and only signals that would raise; elsewhere (and when nested) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raising = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _raise_terminated}
    held = {s: h for s, h in raising.items() if signal.getsignal(s) is h}
    pending: list[int] = []
    for s in held:
        signal.signal(s, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for s, h in held.items():
            signal.signal(s, h)
    if pending:
        raise Terminated if pending[0] == signal.SIGTERM else KeyboardInterrupt


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temp file beside `path`, then rename it over `path`.

    A crash leaves either the old file or the new one, never half of one; Ctrl-C waits for
    the rename, so it leaves no temp file behind either.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with interrupts_deferred():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save tensors as safetensors, with `meta` stored as JSON in the file's header."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {"vaekit": json.dumps(meta)}
    atomic_write(Path(path), lambda tmp: save_file(flat, str(tmp), metadata=header))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read tensors and JSON metadata written by `save_tensors`; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("vaekit")
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {e}; "
            "re-save the model or restore the file"
        ) from None
    if raw is None:
        raise CheckpointError(f"{path} has no vaekit metadata; was it written by vaekit?")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise CheckpointError(f"{path}: its vaekit metadata is not valid JSON") from None
    return tensors, meta
