"""The reference implementation's scoring behaviour (hkust-nlp/deita, ``llama_scorer.py``), for tests and
benchmarks only: one prompt at a time, ``generate(max_new_tokens=2)``, the first step's digit logits.
deita-hf itself never generates; it computes the same number with one forward pass per batch.
"""

from __future__ import annotations

from typing import Any

import torch

from .scoring import digit_token_ids, expected_score


@torch.inference_mode()
def reference_score(model: Any, tokenizer: Any, prompt: str) -> float:
    """Score one prompt the way the reference code does (without its silent 3.0 fallback)."""
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids.to(model.device)
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
    first_step = output.scores[0][0]
    return float(expected_score(first_step[digit_token_ids(tokenizer)]))
