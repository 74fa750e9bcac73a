"""The CUDA paths, on the same tiny checkpoints as the CPU tests: run where a GPU is visible,
reported as skipped elsewhere (these machines have none; a GPU machine runs them as they are)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

SOURCE = "Which answer is best?"
CANDS = ["first answer", "a second, longer answer with more words", "third", "the fourth one", "5"]


def test_ranker_fp32_on_cuda_equals_cpu(pairrm_original):
    from blender_serve.ranker import PairRanker

    # One pair per pass on both sides: batch composition cannot move the numbers.
    cpu = PairRanker.from_pretrained(pairrm_original, device="cpu", dtype="float32", batch_size=1)
    gpu = PairRanker.from_pretrained(pairrm_original, device="cuda", dtype="float32", batch_size=1)
    np.testing.assert_allclose(gpu.rank(SOURCE, CANDS).scores, cpu.rank(SOURCE, CANDS).scores, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_ranker_half_precision_on_cuda_agrees_in_order(pairrm_original, dtype):
    from blender_serve.ranker import PairRanker

    full = PairRanker.from_pretrained(pairrm_original, device="cpu", dtype="float32").rank(SOURCE, CANDS)
    half = PairRanker.from_pretrained(pairrm_original, device="cuda", dtype=dtype).rank(SOURCE, CANDS)
    assert half.order[0] == full.order[0]
    assert np.corrcoef(half.scores, full.scores)[0, 1] > 0.95


def test_gen_fuser_greedy_on_cuda_equals_cpu(talkative_fuser_dir):
    from blender_serve.fuser import GenFuser

    item = ("Answer the question.", "What is the capital of France?", ["Paris.", "It is Paris, on the Seine."])
    cpu = GenFuser.from_pretrained(talkative_fuser_dir, device="cpu", dtype="float32", num_beams=1, max_new_tokens=12)
    gpu = GenFuser.from_pretrained(talkative_fuser_dir, device="cuda", dtype="float32", num_beams=1, max_new_tokens=12)
    on_gpu, on_cpu = gpu.fuse(*item), cpu.fuse(*item)
    assert (on_gpu.text, on_gpu.usage, on_gpu.finish_reason) == (on_cpu.text, on_cpu.usage, on_cpu.finish_reason)


def test_transformers_generator_greedy_on_cuda_equals_cpu(causal_lm_dir):
    from blender_serve.generators import build_generator

    def answer(device):
        gen = build_generator({"name": device, "backend": "transformers", "model": str(causal_lm_dir),
                               "sampling": {"temperature": 0, "max_tokens": 16},
                               "options": {"device": device, "dtype": "float32"}})

        async def run():
            try:
                return await gen.generate([{"role": "user", "content": "What is the capital of France?"}])
            finally:
                await gen.close()

        return asyncio.run(run())

    gpu, cpu = answer("cuda"), answer("cpu")
    assert (gpu.text, gpu.usage, gpu.finish_reason) == (cpu.text, cpu.usage, cpu.finish_reason)
