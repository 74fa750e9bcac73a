"""Stop strings: where an answer ends, one-shot and streamed. Used by every generator and fuser."""

from __future__ import annotations

from typing import Sequence

__all__ = ["truncate_at_stop", "StopMatcher"]


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)


class StopMatcher:
    """Applies stop strings to streamed text: emits what is safe, holds back a possible stop prefix.

    ``push(piece)`` returns the text that can be sent now; after a stop string appears, ``stopped``
    is true and nothing more is returned. ``flush()`` returns the held-back tail at the end.
    """

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.stopped = False
        self._held = ""

    def push(self, piece: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        text = self._held + piece
        cut, hit = truncate_at_stop(text, self.stops)
        if hit:
            self.stopped, self._held = True, ""
            return cut
        # Longest tail of `text` that could still grow into a stop string.
        keep = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self._held = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        out, self._held = ("" if self.stopped else self._held), ""
        return out
