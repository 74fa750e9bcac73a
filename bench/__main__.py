"""``python -m bench [NAME [ARGS...]]``: list the benchmarks, or run one with its own arguments."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).parent


def available() -> dict[str, str]:
    """Benchmark name -> the first line of its docstring."""
    out = {}
    for path in sorted(HERE.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        text = path.read_text()
        first = text.split('"""', 2)[1].strip().splitlines()[0] if text.startswith('"""') else ""
        out[path.stem] = first
    return out


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        for name, line in names.items():
            print(f"  {name:16} {line}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"unknown benchmark {name!r}; one of: {', '.join(names)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name}")
    sys.argv = [f"bench/{name}.py", *rest]
    module.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
