"""Pydantic configuration of generators, the ranker, the fuser and the ensemble.

Unknown keys are rejected everywhere so that a typo in a YAML file fails loudly at load time.
Cross-field rules (unique model names, top_k <= number of models) live in model validators.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from blender_serve.types import SamplingParams

__all__ = [
    "GeneratorConfig",
    "RankerConfig",
    "FuserConfig",
    "BlendOptions",
    "BlenderConfig",
    "FusionMode",
    "RankerFallback",
    "Device",
    "DType",
    "BUILDER_IMPORT_PATH",
    "blender_applications",
    "load_ensemble_config",
]

FusionMode = Literal["always", "never", "auto"]
RankerFallback = Literal["fail", "unranked"]
Device = str  # "auto", "cpu", "cuda", "cuda:1", "mps"
DType = Literal["auto", "float32", "float16", "bfloat16"]

_STRICT = ConfigDict(extra="forbid", protected_namespaces=())

# The import_path of every blender-serve application in a Serve config file.
BUILDER_IMPORT_PATH = "deployments.builder:build_app"


class GeneratorConfig(BaseModel):
    """One base LLM of the ensemble."""

    model_config = _STRICT
    name: str = Field(description="Unique name of this base model in the ensemble (also its API model id).", min_length=1)
    backend: str = Field(description="Backend registry key: 'transformers', 'vllm', 'llama_cpp', 'openai' or 'scripted'.")
    model: Optional[str] = Field(None, description="Checkpoint path or hub id (transformers/vllm), or the remote model name (openai).")
    sampling: SamplingParams = Field(default_factory=SamplingParams, description="Default sampling settings for this model; a request's settings override them.")
    system_prompt: Optional[str] = Field(None, description="System message prepended when a request has none.")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend-specific options, validated by the backend (see each backend's Options model).")


class RankerConfig(BaseModel):
    """The PairRanker: where its checkpoint is and how to run it."""

    model_config = _STRICT
    kind: Literal["pairrm", "scripted"] = Field("pairrm", description="'pairrm': a PairRM checkpoint; 'scripted': deterministic scores after a fixed latency, no model (for measuring orchestration).")
    path: str = Field(description="Local checkpoint directory (either PairRM layout) or a hub id; a label for kind 'scripted'.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options of kind 'scripted' (latency_s); none for 'pairrm'.")
    device: Device = Field("auto", description="'auto' picks cuda when available, else cpu.")
    dtype: DType = Field("auto", description="'auto': float16 on cuda, float32 on cpu.")
    batch_size: int = Field(32, ge=1, description="Most pairs per forward pass.")
    max_batch_tokens: Optional[int] = Field(None, ge=64, description="Most padded tokens per forward pass (default on CPU: from the backbone's width, 1024 for hidden 384, see blender_serve.ranker.cpu_batch_tokens; 65536 on accelerators).")
    source_max_length: Optional[int] = Field(None, ge=8, description="Override the checkpoint's source max length (tokens, specials included).")
    candidate_max_length: Optional[int] = Field(None, ge=8, description="Override the checkpoint's candidate max length.")
    strategy: str = Field("max_logits", description="Default aggregation strategy (see blender_serve.ranker.STRATEGIES).")
    seed: int = Field(0, description="Seed of the bubble strategy's shuffle.")
    attention: Literal["eager", "sdpa", "flex"] = Field("eager", description="Self-attention of a DeBERTa-v2/v3 backbone: 'eager' (transformers'), 'sdpa' (one fused-kernel call per layer, same scores) or 'flex' (flex_attention; fast on GPU only).")
    quantize: Literal["none", "int8"] = Field("none", description="'int8' (CPU, float32 only): the backbone's linear layers dynamically quantized to int8, faster at a small cost in agreement (python -m bench rank_cpu prints both).")


class FuserConfig(BaseModel):
    """The GenFuser: a seq2seq gen_fuser checkpoint, any instruction-tuned causal LM prompted to fuse, or
    one of the ensemble's own base models prompted the same way (kind 'generator')."""

    model_config = _STRICT
    kind: Literal["seq2seq", "causal", "generator", "scripted"] = Field("seq2seq", description="'seq2seq': gen_fuser layout; 'causal': a chat LM prompted to fuse, loaded as the fuser's own copy; 'generator': the same prompt sent to one of the ensemble's own base models (see `generator`), no model of its own; 'scripted': the top candidate after a fixed latency, no model (for measuring orchestration).")
    path: Optional[str] = Field(None, description="Local checkpoint directory or hub id (required, except for kind 'generator'); a label for kind 'scripted'.")
    generator: Optional[str] = Field(None, description="Kind 'generator' only: the name of the base model (in this ensemble's generators) that writes the fused answer; in the Serve app its deployment serves the fusion calls and no fuser deployment exists.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options of kind 'scripted' (latency_s, token_latency_s); none for the others.")
    device: Device = Field("auto", description="'auto' picks cuda when available, else cpu.")
    dtype: DType = Field("auto", description="'auto': bfloat16 on cuda, float32 on cpu.")
    max_length: int = Field(1024, ge=16, description="Most input tokens (seq2seq) or prompt tokens (causal; kind 'generator' estimates 4 characters a token).")
    candidate_max_length: int = Field(128, ge=1, description="Each candidate is cut to this many tokens ('...' appended).")
    num_beams: int = Field(4, ge=1, description="Beam search width for one-shot generation (streaming uses 1).")
    max_new_tokens: int = Field(128, ge=1, description="Most tokens of the fused answer.")
    device_map: Optional[str] = Field(None, description="accelerate device_map for large models (e.g. 'auto').")
    decoding: Literal["dynamic", "static", "compiled"] = Field("dynamic", description="Kinds 'seq2seq' and 'causal': 'dynamic' is transformers' default growing KV cache; 'static' preallocates fixed-shape caches, reused from call to call (the same tokens); 'compiled' adds a torch.compile'd decoding step (CUDA graphs on cuda) for launch-bound GPUs: each new shape (batch x beams, prompt width rounded up to 64) compiles on its first call.")

    @model_validator(mode="after")
    def _check_kind(self) -> "FuserConfig":
        if self.kind != "generator":
            if self.path is None:
                raise ValueError(f"fuser kind {self.kind!r} needs path: a checkpoint directory or hub id")
            if self.generator is not None:
                raise ValueError("fuser.generator applies to kind 'generator' only; drop it, or set kind: generator")
            return self
        if self.generator is None:
            raise ValueError("fuser kind 'generator' needs generator: the name of the base model that writes the fused answer")
        own = [f for f in ("path", "device", "dtype", "device_map", "options", "decoding")
               if getattr(self, f) != type(self).model_fields[f].get_default(call_default_factory=True)]
        if own:
            raise ValueError(f"fuser kind 'generator' loads no model, so {own} do not apply; the base model's own "
                             "generator config says how it runs")
        if self.num_beams not in (1, type(self).model_fields["num_beams"].default):  # the default survives a dump
            raise ValueError("fuser kind 'generator' decodes one sequence (no beam search); drop num_beams")
        return self


