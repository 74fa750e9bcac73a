"""Epoch checkpoints of a ranker training run, written so that a killed run never leaves one that
looks complete.

``output_dir/checkpoint-epoch-{k}/`` holds the model in the original PairRM layout plus
``trainer_state.pt`` (optimizer, scheduler, scaler and RNG states: tensors, read with
``weights_only=True``) and ``trainer_state.json`` (epoch, step, metrics history). Each is built in a
hidden temporary directory beside it and renamed into place once whole; a directory counts as a
checkpoint only with all three files, and leftovers of killed runs are removed on the next start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = [
    "STATE_JSON", "STATE_PT", "epoch_checkpoint_dir", "epoch_checkpoints", "latest_epoch_checkpoint",
    "save_epoch_checkpoint", "read_trainer_info", "remove_temporaries", "remove_epoch_checkpoints",
    "keep_newest", "write_final_model", "capture_torch_state", "restore_torch_state",
]

STATE_JSON = "trainer_state.json"
STATE_PT = "trainer_state.pt"
_PREFIX = "checkpoint-epoch-"
_TMP_PREFIX = ".tmp-"
_PATTERN = re.compile(rf"^{_PREFIX}(\d+)$")


def epoch_checkpoint_dir(output_dir: str | Path, epoch: int) -> Path:
    """Where the checkpoint after epoch ``epoch`` (1-based) lives."""
    return Path(output_dir) / f"{_PREFIX}{epoch}"


def _complete(path: Path) -> bool:
    return all((path / name).is_file() for name in (STATE_JSON, STATE_PT, "model.safetensors", "config.json"))


def epoch_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """The complete epoch checkpoints under ``output_dir``, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _PATTERN.match(path.name)
        if match and path.is_dir() and _complete(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_epoch_checkpoint(output_dir: str | Path) -> Optional[tuple[int, Path]]:
    """(epoch, directory) of the newest complete epoch checkpoint, or None."""
    found = epoch_checkpoints(output_dir)
    return found[-1] if found else None


def _replace_dir(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, first moving aside an older ``target`` (a stale run's)."""
    old = None
    if target.exists():
        old = target.with_name(f"{_TMP_PREFIX}old-{target.name}-{os.getpid()}")
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_epoch_checkpoint(output_dir: str | Path, epoch: int, write_model: Callable[[Path], None],
                          torch_state: dict[str, Any], info: dict[str, Any]) -> Path:
    """Write checkpoint-epoch-{epoch}: ``write_model(dir)`` writes the weights; the states follow,
    the JSON last; then one rename publishes the whole directory. Returns its path."""
    import torch

    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{_PREFIX}{epoch}-", dir=root))
    try:
        write_model(tmp)
        torch.save(torch_state, tmp / STATE_PT)
        (tmp / STATE_JSON).write_text(json.dumps(info, indent=2))
        target = epoch_checkpoint_dir(root, epoch)
        _replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_trainer_info(checkpoint_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(json info, torch state) of an epoch checkpoint; the torch state is read on CPU."""
    import torch

    info = json.loads((checkpoint_dir / STATE_JSON).read_text())
    state = torch.load(checkpoint_dir / STATE_PT, map_location="cpu", weights_only=True)
    return info, state


def remove_temporaries(output_dir: str | Path) -> None:
    """Remove what killed runs left half-written."""
    root = Path(output_dir)
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(_TMP_PREFIX) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)


def remove_epoch_checkpoints(output_dir: str | Path) -> int:
    """Remove every checkpoint-epoch-* directory (a fresh run must not leave an older run's
    later epochs to be resumed from). Returns how many were removed."""
    root = Path(output_dir)
    removed = 0
    if root.is_dir():
        for path in root.iterdir():
            if _PATTERN.match(path.name) and path.is_dir():
                shutil.rmtree(path)
                removed += 1
    return removed


def keep_newest(output_dir: str | Path, keep: Optional[int]) -> None:
    """Remove all but the ``keep`` newest complete epoch checkpoints (None: keep all)."""
    if keep is None:
        return
    found = epoch_checkpoints(output_dir)
    for _, path in found[: max(0, len(found) - keep)]:
        shutil.rmtree(path, ignore_errors=True)


def write_final_model(output_dir: str | Path, write_model: Callable[[Path], None]) -> Path:
    """Write the final model directly into ``output_dir``: built in a temporary directory, then
    each file moved over any older one, ``config.json`` last (what loaders look for first)."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}final-", dir=root))
    try:
        write_model(tmp)
        files = sorted((p for p in tmp.iterdir() if p.is_file()), key=lambda p: p.name == "config.json")
        for path in files:
            os.replace(path, root / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def capture_torch_state(optimizer, scheduler, scaler) -> dict[str, Any]:
    """Optimizer, scheduler, fp16 loss-scaler and RNG states: what a resumed run needs beyond the weights."""
    import torch

    return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_torch_state(state: dict[str, Any], optimizer, scheduler, scaler) -> None:
    """The inverse of :func:`capture_torch_state`, into freshly built (and prepared) objects."""
    import torch

    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"])
    if torch.cuda.is_available() and state.get("rng_cuda"):
        torch.cuda.set_rng_state_all(state["rng_cuda"])
