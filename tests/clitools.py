"""Helpers the CLI tests of every room share: run `vaekit` in this process, check a one-line
error, compare two run directories bit for bit."""

from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path

import pytest
import torch

from vaekit.cli import main
from vaekit.core.io import load_tensors
from vaekit.train import COLUMNS

VAEKIT = Path(sys.executable).with_name("vaekit")
SMALL = ["--hidden", "64,32", "--quiet"]  # small, fast models; no progress bar on stderr
FAST = [*SMALL, "--no-pictures", "--k", "5"]  # for runs whose pictures/log p(x) are not tested


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """vaekit ARGS in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse: --help, usage errors
        rc = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *, code: int = 1) -> str:
    """A user mistake: one line on stderr, no traceback, the given non-zero exit code."""
    assert rc == code, err
    msg = err.strip()
    assert msg, "no error message"
    assert "\n" not in msg, msg
    assert "Traceback" not in msg
    assert msg.startswith("vaekit")
    return msg


def tree_hash(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root (the before/after of an error)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_metrics(run_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (run_dir / "metrics.csv").open() as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return load_tensors(run_dir / "checkpoint.safetensors")


def assert_same_training(a: Path, b: Path) -> None:
    """Two run directories trained to the same point: bit-identical weights, optimizer, RNG."""
    ta, ma = checkpoint(a)
    tb, mb = checkpoint(b)
    assert ma["state"]["epoch"] == mb["state"]["epoch"]
    assert sorted(ta) == sorted(tb)
    assert any(k.startswith("optim.") for k in ta)
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    wa, _ = load_tensors(a / "model.safetensors")
    wb, _ = load_tensors(b / "model.safetensors")
    assert sorted(wa) == sorted(wb)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    ha, ra = read_metrics(a)
    hb, rb = read_metrics(b)
    assert ha == hb == list(COLUMNS)
    assert len(ra) == len(rb) == ma["state"]["epoch"]
    for x, y in zip(ra, rb, strict=True):
        x.pop("seconds"), y.pop("seconds")
        assert x == y
