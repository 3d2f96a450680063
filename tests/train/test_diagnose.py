"""What a finished run's figures say went wrong: posterior collapse and labels the samples
ignore, in one line each, in the log and in the report."""

from __future__ import annotations

import json
from pathlib import Path

from clitools import SMALL, run
from vaekit.train.diagnose import diagnose


def test_a_collapsed_rate_and_a_label_at_chance_are_named_with_their_fix():
    healthy = {"rate": 12.5, "conditional_accuracy": 0.91}
    assert diagnose(healthy, classes=10) == []
    found = diagnose({"rate": 0.01, "conditional_accuracy": 0.103}, classes=10)
    assert len(found) == 2
    assert found[0].startswith("posterior collapse") and "--warmup-epochs" in found[0]
    assert "ignore their label" in found[1] and "--conditional-prior class-full" in found[1]
    assert diagnose({"conditional_accuracy": 0.25}, classes=10) == []  # 2.5x chance


def test_a_collapsed_run_says_so_in_its_log_and_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    # a rate weighted 100x: the cheapest code is none at all
    args = ["--data", "digits", "--epochs", 2, "--beta", 100, "--k", 5, "--out", out, *SMALL]
    rc, _, err = run(capsys, "train", *args)
    assert rc == 0, err
    lines = [line for line in err.splitlines() if "warning:" in line]
    assert len(lines) == 1 and lines[0].startswith("vaekit train: warning: posterior collapse")
    assert json.loads((out / "evaluation.json").read_text())["warnings"][0].startswith(
        "posterior collapse"
    )
    assert "posterior collapse" in (out / "report.html").read_text()
