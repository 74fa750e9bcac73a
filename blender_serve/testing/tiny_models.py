"""Builders of tiny real checkpoints (random weights, tokenizers trained offline on local text).

Each builder writes a directory in exactly the layout a user's real checkpoint has, so tests load
them through the same code paths: PairRM (original and transformers-style layouts), gen_fuser
(T5 seq2seq) and a Llama-architecture causal LM with a chat template. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, normalizers, decoders

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Write a short poem about the sea and the wind.",
    "Large language models answer questions, write code and summarise text.",
    "A ranker compares two candidate answers and says which one is better.",
    "Fusion reads the best candidates and writes one answer that combines their strengths.",
    "Python is a programming language. Ray Serve scales Python services.",
    "Explain why the sky is blue in one sentence: light scatters in the air.",
    "1 2 3 4 5 6 7 8 9 10 11 12 hello world yes no maybe always never",
    "Instruction: Input: Candidate Summarize candidates into a better one for the given instruction:",
] * 4

RANKER_SPECIALS = ["<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>"]


def _unigram_vocab(special_tokens: list[str], vocab_size: int = 300) -> list[tuple[str, float]]:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, unk_token=special_tokens[-1] if "<unk>" in special_tokens[-1] else "[UNK]"
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    # The trainer is multithreaded and not deterministic: the single characters it must keep get
    # scores that differ by ~1e-4 from run to run, and the list's order (so every token id, and every
    # tiny model built on them) changed between processes, making parity tests flaky. Fix the order
    # (specials first, then by piece), round the characters' scores (fallback pieces anyway) and the
    # others' to 6 decimals (they differ in the last bits).
    specials = [(p, s) for p, s in vocab if p in special_tokens]
    rest = sorted((p, float(round(s)) if len(p) == 1 else round(s, 6)) for p, s in vocab if p not in special_tokens)
    return specials + rest


def deberta_tokenizer():
    """A DebertaV2Tokenizer (Unigram, like DeBERTa-v3's) with [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3."""
    from transformers import DebertaV2Tokenizer

    vocab = _unigram_vocab(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"])
    return DebertaV2Tokenizer(vocab=vocab, unk_id=3)


def deberta_config(vocab_size: int, hidden: int = 32, layers: int = 2, heads: int = 2):
    from transformers import DebertaV2Config

    return DebertaV2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=32,
        pos_att_type=["p2c", "c2p"],
        max_relative_positions=-1,
        position_biased_input=False,
        type_vocab_size=0,
        pad_token_id=0,
    )


def build_deberta_backbone(out_dir: Path, seed: int = 0) -> Path:
    """A tiny random DeBERTa-v2 encoder plus tokenizer, saved like a hub backbone."""
    from transformers import DebertaV2Model

    out_dir = Path(out_dir)
    tokenizer = deberta_tokenizer()
    torch.manual_seed(seed)
    model = DebertaV2Model(deberta_config(len(tokenizer)))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _random_pairrm_state(backbone_dir: Path, n_tasks: int, seed: int) -> tuple[dict, int, object]:
    """Backbone weights (embeddings resized for the 4 ranker tokens) + a random head."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    tokenizer.add_tokens(RANKER_SPECIALS)
    backbone = AutoModel.from_pretrained(backbone_dir)
    torch.manual_seed(seed)
    backbone.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    # Distinct, well-spread prefix embeddings and a larger weight scale than the random init, so
    # logits differ visibly between pairs and tests compare real numbers, not float noise.
    with torch.no_grad():
        for p in backbone.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    hidden = backbone.config.hidden_size
    head = torch.nn.Sequential(
        torch.nn.Dropout(0.05), torch.nn.Linear(2 * hidden, hidden), torch.nn.Tanh(),
        torch.nn.Dropout(0.05), torch.nn.Linear(hidden, n_tasks),
    )
    # A visible spread of logits, so ranking tests are not decided by float noise.
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.5)
    state = {f"pretrained_model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    state.update({f"head_layer.{k}": v.contiguous() for k, v in head.state_dict().items()})
    return state, hidden, tokenizer


def build_pairrm_original(out_dir: Path, backbone_dir: Path, n_tasks: int = 1, seed: int = 1,
                          source_maxlength: int = 128, candidate_maxlength: int = 64) -> Path:
    """A ranker in the original llm-blender/PairRM layout: ranker config.json + model.safetensors,
    with no tokenizer beside them (it comes from ``model_name``, the backbone directory)."""
    from safetensors.torch import save_file

    from blender_serve.ranker.layout import write_original_config

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state, _, _ = _random_pairrm_state(Path(backbone_dir), n_tasks, seed)
    save_file(state, str(out_dir / "model.safetensors"))
    write_original_config(out_dir, model_type="deberta-v2", model_name=str(backbone_dir), n_tasks=n_tasks,
                          source_maxlength=source_maxlength, candidate_maxlength=candidate_maxlength)
    return out_dir


def build_pairrm_hf(out_dir: Path, backbone_dir: Path, n_tasks: int = 1, seed: int = 1) -> Path:
    """A ranker in the transformers-style llm-blender/PairRM-hf layout (DebertaV2 config + extras)."""
    from safetensors.torch import save_file
    from transformers import AutoConfig

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state, _, tokenizer = _random_pairrm_state(Path(backbone_dir), n_tasks, seed)
    config = AutoConfig.from_pretrained(backbone_dir)
    config.vocab_size = len(tokenizer)
    config.architectures = ["DebertaV2PairRM"]
    config.n_tasks = n_tasks
    config.drop_out = 0.05
    ids = tokenizer.convert_tokens_to_ids(RANKER_SPECIALS)
    config.source_prefix_id, config.cand1_prefix_id, config.cand2_prefix_id, config.cand_prefix_id = ids
    config.sep_token_id = tokenizer.sep_token_id
    config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    save_file(state, str(out_dir / "model.safetensors"))
    return out_dir


#: T5 shapes of ``build_gen_fuser``: the tests' tiny one, a small one for CPU benchmarks, and
#: Flan-T5-XL's (gen_fuser_3b's) for GPU benchmarks. Without vocab_size, the tokenizer's size.
T5_SHAPES = {
    "tiny": dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4),
    "small": dict(d_model=256, d_kv=64, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=4, vocab_size=32128),
    "flan-t5-xl": dict(d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_decoder_layers=24, num_heads=32,
                       vocab_size=32128),
}


def build_gen_fuser(out_dir: Path, seed: int = 2, *, shape: str = "tiny", device: str = "cpu",
                    dtype: torch.dtype = torch.float32) -> Path:
    """A random T5 seq2seq model (a ``T5_SHAPES`` shape) with a tiny T5 tokenizer (extra_ids), in the
    gen_fuser_3b layout. Large shapes build on ``device`` in ``dtype`` (a 3B model in seconds on a GPU)."""
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    out_dir = Path(out_dir)
    vocab = _unigram_vocab(["<pad>", "</s>", "<unk>"])
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=100)
    dims = {"vocab_size": len(tokenizer), **T5_SHAPES[shape]}
    config = T5Config(**dims, feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0,
                      eos_token_id=1, tie_word_embeddings=False)
    torch.manual_seed(seed)
    with torch.device(device):
        model = T5ForConditionalGeneration(config).to(dtype)
    # Random weights tend to pick a sentinel (<extra_id_*>) token forever, which decodes to ''.
    # Silence the sentinels (and ids past the tokenizer's) so the fuser writes visible (if meaningless) text.
    sentinels = [i for i, tok in enumerate(tokenizer.convert_ids_to_tokens(range(len(tokenizer)))) if tok.startswith("<extra_id_")]
    with torch.no_grad():
        model.lm_head.weight[sentinels] = 0.0
        model.lm_head.weight[tokenizer.pad_token_id] = 0.0
        model.lm_head.weight[len(tokenizer):] = 0.0
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_talkative_gen_fuser(out_dir: Path, gen_fuser_dir: Path, seed: int = 0) -> Path:
    """The tiny gen_fuser with larger random weights, and no special token but eos among its likely
    outputs. The plain tiny T5 repeats one token ("iiii") or a sentinel (empty once specials are
    skipped), which would make equalities about its text vacuous; this one writes varied words."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gen_fuser_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(gen_fuser_dir)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" not in name:
                p.normal_(0.0, 0.3)
        head = model.lm_head.weight
        head[[i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id]] = 0.0  # logit 0: never the max
        head[tokenizer.eos_token_id] *= 0.5  # eos now and then, rarely first
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_causal_lm(out_dir: Path, seed: int = 3) -> Path:
    """A tiny random Llama (hidden 128, 2 heads: head_dim 64, which vLLM's CPU kernels support)
    with a byte-level BPE tokenizer and a ChatML chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
