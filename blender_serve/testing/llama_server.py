"""llama-cpp-python's OpenAI-compatible server on a GGUF file: a real server for the ``openai`` backend's tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Union

__all__ = ["llama_cpp_server"]


@contextlib.contextmanager
def llama_cpp_server(gguf: Union[str, Path], log_path: Path, *, alias: str = "smol", n_ctx: int = 1024,
                     chat_format: Optional[str] = None, startup_timeout_s: float = 120.0) -> Iterator[str]:
    """``python -m llama_cpp.server`` on ``gguf`` at a free local port, on one thread; yields its
    base URL (``http://127.0.0.1:<port>/v1``, the model id ``alias``) and stops it on exit. Its
    chatty log goes to ``log_path``: nobody reads a pipe, and a full one would block the server.
    ``chat_format`` is its ``--chat_format`` (e.g. 'chatml-function-calling', for tools). Example::

        with llama_cpp_server(smollm2_gguf(), tmp_path / "server.log") as base_url:
            build_generator({"name": "smol", "backend": "openai", "model": "smol", "options": {"base_url": base_url}})
    """
    import httpx

    from blender_serve.testing.apps import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias, "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "1"]
    if chat_format:
        cmd += ["--chat_format", chat_format]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + startup_timeout_s
            while True:
                assert proc.poll() is None, Path(log_path).read_text()[-2000:]
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"llama_cpp.server did not come up in {startup_timeout_s:g} s"
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
