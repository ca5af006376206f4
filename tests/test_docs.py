"""docs/api.md runs: every ```python block of it, in order, as one session in an empty folder.

The blocks run in a child process (`python -W error`), so what they change process-wide
(cl.runtime.configure, the working directory) stays out of this one. Each block is compiled at
its own line of docs/api.md, so a traceback points into the page.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cnnlab as cl

API = Path(__file__).resolve().parents[1] / "docs" / "api.md"

RUN = """
import json, sys
namespace = {"__name__": "__docs__"}
for line, code in json.load(sys.stdin):
    # padded so that line numbers in a traceback are docs/api.md's own
    exec(compile("\\n" * (line - 1) + code, "docs/api.md", "exec"), namespace)
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line of code, code) of every ```python block."""
    blocks, start, lines = [], None, []
    for number, line in enumerate(text.splitlines(), 1):
        if start is None and re.fullmatch(r"```python\s*", line):
            start, lines = number + 1, []
        elif start is not None and line.strip() == "```":
            blocks.append((start, "\n".join(lines) + "\n"))
            start = None
        elif start is not None:
            lines.append(line)
    assert start is None, f"docs/api.md: the python block at line {start - 1} is not closed"
    return blocks


def test_python_blocks_are_found_with_their_lines():
    text = "intro\n```python\na = 1\n\nb = 2\n```\n```text\nno\n```\n```python\nc = 3\n```\n"
    assert python_blocks(text) == [(3, "a = 1\n\nb = 2\n"), (11, "c = 3\n")]


def test_every_python_example_of_the_api_guide_runs(tmp_path):
    blocks = python_blocks(API.read_text(encoding="utf-8"))
    assert len(blocks) >= 10
    result = subprocess.run([sys.executable, "-W", "error", "-c", RUN], input=json.dumps(blocks),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "fmnist-small.safetensors").is_file()
    assert (tmp_path / "runs" / "quick" / "metrics.csv").is_file()


def test_the_api_guide_names_every_public_name():
    text = API.read_text(encoding="utf-8")
    missing = [name for name in cl.__all__ if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert not missing, f"docs/api.md does not mention {missing}"
