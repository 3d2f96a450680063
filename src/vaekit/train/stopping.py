"""How training stops early: Ctrl-C or SIGTERM (the last finished epoch saved, resumable) and a
non-finite loss (the last good weights kept), each with a message that says what to do next."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vaekit.core.io import Terminated
from vaekit.train import distributed

CHECKPOINT = "checkpoint.safetensors"


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss); the message says what was kept and what to try."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM under `io.terminate_as_interrupt`): the last finished epoch is saved;
    resume with `--resume`. `signum` tells which signal."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


@contextlib.contextmanager
def interrupts(run_dir: Path | None, saved: list[int], bar: Any) -> Iterator[None]:
    """Ctrl-C anywhere in an epoch (steps, validation, saving) -> TrainingInterrupted."""
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as e:
        raise _interrupted(e, run_dir, saved, bar) from None
    except RuntimeError:
        # Under torchrun a Ctrl-C reaches every rank; a rank blocked in a collective can see its
        # peer leave (the backend's RuntimeError) before its own signal's handler has run. Give
        # that signal a moment to land, so the rank reports the interruption, not the backend.
        if not distributed.launched():
            raise
        try:
            time.sleep(SIGNAL_GRACE_S)
        except KeyboardInterrupt as e:
            raise _interrupted(e, run_dir, saved, bar) from None
        raise


SIGNAL_GRACE_S = 2.0


def _interrupted(
    e: KeyboardInterrupt, run_dir: Path | None, saved: list[int], bar: Any
) -> TrainingInterrupted:
    if bar is not None:
        bar.close()
    signum = e.signum if isinstance(e, Terminated) else signal.SIGINT
    how = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    return TrainingInterrupted(interrupted_message(run_dir, saved[0], how), signum)


def interrupted_message(run_dir: Path | None, saved: int, how: str = "interrupted") -> str:
    epoch = saved + 1
    if run_dir is None:
        return f"{how} during epoch {epoch}"
    if saved == 0:
        return f"{how} during epoch 1, before any checkpoint: nothing to --resume; start again"
    # under torchrun the run goes on under torchrun, with the same launcher options
    launcher = "torchrun [the same options] -m " if distributed.launched() else ""
    return (
        f"{how} during epoch {epoch}; epochs up to {saved} are saved in "
        f"{run_dir / CHECKPOINT}; continue with: {launcher}vaekit train --resume --out {run_dir}"
    )


def nonfinite_message(run_dir: Path | None, epoch: int, value: float) -> str:
    kept = ""
    if run_dir is not None and epoch > 1:
        kept = f"; the last good checkpoint (epoch {epoch - 1}) is kept in {run_dir}"
    return (
        f"the training loss became {value} in epoch {epoch}{kept}; "
        "try a smaller --lr, --grad-clip 10, or check the data for extreme values"
    )
