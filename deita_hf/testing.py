"""Tiny random-weight models, a small tokenizer and the reference scorer, built offline.

They make the smoke recipe (``tiny-random:seed=N`` model names) and the tests run anywhere without the Hub.
Their scores and embeddings mean nothing: they exercise the code paths, not the method.
:func:`reference_score` is the reference implementation's scoring, kept independent of :mod:`deita_hf.scoring`.

>>> tokenizer = byte_bpe_tokenizer()
>>> model = tiny_causal_lm(tokenizer, seed=0)
>>> model.config.num_hidden_layers
2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ConfigError

# A small corpus that gives the byte-level BPE a few useful merges; digits stay single tokens.
_CORPUS = [
    "You are a helpful assistant. Please identify the complexity score of the following user query.",
    "Please identify the quality score of the Response corresponding to the Question.",
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "USER: ASSISTANT: ##Query: ##Complexity: ##Quality: #Question# #Response#",
    "What is the capital of France? The capital of France is Paris.",
    "Write a short poem about the sea. Explain how photosynthesis works in plants.",
    "1 2 3 4 5 6 7 8 9 0",
]


def byte_bpe_tokenizer(vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer trained in milliseconds, with ``<s>``, ``</s>``, ``<unk>`` and ``<pad>``.

    It adds BOS like LLaMA's tokenizer, encodes any text (byte fallback), and spells each digit as one
    token, so the scorers can read ``"1"``..``"6"`` from it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )


def tiny_causal_lm(
    tokenizer: Any,
    *,
    seed: int = 0,
    architecture: str = "llama",
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 64,
    max_position_embeddings: int = 2048,
    initializer_range: float = 0.2,
) -> Any:
    """A random-weight LLaMA or Mistral causal LM sized for CPU tests, in fp32.

    The default ``initializer_range`` of 0.2 (ten times the usual) spreads the digit logits of a tiny model,
    so that scores of different texts differ visibly; pass 0.02 for a larger model with the activation scale
    of a trained one (a 0.2 init makes a deep, wide model chaotic: fp32 rounding then moves its scores).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    classes = {"llama": (LlamaConfig, LlamaForCausalLM), "mistral": (MistralConfig, MistralForCausalLM)}
    if architecture not in classes:
        raise ConfigError(f"unknown architecture {architecture!r}; expected one of {sorted(classes)}")
    config_class, model_class = classes[architecture]
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    return model_class(config).float().eval()


def save_tiny_scorer(path: str | Path, *, seed: int = 0, architecture: str = "llama") -> Path:
    """Write a tiny random scorer (model + tokenizer) to ``path``; load it with ``ComplexityScorer(path)``."""
    path = Path(path)
    tokenizer = byte_bpe_tokenizer()
    tiny_causal_lm(tokenizer, seed=seed, architecture=architecture).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def reference_score(model: Any, tokenizer: Any, prompt: str) -> float:
    """Score one prompt the way the reference code does (hkust-nlp/deita, ``scorer/base.py``), for tests and
    benchmarks: one prompt at a time, ``generate(max_new_tokens=2)``, then the softmax of the first step's logits
    of the tokens "1".."6" weighted by 1..6 (without the reference's silent 3.0 fallback). It does not use
    :mod:`deita_hf.scoring`, which computes the same number with one forward pass per batch, so comparing the two
    tests the scorer.
    """
    import torch

    digits = [tokenizer.convert_tokens_to_ids(str(k)) for k in range(1, 7)]
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids.to(model.device)
    with torch.inference_mode():
        output = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=2,
            do_sample=False,
            num_beams=1,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    logits = output.scores[0][0][digits].double()
    return float((torch.softmax(logits, dim=0) * torch.arange(1, 7, dtype=torch.float64)).sum())
