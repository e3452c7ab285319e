"""What the `deita-hf` pipeline costs on top of the models it runs, on one machine in one run.

1. The smoke recipe end to end (`deita-hf run --config recipes/smoke/select.yaml`, 200 rows, tiny random
   scorers, the offline MiniLM embedder): wall time and peak memory of the process.
2. Scoring the same rows with tiny scorers three ways: `Dataset.map(DeitaScorer(...))` directly, and
   `deita-hf score` with shards of 50 and of 10 rows (each shard is written, hashed and read back).
3. Resuming a `deita-hf score` whose shards are all written: the time to check and merge them.

Every command runs in a fresh subprocess, as a user runs it (imports included).

    python benchmarks/bench_pipeline.py [--rows 200]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "deita_hf" / "data" / "alpaca_eval_sample.jsonl"
SCORERS = ["--complexity_model", "tiny-random:seed=1", "--quality_model", "tiny-random:seed=2"]


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of a subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) / 1024


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "deita_hf.cli", *map(str, args)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    os.environ.setdefault("DEITA_HF_CACHE", str(work / "cache"))
    print(f"torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')}, cpus: {os.cpu_count()}")

    # Build the tiny scorers once, outside the timings.
    subprocess.run(
        [sys.executable, "-c", "from deita_hf.modeling import resolve_model as r; r('tiny-random:seed=1'); "
         "r('tiny-random:seed=2')"],
        check=True,
    )  # fmt: skip

    seconds, mib = timed(cli("run", "--config", "recipes/smoke/select.yaml", "--output_dir", work / "smoke"))
    print(f"smoke recipe (200 rows, run: score + embed + select + report): {seconds:.1f} s, peak RSS {mib:.0f} MiB")

    direct = (
        "import sys, time; from datasets import Dataset; from deita_hf import DeitaScorer; "
        "from deita_hf.modeling import resolve_model as r; "
        f"ds = Dataset.from_json('{SAMPLE}').select(range({args.rows})); "
        "s = DeitaScorer(r('tiny-random:seed=1'), r('tiny-random:seed=2'), max_length=1024, progress=False); "
        "ds.map(s, batched=True, batch_size=50, with_indices=True, load_from_cache_file=False)"
    )
    seconds, _ = timed([sys.executable, "-c", direct])
    print(f"score {args.rows} rows, Dataset.map(DeitaScorer), batches of 50: {seconds:.1f} s")
    for shard_size in (50, 10):
        out = work / f"score-{shard_size}"
        command = cli("score", "--dataset_name", SAMPLE, "--max_rows", args.rows, "--output_dir", out, *SCORERS,
                      "--scorer_max_length", 1024, "--shard_size", shard_size, "--keep_shards")  # fmt: skip
        seconds, _ = timed(command)
        shards = len(list((out / "shards" / "score").glob("0*")))
        print(f"score {args.rows} rows, deita-hf score, {shards} shards of {shard_size}: {seconds:.1f} s")

    # Resume a run whose shards are all written: only the checks, the merge and the outputs are left.
    out = work / "score-50"
    for name in ("summary.json", "pool", "pool.parquet"):
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    seconds, _ = timed(cli("score", "--dataset_name", SAMPLE, "--max_rows", args.rows, "--output_dir", out,
                           *SCORERS, "--scorer_max_length", 1024, "--shard_size", 50))  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    print(f"resume with every shard written ({summary['counts']['pool']} rows): {seconds:.1f} s")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
