"""Counts of a component's calls: how many run now, and how the finished ones ended.

Generators and the serving replicas keep one each and report it (``stats()``), so that what
happens to work whose client left is measured, not assumed: a cancelled call shows up as
``cancelled`` with ``in_flight`` back to 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Iterator

__all__ = ["Activity"]


@dataclasses.dataclass
class Activity:
    in_flight: int = 0
    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    chunks: int = 0  # streamed pieces handed out

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Count one call around its body: a cancellation or a consumer that left (GeneratorExit)
        is ``cancelled``, any other exception ``failed``."""
        self.calls += 1
        self.in_flight += 1
        outcome = "succeeded"
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "cancelled"
            raise
        except BaseException:
            outcome = "failed"
            raise
        finally:
            self.in_flight -= 1
            setattr(self, outcome, getattr(self, outcome) + 1)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)
