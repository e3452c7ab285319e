"""Training data preparation throughput, and the share of tokens that carry the loss.

Runs the SFT data path of ``deita_hf.training.sft`` on the real AlpacaEval pool (``../shared/data``, 3,220 conversations):
rows -> ``messages`` (``to_messages_dataset``) -> TRL's tokenization with the Vicuna v1.1 template and the
assistant-only labels, with the real Mistral-7B-v0.1 tokenizer (from mistral-common), then the DPO data path on
the 789 preference pairs. Prints rows/s and the fraction of tokens that are trained.

    python benchmarks/bench_training.py
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def mistral_tokenizer(folder: Path):
    import mistral_common
    from transformers import LlamaTokenizer

    shutil.copyfile(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1", folder / "tokenizer.model")
    LlamaTokenizer.from_pretrained(folder, legacy=True).save_pretrained(folder)
    from deita_hf.chat_template import load_tokenizer

    return load_tokenizer(str(folder))


def main() -> None:
    from datasets import disable_caching
    from trl import DPOConfig, DPOTrainer, SFTTrainer

    from deita_hf.io import load_training_data
    from deita_hf.testing import tiny_causal_lm
    from deita_hf.training.data import to_messages_dataset, to_preference_dataset
    from deita_hf.training.sft import SFTConfig

    disable_caching()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = mistral_tokenizer(Path(tmp))
        # DPO builds its reference model from the policy's folder, so the tiny model is saved.
        tiny_causal_lm(tokenizer, architecture="mistral").save_pretrained(Path(tmp) / "model")
        model = str(Path(tmp) / "model")
        common = dict(output_dir=tmp, bf16=False, activation_checkpointing=False, use_cpu=True, report_to="none")

        pool = load_training_data(str(DATA / "alpaca_eval_pool.jsonl"))
        # A full garbage collection over the tokenizer's and the model's objects (about 0.2 s here) would
        # otherwise fall into whichever short timing it happens to reach; each timing starts after one.
        gc.collect()
        start = time.perf_counter()
        messages = to_messages_dataset(pool)
        convert_s = time.perf_counter() - start

        gc.collect()
        start = time.perf_counter()
        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=messages, processing_class=tokenizer)
        tokenize_s = time.perf_counter() - start
        data = trainer.train_dataset
        tokens = sum(len(ids) for ids in data["input_ids"])
        trained = sum(sum(label != -100 for label in labels) for labels in data["labels"])
        truncated = sum(len(ids) == 2048 for ids in data["input_ids"])

        prefs = load_training_data(str(DATA / "alpaca_eval_prefs.jsonl"))
        gc.collect()
        start = time.perf_counter()
        pairs = to_preference_dataset(prefs)
        dpo = DPOTrainer(
            model=model, args=DPOConfig(**common, max_length=2048), train_dataset=pairs, processing_class=tokenizer
        )
        dpo_s = time.perf_counter() - start

    print(
        f"SFT rows -> messages:            {len(pool)} rows in {convert_s:.2f} s ({len(pool) / convert_s:,.0f} rows/s)"
    )
    print(
        f"SFT template + tokenize + labels: {len(pool)} rows in {tokenize_s:.2f} s "
        f"({len(pool) / tokenize_s:,.0f} rows/s, {tokens / tokenize_s:,.0f} tokens/s)"
    )
    print(
        f"  tokens: {tokens:,} ({tokens / len(pool):.0f} per row), trained: {trained / tokens:.1%}, at 2048: {truncated}"
    )
    print(f"DPO pairs -> tokenized:           {len(prefs)} pairs in {dpo_s:.2f} s ({len(dpo.train_dataset)} kept)")


if __name__ == "__main__":
    main()
