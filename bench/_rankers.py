"""What the ranker benchmarks share: a PairRM-layout checkpoint of a given DeBERTa shape with
standard-scale weights (so batched and one-at-a-time scores agree, and lower precisions can be judged
by their agreement), a workload of sources and candidates of chosen token lengths, and agreement
measures against reference scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_checkpoint(directory: Path, shape: dict, device: str, source_max: int, cand_max: int) -> Path:
    """A PairRM-shaped ranker in the original layout: backbone dir (config, tokenizer, weights) + ranker dir."""
    import torch
    from safetensors.torch import save_file
    from transformers import DebertaV2Model

    from blender_serve.ranker.layout import write_original_config
    from blender_serve.testing import tiny_models

    tokenizer = tiny_models.deberta_tokenizer()
    config = tiny_models.deberta_config(len(tokenizer), hidden=shape["hidden"], layers=shape["layers"], heads=shape["heads"])
    config.update({"intermediate_size": shape["intermediate"], "position_buckets": 256, "share_att_key": True,
                   "norm_rel_ebd": "layer_norm", "layer_norm_eps": 1e-7, "hidden_act": "gelu"})
    torch.manual_seed(0)
    with torch.device(device):
        backbone = DebertaV2Model(config)
    with torch.no_grad():
        for p in backbone.parameters():  # standard scale: batched and one-at-a-time scores agree
            if p.dim() >= 2:
                p.normal_(0.0, 0.05)
    backbone.save_pretrained(directory / "backbone")
    tokenizer.save_pretrained(directory / "backbone")
    backbone.resize_token_embeddings(len(tokenizer) + len(tiny_models.RANKER_SPECIALS), mean_resizing=False)
    hidden = shape["hidden"]
    head = torch.nn.Sequential(torch.nn.Dropout(0.05), torch.nn.Linear(2 * hidden, hidden), torch.nn.Tanh(),
                               torch.nn.Dropout(0.05), torch.nn.Linear(hidden, 1))
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.05) if p.dim() >= 2 else p.zero_()
    state = {f"pretrained_model.{k}": v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    state.update({f"head_layer.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()})
    out = directory / "ranker"
    out.mkdir(parents=True)
    save_file(state, str(out / "model.safetensors"))
    write_original_config(out, model_type="deberta-v2", model_name=str(directory / "backbone"), n_tasks=1,
                          source_maxlength=source_max, candidate_maxlength=cand_max)
    del backbone, state
    return out


def workload(tokenizer, n_requests: int, n_cands: int, lengths: tuple[int, int]) -> tuple[list[str], list[list[str]]]:
    """n_requests sources (~25 tokens) with n_cands answers each, of lengths[0]..lengths[1] tokens."""
    from blender_serve.testing import tiny_models

    words = sorted({w.strip(".,:") for line in tiny_models.CORPUS for w in line.split()} - {""})
    sample = " ".join(words)
    per_word = len(tokenizer(sample, add_special_tokens=False)["input_ids"]) / len(words)
    targets = np.linspace(lengths[0], lengths[1], n_cands)

    def text(n_tokens: float, offset: int) -> str:
        return " ".join(words[(offset + 7 * i) % len(words)] for i in range(max(1, round(n_tokens / per_word))))

    sources = [f"Question {r}: " + text(22, 3 * r) + "?" for r in range(n_requests)]
    cands = [[text(t, 11 * r + k) for k, t in enumerate(np.roll(targets, r))] for r in range(n_requests)]
    return sources, cands


def average_ranks(x) -> np.ndarray:
    """Ranks from 0, ties sharing the mean of their positions (so an exact tie is one rank)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a, b) -> float:
    """Spearman's rho with average ranks for ties (1.0 when either side is all ties and so is the other)."""
    ra, rb = average_ranks(a), average_ranks(b)
    if np.std(ra) == 0 or np.std(rb) == 0:
        return 1.0 if np.std(ra) == np.std(rb) else 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def agreement(scores: list[list[float]], reference: list[list[float]]) -> tuple[float, float]:
    """(top-1 agreement, mean Spearman) of per-request score lists against the reference (fp32) ones.

    Tie-aware: a request agrees at top-1 when the candidate it puts first has the reference's best
    score (duplicate answers tie exactly, and either is then a right pick)."""
    top1 = np.mean([np.isclose(r[int(np.argmax(s))], max(r), rtol=0, atol=1e-9) for s, r in zip(scores, reference)])
    return float(top1), float(np.mean([spearman(s, r) for s, r in zip(scores, reference)]))
