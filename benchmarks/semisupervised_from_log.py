"""Render a result file of bench_semisupervised.py from its log's per-draw lines, for a run
stopped before its last draw (the script writes its .md and .json only at the end).

  .venv/bin/python benchmarks/semisupervised_from_log.py LOG --data mnist --labels 10
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import bench_semisupervised as bs
import common as bc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("log", type=Path)
    p.add_argument("--data", required=True)
    p.add_argument("--labels", type=int, required=True)
    bc.add_out_dir(p)
    args = p.parse_args()
    rows: dict[str, list[tuple[float, float]]] = {}
    samples, draws = [], []
    for line in args.log.read_text().splitlines():
        head, _, rest = line.partition(" {")
        if not head.isdigit() or not rest:
            continue
        body, _, judged = rest.rpartition("} ")
        for name, value in ast.literal_eval("{" + body + "}").items():
            rows.setdefault(name, []).append(tuple(value))
        samples.append(float(judged))
        draws.append(head)
    args.draws = ",".join(draws) + " (the run was stopped after these draws)"
    md = bs.table(rows, samples, args)
    stem = args.out_dir / f"semisupervised_{args.data}_{args.labels * 10}"
    bc.write_result(stem, md, {"draws": draws, "rows": rows, "samples_judged": samples})


if __name__ == "__main__":
    main()
