"""The paper's selection baselines beside Deita, at the same budget (paper sections 3 and 4).

Every strategy ranks the pool and takes rows from the top until the budget is filled:

| strategy | rows taken in this order | diversity filter |
|---|---|---|
| ``deita`` | ``deita_score`` descending (the Repr Filter, :func:`deita_hf.selection.select_indices`) | yes |
| ``score`` | ``deita_score`` descending | no |
| ``complexity`` | the sum over turns of ``complexity_scores``, descending | no |
| ``quality`` | the sum over turns of ``quality_scores``, descending | no |
| ``length`` | the length of the instructions (characters of the user turns, summed), descending | no |
| ``random`` | a random permutation drawn from ``seed`` | no |

Ties keep the original row order, so each strategy is reproducible: the ranked ones need no seed and
``random`` gives the same rows for the same seed and pool. Each result also carries every row's highest
cosine similarity to the rows taken before it (when the pool has an embedding column), so the diversity
of the subsets can be compared (``deita-hf select --compare``).

>>> import numpy as np
>>> from datasets import Dataset
>>> pool = Dataset.from_dict({"deita_score": [3.0, 2.0, 1.0],
...                           "embedding": np.array([[1, 0], [0.99, 0.1], [0, 1]], dtype=np.float32)})
>>> strategy_indices(pool, 2, "score", progress=False).indices
[0, 1]
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from .constants import (
    COMPLEXITY_COLUMN,
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    EMBEDDING_COLUMN,
    QUALITY_COLUMN,
    SCORE_COLUMN,
)
from .errors import ConfigError
from .formats import row_turns
from .pool import ParquetPool, PoolReader, open_pool
from .selection import (
    DEFAULT_BLOCK_SIZE,
    SelectionInputError,
    SelectionResult,
    check_arguments,
    check_unscored,
    check_vector_type,
    checked_vectors,
    exact_float32_matmul,
    read_scores,
    require_column,
    rows_text,
    score_order,
    select_indices,
    unit_block,
)

if TYPE_CHECKING:
    from datasets import Dataset

STRATEGIES = ("deita", "score", "complexity", "quality", "length", "random")

# The row of the paper's comparisons (Liu et al., 2024) that each strategy reproduces at a fixed budget.
PAPER_ROWS = {
    "deita": "Deita: score-first, diversity-aware selection (the released 6K / 10K sets)",
    "score": "the combined evol score without the Repr Filter (the diversity study's score-only baseline)",
    "complexity": "Evol Complexity (complexity study)",
    "quality": "Evol Quality (quality study)",
    "length": "Instruction Length (complexity study)",
    "random": "Random Selection (complexity, quality and diversity studies)",
}


def _turn_sums(reader: PoolReader, column: str, scored: np.ndarray) -> np.ndarray:
    if column not in reader.column_names:
        raise KeyError(
            f"the pool has no {column!r} column (its columns are {reader.column_names}); score it first "
            "(deita-hf score or ComplexityScorer / QualityScorer)"
        )
    sums = np.asarray(
        [
            math.nan if not scores else math.fsum(math.nan if s is None else s for s in scores)
            for scores in reader.column(column).to_pylist()
        ],
        dtype=np.float64,
    )
    bad = np.flatnonzero(~np.isfinite(sums) & scored)
    if len(bad):
        raise SelectionInputError(
            f"column {column!r} is missing, empty or NaN in {rows_text(bad)}; score these rows again or drop them",
            bad,
        )
    return sums


def instruction_lengths(
    pool: Dataset | ParquetPool | str | os.PathLike,
    row_format: str | None = None,
    embedding_column: str = EMBEDDING_COLUMN,
) -> np.ndarray:
    """The characters of each row's user turns, summed (the paper's "Instruction Length"); the rows are read
    in batches, without the embedding column."""
    reader = open_pool(pool)
    columns = [name for name in reader.column_names if name != embedding_column]
    return np.asarray(
        [sum(len(user) for user, _ in row_turns(row, row_format, i)) for i, row in enumerate(reader.rows(columns))],
        dtype=np.float64,
    )


def strategy_order(
    pool: Dataset | ParquetPool | str | os.PathLike,
    strategy: str,
    *,
    seed: int = DEFAULT_SEED,
    score_column: str = SCORE_COLUMN,
    row_format: str | None = None,
    unscored: str = "raise",
) -> np.ndarray:
    """Every row of the pool in the order in which ``strategy`` takes them (all but ``deita``).

    Rows without a ``score_column`` value (when the pool has that column) follow ``unscored``, as in
    :func:`deita_hf.selection.select_indices`: an error, or left out of the order.
    """
    reader = open_pool(pool)
    n = len(reader)
    if strategy not in STRATEGIES[1:]:
        raise ConfigError(f"unknown selection strategy {strategy!r}; expected one of {STRATEGIES}")
    scored = np.ones(n, dtype=bool)
    if score_column in reader.column_names or strategy == "score":
        scores = read_scores(reader, score_column, unscored)
        scored = ~np.isnan(scores)
    if strategy == "random":
        order = np.random.default_rng(seed).permutation(n)
        return order[scored[order]]
    if strategy == "score":
        return score_order(scores)
    if strategy == "complexity":
        values = _turn_sums(reader, COMPLEXITY_COLUMN, scored)
    elif strategy == "quality":
        values = _turn_sums(reader, QUALITY_COLUMN, scored)
    else:
        values = instruction_lengths(reader, row_format)
    if not scored.all():
        values = np.where(scored, values, np.nan)
    # Descending, ties in row order: a stable sort of the negated values.
    return score_order(values)


def nearest_similarities(
    pool: Dataset | ParquetPool | str | os.PathLike,
    indices: Sequence[int],
    embedding_column: str = EMBEDDING_COLUMN,
    block_size: int = 1024,
) -> list[float]:
    """For each row of ``indices`` (in order), its highest cosine similarity to the rows before it (NaN for
    the first), at float32 accuracy; all NaN when the pool has no ``embedding_column``."""
    reader = open_pool(pool)
    if embedding_column not in reader.column_names or not len(indices):
        return [math.nan] * len(indices)
    check_vector_type(require_column(reader, embedding_column, "embedding_column"), embedding_column)
    rows = np.asarray(indices, dtype=np.int64)
    return _nearest(reader.take(rows, [embedding_column]).column(embedding_column), rows, embedding_column, block_size)


def _nearest(column: pa.ChunkedArray, rows: np.ndarray, name: str, block_size: int = 1024) -> list[float]:
    """:func:`nearest_similarities` of the vectors ``column`` of the pool rows ``rows``."""
    unit = torch.from_numpy(unit_block(checked_vectors(column, rows, name), rows, name))
    n = len(unit)
    out = np.full(n, -math.inf)
    with exact_float32_matmul():
        for start in range(0, n, block_size):
            stop = min(start + block_size, n)
            sims = unit[start:stop] @ unit[:stop].T
            # Row i of the block is compared with the rows before it only.
            before = torch.arange(stop)[None, :] < torch.arange(start, stop)[:, None]
            out[start:stop] = sims.masked_fill(~before, -math.inf).max(dim=1).values.double().numpy()
    out[np.isneginf(out)] = math.nan
    return out.tolist()


def strategy_indices(
    pool: Dataset | ParquetPool | str | os.PathLike,
    budget: int,
    strategy: str = "deita",
    *,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = DEFAULT_SEED,
    score_column: str = SCORE_COLUMN,
    embedding_column: str = EMBEDDING_COLUMN,
    row_format: str | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: str | torch.device | None = None,
    progress: bool = True,
    unscored: str = "raise",
    columns: Sequence[str] = (),
) -> SelectionResult:
    """The rows that ``strategy`` selects from ``pool``, in selection order (see the module's table).

    ``deita`` is :func:`deita_hf.selection.select_indices` (``threshold`` applies to it only). The others
    need only their own column (``deita_score``, ``complexity_scores``, ``quality_scores``, the conversation
    for ``length``, nothing for ``random``); their ``similarities`` are each row's highest similarity to the
    rows before it when the pool has an embedding column, else NaN, and ``examined`` is the budget (nothing
    is rejected). ``unscored`` is the one rule for rows without a ``score_column`` value, for every strategy:
    an error naming them (``"raise"``), or left out and counted in ``left_out`` (``"leave_out"``). With
    ``columns``, ``result.rows`` holds those columns of the selected rows, read in the same sweep as their
    vectors.
    """
    reader = open_pool(pool)
    check_arguments(budget, threshold, block_size)
    check_unscored(unscored)
    if strategy == "deita":
        return select_indices(
            reader,
            budget,
            threshold,
            score_column=score_column,
            embedding_column=embedding_column,
            block_size=block_size,
            device=device,
            progress=progress,
            unscored=unscored,
            columns=columns,
        )
    order = strategy_order(
        reader, strategy, seed=seed, score_column=score_column, row_format=row_format, unscored=unscored
    )
    indices = [int(i) for i in order[:budget]]
    rows = None
    if columns:
        with_vectors = embedding_column in reader.column_names
        rows = reader.take(indices, list(dict.fromkeys([*columns, *([embedding_column] if with_vectors else [])])))
        similarities = (
            _nearest(rows.column(embedding_column), np.asarray(indices), embedding_column)
            if with_vectors and indices
            else [math.nan] * len(indices)
        )
        rows = rows.select(list(columns))
    else:
        similarities = nearest_similarities(reader, indices, embedding_column)
    return SelectionResult(
        indices=indices,
        similarities=similarities,
        examined=len(indices),
        rejected=0,
        left_out=len(reader) - len(order),
        rows=rows,
    )