class BlendOptions(BaseModel):
    """Per-call options of the ensemble; ``None`` means the ensemble's default."""

    model_config = _STRICT
    models: Optional[list[str]] = Field(None, description="Subset of base models to ask (default: all).", min_length=1)
    top_k: Optional[int] = Field(None, ge=1, description="How many top candidates the fuser reads.")
    strategy: Optional[str] = Field(None, description="Ranking strategy.")
    fusion: Optional[FusionMode] = Field(None, description="'always', 'never' or 'auto'.")
    auto_fusion_margin: Optional[float] = Field(None, ge=0.0, description="In 'auto' mode, skip fusion when top-1 leads top-2 by at least this score.")
    deadline_s: Optional[float] = Field(None, gt=0.0, description="Per-model generation deadline in seconds.")
    min_candidates: Optional[int] = Field(None, ge=1, description="Fewest answers needed to go on.")
    on_ranker_failure: Optional[RankerFallback] = Field(None, description="When the ranker fails or is unreachable: 'fail' (503) or 'unranked' (answer with a candidate, flagged).")
    quorum: Optional[int] = Field(None, ge=1, description="Rank once this many models have answered (plus quorum_grace_s) instead of waiting for the slowest.")
    quorum_grace_s: Optional[float] = Field(None, ge=0.0, description="Seconds to keep waiting for the others once the quorum has answered.")


