"""The reference implementation (llm-blender 0.0.2), importable on transformers 5, as a test oracle only.

llm-blender 0.0.2 imports two names that transformers 5 removed; this restores them before import.
"""

from __future__ import annotations


def import_reference():
    """Return the ``llm_blender`` module, patched to import on transformers 5.

    Example:
        ref = import_reference()
        from llm_blender.blender.blender_utils import GenFuserDataset
    """
    import transformers.utils.hub as hub
    from transformers import PreTrainedTokenizerBase

    if not hasattr(hub, "TRANSFORMERS_CACHE"):
        hub.TRANSFORMERS_CACHE = "/tmp/llm_blender_cache"  # only read at import; nothing is downloaded
    if not hasattr(PreTrainedTokenizerBase, "batch_encode_plus"):
        def batch_encode_plus(self, texts, **kwargs):
            return self(texts, **kwargs)

        PreTrainedTokenizerBase.batch_encode_plus = batch_encode_plus
    import llm_blender

    return llm_blender
