"""Every shell command and Python block in README.md and docs/*.md is executed, so the docs cannot rot.

Fenced blocks must name their language (``bash``, ``python``, ``toml`` or ``text``). Markers, an HTML
comment on the line before a fence:

- ``<!-- not runnable: REASON -->``: the block is skipped (a reason is required);
- ``<!-- file: NAME -->``: the block is written to ``NAME`` in the run folder (e.g. a schema TOML
  that later commands read).

A file runs its blocks in order in one temporary folder (with ``data_samples`` linked in), bash
blocks with ``bash -euo pipefail`` and Python blocks as scripts. A leading ``pip install ... &&``
is dropped from a command: the tests run inside the installed package. A file that holds
``<!-- docs-test: slow (REASON) -->`` runs only with ``-m slow``; every file's blocks are still
syntax-checked in the default suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = ("bash", "python", "toml", "text")
FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!--\s*(not runnable|file):\s*(.*?)\s*-->\s*$")
SLOW = re.compile(r"<!--\s*docs-test:\s*slow\s*\((.+?)\)\s*-->")
PIP = re.compile(r"^\s*pip install [^&\n]*&&\s*", flags=re.M)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    code: str
    skip: str | None = None
    file: str | None = None

    @property
    def where(self) -> str:
        name = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path.name
        return f"{name}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with their markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, language = i, m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: a code fence is never closed")
        before = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.match(before)
        skip = marker.group(2) if marker and marker.group(1) == "not runnable" else None
        name = marker.group(2) if marker and marker.group(1) == "file" else None
        code = "\n".join(lines[start + 1 : j]) + "\n"
        out.append(Block(path, start + 1, language, code, skip, name))
        i = j + 1
    return out


ALL = [b for path in DOCS for b in blocks(path)]


def test_the_docs_exist_and_have_runnable_blocks() -> None:
    names = {p.name for p in DOCS}
    assert {"README.md", "architecture.md", "agents.md", "report.md", "benchmarks.md"} <= names
    assert {"state-and-models.md"} <= names
    assert sum(b.language in ("bash", "python") and b.skip is None for b in ALL) >= 15


def test_every_block_names_a_known_language_and_skips_give_reasons() -> None:
    bad = [f"{b.where} ({b.language or 'no language'})" for b in ALL if b.language not in LANGUAGES]
    assert not bad, f"fenced blocks must be one of {LANGUAGES}; got {bad}"
    empty = [b.where for b in ALL if b.skip is not None and len(b.skip) < 10]
    assert not empty, f"'not runnable' needs a reason: {empty}"


@pytest.mark.parametrize("block", [b for b in ALL if b.language == "python"], ids=lambda b: b.where)
def test_python_blocks_compile(block: Block) -> None:
    compile(block.code, block.where, "exec")


@pytest.mark.parametrize("block", [b for b in ALL if b.language == "toml"], ids=lambda b: b.where)
def test_toml_blocks_parse(block: Block) -> None:
    tomllib.loads(block.code)


def test_bash_blocks_parse() -> None:
    for b in ALL:
        if b.language == "bash":
            res = subprocess.run(["bash", "-n"], input=b.code, text=True, capture_output=True)
            assert res.returncode == 0, f"{b.where}: {res.stderr}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run_file(
    path: Path, folder: Path, *, data: Path = ROOT / "data_samples", timeout: float = 1800
) -> list[str]:
    """Run a Markdown file's blocks in order in ``folder``; returns what ran, one line each."""
    (folder / "data_samples").symlink_to(data)
    ran = []
    for n, b in enumerate(blocks(path)):
        if b.skip is not None:
            ran.append(f"{b.where}: skipped ({b.skip})")
            continue
        if b.file is not None:
            (folder / b.file).write_text(b.code)
            ran.append(f"{b.where}: wrote {b.file}")
            continue
        if b.language == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", PIP.sub("", b.code)]
        elif b.language == "python":
            script = folder / f"_block_{n}.py"
            script.write_text(b.code)
            cmd = [sys.executable, script.name]
        else:
            continue
        res = subprocess.run(
            cmd, cwd=folder, env=_env(), capture_output=True, text=True, timeout=timeout
        )
        assert res.returncode == 0, (
            f"{b.where} ({b.language}) exited {res.returncode}:\n{b.code}\n"
            f"--- stdout (end)\n{res.stdout[-2000:]}\n--- stderr (end)\n{res.stderr[-3000:]}"
        )
        ran.append(f"{b.where}: ok")
    return ran


def _params() -> list[Any]:
    out = []
    for path in DOCS:
        if not any(b.language in ("bash", "python") and b.skip is None for b in blocks(path)):
            continue
        slow = SLOW.search(path.read_text(encoding="utf-8"))
        marks = [pytest.mark.slow] if slow else []
        out.append(pytest.param(path, marks=marks, id=path.name))
    return out


@pytest.mark.parametrize("path", _params())
def test_docs_run(path: Path, tmp_path: Path) -> None:
    ran = run_file(path, tmp_path)
    assert ran and all(line.endswith(("ok", ")")) or "wrote" in line for line in ran)


def test_pip_install_prefix_is_dropped_and_markers_are_read(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "<!-- file: a.toml -->\n```toml\nx = 1\n```\n\n"
        "<!-- not runnable: needs a GPU, which tests do not have -->\n```bash\nexit 3\n```\n\n"
        "```bash\npip install . && test -f a.toml && echo ok > b.txt\n```\n\n"
        "```python\nassert open('b.txt').read() == 'ok\\n'\n```\n"
    )
    found = blocks(doc)
    assert [b.language for b in found] == ["toml", "bash", "bash", "python"]
    assert found[0].file == "a.toml" and found[1].skip and found[2].skip is None
    run = tmp_path / "run"
    run.mkdir()
    ran = run_file(doc, run, data=tmp_path)
    assert [line.rsplit(": ", 1)[1] for line in ran][2:] == ["ok", "ok"]
    doc.write_text("```python\nraise SystemExit(4)\n```\n")
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(AssertionError, match="exited 4"):
        run_file(doc, other, data=tmp_path)
