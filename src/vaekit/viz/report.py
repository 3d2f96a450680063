"""A one-page HTML report for a run: final figures, plots, configuration.

The page is self-contained enough to open from disk: inline CSS, no JavaScript, no external
resources; images are referenced by paths relative to the run directory (the PNGs written by
`vaekit.viz.plot_run` live beside it). Every piece of text is HTML-escaped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vaekit.core.io import atomic_write_text

__all__ = ["CAPTIONS", "write_report"]

# Captions for the figures of `vaekit.viz.plot_run`; other names are used as they are.
CAPTIONS: dict[str, str] = {
    "samples": "Samples from the prior, decoded (mean of p(x|z)).",
    "reconstructions": "Held-out inputs (top) and their reconstructions from the posterior "
    "mean (bottom).",
    "latent": "Posterior means of held-out examples, coloured by label (first two principal "
    "components when the latent space has more than two dimensions).",
    "manifold": "The learned 2-D manifold: decoder means at Gaussian quantiles of the latent "
    "space (z1 left to right, z2 bottom to top).",
    "classes": "Conditional samples: one row per class y, decoded from prior draws "
    "(mean of p(x|z,y)).",
    "style": "Style transfer: each held-out input (first column) encoded with its own label, "
    "and its z decoded with every label in turn: same style, another class.",
    "anomalies": "Anomaly scores: the most anomalous inputs of the scored data beside their "
    "reconstructions, then the least anomalous (images), or their most deviating features "
    "(tables).",
    "anomaly_scores": "The distribution of the anomaly scores of the scored data (higher is "
    "more abnormal), with the threshold marked.",
    "curves": "Training curves: total loss (−ELBO), rate (KL) and distortion, in nats per "
    "example, for the training and validation splits.",
}

# Unit fallbacks for figures whose name carries no "(unit)" suffix.
_NATS = re.compile(
    r"elbo|log[ -]?p\(x|log[- ]?likelihood|(?<!learning )\brate\b|\bkl\b|distortion", re.I
)
_BITS = re.compile(r"bits[ /-]per[ /-]dim|\bbpd\b", re.I)
_UNIT_SUFFIX = re.compile(r"^(.*\S)\s+\(([^()]*)\)\s*$")  # "name (unit)", not "log p(x)"
# ... and only when the parenthesis reads as a unit, so "rate (KL)" stays a name
_UNIT_WORDS = re.compile(r"nats|bits|\bper\b|/|%|\bs\b|seconds|minutes|hours|bytes|[kmg]b\b", re.I)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 70rem; padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; }
th, td { padding: .3rem .9rem; border-bottom: 1px solid #e3e3e3; text-align: left; }
th { background: #f4f4f4; font-weight: 600; }
td.value { text-align: right; font-variant-numeric: tabular-nums; font-family: ui-monospace,
           "SFMono-Regular", Menlo, Consolas, monospace; }
td.unit { color: #555; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: .92rem; margin-top: .3rem; }
.warnings { background: #fff4e5; border-left: 4px solid #e69500; padding: .2rem 1rem; }
pre { background: #f6f8fa; padding: .8rem 1rem; overflow-x: auto; font-size: .85rem;
      border-radius: 4px; }
""".strip()


def _split_unit(name: str) -> tuple[str, str]:
    """'test ELBO (nats per example)' -> ('test ELBO', 'nats per example'); else a fallback."""
    m = _UNIT_SUFFIX.match(name)
    if m and _UNIT_WORDS.search(m.group(2)):
        return m.group(1), m.group(2)
    if _BITS.search(name):
        return name, "bits per dimension"
    if _NATS.search(name):
        return name, "nats per example"
    return name, ""


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.2f}"
    return f"{value:.4g}"


def _relative(path: Path, run_dir: Path) -> str:
    try:
        rel = os.path.relpath(path.resolve(), run_dir.resolve())
    except ValueError:  # another drive on Windows
        rel = str(path.resolve())
    return quote(Path(rel).as_posix())


def _jsonable(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return config


def write_report(
    run_dir: str | Path,
    *,
    title: str,
    figures: dict[str, float | str],
    images: dict[str, Path],
    config: dict | None = None,
    warnings: list[str] | None = None,
) -> Path:
    """Write run_dir/report.html (atomically) and return its path.

    figures: {name: value}; a trailing "(unit)" in the name goes to the unit column (e.g.
    "test ELBO (nats per example)"); names without one get "nats per example" for ELBO, log
    p(x), rate, KL and distortion and "bits per dimension" for bits per dim.
    images: {name: path} as returned by `vaekit.viz.plot_run`; captions come from
    `CAPTIONS` (unknown names are their own caption); files that do not exist are left out.
    config: the run configuration (a dict, or a dataclass), shown as pretty JSON.
    warnings: one line each, shown above the results (e.g. `vaekit.train.diagnose`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
    ]

    if warnings:
        parts += ['<div class="warnings"><h2>Warnings</h2><ul>']
        parts += [f"<li>{escape(line)}</li>" for line in warnings]
        parts += ["</ul></div>"]
    if figures:
        parts += [
            "<h2>Results</h2>",
            "<table>",
            "<thead><tr><th>quantity</th><th>value</th><th>unit</th></tr></thead>",
            "<tbody>",
        ]
        for name, value in figures.items():
            label, unit = _split_unit(str(name))
            parts.append(
                f'<tr><td>{escape(label)}</td><td class="value">{escape(_format_value(value))}'
                f'</td><td class="unit">{escape(unit)}</td></tr>'
            )
        parts += ["</tbody>", "</table>"]

    shown = [(name, Path(p)) for name, p in images.items() if p is not None and Path(p).is_file()]
    known = list(CAPTIONS)  # the standard figures in a fixed order, then any others as given
    shown.sort(key=lambda item: known.index(item[0]) if item[0] in known else len(known))
    if shown:
        parts.append("<h2>Figures</h2>")
        for name, path in shown:
            caption = CAPTIONS.get(name, name)
            src = _relative(path, run_dir)
            parts += [
                "<figure>",
                f'<img src="{escape(src)}" alt="{escape(name)}">',
                f"<figcaption>{escape(caption)}</figcaption>",
                "</figure>",
            ]

    if config is not None:
        dump = json.dumps(_jsonable(config), indent=2, default=str, ensure_ascii=False)
        parts += ["<h2>Configuration</h2>", f"<pre>{escape(dump)}</pre>"]

    parts += ["</body>", "</html>", ""]
    path = run_dir / "report.html"
    # pure ASCII (non-ASCII as character references): correct whatever the locale's encoding
    text = "\n".join(parts).encode("ascii", "xmlcharrefreplace").decode("ascii")
    atomic_write_text(path, text)
    return path
