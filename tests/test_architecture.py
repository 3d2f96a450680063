"""The house rules of issue 27, checked: the public names, no import circle, rooms a sitting can
read (modules up to 450 lines, functions up to 80)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vaekit"

# What `import vaekit` offered before the package was split into rooms: each must still be there.
PUBLIC = (
    "VAE",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "VAEClusterer",
    "VAEDetector",
)
# Import paths the README and docs of that release showed; they keep working too.
DOCUMENTED = {
    "vaekit.data": ("prepare", "load_source", "DataError", "Preprocessor", "DataConfig"),
    "vaekit.train": ("fit", "TrainingError", "TrainingInterrupted", "COLUMNS", "evaluate_loss"),
    "vaekit.runs": ("Run", "train_run", "RunConfig", "load_run_config"),
    "vaekit.cluster": ("VAEClusterer", "clustering_scores", "hungarian_accuracy"),
    "vaekit.anomaly": ("VAEDetector", "score_samples", "default_score", "SCORES"),
    "vaekit.viz": ("plot_run", "image_grid", "manifold_grid", "latent_scatter", "write_report"),
}


def test_every_public_name_imports_from_vaekit():
    import vaekit

    assert set(PUBLIC) <= set(vaekit.__all__)
    for name in PUBLIC:
        assert getattr(vaekit, name) is not None, name
    assert vaekit.VAEClusterer.__name__ == "VAEClusterer"
    assert vaekit.VAEDetector.__name__ == "VAEDetector"
    assert vaekit.VAEClassifier.__name__ == "VAEClassifier"
    assert isinstance(vaekit.__version__, str)


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_documented_import_paths(module):
    mod = importlib.import_module(module)
    missing = [n for n in DOCUMENTED[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lacks {missing}"


def test_import_vaekit_stays_light():
    """`import vaekit` loads the model and its configs, not the estimators, pictures or CLI."""
    code = (
        "import sys, vaekit; heavy = [m for m in ('vaekit.cluster', 'vaekit.anomaly', "
        "'vaekit.viz', 'vaekit.cli', 'vaekit.serve', 'matplotlib', 'sklearn') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_import_circle():
    """No strongly connected component of more than one module in vaekit's import graph
    (lazy imports inside functions included)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("vaekit")
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    assert not circles, f"import circles: {circles}"


def test_modules_fit_a_sitting():
    long = {
        str(p.relative_to(SRC)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert not long, f"modules over 450 lines (split along a concept): {long}"


def test_functions_fit_a_screen_or_two():
    long = []
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{p.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 80 lines: " + "; ".join(long)
