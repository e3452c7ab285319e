"""A subset of the pool as a ``datasets.Dataset``: the Repr Filter or a baseline strategy, then the output.

:func:`deita_select` is what users call (``from deita_hf import deita_select``); ``deita-hf select`` and
``deita-hf run`` call :func:`select_subset`, which also returns the counts. Both build the output with the
one :func:`selection_dataset`:

- from a ``datasets.Dataset``: ``dataset.select(rows).flatten_indices(keep_in_memory=True)``, the rows taken in
  row order first when the dataset is on disk (its file is then read front to back); every column and feature
  unchanged, and a fingerprint that follows the pool's and the rows;
- from Parquet files (:class:`deita_hf.pool.ParquetPool`): the rows read with the candidates' vectors, as an
  in-memory dataset with the pool's features (the pool is swept once for both);

then the similarity column (float64).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from .constants import DEFAULT_SEED, DEFAULT_THRESHOLD, EMBEDDING_COLUMN, SCORE_COLUMN
from .errors import ConfigError
from .pool import DatasetReader, ParquetPool, PoolReader, open_pool
from .selection import DEFAULT_BLOCK_SIZE, SIMILARITY_COLUMN, SelectionResult
from .strategies import strategy_indices

if TYPE_CHECKING:
    from datasets import Dataset


def deita_select(
    dataset: Dataset | ParquetPool | str | os.PathLike,
    budget: int,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    score_column: str = SCORE_COLUMN,
    embedding_column: str = EMBEDDING_COLUMN,
    similarity_column: str | None = SIMILARITY_COLUMN,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: str | torch.device | None = None,
    progress: bool = True,
    strategy: str = "deita",
    seed: int = DEFAULT_SEED,
    unscored: str = "raise",
) -> Dataset:
    """The rows of the pool that the Repr Filter selects, as a ``datasets.Dataset`` in selection order.

    Every column of the pool comes back unchanged, plus ``similarity_column`` (float64): each row's highest
    cosine similarity to the rows selected before it, NaN for the first (``None`` leaves it out). The
    selection for a budget is a prefix of the selection for any larger budget. The pool is a
    ``datasets.Dataset`` or Parquet files (a ``pool/`` folder: its path, or a :class:`deita_hf.pool.ParquetPool`),
    read in bounded windows without a copy; the other arguments as in :func:`deita_hf.selection.select_indices`.

    ``strategy`` picks one of the paper's baselines instead of the Repr Filter: ``score``, ``complexity``,
    ``quality``, ``length`` or ``random`` (drawn from ``seed``); see :mod:`deita_hf.strategies`.

    >>> import numpy as np
    >>> from datasets import Dataset
    >>> pool = Dataset.from_dict({"id": ["a", "b", "c"], "deita_score": [1.0, 3.0, 2.0],
    ...                           "embedding": np.array([[1, 0], [1, 0.01], [0, 1]], dtype=np.float32)})
    >>> list(deita_select(pool, budget=2, progress=False)["id"])
    ['b', 'c']
    """
    subset, _ = select_subset(
        dataset,
        budget,
        strategy,
        threshold=threshold,
        seed=seed,
        score_column=score_column,
        embedding_column=embedding_column,
        similarity_column=similarity_column,
        block_size=block_size,
        device=device,
        progress=progress,
        unscored=unscored,
    )
    return subset


def select_subset(
    pool: Dataset | ParquetPool | str | os.PathLike,
    budget: int,
    strategy: str = "deita",
    *,
    similarity_column: str | None = SIMILARITY_COLUMN,
    row_format: str | None = None,
    **options,
) -> tuple[Dataset, SelectionResult]:
    """The subset that ``strategy`` selects (:func:`deita_hf.strategies.strategy_indices` with ``options``)
    and the result it came from (counts, similarities)."""
    reader = open_pool(pool)
    if similarity_column is not None and similarity_column in reader.column_names:
        raise ConfigError(
            f"the pool already has a column {similarity_column!r}; remove it (dataset.remove_columns) or pass "
            "another similarity_column name (or None)"
        )
    # A Parquet pool's output rows are read in the same sweep as their vectors; a dataset's are selected.
    columns = [] if isinstance(reader, DatasetReader) else reader.column_names
    result = strategy_indices(reader, budget, strategy, row_format=row_format, columns=columns, **options)
    subset = selection_dataset(reader, result.indices, result.similarities, similarity_column, result.rows)
    return subset, result


def selection_dataset(
    pool: Dataset | PoolReader,
    indices: Sequence[int],
    similarities: Sequence[float],
    similarity_column: str | None,
    rows: pa.Table | None = None,
) -> Dataset:
    """The rows ``indices`` of ``pool``, in that order, as a new in-memory dataset: every column and feature
    unchanged, plus ``similarity_column`` (float64; ``None`` for none). ``rows``: those rows already read
    (a Parquet pool's)."""
    from datasets import Value

    reader = open_pool(pool)
    if isinstance(reader, DatasetReader) and not reader.dataset.cache_files:
        selected = reader.dataset.select(indices).flatten_indices(keep_in_memory=True)
    elif isinstance(reader, DatasetReader):
        # A pool on disk (memory-mapped) is gathered in row order, so that the file is read front to back, not
        # at random; then the rows are put in selection order in memory.
        rows = np.asarray(indices, dtype=np.int64)
        by_row = np.argsort(rows, kind="stable")
        where = np.empty(len(rows), dtype=np.int64)
        where[by_row] = np.arange(len(rows))
        in_row_order = reader.dataset.select(rows[by_row]).flatten_indices(keep_in_memory=True)
        selected = in_row_order.select(where).flatten_indices(keep_in_memory=True)
    else:
        selected = reader.to_dataset(rows if rows is not None else reader.take(indices))
    if similarity_column is None:
        return selected
    return selected.add_column(similarity_column, [float(s) for s in similarities], feature=Value("float64"))
