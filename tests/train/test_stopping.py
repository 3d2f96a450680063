"""Ctrl-C under torchrun: a rank whose collective fails because its peer left on the same Ctrl-C
reports the interruption (resumable), not the backend's error."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from vaekit.train import stopping


@pytest.fixture
def under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(stopping, "SIGNAL_GRACE_S", 5.0)


def test_a_backend_error_followed_by_the_signal_is_an_interruption(
    under_torchrun: None, tmp_path: Path
) -> None:
    # the peer left (a RuntimeError from the collective); this rank's own SIGINT lands just after
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    expected = pytest.raises(stopping.TrainingInterrupted, match="continue with: torchrun")
    with expected as e, stopping.interrupts(tmp_path, [3], None):
        raise RuntimeError("Connection closed by peer")
    assert e.value.signum == signal.SIGINT
    assert "epochs up to 3 are saved" in str(e.value)


def test_a_backend_error_without_a_signal_stays_an_error(
    under_torchrun: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(stopping, "SIGNAL_GRACE_S", 0.05)
    expected = pytest.raises(RuntimeError, match="Connection closed")
    with expected, stopping.interrupts(tmp_path, [3], None):
        raise RuntimeError("Connection closed by peer")


def test_outside_torchrun_a_runtime_error_passes_at_once(tmp_path: Path) -> None:
    assert "RANK" not in os.environ
    with pytest.raises(RuntimeError, match="boom"), stopping.interrupts(tmp_path, [3], None):
        raise RuntimeError("boom")
