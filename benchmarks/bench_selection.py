"""How fast the Repr Filter selection is, and how little memory it needs, on one machine in one run.

1. A pool of N = 50,000 rows, d = 1,024, budget 5,000, threshold 0.9, twice: random vectors, and vectors
   with many planted near duplicates (10,000 topics, 5 noisy copies each). Three implementations, whose
   selections are asserted identical:
   - a loop in the style of the reference implementation (hkust-nlp/deita ``IterativeFilter``, batch size
     1): the whole pool as a float64 array, and per candidate a fresh float64 copy of the selected rows,
     turned into a float32 tensor, normalised, multiplied;
   - a clean sequential loop: one float32 matrix-vector product per candidate against a preallocated
     matrix of the selected unit vectors;
   - ``deita_select``.
   The floor is the arithmetic of the sequential loop (each examined candidate times the rows selected
   before it, times d multiply-adds) at this machine's measured float32 matrix-multiply rate.
2. The paper's scale: 300,000 rows, d = 4,096 (Mistral-7B's hidden size), budget 10,000, selected in a fresh
   process from the pool stored two ways: a ``datasets`` Arrow file on disk (4.9 GB of embeddings, written in
   chunks), opened memory-mapped with ``Dataset.from_file``; and the same rows as a ``pool/`` folder in the Hub
   layout (``data/train-*.parquet``, what ``deita-hf run`` writes and ``deita-hf select`` reads), read in place
   with ``deita_select(folder)``. Wall time and peak resident memory; the files are deleted afterwards. With
   ``--memory-limit-mib N`` (Linux, root, cgroup v1 or v2) each selection also runs in a memory cgroup of N MiB
   after the page cache is dropped, so that the pool is read from disk.

    python benchmarks/bench_selection.py [--skip-reference] [--skip-large] [--workdir DIR] [--memory-limit-mib N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

THRESHOLD = 0.9


# -- pools -------------------------------------------------------------------------------------------------
def random_pool(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(n), rng.standard_normal((n, dim), dtype=np.float32)


def duplicate_pool(n: int, dim: int, seed: int, copies: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``n / copies`` topics, each ``copies`` noisy copies; the noise differs per topic, so that some
    copies are above the threshold and some below (cosine of two copies about 1 / (1 + noise**2))."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((n // copies, dim), dtype=np.float32)
    noise = rng.uniform(0.15, 0.4, size=n // copies).astype(np.float32)
    topic_of = rng.permutation(np.repeat(np.arange(n // copies), copies))
    vectors = topics[topic_of] + noise[topic_of, None] * rng.standard_normal((n, dim), dtype=np.float32)
    return rng.random(n), vectors


def as_dataset(scores: np.ndarray, vectors: np.ndarray):
    from datasets import Dataset

    n, dim = vectors.shape
    offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int64))
    embedding = pa.LargeListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))
    embedding = embedding.cast(pa.list_(pa.float32()))
    return Dataset(pa.table({"row": np.arange(n), "deita_score": scores, "embedding": embedding}))


# -- the three implementations -------------------------------------------------------------------------------
def reference_style_loop(scores: np.ndarray, vectors: np.ndarray, budget: int) -> list[int]:
    """Per candidate, a fresh float64 copy of the selected rows, as the reference's filter does."""
    order = np.argsort(-scores, kind="stable")
    embeddings = np.array(vectors[order].tolist())  # the reference: np.array(df[...].values.tolist()), float64
    kept = [0]
    for i in range(1, len(order)):
        if len(kept) >= budget:
            break
        candidate = torch.tensor(embeddings[i : i + 1], dtype=torch.float32)
        existing = torch.tensor(embeddings[kept], dtype=torch.float32)
        candidate = candidate / candidate.norm(dim=1)[:, None]
        existing = existing / existing.norm(dim=1)[:, None]
        if not torch.any(candidate @ existing.T > THRESHOLD):
            kept.append(i)
    return [int(order[i]) for i in kept[:budget]]


