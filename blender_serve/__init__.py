"""blender_serve: the LLM-Blender method (PairRanker + GenFuser over several base LLMs) as a library.

Importing this package never loads ray, fastapi or vllm; heavy backends import what they need
when they are built.
"""

from blender_serve.config import BlendOptions, BlenderConfig, FuserConfig, GeneratorConfig, RankerConfig
from blender_serve.errors import (
    BlenderError,
    CheckpointError,
    DeadlineExceededError,
    GenerationError,
    InvalidInputError,
    NotEnoughCandidatesError,
    OverloadedError,
    UnknownModelError,
    UnknownStrategyError,
)
from blender_serve.types import (
    BlendResult,
    Candidate,
    ChatMessage,
    FusionOutput,
    Generation,
    GenerationChunk,
    RankResult,
    SamplingParams,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "BlendOptions", "BlenderConfig", "FuserConfig", "GeneratorConfig", "RankerConfig",
    "BlenderError", "CheckpointError", "DeadlineExceededError", "GenerationError", "InvalidInputError",
    "NotEnoughCandidatesError", "OverloadedError", "UnknownModelError", "UnknownStrategyError",
    "BlendResult", "Candidate", "ChatMessage", "FusionOutput", "Generation", "GenerationChunk",
    "RankResult", "SamplingParams", "Usage",
]
