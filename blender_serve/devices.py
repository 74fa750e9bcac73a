"""Device and dtype resolution shared by the ranker, the fuser and the transformers backend."""

from __future__ import annotations

import threading

from blender_serve.errors import InvalidInputError

__all__ = ["resolve_device", "resolve_dtype", "MODEL_LOAD_LOCK"]

# transformers' from_pretrained is not thread-safe: it patches module construction globally (meta
# device init), so two loads in two threads of one process corrupt each other ("Cannot copy out of
# meta tensor"). Every loader in blender_serve holds this lock; loads in separate processes (Ray
# replicas) are unaffected.
MODEL_LOAD_LOCK = threading.RLock()

_DTYPES = ("float32", "float16", "bfloat16")


def resolve_device(device: str | None) -> str:
    """'auto'/None -> 'cuda' when a GPU is visible, else 'mps' when available, else 'cpu'."""
    import torch

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    return str(device)


def resolve_dtype(dtype: str | None, device: str, half: str = "float16"):
    """'auto'/None -> ``half`` (float16 or bfloat16) on an accelerator, float32 on CPU.

    A half dtype on CPU is honoured when asked for explicitly (bf16 works on recent CPUs; fp16 is
    slow there), so callers can test exactly what they configure.
    """
    import torch

    if dtype in (None, "auto"):
        name = "float32" if str(device).startswith("cpu") else half
    elif isinstance(dtype, torch.dtype):
        return dtype
    elif dtype in _DTYPES:
        name = dtype
    else:
        raise InvalidInputError(f"unknown dtype {dtype!r}; use one of 'auto', {', '.join(map(repr, _DTYPES))}")
    return getattr(torch, name)
