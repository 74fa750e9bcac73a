"""The tiny test tokenizers are the same in every process (their trainer is multithreaded and not
deterministic; token ids that changed from run to run made the reference-parity tests flaky)."""

from __future__ import annotations

import subprocess
import sys

CODE = ("import hashlib, json; from blender_serve.testing.tiny_models import _unigram_vocab; "
        "print(hashlib.sha1(json.dumps(_unigram_vocab(['[PAD]', '[CLS]', '[SEP]', '[UNK]', '[MASK]'])).encode()).hexdigest())")


def test_the_tiny_vocabulary_is_identical_across_processes():
    digests = {subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=120)
               .stdout.strip() for _ in range(4)}
    assert len(digests) == 1, digests
