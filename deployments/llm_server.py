"""One base LLM as a deployment: a thin shim around one blender_serve generator."""

from __future__ import annotations

from typing import Any, AsyncIterator, Optional

from blender_serve.config import GeneratorConfig
from blender_serve.errors import validated
from blender_serve.generators import build_generator
from blender_serve.types import ChatMessage, Generation, GenerationChunk, SamplingParams

__all__ = ["LLMServer"]


class LLMServer:
    """Serves ``generate`` and ``stream`` for one base model (any backend: vllm, transformers, openai, scripted),
    and on the openai backend ``chat_raw`` / ``chat_raw_stream`` (whole requests to its server)."""

    async def __init__(self, config: dict[str, Any]):
        self.config = validated(GeneratorConfig, config, "generator config")
        self.generator = build_generator(self.config)
        await self.generator.start()  # load before the replica reports ready

    @classmethod
    def default_options(cls, config: GeneratorConfig) -> dict[str, Any]:
        """Serve defaults for this backend; serve_config.yaml overrides any of them."""
        gpu = config.backend == "vllm" or str(config.options.get("device", "")).startswith("cuda")
        return {
            "ray_actor_options": {"num_cpus": 0.1, **({"num_gpus": 1} if gpu else {})},
            "max_ongoing_requests": (ongoing := 64 if config.backend in ("vllm", "openai", "scripted") else 4),
            "max_queued_requests": 4 * ongoing,
            "health_check_period_s": 10.0,
        }

    async def generate(self, messages: list[ChatMessage], sampling: Optional[SamplingParams] = None) -> Generation:
        return await self.generator.generate(messages, sampling)

    async def stream(self, messages: list[ChatMessage], sampling: Optional[SamplingParams] = None) -> AsyncIterator[GenerationChunk]:
        async for chunk in self.generator.stream(messages, sampling):
            yield chunk

    async def chat_raw(self, body: dict[str, Any]) -> dict[str, Any]:
        """A whole OpenAI chat completion body, answered by the model's own server (openai backend)."""
        return await self.generator.chat_raw(body)

    async def chat_raw_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``chat_raw`` streamed: the server's chunks."""
        async for chunk in await self.generator.chat_raw(body, stream=True):
            yield chunk

    async def check_health(self) -> None:
        """Raises when the engine cannot answer (not loaded, or dead: vLLM's own probe, a closed
        client...), so that Serve replaces this replica."""
        await self.generator.check_health()

    async def stats(self) -> dict[str, Any]:
        """This replica's call counts (``blender_serve.activity.Activity``): in flight, succeeded, failed, cancelled."""
        return self.generator.activity.as_dict()
