"""A small on-disk cache for the evaluation: ranker pair logits and fused texts, in one SQLite file.

Keys are SHA-1 digests of everything the value depends on (a fingerprint of the model's files,
the source, the candidate texts, the generation settings), so a rerun on the same data and models is
served from disk and any change to them misses. SQLite (standard library) keeps writes atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Iterable, Optional

__all__ = ["EvalCache", "digest", "model_fingerprint"]


def digest(*parts: str) -> str:
    """SHA-1 of the parts, separated by NUL (so ('ab', 'c') and ('a', 'bc') differ)."""
    h = hashlib.sha1()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def model_fingerprint(directory: str | os.PathLike) -> str:
    """Identity of a checkpoint directory: its config files' contents and its weight files' sizes and
    modification times (hashing gigabytes of weights on every run would cost seconds)."""
    d = Path(directory)
    parts = [str(d.resolve())]
    for f in sorted(d.iterdir()) if d.is_dir() else []:
        if f.suffix == ".json" and f.stat().st_size < 5_000_000:
            parts.append(f.name + f.read_text(encoding="utf-8", errors="replace"))
        elif f.suffix in (".safetensors", ".bin", ".pt", ".gguf"):
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return digest(*parts)


class EvalCache:
    """Pair logits (float) and fused outputs (JSON) keyed by digests. ``path=None``: memory only."""

    def __init__(self, path: Optional[str | os.PathLike] = None):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path is not None else ":memory:")
        self._db.execute("CREATE TABLE IF NOT EXISTS pairs (key TEXT PRIMARY KEY, logit REAL NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS fused (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.hits = 0
        self.misses = 0

    def get_pairs(self, keys: list[str]) -> dict[str, float]:
        """The cached logits among ``keys``."""
        out: dict[str, float] = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            out.update(self._db.execute(f"SELECT key, logit FROM pairs WHERE key IN ({marks})", chunk).fetchall())
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put_pairs(self, items: Iterable[tuple[str, float]]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO pairs VALUES (?, ?)", ((k, float(v)) for k, v in items))

    def get_fused(self, key: str) -> Optional[dict]:
        row = self._db.execute("SELECT value FROM fused WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put_fused(self, key: str, value: dict) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO fused VALUES (?, ?)", (key, json.dumps(value, ensure_ascii=False)))

    def close(self) -> None:
        self._db.close()