def clean_loop(scores: np.ndarray, vectors: np.ndarray, budget: int) -> tuple[list[int], int, int]:
    """One float32 matrix-vector product per candidate against a preallocated matrix of selected rows.

    Also returns the candidates examined and the multiply-adds of the sequential loop."""
    from deita_hf.selection import unit_rows

    order = np.argsort(-scores, kind="stable")
    selected = np.empty((budget, vectors.shape[1]), dtype=np.float32)
    kept: list[int] = []
    multiply_adds = 0
    examined = 0
    for row in order:
        examined += 1
        unit = unit_rows(vectors[row : row + 1])[0]
        k = len(kept)
        multiply_adds += k * vectors.shape[1]
        if k == 0 or (selected[:k] @ unit).max() <= THRESHOLD:
            selected[k] = unit
            kept.append(int(row))
            if len(kept) == budget:
                break
    return kept, examined, multiply_adds


def matmul_rate(dim: int, rows: int = 512, selected: int = 4096, repeats: int = 5) -> float:
    """Best float32 multiply-adds per second of a (rows x dim) by (dim x selected) product, as deita_select
    runs them."""
    a, b = torch.randn(rows, dim), torch.randn(selected, dim)
    a @ b.T
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b.T
        best = min(best, time.perf_counter() - start)
    return rows * selected * dim / best


def best_of(repeats: int, function, *args):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return min(times), result


def compare(name: str, scores: np.ndarray, vectors: np.ndarray, budget: int, skip_reference: bool) -> None:
    from deita_hf import deita_select

    dataset = as_dataset(scores, vectors)
    fast_seconds, subset = best_of(3, lambda: deita_select(dataset, budget, THRESHOLD, progress=False))
    fast = list(subset["row"])
    clean_seconds, (clean, examined, multiply_adds) = best_of(1, clean_loop, scores, vectors, budget)
    assert fast == clean, f"{name}: deita_select and the clean loop disagree"
    rate = max(matmul_rate(vectors.shape[1]) for _ in range(3))
    floor = multiply_adds / rate
    print(
        f"\n{name}: N={len(scores):,} d={vectors.shape[1]:,} budget={budget:,}: examined {examined:,}, "
        f"rejected {examined - budget:,}"
    )
    print(
        f"  float32 matmul rate {rate / 1e9:.1f} G multiply-adds/s; sequential arithmetic "
        f"{multiply_adds / 1e9:.2f} G multiply-adds -> floor {floor:.3f} s"
    )
    print(f"  deita_select      {fast_seconds:8.3f} s   ({fast_seconds / floor:.2f}x the floor, best of 3)")
    print(f"  clean loop        {clean_seconds:8.3f} s   ({clean_seconds / fast_seconds:.1f}x deita_select)")
    if not skip_reference:
        reference_seconds, reference = best_of(1, reference_style_loop, scores, vectors, budget)
        assert reference == fast, f"{name}: deita_select and the reference-style loop disagree"
        print(
            f"  reference-style   {reference_seconds:8.3f} s   ({reference_seconds / fast_seconds:.0f}x deita_select)"
        )
    print("  selections identical: yes")


# -- the paper's scale -------------------------------------------------------------------------------------
def write_large_pool(path: Path, n: int, dim: int, chunk: int = 2000, seed: int = 0) -> None:
    """A ``datasets`` Arrow file of ``n`` random rows, written ``chunk`` rows at a time."""
    from datasets import Features, List, Value
    from datasets.arrow_writer import ArrowWriter

    features = Features({"id": Value("int64"), "deita_score": Value("float64"), "embedding": List(Value("float32"))})
    rng = np.random.default_rng(seed)
    with ArrowWriter(features=features, path=str(path)) as writer:
        for start in range(0, n, chunk):
            rows = min(chunk, n - start)
            vectors = rng.standard_normal((rows, dim), dtype=np.float32)
            offsets = pa.array(np.arange(0, rows * dim + 1, dim, dtype=np.int32))
            table = pa.table(
                {
                    "id": np.arange(start, start + rows),
                    "deita_score": rng.random(rows),
                    "embedding": pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1))),
                }
            )
            writer.write_table(table)
        writer.finalize()


class MemorySampler:
    """Peak resident memory of this process, from ``/proc/self/status`` every few milliseconds: all of it
    (``VmRSS``) and its anonymous part (``RssAnon``: memory the process allocated, as opposed to pages of
    the memory-mapped pool file, which the kernel can drop and read again)."""

    def __init__(self, interval: float = 0.005):
        import threading

        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def sample(self) -> None:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in self.peak:
                self.peak[key] = max(self.peak[key], int(value.split()[0]) // 1024)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def select_from_file(path: str, budget: int) -> None:
    """Run in a fresh process: open the pool (an Arrow file memory-mapped, or a Parquet folder read in place),
    select, print the figures as JSON."""
    import datasets

    from deita_hf import deita_select

    datasets.disable_progress_bars()
    with MemorySampler() as imports:
        pass
    pool = datasets.Dataset.from_file(path) if path.endswith(".arrow") else path
    with MemorySampler() as memory:
        start = time.perf_counter()
        subset = deita_select(pool, budget, THRESHOLD, progress=False)
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mib": memory.peak,
                "after_imports_mib": imports.peak,
                "selected": len(subset),
                "threads": torch.get_num_threads(),
            }
        )
    )


