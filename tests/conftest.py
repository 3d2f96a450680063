"""Shared fixtures."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# A shell without job control starts background commands (`make test &`, nohup) with Ctrl-C
# ignored, and Python then leaves SIGINT ignored: the tests of Ctrl-C, in this process and in
# the commands it starts (which inherit the disposition), would see nothing. Give it back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one thread is both faster and steadier."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny one-epoch run on the digits (images), trained through the CLI; tests only read it."""
    from vaekit.cli import main

    run = tmp_path_factory.mktemp("digits") / "run"
    rc = main(["train", "--data", "digits", "--out", str(run), "--hidden", "16", "--latent-dim",
               "2", "--epochs", "1", "--quiet", "--no-pictures", "--k", "2"])
    assert rc == 0
    return run
