"""The application's arguments: what ``serve_config.yaml``'s ``args:`` holds, validated by pydantic.

    ensemble:     a blender_serve BlenderConfig (base models, ranker, fuser, defaults)
    deployments:  Serve options per deployment, keyed by base-model name, 'ranker', 'fuser', 'ingress'
    ranker_batching, limits, access, route_prefix
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from blender_serve.config import BlenderConfig

__all__ = ["AppArgs", "Access", "DeploymentOptions", "Limits", "RankerBatching", "COMPONENTS"]

COMPONENTS = ("ranker", "fuser", "ingress")
_STRICT = ConfigDict(extra="forbid", protected_namespaces=())


class DeploymentOptions(BaseModel):
    """Ray Serve options of one deployment (None: the builder's default for that component)."""

    model_config = _STRICT
    num_replicas: Optional[int | str] = Field(None, description="A fixed count, or 'auto' for default autoscaling.")
    autoscaling_config: Optional[dict[str, Any]] = Field(None, description="Serve autoscaling config (min/max_replicas, target_ongoing_requests, upscale_delay_s...).")
    ray_actor_options: Optional[dict[str, Any]] = Field(None, description="num_cpus, num_gpus (fractions allowed), memory, runtime_env...")
    max_ongoing_requests: Optional[int] = Field(None, ge=1, description="Concurrent requests per replica.")
    max_queued_requests: Optional[int] = Field(None, ge=-1, description="Requests waiting per handle before back-pressure (-1: unbounded).")
    health_check_period_s: Optional[float] = Field(None, gt=0, description="Seconds between Serve's health checks of a replica.")
    health_check_timeout_s: Optional[float] = Field(None, gt=0, description="Seconds a health check may take before the replica counts as unhealthy.")
    graceful_shutdown_timeout_s: Optional[float] = Field(None, ge=0, description="Seconds a stopping replica may take to finish its requests.")
    backpressure_config: Optional[dict[str, Any]] = Field(None, description="The HTTP answer when max_queued_requests is full: {status_code: 503 or 429, retry_after_s}.")

    @model_validator(mode="after")
    def _one_scaling_mode(self) -> "DeploymentOptions":
        if self.autoscaling_config is not None and isinstance(self.num_replicas, int):
            raise ValueError("set either num_replicas (a count) or autoscaling_config, not both")
        return self

    def serve_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class RankerBatching(BaseModel):
    """How the ranker deployment batches rank/compare calls across concurrent requests."""

    model_config = _STRICT
    max_batch_size: int = Field(16, ge=1, description="Most requests scored together.")
    batch_wait_timeout_s: float = Field(0.0, ge=0, description="Once the ranker is free, how long a batch may wait for more calls to fill it (0: it takes the calls queued by then; calls that arrive while a batch runs join the next one either way).")


class Limits(BaseModel):
    """Request limits enforced by the ingress (400 when exceeded; 413 for the body size)."""

    model_config = _STRICT
    max_prompt_chars: int = Field(32_000, ge=1, description="Total characters over all messages.")
    max_messages: int = Field(64, ge=1, description="Most chat messages in one request.")
    max_tokens: int = Field(2048, ge=1, description="Largest max_tokens a request may ask for.")
    max_candidates: int = Field(32, ge=2, description="Most candidates a /v1/rank or /v1/fuse call may send.")
    max_deadline_s: float = Field(600.0, gt=0, description="Largest per-model deadline a request may set.")
    max_body_bytes: int = Field(1_000_000, ge=1, description="Largest request body in bytes (413 beyond it, also for a body sent without Content-Length).")
    max_json_depth: int = Field(32, ge=1, description="Deepest nesting of arrays and objects a JSON body may have (400 beyond it).")


class Access(BaseModel):
    """Who may call the HTTP API, and how much: API keys and per-key rate limits (off by default).

    With no keys (none here and none in the environment variable) the API is open. Rate limits
    count per key and per ingress replica: divide a cluster-wide budget by the replica count.
    """

    model_config = _STRICT
    api_keys: list[SecretStr] = Field(default_factory=list, description="Accepted API keys, sent as 'Authorization: Bearer <key>' (empty: no authentication unless api_keys_env supplies keys).")
    api_keys_env: Optional[str] = Field("BLENDER_SERVE_API_KEYS", description="Environment variable of the ingress replica with more comma-separated keys (null: none); keeps keys out of the config.")
    open_health: bool = Field(True, description="GET /health answers without a key (for load balancers and probes).")
    requests_per_minute: Optional[int] = Field(None, ge=1, description="Requests per minute per key and ingress replica (null: unlimited); needs keys.")
    tokens_per_minute: Optional[int] = Field(None, ge=1, description="Tokens (the answers' usage.total_tokens) per minute per key and ingress replica (null: unlimited); needs keys.")

    @field_validator("api_keys")
    @classmethod
    def _usable_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for i, key in enumerate(keys):  # the message names the position, never the key
            value = key.get_secret_value()
            if not value or any(c.isspace() or c == "," for c in value):
                raise ValueError(f"api_keys[{i}] is empty or holds whitespace or a comma; a key must be one header token")
        return keys

    @model_validator(mode="after")
    def _limits_need_keys(self) -> "Access":
        if (self.requests_per_minute or self.tokens_per_minute) and not self.api_keys and not self.api_keys_env:
            raise ValueError("rate limits count per API key: set api_keys or api_keys_env, or drop the limits")
        return self


class AppArgs(BaseModel):
    """Everything ``build_app`` needs; see serve_config.yaml for a full example."""

    model_config = _STRICT
    ensemble: BlenderConfig = Field(description="The ensemble: base models, ranker, fuser and the defaults of every request.")
    deployments: dict[str, DeploymentOptions] = Field(default_factory=dict, description="Per-deployment Serve options, keyed by base-model name or 'ranker' / 'fuser' / 'ingress'.")
    ranker_batching: RankerBatching = Field(default_factory=RankerBatching, description="How the ranker batches calls across concurrent requests.")
    limits: Limits = Field(default_factory=Limits, description="Request limits the ingress enforces (400 when exceeded).")
    access: Access = Field(default_factory=Access, description="API keys and per-key rate limits of the HTTP API (default: open).")

    @model_validator(mode="after")
    def _known_deployments(self) -> "AppArgs":
        known = {g.name for g in self.ensemble.generators} | set(COMPONENTS)
        unknown = sorted(set(self.deployments) - known)
        if unknown:
            raise ValueError(f"deployments has options for unknown components {unknown}; known: {sorted(known)}")
        if "fuser" in self.deployments and self.ensemble.fuser is None:
            raise ValueError("deployments.fuser is set but the ensemble has no fuser")
        if "fuser" in self.deployments and self.ensemble.fuser.kind == "generator":
            raise ValueError(f"deployments.fuser is set but the fuser (kind 'generator') runs on base model "
                             f"{self.ensemble.fuser.generator!r} and has no deployment; set that model's options instead")
        return self

    def options_for(self, name: str) -> DeploymentOptions:
        return self.deployments.get(name, DeploymentOptions())
