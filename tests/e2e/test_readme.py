"""The README's in-process Python example runs as written (real SmolLM2 and MiniLM from PyPI packages)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_readme_python_example_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "blend_sync" in b]
    assert blocks, "the README has no in-process Python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    result = namespace["result"]
    assert result.text.strip() and len(result.candidates) == 3
