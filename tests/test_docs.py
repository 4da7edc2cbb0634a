"""Every Python example a user can copy from the README or the docs runs as written.

The Python blocks of a page run in order in one fresh interpreter (a later block may use what an
earlier one defined), in an empty working directory. A block that cannot run here is preceded by
``<!-- not run: why -->``; the reason is required. A failing example fails the suite.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.S)
_NOT_RUN = re.compile(r"<!-- not run: (?P<why>[^>]*\S)\s*-->")


def python_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, reason not run or None)`` for every fenced Python block of a page."""
    blocks = []
    for match in _BLOCK.finditer(text):
        skipped = _NOT_RUN.search(match.group("before"))
        if "<!-- not run" in match.group("before") and not skipped:
            raise ValueError(f"line {text.count(chr(10), 0, match.start()) + 1}: say why a block is not run")
        line = text.count("\n", 0, match.start("code")) + 1
        blocks.append((line, match.group("code"), skipped.group("why") if skipped else None))
    return blocks


def run_page(page: Path, workdir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """The page's runnable blocks as one script, in a fresh interpreter inside ``workdir``."""
    parts = [f"# {page.name}, line {line}\n{code}" for line, code, why in python_blocks(page.read_text())
             if why is None]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-c", "\n\n".join(parts)], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=timeout)


RUNNABLE = [p for p in PAGES if p.exists() and any(why is None for _, _, why in python_blocks(p.read_text()))]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_the_examples_of_a_page_run(page, tmp_path):
    done = run_page(page, tmp_path)
    assert done.returncode == 0, f"{page.relative_to(ROOT)}:\n{done.stderr[-4000:]}"


def test_the_runner_fails_on_a_broken_example(tmp_path):
    """The proof that the page test can fail: an example with a typo in a name."""
    page = tmp_path / "broken.md"
    page.write_text("# A page\n\n```python\nfrom lightning_saliency import SaliencyMonitr\n```\n")
    done = run_page(page, tmp_path)
    assert done.returncode != 0 and "SaliencyMonitr" in done.stderr


def test_blocks_not_run_say_why_and_pages_exist():
    assert len(RUNNABLE) >= 8, [str(p) for p in RUNNABLE]
    with pytest.raises(ValueError, match="say why"):
        python_blocks("<!-- not run -->\n```python\nx = 1\n```\n")
    for page in PAGES:
        if page.exists():
            python_blocks(page.read_text())  # raises on a block marked without a reason
