"""Scoring throughput: deita-hf's batched scorer against the reference behaviour, on one machine in one run.

The reference (hkust-nlp/deita ``llama_scorer.py``) scores one prompt at a time with
``generate(max_new_tokens=2)`` in fp32 and reads the first step's digit logits. deita-hf runs one forward
pass per length-sorted batch, reads six logits at each row's last real token, and reuses the template's
opening tokens. Both are run on 512 real instructions from ``../shared/data/alpaca_eval_pool.jsonl`` with
the real Mistral-7B-v0.1 tokenizer, for two LLaMA models built from configs with random weights. Both get the
ids the reference stack made, ``[bos] + sp.encode(prompt)`` (docs/scoring.md, "Token ids").

Achieved GFLOP/s counts 2 x (parameters that every token passes through: the transformer layers, not the
embedding table nor the LM head) x (tokens actually run through the model per second), beside the
machine's measured fp32 matrix-multiply rate.

    python benchmarks/bench_scoring.py [--rows 512] [--reference-rows 128] [--sizes tiny,150m] [--kind complexity,quality]
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from deita_hf import ComplexityScorer, QualityScorer
from deita_hf.modeling import resolve_device, resolve_dtype
from deita_hf.testing import reference_score, tiny_causal_lm

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "alpaca_eval_pool.jsonl"
SIZES = {
    "tiny": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128
    ),
    # The usual 0.02 init: the activation scale of a trained model (see deita_hf.testing.tiny_causal_lm).
    "150m": dict(
        hidden_size=1024,
        num_hidden_layers=8,
        num_attention_heads=16,
        num_key_value_heads=16,
        intermediate_size=2816,
        initializer_range=0.02,
    ),
    # Mistral-7B's shape, for a GPU machine (the scorer then runs in bf16): `--sizes 7b --reference-rows 64`.
    "7b": dict(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        initializer_range=0.02,
    ),
}


def mistral_tokenizer():
    import mistral_common
    from transformers import LlamaTokenizer

    folder = Path(tempfile.mkdtemp())
    shutil.copyfile(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1", folder / "tokenizer.model")
    tokenizer = LlamaTokenizer.from_pretrained(folder, legacy=True, add_bos_token=True)
    tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


class ReferenceStackTokenizer:
    """The tokenizer as the reference stack (transformers 4.35) applied it: ``[bos] + sp.encode(prompt)``.

    transformers 5 converts the same SentencePiece file into ids that differ on runs of spaces (see
    docs/scoring.md, "Token ids"), so ``reference_score`` is given the reference's ids, the ones the scorer runs.
    """

    def __init__(self, tokenizer, encoder):
        self._tokenizer, self._encoder = tokenizer, encoder

    def __call__(self, text: str, return_tensors: str | None = None):
        from transformers import BatchEncoding

        return BatchEncoding({"input_ids": [self._encoder([text])[0]]}, tensor_type=return_tensors)

    def __getattr__(self, name: str):
        return getattr(self._tokenizer, name)


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """The measured matrix-multiply rate where the scorer runs (fp32 on CPU, bf16 on GPU, its defaults)."""
    if device.type == "cuda":
        n, repeats = 8192, 50
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def layer_parameters(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if ".layers." in name)


def load_turns(rows: int) -> list[tuple[str, str]]:
    seen, turns = set(), []
    for line in DATA.open():
        messages = json.loads(line)["messages"]
        if messages[0]["content"] not in seen:
            seen.add(messages[0]["content"])
            turns.append((messages[0]["content"], messages[1]["content"]))
        if len(turns) == rows:
            break
    return turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument(
        "--reference-rows",
        type=int,
        default=None,
        help="time the reference on about this many rows, spread over the set (default: all)",
    )
    parser.add_argument("--sizes", default="tiny,150m")
    parser.add_argument("--kind", default="complexity,quality")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="default: the scorer's (1024 on CPU)")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} not found: the benchmark reads the real data in ../shared/data")
    torch.set_grad_enabled(False)
    tokenizer = mistral_tokenizer()
    turns = load_turns(args.rows)
    device = resolve_device()
    dtype = resolve_dtype(None, device)
    peak = matmul_gflops(device, dtype)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"machine: {where}, {str(dtype).replace('torch.', '')} matmul {peak:.1f} GFLOP/s")
    print(
        f"data: {len(turns)} instructions from {DATA.name}; batches of at most {args.batch_size} prompts and "
        f"{args.max_batch_tokens or 'the default'} padded tokens"
    )
    header = f"{'model':>6} {'prompt':>10} {'params':>8} {'ref/s':>8} {'deita/s':>8} {'ratio':>6} {'no-prefix/s':>11} {'prefix gain':>11} {'GFLOP/s':>8} {'of peak':>7} {'max|diff|':>9}"
    print(header)
    for size in args.sizes.split(","):
        model = tiny_causal_lm(tokenizer, seed=0, **SIZES[size])
        n_layer_params = layer_parameters(model)
        for kind in args.kind.split(","):
            scorer_class = {"complexity": ComplexityScorer, "quality": QualityScorer}[kind]
            scorer = scorer_class(
                model, tokenizer, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens, progress=False
            )
            plain = scorer_class(
                model,
                tokenizer,
                batch_size=args.batch_size,
                max_batch_tokens=args.max_batch_tokens,
                progress=False,
                reuse_prefix=False,
            )
            batch = {"prompt": [u for u, _ in turns], "response": [a for _, a in turns]}
            scorer({"prompt": batch["prompt"][:4], "response": batch["response"][:4]})  # warm-up
            plain({"prompt": batch["prompt"][:4], "response": batch["response"][:4]})

            # A full garbage collection over the tokenizer's and the models' objects (about 0.2 s here) would
            # otherwise fall into whichever short timing comes first; each timing starts after one.
            gc.collect()
            start = time.perf_counter()
            scores = [s[0] for s in scorer(batch)[scorer.column]]
            fast = time.perf_counter() - start
            gc.collect()
            start = time.perf_counter()
            plain(batch)
            no_prefix = time.perf_counter() - start

            # The reference is slow: time it on every k-th row (same length mix as the whole set).
            step = max(1, len(turns) // (args.reference_rows or len(turns)))
            sample = list(range(0, len(turns), step))
            reference_tokenizer = ReferenceStackTokenizer(tokenizer, scorer.prompt_encoder)
            gc.collect()
            start = time.perf_counter()
            expected = [reference_score(model, reference_tokenizer, scorer.render(*turns[i])) for i in sample]
            reference = time.perf_counter() - start

            tokens = sum(len(scorer.encode(u, a)[0]) for u, a in turns)
            computed = tokens - len(turns) * len(scorer._prefix_ids)
            gflops = 2 * n_layer_params * computed / fast / 1e9
            diff = max(abs(scores[i] - e) for i, e in zip(sample, expected))
            ref_rate, fast_rate = len(sample) / reference, len(turns) / fast
            print(
                f"{size:>6} {kind:>10} {n_layer_params / 1e6:>7.1f}M {ref_rate:>8.1f} {fast_rate:>8.1f} "
                f"{fast_rate / ref_rate:>5.1f}x {len(turns) / no_prefix:>11.1f} {no_prefix / fast:>10.2f}x "
                f"{gflops:>8.1f} {gflops / peak:>6.0%} {diff:>9.1e}"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
