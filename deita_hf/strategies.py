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
from typing import Any

import numpy as np
import torch

from .constants import COMPLEXITY_COLUMN, DEFAULT_THRESHOLD, EMBEDDING_COLUMN, QUALITY_COLUMN, SCORE_COLUMN
from .errors import ConfigError
from .formats import row_turns
from .selection import (
    DEFAULT_BLOCK_SIZE,
    SelectionInputError,
    SelectionResult,
    VectorReader,
    check_arguments,
    check_dataset,
    check_unscored,
    exact_float32_matmul,
    read_scores,
    rows_text,
    score_order,
    select_indices,
    unit_block,
)

STRATEGIES = ("deita", "score", "complexity", "quality", "length", "random")
DEFAULT_SEED = 42

# The row of the paper's comparisons (Liu et al., 2024) that each strategy reproduces at a fixed budget.
PAPER_ROWS = {
    "deita": "Deita: score-first, diversity-aware selection (the released 6K / 10K sets)",
    "score": "the combined evol score without the Repr Filter (the diversity study's score-only baseline)",
    "complexity": "Evol Complexity (complexity study)",
    "quality": "Evol Quality (quality study)",
    "length": "Instruction Length (complexity study)",
    "random": "Random Selection (complexity, quality and diversity studies)",
}


def _turn_sums(dataset: Any, column: str, scored: np.ndarray) -> np.ndarray:
    if column not in dataset.column_names:
        raise KeyError(
            f"the pool has no {column!r} column (its columns are {dataset.column_names}); score it first "
            "(deita-hf score or ComplexityScorer / QualityScorer)"
        )
    sums = np.asarray(
        [
            math.nan if not scores else math.fsum(math.nan if s is None else s for s in scores)
            for scores in dataset[column]
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


def instruction_lengths(dataset: Any, row_format: str | None = None) -> np.ndarray:
    """The characters of each row's user turns, summed (the paper's "Instruction Length")."""
    return np.asarray(
        [sum(len(user) for user, _ in row_turns(row, row_format, i)) for i, row in enumerate(dataset)],
        dtype=np.float64,
    )


def strategy_order(
    dataset: Any,
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
    n = len(dataset)
    if strategy not in STRATEGIES[1:]:
        raise ConfigError(f"unknown selection strategy {strategy!r}; expected one of {STRATEGIES}")
    scored = np.ones(n, dtype=bool)
    if score_column in dataset.column_names or strategy == "score":
        scores = read_scores(dataset, score_column, unscored)
        scored = ~np.isnan(scores)
    if strategy == "random":
        order = np.random.default_rng(seed).permutation(n)
        return order[scored[order]]
    if strategy == "score":
        return score_order(scores)
    if strategy == "complexity":
        values = _turn_sums(dataset, COMPLEXITY_COLUMN, scored)
    elif strategy == "quality":
        values = _turn_sums(dataset, QUALITY_COLUMN, scored)
    else:
        values = instruction_lengths(dataset, row_format)
    if not scored.all():
        values = np.where(scored, values, np.nan)
    # Descending, ties in row order: a stable sort of the negated values.
    return score_order(values)


def nearest_similarities(
    dataset: Any, indices: list[int], embedding_column: str = EMBEDDING_COLUMN, block_size: int = 1024
) -> list[float]:
    """For each row of ``indices`` (in order), its highest cosine similarity to the rows before it (NaN for
    the first), at float32 accuracy; all NaN when the pool has no ``embedding_column``."""
    if embedding_column not in dataset.column_names or not indices:
        return [math.nan] * len(indices)
    rows = np.asarray(indices, dtype=np.int64)
    reader = VectorReader(dataset, embedding_column)
    blocks = [rows[start : start + block_size] for start in range(0, len(rows), block_size)]
    unit = torch.from_numpy(np.concatenate([unit_block(reader.read(b), b, embedding_column) for b in blocks]))
    out = np.full(len(rows), -math.inf)
    with exact_float32_matmul():
        for start in range(0, len(rows), block_size):
            stop = min(start + block_size, len(rows))
            sims = unit[start:stop] @ unit[:stop].T
            # Row i of the block is compared with the rows before it only.
            before = torch.arange(stop)[None, :] < torch.arange(start, stop)[:, None]
            out[start:stop] = sims.masked_fill(~before, -math.inf).max(dim=1).values.double().numpy()
    out[np.isneginf(out)] = math.nan
    return out.tolist()


def strategy_indices(
    dataset: Any,
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
) -> SelectionResult:
    """The rows that ``strategy`` selects from ``dataset``, in selection order (see the module's table).

    ``deita`` is :func:`deita_hf.selection.select_indices` (``threshold`` applies to it only). The others
    need only their own column (``deita_score``, ``complexity_scores``, ``quality_scores``, the conversation
    for ``length``, nothing for ``random``); their ``similarities`` are each row's highest similarity to the
    rows before it when the pool has an embedding column, else NaN, and ``examined`` is the budget (nothing
    is rejected). ``unscored`` is the one rule for rows without a ``score_column`` value, for every strategy:
    an error naming them (``"raise"``), or left out and counted in ``left_out`` (``"leave_out"``).
    """
    check_dataset(dataset)
    check_arguments(budget, threshold, block_size)
    check_unscored(unscored)
    if strategy == "deita":
        return select_indices(
            dataset,
            budget,
            threshold,
            score_column=score_column,
            embedding_column=embedding_column,
            block_size=block_size,
            device=device,
            progress=progress,
            unscored=unscored,
        )
    order = strategy_order(
        dataset, strategy, seed=seed, score_column=score_column, row_format=row_format, unscored=unscored
    )
    indices = [int(i) for i in order[:budget]]
    similarities = nearest_similarities(dataset, indices, embedding_column)
    return SelectionResult(
        indices=indices,
        similarities=similarities,
        examined=len(indices),
        rejected=0,
        left_out=len(dataset) - len(order),
    )