def in_memory_cgroup(limit_mib: int) -> list[str]:
    """A command prefix that runs a command in a new memory cgroup of ``limit_mib`` MiB, after dropping the page
    cache (Linux, root)."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    group = Path("/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/memory") / f"bench-selection-{os.getpid()}"
    group.mkdir(exist_ok=True)
    (group / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(limit_mib * 2**20))
    tasks = group / ("cgroup.procs" if v2 else "tasks")
    return ["sh", "-c", f'sync; echo 1 > /proc/sys/vm/drop_caches; echo $$ > {tasks}; exec "$@"', "sh"]


def large(workdir: Path, n: int, dim: int, budget: int, memory_limit_mib: int | None) -> None:
    import datasets

    from deita_hf.hub import write_dataset_folder

    path = workdir / "pool.arrow"
    start = time.perf_counter()
    write_large_pool(path, n, dim)
    size = path.stat().st_size
    print(
        f"\npaper scale: wrote {n:,} x {dim:,} rows ({size / 1e9:.2f} GB on disk) in {time.perf_counter() - start:.0f} s"
    )
    folder = workdir / "pool"

    class Card:  # write_dataset_folder saves a card; an empty one will do
        def save(self, target: Path) -> None:
            Path(target).write_text("---\n---\n")

    datasets.disable_progress_bars()
    write_dataset_folder(datasets.Dataset.from_file(str(path)), folder, Card())
    parquet_gb = sum(p.stat().st_size for p in folder.rglob("*.parquet")) / 1e9
    embedding_gb = n * dim * 4 / 1e9
    print(
        f"  the same rows as a pool/ folder: {parquet_gb:.2f} GB of Parquet; the embeddings are {embedding_gb:.1f} GB"
    )
    try:
        limits = [None] + ([memory_limit_mib] if memory_limit_mib else [])
        for source, label in ((path, "Arrow file, memory-mapped"), (folder, "pool/ folder, Parquet read in place")):
            for limit in limits:
                prefix = in_memory_cgroup(limit) if limit else []
                command = [*prefix, sys.executable, __file__, "--select-from", str(source), "--budget", str(budget)]
                result = subprocess.run(command, capture_output=True, text=True, check=True)
                figures = json.loads(result.stdout.strip().splitlines()[-1])
                assert figures["selected"] == budget
                peak, imports = figures["peak_mib"], figures["after_imports_mib"]
                where = f" in a {limit:,} MiB memory cgroup, from disk" if limit else ""
                print(
                    f"  {label}{where}: deita_select budget {budget:,}: {figures['seconds']:.1f} s wall; peak "
                    f"resident memory {peak['VmRSS']:,} MiB, of which {peak['RssAnon']:,} MiB allocated by the process "
                    f"and {peak['RssFile']:,} MiB pages of mapped files (after imports: {imports['VmRSS']:,} MiB)"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-reference", action="store_true", help="leave out the slow reference-style loop")
    parser.add_argument("--skip-large", action="store_true", help="leave out the 300,000 x 4,096 pool")
    parser.add_argument("--workdir", default=None, help="where to write the large pool (default: a temp folder)")
    parser.add_argument(
        "--memory-limit-mib", type=int, default=None, help="also select in a memory cgroup of this size (root)"
    )
    parser.add_argument("--select-from", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, default=10_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.select_from:
        select_from_file(args.select_from, args.budget)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus")
    compare("random vectors", *random_pool(50_000, 1_024, seed=0), 5_000, args.skip_reference)
    compare("planted near duplicates", *duplicate_pool(50_000, 1_024, seed=1), 5_000, args.skip_reference)
    if not args.skip_large:
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-selection-"))
        workdir.mkdir(parents=True, exist_ok=True)
        large(workdir, 300_000, 4_096, 10_000, args.memory_limit_mib)


if __name__ == "__main__":
    main()
