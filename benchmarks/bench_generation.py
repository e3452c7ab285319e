"""Scorer-data generation: request throughput against concurrency, and the cost of a rerun from the cache.

An OpenAI-compatible server on 127.0.0.1 (the tests' ``chat_server``) answers every request after a fixed
latency, like a remote endpoint. Timed: ``OpenAIChat.generate`` over N requests at several concurrency
levels, then the same requests again from the on-disk cache (zero requests sent), and a whole
``make-scorer-data`` run (Evol Complexity, 5 rounds, then ranking) on seed instructions from
``../shared/data/alpaca_eval_pool.jsonl`` (or synthetic ones where that file is absent), first with the
server and then again from the cache.

    python benchmarks/bench_generation.py [--requests 128] [--latency 0.2] [--concurrency 1,8,32] [--seeds 50]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(ROOT / "tests"))

from chat_server import Canned, ChatServer, fake_model  # noqa: E402

from deita_hf.scorers.data import main as make_scorer_data  # noqa: E402
from deita_hf.scorers.generation import OpenAIChat  # noqa: E402

POOL = ROOT.parent / "shared" / "data" / "alpaca_eval_pool.jsonl"


def write_seeds(path: Path, count: int) -> str:
    rows = []
    if POOL.exists():
        seen = set()
        for line in POOL.read_text().splitlines():
            instruction = json.loads(line)["messages"][0]["content"]
            if instruction not in seen:
                seen.add(instruction)
                rows.append({"instruction": instruction, "output": ""})
            if len(rows) == count:
                break
    rows += [{"instruction": f"Explain topic number {i}.", "output": ""} for i in range(count - len(rows))]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return "alpaca_eval_pool.jsonl" if POOL.exists() else "synthetic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server waits before each answer")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seeds", type=int, default=50)
    args = parser.parse_args()

    def slow(messages, seen):
        return Canned(fake_model(messages), delay=args.latency)

    conversations = [
        [{"role": "user", "content": f"<request>\nQuestion {i}\n</request>"}] for i in range(args.requests)
    ]
    print(f"{args.requests} requests, server latency {args.latency * 1000:.0f} ms")
    print(f"{'concurrency':>12} {'seconds':>8} {'requests/s':>11}")
    with ChatServer(slow) as server, tempfile.TemporaryDirectory() as tmp:
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            chat = OpenAIChat("bench", base_url=server.url, concurrency=concurrency, progress=False)
            start = time.perf_counter()
            chat.generate(conversations)
            seconds = time.perf_counter() - start
            print(f"{concurrency:>12} {seconds:>8.2f} {args.requests / seconds:>11.1f}")
        cached = OpenAIChat("bench", base_url=server.url, concurrency=32, cache_dir=tmp, progress=False)
        cached.generate(conversations)
        before = len(server.requests)
        rerun = OpenAIChat("bench", base_url=server.url, cache_dir=tmp, progress=False)
        start = time.perf_counter()
        rerun.generate(conversations)
        seconds = time.perf_counter() - start
        print(
            f"rerun from the cache: {seconds * 1000:.1f} ms for {args.requests} replies, "
            f"{len(server.requests) - before} requests sent"
        )

        out = Path(tmp) / "scorer-data"
        source = write_seeds(Path(tmp) / "seeds.jsonl", args.seeds)
        recipe = {
            "task": "complexity",
            "seed_dataset": str(Path(tmp) / "seeds.jsonl"),
            "scorer_data_dir": str(out),
            "generator_model": "bench",
            "base_url": server.url,
            "concurrency": 32,
        }
        (Path(tmp) / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        for label in ("first run", "rerun"):
            before = len(server.requests)
            start = time.perf_counter()
            make_scorer_data(["--config", str(Path(tmp) / "recipe.yaml")])
            seconds = time.perf_counter() - start
            summary = json.loads((out / "summary.json").read_text())
            print(
                f"make-scorer-data {label} ({args.seeds} {source} seeds, 5 rounds + ranking, concurrency 32): "
                f"{seconds:.2f} s, {len(server.requests) - before} requests, {sum(summary['rows'].values())} rows"
            )


if __name__ == "__main__":
    main()
