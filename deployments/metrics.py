"""Per-stage latency histograms and per-base-model counters, through Ray Serve's metrics API
(exported by Ray's Prometheus endpoint, tagged with the application's deployment and replica)."""

from __future__ import annotations

from blender_serve.types import BlendResult

__all__ = ["BlendMetrics"]

_BOUNDARIES_S = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]


class BlendMetrics:
    def __init__(self):
        from ray.serve.metrics import Counter, Histogram

        self.stage = Histogram("blender_stage_latency_s", description="Seconds per ensemble stage.",
                               boundaries=_BOUNDARIES_S, tag_keys=("stage",))
        self.calls = Counter("blender_model_calls", description="Base-model calls made by the ensemble.", tag_keys=("model",))
        self.failures = Counter("blender_model_failures", description="Base-model calls dropped (error, deadline, empty).", tag_keys=("model",))
        self.first = Counter("blender_model_ranked_first", description="Times a base model's answer ranked first.", tag_keys=("model",))
        self.chosen = Counter("blender_model_chosen_for_fusion", description="Times a base model's answer went to the fuser.", tag_keys=("model",))
        self.requests = Counter("blender_requests", description="Ensemble requests by outcome (fused, selected, "
                                "unranked, unfused, or the error's class).", tag_keys=("outcome",))

    def record(self, result: BlendResult) -> None:
        """Count one answered ensemble request."""
        for stage, seconds in result.timings.items():
            self.stage.observe(seconds, tags={"stage": stage.removesuffix("_s")})
        for model in [c.model for c in result.candidates] + result.skipped:
            self.calls.inc(tags={"model": model})
        for model in result.errors:
            if model not in ("fuser", "ranker"):
                self.calls.inc(tags={"model": model})
                self.failures.inc(tags={"model": model})
        if result.candidates and "unranked" not in result.degraded:
            self.first.inc(tags={"model": result.candidates[0].model})
        for model in result.chosen:
            self.chosen.inc(tags={"model": model})
        outcome = result.degraded[0] if result.degraded else "fused" if result.fused else "selected"
        self.requests.inc(tags={"outcome": outcome})  # unranked / unfused: a component failed, the request did not

    def failed(self, kind: str) -> None:
        """Count one ensemble request that ended in an error (kind: the exception class)."""
        self.requests.inc(tags={"outcome": kind})
