"""Helpers shared by the test suite and the benchmarks; never imported by ``blender_serve`` itself.

- :mod:`blender_serve.testing.tiny_models`: tiny real checkpoints in every layout users have
  (PairRM original and -hf, gen_fuser T5, a chat Llama), built offline in well under a second.
- :mod:`blender_serve.testing.reference`: the reference implementation (llm-blender 0.0.2),
  importable on transformers 5, as a test oracle.
- :mod:`blender_serve.testing.apps`: application args of a small served ensemble and a free port.
- :mod:`blender_serve.testing.browser`: the playground page (/ui) driven in headless chromium.
- :mod:`blender_serve.testing.llama_server`: llama-cpp-python's OpenAI-compatible server on a GGUF
  file, for the ``openai`` backend's tests.
"""

__all__ = ["apps", "browser", "llama_server", "reference", "tiny_models"]
