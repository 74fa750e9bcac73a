"""Base-LLM backends behind one async interface, and the registry that builds them from config.

Backends: ``transformers`` (any HF causal LM, in-process), ``vllm`` (vLLM's async engine),
``llama_cpp`` (a GGUF file, in-process through llama.cpp), ``openai`` (any OpenAI-compatible HTTP server) and ``scripted`` (deterministic, for tests and
benchmarks). Importing this package loads none of torch, vllm or httpx; each backend imports what it
needs in ``start()``. Example::

    from blender_serve.generators import build_generator
    gen = build_generator({"name": "smol", "backend": "transformers", "model": "/models/smollm2"})
    answer = await gen.generate([{"role": "user", "content": "What is the capital of France?"}])
"""

from __future__ import annotations

from typing import Callable, TypeVar

from blender_serve.config import GeneratorConfig
from blender_serve.errors import UnknownModelError, validated
from blender_serve.generators.base import Generator, NoOptions

__all__ = [
    "GENERATORS",
    "Generator",
    "NoOptions",
    "build_generator",
    "register_generator",
    "ScriptedGenerator",
    "TransformersGenerator",
    "VLLMGenerator",
    "OpenAIGenerator",
    "LlamaCppGenerator",
]

GENERATORS: dict[str, type[Generator]] = {}

G = TypeVar("G", bound=type[Generator])


def register_generator(name: str) -> Callable[[G], G]:
    """Class decorator: make a Generator subclass buildable as ``backend: <name>``.

    Example::

        @register_generator("echo")
        class Echo(Generator):
            async def _stream(self, chat, params):
                yield GenerationChunk(text=chat[-1].content, finish_reason="stop", usage=Usage())
    """

    def decorate(cls: G) -> G:
        if not (isinstance(cls, type) and issubclass(cls, Generator)):
            raise TypeError(f"@register_generator({name!r}) decorates Generator subclasses, not {cls!r}")
        known = GENERATORS.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"generator backend {name!r} is already registered to {known.__qualname__}")
        cls.backend = name
        GENERATORS[name] = cls
        return cls

    return decorate


def build_generator(config: GeneratorConfig | dict) -> Generator:
    """Build (but do not start) the generator a config describes.

    Raises UnknownModelError for an unknown backend (listing the known ones) and InvalidInputError
    for a malformed config or options.
    """
    config = validated(GeneratorConfig, config, "generator config")
    cls = GENERATORS.get(config.backend)
    if cls is None:
        raise UnknownModelError(
            f"unknown generator backend {config.backend!r} for {config.name!r}; "
            f"use one of {sorted(GENERATORS)} or register one with @register_generator"
        )
    return cls(config)


# The backends register themselves; their modules import nothing heavy at import time.
from blender_serve.generators.scripted import ScriptedGenerator  # noqa: E402
from blender_serve.generators.transformers_backend import TransformersGenerator  # noqa: E402
from blender_serve.generators.vllm_backend import VLLMGenerator  # noqa: E402
from blender_serve.generators.openai_backend import OpenAIGenerator  # noqa: E402
from blender_serve.generators.llama_cpp_backend import LlamaCppGenerator  # noqa: E402

for _name, _cls in (("scripted", ScriptedGenerator), ("transformers", TransformersGenerator),
                    ("vllm", VLLMGenerator), ("openai", OpenAIGenerator), ("llama_cpp", LlamaCppGenerator)):
    register_generator(_name)(_cls)
