"""Every example in README.md and docs/ runs as written, and the docs build.

Which code blocks run (the rule for whoever writes docs):

- ```python  runs. The Python blocks of one page run in order in one namespace, as one script
             would, so a later block may use names an earlier one defined.
- ```sh      runs. The block runs as one bash script that stops at the first failing
             command (bash -e -o pipefail), with this interpreter's bin directory first on
             PATH, so `vaekit` and `torchrun` are those of the environment running the tests.
- anything else is shown, never run: ```console for commands a reader types but a test
  must not (make, pip, a server that does not return, a GPU, a second machine, data that
  is not shipped), ```text for output and file listings, ```toml / ```json for files.

All runnable blocks of one page, Python and shell alike, run in page order in one fresh
temporary directory, so a block may read what an earlier block of the same page wrote (a run
directory, a CSV); a page never depends on another page. Keep examples small (the built-in
digits, a few epochs, narrow networks): the whole file runs in a few minutes on 2 CPU cores.
A failure names the page, the block's line and the command. The examples run with one
thread per process (OMP_NUM_THREADS=1), which is faster for networks this small.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN = {"python", "sh"}
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
README_MAX_LINES = 200  # issue 27: a README a user reads in two minutes


@dataclass
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    code: str


def closes(line: str, fence: str) -> bool:
    """A closing fence: only the opening's character, at least as many (CommonMark)."""
    s = line.strip()
    return len(s) >= len(fence) and set(s) == {fence[0]}


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order."""
    out: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        lang = (m["info"].strip().split() or [""])[0].lower()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not closes(lines[i], fence):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        i += 1  # the closing fence
        out.append(Block(lang, start, textwrap.dedent("\n".join(body)) + "\n"))
    return out


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def environment() -> dict[str, str]:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    # One thread per process: the examples' networks are tiny, and on a busy 2-core machine
    # two OpenMP threads per process spin against each other (t-SNE 10x slower, measured).
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def run_shell(page: Path, block: Block, cwd: Path) -> None:
    proc = subprocess.run(
        ["bash", "-e", "-x", "-o", "pipefail", "-c", block.code],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        # -x traces each command to stderr ("+ vaekit ..."): the last trace is the one that failed
        traced = [line for line in proc.stderr.splitlines() if line.startswith("+ ")]
        failed = traced[-1][2:] if traced else block.code.strip()
        tail = (proc.stdout[-2000:] + "\n" + proc.stderr[-4000:]).strip()
        pytest.fail(
            f"{page_id(page)}:{block.line}: `{failed}` exited {proc.returncode}\n{tail}",
            pytrace=False,
        )


def run_python(page: Path, block: Block, namespace: dict) -> None:
    name = f"{page_id(page)}:{block.line}"
    code = compile(block.code, name, "exec")
    try:
        exec(code, namespace)
    except Exception as e:  # the page, the block and the error, then the traceback
        raise AssertionError(f"{name}: the Python block failed: {type(e).__name__}: {e}") from e


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang in RUN]


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=page_id)
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # the shipped tables, as in a checkout
    for key, value in environment().items():  # Python blocks start commands too
        monkeypatch.setenv(key, value)
    namespace: dict = {"__name__": "__main__"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the commands run: see environment()
    try:
        with threadpool_limits(1):
            for block in runnable(page):
                if block.lang == "python":
                    run_python(page, block, namespace)
                else:
                    run_shell(page, block, tmp_path)
    finally:
        torch.set_num_threads(threads)


def test_the_parser_reads_fences(tmp_path: Path) -> None:
    text = "x\n```sh\nvaekit a \\\n  --b 1\n```\n````console\nmake demo\n```\n````\n"
    text += "  ```python\n  print(1)\n  ```\n"
    probe = tmp_path / "probe.md"
    probe.write_text(text, encoding="utf-8")
    got = blocks(probe)
    assert [(b.lang, b.line) for b in got] == [("sh", 2), ("console", 6), ("python", 10)]
    assert got[0].code == "vaekit a \\\n  --b 1\n"
    assert got[1].code == "make demo\n```\n"
    assert got[2].code == "print(1)\n"


def test_every_code_block_has_a_language() -> None:
    """A fence without a language leaves open whether it runs: say which (see the rule)."""
    untagged = [f"{page_id(p)}:{b.line}" for p in PAGES for b in blocks(p) if not b.lang]
    assert not untagged, f"code blocks without a language tag: {untagged}"


def test_readme_is_short() -> None:
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; keep it to {README_MAX_LINES}"


def test_docs_build_strict(tmp_path: Path) -> None:
    """mkdocs build --strict: a page missing from the nav's files, a broken link or an API
    reference to a module that does not exist fails here."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout[-3000:] + proc.stderr[-6000:]).strip()
