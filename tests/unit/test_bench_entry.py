"""``python -m bench`` lists every benchmark and runs one by name (each is a script with a main())."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_benchmark_is_listed_with_its_summary_and_has_a_main():
    out = subprocess.run([sys.executable, "-m", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    scripts = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_"))
    assert {"orchestration", "quorum", "rank_latency", "serve_latency", "fusion_batch", "rank_batching", "rank_cost",
            "backends"} <= set(scripts)
    for name in scripts:
        assert f"  {name} " in out.stdout
        assert "def main(" in (ROOT / "bench" / f"{name}.py").read_text()


def test_an_unknown_benchmark_is_refused_with_the_list():
    out = subprocess.run([sys.executable, "-m", "bench", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "orchestration" in out.stderr