class BlenderConfig(BaseModel):
    """A whole ensemble: base models, ranker, optional fuser and the defaults of every call."""

    model_config = _STRICT
    name: str = Field("blender", description="Name of the ensemble (its API model id).")
    generators: list[GeneratorConfig] = Field(description="The base LLMs.", min_length=1)
    ranker: RankerConfig = Field(description="The PairRanker that orders the candidates.")
    fuser: Optional[FuserConfig] = Field(None, description="Without a fuser, the top-ranked candidate is the answer.")
    top_k: int = Field(3, ge=1, description="Candidates passed to the fuser (default 3, or the number of generators if fewer).")
    strategy: str = Field("max_logits", description="Default ranking strategy.")
    fusion: FusionMode = Field("auto", description="Default fusion mode.")
    auto_fusion_margin: float = Field(1.0, ge=0.0, description="'auto' skips fusion when the top-1 score margin is at least this.")
    deadline_s: float = Field(60.0, gt=0.0, description="Per-model generation deadline in seconds.")
    min_candidates: int = Field(1, ge=1, description="Fewest answers needed to go on; fewer raises NotEnoughCandidatesError.")
    on_ranker_failure: RankerFallback = Field("unranked", description="When the ranker fails, times out or is unreachable: 'fail' raises ComponentUnavailableError (HTTP 503), 'unranked' answers with the first model's candidate, unfused and flagged 'unranked' in provenance.")
    quorum: Optional[int] = Field(None, ge=1, description="Quorum fan-out: go on to ranking once this many base models have answered (non-empty), plus quorum_grace_s, cancelling the calls still running; they are listed in provenance 'skipped'. None waits for every model (each up to deadline_s).")
    quorum_grace_s: float = Field(0.0, ge=0.0, description="Seconds to keep waiting for the other models once the quorum has answered.")
    rank_timeout_s: float = Field(30.0, gt=0.0, description="Most seconds the ranking stage may take before the ranker counts as failed.")
    fuse_timeout_s: float = Field(120.0, gt=0.0, description="Most seconds a one-shot fusion may take (streamed: the longest wait for the next piece) before the fuser counts as failed and the top-ranked candidate answers, flagged 'unfused'.")

    @model_validator(mode="after")
    def _check(self) -> "BlenderConfig":
        names = [g.name for g in self.generators]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"generator names must be unique; repeated: {dupes}")
        if self.name in names:
            raise ValueError(f"ensemble name {self.name!r} clashes with a generator name; rename one")
        if self.fuser is not None and self.fuser.kind == "generator" and self.fuser.generator not in names:
            raise ValueError(f"fuser.generator {self.fuser.generator!r} is not a base model of this ensemble; "
                             f"name one of {names}")
        if "top_k" not in self.model_fields_set:  # the default 3 adapts to smaller ensembles
            self.top_k = min(self.top_k, len(self.generators))
        if self.top_k > len(self.generators):
            raise ValueError(f"top_k={self.top_k} exceeds the number of generators ({len(self.generators)})")
        if self.quorum is not None and not self.min_candidates <= self.quorum <= len(self.generators):
            raise ValueError(f"quorum={self.quorum} must lie between min_candidates ({self.min_candidates}) and the "
                             f"number of generators ({len(self.generators)})")
        if self.min_candidates > len(self.generators):
            raise ValueError(f"min_candidates={self.min_candidates} exceeds the number of generators ({len(self.generators)})")
        return self


def blender_applications(serve_config: Any, where: str = "config") -> list[dict[str, Any]]:
    """The blender-serve applications (``import_path: deployments.builder:build_app``) of a parsed
    Serve config file, in file order. Raises InvalidInputError when there are none."""
    from blender_serve.errors import InvalidInputError

    if not isinstance(serve_config, dict) or not isinstance(serve_config.get("applications"), list):
        raise InvalidInputError(f"{where}: not a Serve config (no 'applications' list)")
    apps = [a for a in serve_config["applications"] if isinstance(a, dict) and a.get("import_path") == BUILDER_IMPORT_PATH]
    if not apps:
        raise InvalidInputError(f"{where}: no application uses {BUILDER_IMPORT_PATH}")
    return apps


def load_ensemble_config(path: str, app: Optional[str] = None) -> BlenderConfig:
    """The ensemble a config file describes, so offline tools use the models that are served.

    Accepts a Serve config (``applications: [{import_path: deployments.builder:build_app, args:
    {ensemble: ...}}]``; ``app`` picks one by name when there are several), the app's ``args``
    alone (``{ensemble: ...}``) or a bare ensemble (``{generators: ..., ranker: ...}``), as YAML or JSON.
    Example::

        cfg = load_ensemble_config("configs/cpu.yaml")
        [g.name for g in cfg.generators]   # ['smol-greedy', 'smol-creative', 'smol-concise']
    """
    import yaml

    from blender_serve.errors import InvalidInputError, validated

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise InvalidInputError(f"cannot read the ensemble config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{path} is not valid YAML/JSON: {exc}") from None
    if isinstance(data, dict) and "applications" in data:
        apps = blender_applications(data, path)
        if app is not None:
            named = [a for a in apps if a.get("name") == app]
            if not named:
                raise InvalidInputError(f"{path}: no blender-serve application named {app!r}; "
                                        f"found {[a.get('name') for a in apps]}")
            apps = named
        elif len(apps) > 1:
            raise InvalidInputError(f"{path} holds {len(apps)} blender-serve applications; pick one by name")
        data = (apps[0].get("args") or {})
    if isinstance(data, dict) and "ensemble" in data:
        data = data["ensemble"]
    return validated(BlenderConfig, data, f"the ensemble in {path}")
