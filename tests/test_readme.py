"""The README's Python section runs as written (in a fresh process, on ML-100K)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_section_blocks() -> list[str]:
    """The ```python blocks of the README's "## Python" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Python\n"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_python_section_runs_as_written(ml100k_dir, tmp_path):
    blocks = python_section_blocks()
    assert len(blocks) >= 2  # the tour of the API and the epoch callback
    for block in blocks:
        done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "LATENTREC_DATA": str(ml100k_dir.parent)})
        assert done.returncode == 0, f"{block}\n{done.stderr}"
