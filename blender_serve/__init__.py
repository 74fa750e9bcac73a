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
    Progress,
    Provenance,
    RankResult,
    SamplingParams,
    Usage,
)

from blender_serve.fuser import Fuser, GeneratorFuser, GenFuser, PromptedFuser, build_fuser
from blender_serve.generators import GENERATORS, Generator, build_generator, register_generator
from blender_serve.interfaces import FuserProtocol, GeneratorProtocol, RankerProtocol
from blender_serve.pipeline import Blender, BlendStream
from blender_serve.ranker import STRATEGIES, PairRanker, register_strategy

__version__ = "0.1.0"

__all__ = [
    "Blender", "BlendStream", "GeneratorProtocol", "RankerProtocol", "FuserProtocol",
    "PairRanker", "STRATEGIES", "register_strategy",
    "Fuser", "GenFuser", "PromptedFuser", "GeneratorFuser", "build_fuser",
    "Generator", "GENERATORS", "build_generator", "register_generator",
    "BlendOptions", "BlenderConfig", "FuserConfig", "GeneratorConfig", "RankerConfig",
    "BlenderError", "CheckpointError", "DeadlineExceededError", "GenerationError", "InvalidInputError",
    "NotEnoughCandidatesError", "OverloadedError", "UnknownModelError", "UnknownStrategyError",
    "BlendResult", "Candidate", "ChatMessage", "FusionOutput", "Generation", "GenerationChunk",
    "Progress", "Provenance", "RankResult", "SamplingParams", "Usage",
]
