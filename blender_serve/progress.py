"""Progress of the long commands (``collect``, ``eval``, ``train-ranker``, ``build-local``), in one place.

On a terminal with tqdm installed (the ``eval`` extra) a tqdm bar; otherwise (tqdm missing, or
stderr a pipe or a log file, where tqdm's redrawn line turns into noise) one plain line every
``period_s`` seconds and a last one when the work ends. Both answer the same small subset of
tqdm's API: ``update``, ``set_postfix``, ``close``, ``n`` and use as a context manager.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, TextIO

__all__ = ["progress_bar", "PlainProgress", "format_duration"]


def progress_bar(total: Optional[int] = None, desc: str = "", unit: str = "it", *, enabled: bool = True,
                 initial: int = 0, file: Optional[TextIO] = None, period_s: float = 10.0):
    """A progress bar for ``total`` steps (None: unknown) on ``file`` (default stderr).

    Args:
        total: steps expected, or None when unknown.
        desc: what is progressing (``collect``, ``ranker``...), the line's prefix.
        unit: what one step is (``rec``, ``step``).
        enabled: False gives a bar that shows nothing (``--no-progress``).
        initial: steps already done (a resumed run).
        file: where to write; stderr by default.
        period_s: seconds between plain lines (when no tqdm bar is drawn).
    Returns:
        a tqdm bar or a :class:`PlainProgress`.
    Example::

        with progress_bar(len(records), "score", unit="rec") as bar:
            for r in records:
                ...
                bar.update(1)
    """
    file = file if file is not None else sys.stderr
    if not enabled:
        return PlainProgress(total, desc, unit, initial=initial, file=file, enabled=False)
    if _isatty(file):
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=file, dynamic_ncols=True)
    return PlainProgress(total, desc, unit, initial=initial, file=file, period_s=period_s)


class PlainProgress:
    """tqdm's counting API, drawn as one plain line every ``period_s`` seconds and one at the end."""

    def __init__(self, total: Optional[int], desc: str = "", unit: str = "it", *, initial: int = 0,
                 file: Optional[TextIO] = None, period_s: float = 10.0, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.file = file if file is not None else sys.stderr
        self.period_s, self.enabled, self._clock = period_s, enabled, clock
        self._initial = initial
        self._started = self._last = clock()
        self._postfix = ""
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.enabled and self._clock() - self._last >= self.period_s:
            self._print()

    def set_postfix(self, ordered_dict: Optional[dict] = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self._print(final=True)

    def line(self, final: bool = False) -> str:
        """The line as it would be printed now."""
        elapsed = self._clock() - self._started
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        parts = [f"{done} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if final:
            parts.append(f"in {format_duration(elapsed)}")
        else:
            parts.append(f"{format_duration(elapsed)} elapsed")
            rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
            if self.total is not None and rate > 0 and self.n < self.total:
                parts.append(f"~{format_duration((self.total - self.n) / rate)} left")
        if self._postfix:
            parts.append(self._postfix)
        return f"{self.desc}: " * bool(self.desc) + ", ".join(parts)

    def _print(self, final: bool = False) -> None:
        self._last = self._clock()
        print(self.line(final), file=self.file, flush=True)

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _isatty(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False
