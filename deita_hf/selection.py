"""Score-first, diversity-aware selection: the Repr Filter (SPEC section 7).

The contract is the sequential loop of the paper::

    order = rows sorted by score, descending; ties keep the original row order
    S = []
    for x in order:
        if S is empty or max over y in S of cos(x, y) <= threshold: S.append(x)
        if len(S) == budget: stop

where ``cos(x, y)`` is the exact dot product of the L2-normalised float32 vectors (each vector is divided
by its norm computed in float64 and rounded to float32). :func:`select_indices` gives exactly that loop's
result, however it blocks the work:

- candidates are taken in score order in blocks; one matrix product compares a block with the rows
  selected so far and with itself;
- a float32 product can be off by at most ``d * 2**-24`` (``d`` the vector length) on unit vectors, so
  only the similarities closer than that to the threshold are recomputed, in float64, and the few closer
  than float64 can tell apart are decided exactly with ``math.fsum``;
- inside the block, candidates are kept greedily in order: a candidate is rejected by an earlier
  candidate of the block only if that one was kept;
- the embeddings are read through a :mod:`deita_hf.pool` reader in windows of candidates in score order
  (at most :data:`WINDOW_BYTES`), each in one sequential sweep of the pool, so memory is the selected set
  plus one window, whatever the pool's size. The pool may be a ``datasets.Dataset`` (in memory,
  memory-mapped from disk, or a view: ``select``, ``shuffle``...) or Parquet files (a ``pool/`` folder),
  read without a copy.

Rows without a score follow one rule everywhere (``unscored``: an error, or left out and counted). A vector
is judged where the loop examines its row. The helpers without a leading underscore in the reading section
are shared with :mod:`deita_hf.strategies`; :func:`deita_hf.subset.deita_select` turns a selection into a
``datasets.Dataset``.

>>> import numpy as np
>>> from datasets import Dataset
>>> pool = Dataset.from_dict({"deita_score": [3.0, 2.0, 1.0],
...                           "embedding": np.array([[1, 0], [0.99, 0.1], [0, 1]], dtype=np.float32)})
>>> select_indices(pool, budget=2, progress=False).indices
[0, 2]
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from tqdm.auto import tqdm

from .constants import DEFAULT_THRESHOLD, EMBEDDING_COLUMN, SCORE_COLUMN
from .errors import ConfigError, DataError
from .modeling import resolve_device
from .pool import ParquetPool, PoolReader, open_pool

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

SIMILARITY_COLUMN = "nearest_selected_similarity"
DEFAULT_BLOCK_SIZE = 512
_COLUMN_MULTIPLE = 16
# Rows named in an error message; the count of the others follows.
_SHOWN_ROWS = 10


@dataclass
class SelectionResult:
    """What :func:`select_indices` found.

    Attributes:
        indices: row indices of the pool, in selection order.
        similarities: for each kept row, its highest cosine similarity to the rows kept before it (NaN for
            the first), at float32 accuracy.
        examined: candidates looked at before the budget filled (or the pool ran out).
        rejected: of those, rejected as too similar to a kept row.
        left_out: rows without a score, left out (``unscored="leave_out"``; never examined).
        rows: the selected rows' columns, in selection order, when they were read with the vectors (a pool
            in Parquet files, whose output is built from them); else ``None``.
    """

    indices: list[int]
    similarities: list[float]
    examined: int
    rejected: int
    left_out: int = 0
    rows: pa.Table | None = field(default=None, repr=False, compare=False)


class SelectionInputError(DataError):
    """Bad input to the selection: a NaN score, a zero or non-finite vector, ... ``rows`` names them."""

    def __init__(self, message: str, rows: Sequence[int] = ()):
        self.rows = list(rows)
        super().__init__(message)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm, in float64, rounded to float32: the vectors that ``cos`` compares.

    >>> unit_rows(np.array([[3, 4]], dtype=np.float32))
    array([[0.6, 0.8]], dtype=float32)
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    out = np.empty_like(vectors)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(vectors, norms[:, None], out=out, casting="unsafe")
    return out


def exceeds(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """For unit float32 row pairs ``a[i], b[i]``: whether their exact dot product is above ``threshold``.

    The products of two float32 numbers are exact in float64; their float64 sum is off by at most
    ``d * 2**-53``; the rare sums closer than that to the threshold are decided with ``math.fsum``, which
    is exact.
    """
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    products = a64 * b64
    dots = products.sum(axis=1)
    out = dots > threshold
    bound = 2.0 * a.shape[1] * 2.0**-53
    for i in np.flatnonzero(np.abs(dots - threshold) <= bound):
        out[i] = math.fsum([*products[i].tolist(), -threshold]) > 0
    return out


def float32_error_bound(dim: int) -> float:
    """How far a float32 dot product of two unit float32 vectors of length ``dim`` can be from the exact
    one, in any summation order: ``gamma_dim = dim * u / (1 - dim * u)`` with ``u = 2**-24``, times the
    product of the norms (at most ``1 + 2**-22`` after rounding)."""
    u = 2.0**-24
    if dim * u >= 0.5:
        raise DataError(f"vectors of length {dim} are too long for a float32 error bound")
    return dim * u / (1 - dim * u) * (1 + 2.0**-22) * 1.01


@contextmanager
def exact_float32_matmul():
    """Matrix products in true float32 (no TF32 or bf16 shortcuts), which the error bound assumes."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


# -- reading the pool --------------------------------------------------------------------------------------
# Used by deita_hf.strategies too. The pool is read only through a deita_hf.pool reader: the score column whole,
# the vectors in windows of rows in score order, each read in one sequential sweep.

UNSCORED_POLICIES = ("raise", "leave_out")
# The most memory one window of candidate vectors (float32) may take; at least one block is read at a time.
WINDOW_BYTES = 256 * 2**20


def rows_text(rows: Sequence[int]) -> str:
    """``"row 3"``, ``"rows 1, 3"``, ..., the first few rows named and the count of the others."""
    shown = ", ".join(str(int(r)) for r in rows[:_SHOWN_ROWS])
    more = f" and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def require_column(reader: PoolReader, name: str, argument: str) -> pa.DataType:
    """The Arrow type of the pool's column ``name``, or a ``KeyError`` that names the argument."""
    if name not in reader.column_names:
        raise KeyError(
            f"{argument}={name!r} is not a column of the pool; its columns are {reader.column_names}. "
            f"Add it first (deita_score / Embedder) or pass {argument}=<column name>."
        )
    return reader.field_type(name)


def check_unscored(unscored: Any) -> None:
    if unscored not in UNSCORED_POLICIES:
        raise ConfigError(f"unscored must be one of {UNSCORED_POLICIES}, got {unscored!r}")


def read_scores(reader: PoolReader, name: str, unscored: str = "raise") -> np.ndarray:
    """The score column as float64 (read whole: 8 bytes a row). A row without a score (missing or NaN) is an
    error naming the rows, or with ``unscored="leave_out"`` NaN, for the caller to leave out."""
    check_unscored(unscored)
    kind = require_column(reader, name, "score_column")
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise TypeError(f"score column {name!r} must be numeric, got Arrow type {kind}")
    column = reader.column(name)
    if column.null_count and unscored == "raise":
        rows = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
        raise SelectionInputError(f"score column {name!r} is missing (null) in {rows_text(rows)}", rows)
    # Nulls become NaN.
    scores = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    if unscored == "raise":
        bad = np.flatnonzero(np.isnan(scores))
        if len(bad):
            raise SelectionInputError(
                f"score column {name!r} is NaN in {rows_text(bad)}; score these rows again or drop them first "
                "(or pass unscored='leave_out')",
                bad,
            )
    return scores


def score_order(scores: np.ndarray) -> np.ndarray:
    """The rows with a score, highest first, ties in row order; rows without one (NaN) are left out, and
    logged."""
    # A stable sort of the negated scores; NaN sorts last.
    order = np.argsort(-scores, kind="stable")
    unscored = int(np.isnan(scores).sum())
    if unscored:
        logger.info("%d row(s) without a score (missing or NaN) are left out of the selection", unscored)
    return order[: len(order) - unscored]


def check_vector_type(kind: pa.DataType, name: str) -> None:
    value_type = getattr(kind, "value_type", None)
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)) or not (
        pa.types.is_floating(value_type) or pa.types.is_integer(value_type)
    ):
        raise TypeError(f"embedding column {name!r} must hold lists of numbers, got Arrow type {kind}")


@dataclass
class Vectors:
    """Vectors read from the pool: ``values`` a float32 ``(rows, dim)`` array (a null value inside a vector
    is NaN), and the rows whose vector is ``missing`` (null) or of another ``length`` than ``dim`` (their
    values are zeros; ``length`` holds each row's length)."""

    values: np.ndarray
    missing: np.ndarray
    length: np.ndarray

    def refuse_bad_shapes(self, rows: np.ndarray, name: str, dim: int, first_row: int) -> None:
        """An error naming ``rows`` (the pool rows of these vectors) that are missing or of another length."""
        if self.missing.any():
            bad = rows[self.missing]
            raise SelectionInputError(f"embedding column {name!r} is missing (null) in {rows_text(bad)}", bad)
        odd = self.length != dim
        if odd.any():
            bad = rows[odd]
            if dim == 0:
                raise SelectionInputError(f"embedding column {name!r} holds empty vectors in {rows_text(bad)}", bad)
            raise SelectionInputError(
                f"embedding column {name!r} holds vectors of different lengths: row {first_row} has {dim} values "
                f"but {rows_text(bad)} {'have' if len(bad) > 1 else 'has'} {int(self.length[odd][0])}"
                f"{' (first shown)' if len(bad) > 1 else ''}; embed all rows with the same model",
                bad,
            )


def to_vectors(column: pa.Array | pa.ChunkedArray, dim: int) -> Vectors:
    """A list column as :class:`Vectors` of length ``dim``."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    missing = column.is_null().to_numpy(zero_copy_only=False)
    length = np.nan_to_num(pc.list_value_length(column).to_numpy(zero_copy_only=False), nan=-1).astype(np.int64)
    fits = (length == dim) & ~missing
    if not fits.all():
        values = np.zeros((n, dim), dtype=np.float32)
        if fits.any():
            values[fits] = to_vectors(column.filter(pa.array(fits)), dim).values
        return Vectors(values, missing, np.where(missing, dim, length))
    # flatten() honours the array's offset; without nulls, to_numpy() does not copy.
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return Vectors(np.asarray(flat, dtype=np.float32).reshape(n, dim), missing, length)


def checked_vectors(column: pa.Array | pa.ChunkedArray, rows: np.ndarray, name: str) -> np.ndarray:
    """The vectors of ``column`` (those of the pool rows ``rows``) as float32 ``(len(rows), dim)``, ``dim``
    the length of the first; a missing vector or one of another length is an error naming the rows (for the
    baselines, which judge every row they take)."""
    dim = first_length(column)
    vectors = to_vectors(column, dim)
    vectors.refuse_bad_shapes(rows, name, dim, int(rows[0]) if len(rows) else 0)
    return vectors.values


def first_length(column: pa.ChunkedArray | pa.Array) -> int:
    """The length of the column's first vector (0 for none or a null)."""
    if len(column) == 0 or not column[0].is_valid:
        return 0
    return len(column[0])


class CandidateWindow:
    """The vectors of the candidates in score order, read ahead a window at a time: the rows ``order[a:b]``
    in one sweep of the pool (:meth:`PoolReader.pieces`), at most :data:`WINDOW_BYTES` of float32 vectors but
    at least the rows asked for, converted batch by batch into one float32 array. With ``columns``, the
    window also holds those columns of its rows (to build an output without reading the pool again)."""

    def __init__(self, reader: PoolReader, name: str, order: np.ndarray, columns: Sequence[str] = ()):
        self.reader, self.name, self.order, self.columns = reader, name, order, list(columns)
        self.start = self.stop = 0
        self.vectors: Vectors | None = None
        self.parts: list[pa.Table] = []
        # The vector length: that of the first candidate (read alone, to size the windows).
        first = reader.take(order[:1], [name]).column(name) if len(order) else pa.chunked_array([], pa.null())
        self.dim = first_length(first)
        self.first_row = int(order[0]) if len(order) else 0
        self.max_rows = max(1, WINDOW_BYTES // (4 * max(self.dim, 1)))

    def read(self, a: int, b: int, ahead: int) -> tuple[Vectors, pa.Table | None]:
        """The vectors of the candidates ``order[a:b]`` (and a table of their ``columns``); when they are not
        in the window, the next window starts at ``a`` and holds about ``ahead`` candidates (those likely
        still needed)."""
        if a < self.start or b > self.stop:
            self._load(a, min(len(self.order), max(b, a + min(ahead, self.max_rows))))
        i, j = a - self.start, b - self.start
        part = Vectors(self.vectors.values[i:j], self.vectors.missing[i:j], self.vectors.length[i:j])
        return part, self._table(i, j) if self.columns else None

    def _load(self, start: int, stop: int) -> None:
        self.vectors, self.parts = None, []  # free the old window before the new one is read
        rows = self.order[start:stop]
        n = len(rows)
        values = np.zeros((n, self.dim), dtype=np.float32)
        missing = np.zeros(n, dtype=bool)
        length = np.full(n, self.dim, dtype=np.int64)
        # Where each candidate's columns are: which piece, which row of it.
        self.piece = np.zeros(n, dtype=np.int64)
        self.local = np.zeros(n, dtype=np.int64)
        for slots, piece in self.reader.pieces(rows, list(dict.fromkeys([self.name, *self.columns]))):
            vectors = to_vectors(piece.column(self.name), self.dim)
            values[slots], missing[slots], length[slots] = vectors.values, vectors.missing, vectors.length
            if self.columns:
                self.piece[slots], self.local[slots] = len(self.parts), np.arange(len(slots))
                self.parts.append(piece.select(self.columns))
        self.vectors = Vectors(values, missing, length)
        self.start, self.stop = start, stop

    def _table(self, i: int, j: int) -> pa.Table:
        """The ``columns`` of the window's candidates ``i`` to ``j``, in that order (a copy of those rows)."""
        pieces, local = self.piece[i:j], self.local[i:j]
        used = np.unique(pieces)
        gathered = pa.concat_tables([self.parts[p].take(pa.array(local[pieces == p])) for p in used])
        # Gathered piece by piece; back to the candidates' order.
        by_piece = np.argsort(np.searchsorted(used, pieces), kind="stable")
        where = np.empty(j - i, dtype=np.int64)
        where[by_piece] = np.arange(j - i)
        return gathered.take(pa.array(where))


def unit_block_marked(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unit vectors of a block, and which rows have a NaN or infinite value or are zero vectors. A bad
    row's vector is set to zeros, so that it cannot change what is decided for the rows before it."""
    finite = np.isfinite(vectors).all(axis=1)
    unit = unit_rows(np.where(finite[:, None], vectors, 0))
    zero = finite & ~np.isfinite(unit).all(axis=1)
    unit[~finite | zero] = 0
    return unit, ~finite, zero


def unit_block(vectors: np.ndarray, rows: np.ndarray, name: str) -> np.ndarray:
    """The unit vectors of ``rows``; a zero or non-finite vector among them is an error naming its rows."""
    unit, nonfinite, zero = unit_block_marked(vectors)
    refuse_bad_vectors(rows, nonfinite, zero, name)
    return unit


def refuse_bad_vectors(rows: np.ndarray, nonfinite: np.ndarray, zero: np.ndarray, name: str) -> None:
    if nonfinite.any():
        bad = rows[nonfinite]
        raise SelectionInputError(f"embedding column {name!r} has NaN or infinite values in {rows_text(bad)}", bad)
    if zero.any():
        bad = rows[zero]
        raise SelectionInputError(
            f"embedding column {name!r} has a zero vector in {rows_text(bad)}; a zero vector has no direction to "
            "compare",
            bad,
        )


# -- the selection ---------------------------------------------------------------------------------------
def check_threshold(threshold: Any, name: str = "threshold") -> None:
    """The one check of a threshold, for :func:`deita_select` and the ``deita-hf`` command alike: a cosine
    similarity, a number in [-1, 1] (above 1 nothing is ever too similar; below -1 everything is)."""
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float, np.floating, np.integer))
        or not -1.0 <= threshold <= 1.0
    ):
        raise ConfigError(f"{name} is a cosine similarity, a number in [-1, 1] (e.g. 0.9), got {threshold!r}")


def check_arguments(budget: Any, threshold: Any, block_size: Any) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ConfigError(f"budget must be a whole number of rows, at least 1, got {budget!r}")
    check_threshold(threshold)
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ConfigError(f"block_size must be a whole number, at least 1, got {block_size!r}")


class _Block:
    """One block of candidates, compared with the selected rows and with itself by one matrix product.

    ``unit`` are the candidates' unit vectors (host), ``against_selected`` and ``within`` the float32
    similarities (device); ``margin`` is the float32 error bound around the threshold.
    """

    def __init__(self, unit, against_selected, within, threshold, margin, host, lower):
        self.unit, self.against_selected, self.within = unit, against_selected, within
        self.threshold, self.low, self.high = threshold, threshold - margin, threshold + margin
        self.host, self.lower = host, lower
        self.device = within.device
        size = len(unit)
        if against_selected.shape[1]:
            self.best = against_selected.max(dim=1).values
        else:
            self.best = torch.full((size,), -math.inf, device=self.device)

    def _exceeds(self, pairs_i: np.ndarray, others: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """``exceeds`` for the pairs ``(unit[pairs_i[k]], others[k])``, a bounded number at a time."""
        out = np.empty(len(pairs_i), dtype=bool)
        for s in range(0, len(pairs_i), chunk):
            out[s : s + chunk] = exceeds(self.unit[pairs_i[s : s + chunk]], others[s : s + chunk], self.threshold)
        return out

    def rejected_by_selected(self) -> np.ndarray:
        """Candidates with a selected row above the threshold: surely (float32), or by the exact check."""
        best = self.best.cpu().numpy()
        rejected = best > self.high
        unsure = np.flatnonzero(~rejected & (best >= self.low))
        if len(unsure):
            near = self.against_selected[torch.from_numpy(unsure).to(self.device)]
            pi, pj = (x.cpu().numpy() for x in torch.nonzero(near >= self.low, as_tuple=True))
            pi = unsure[pi]
            rejected[np.unique(pi[self._exceeds(pi, self.host[pj])])] = True
        return rejected

    def kept(self, alive: np.ndarray) -> np.ndarray:
        """Greedy in order inside the block: an alive candidate is kept unless it is above the threshold
        with an earlier candidate of the block that was kept."""
        size = len(alive)
        lower = self.lower[:size, :size]
        ci, cj = (x.cpu().numpy() for x in torch.nonzero((self.within >= self.low) & lower, as_tuple=True))
        both_alive = alive[ci] & alive[cj]
        ci, cj = ci[both_alive], cj[both_alive]
        if len(ci):
            values = self.within[torch.from_numpy(ci).to(self.device), torch.from_numpy(cj).to(self.device)]
            conflict = values.cpu().numpy() > self.high
            check = np.flatnonzero(~conflict)
            conflict[check] = self._exceeds(ci[check], self.unit[cj[check]])
            ci, cj = ci[conflict], cj[conflict]
        kept = alive.copy()
        if len(ci):
            by_row = np.argsort(ci, kind="stable")
            ci, cj = ci[by_row], cj[by_row]
            starts = np.searchsorted(ci, np.arange(size + 1))
            for i in np.unique(ci):  # only the candidates with a conflict, in order
                if kept[i] and kept[cj[starts[i] : starts[i + 1]]].any():
                    kept[i] = False
        return kept

    def nearest(self, positions: np.ndarray) -> np.ndarray:
        """For the kept candidates at ``positions``, the highest similarity to the rows kept before them
        (NaN for none). A kept row's exact similarities are all at most the threshold, so the float32
        values are clamped there."""
        kept = torch.from_numpy(positions).to(self.device)
        n = len(positions)
        among_kept = self.within[kept][:, kept].masked_fill(~self.lower[:n, :n], -math.inf)
        nearest = torch.maximum(self.best[kept], among_kept.max(dim=1).values).cpu().numpy().astype(np.float64)
        nearest = np.minimum(nearest, self.threshold)
        nearest[np.isneginf(nearest)] = math.nan
        return nearest


def select_indices(
    pool: Dataset | ParquetPool | str | os.PathLike,
    budget: int,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    score_column: str = SCORE_COLUMN,
    embedding_column: str = EMBEDDING_COLUMN,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: str | torch.device | None = None,
    progress: bool = True,
    unscored: str = "raise",
    columns: Sequence[str] = (),
) -> SelectionResult:
    """The rows that the Repr Filter selects from ``pool``, in selection order (SPEC section 7).

    Args:
        pool: a ``datasets.Dataset`` with a score column and an embedding column, or Parquet files holding
            them (a :class:`deita_hf.pool.ParquetPool`, or the path of a ``pool/`` folder, of a folder of
            ``*.parquet`` files or of one file), read without a copy.
        budget: how many rows to select (at least 1); fewer come back if the pool runs out first.
        threshold: a candidate is rejected iff its cosine similarity to a selected row is above this
            (default 0.9); a similarity exactly at the threshold is kept.
        score_column: any numeric column (default ``deita_score``); higher scores are taken first, ties in
            the original row order.
        embedding_column: vectors, all of one length (default ``embedding``); stored unnormalised.
        block_size: at most this many candidates per matrix product (a speed/memory knob; the result does
            not depend on it).
        device: where the products run; default a GPU when there is one, else the CPU.
        progress: show a progress bar over the selected rows.
        unscored: a row without a score (missing or NaN, as scoring with ``on_error="nan"`` leaves an
            unreadable row) is an error (``"raise"``, the default), or is left out and counted in
            ``left_out`` (``"leave_out"``, what ``deita-hf select`` does).
        columns: these columns of the selected rows come back in ``result.rows`` (a ``pyarrow.Table`` in
            selection order), read in the same sweep as the candidates' vectors (how the output of a Parquet
            pool is built without reading it again).

    Raises:
        SelectionInputError: a NaN or missing score (unless left out), anywhere in the pool; a missing, zero or
            non-finite vector, or one of another length than the first candidate's, in a row that the sequential
            loop examines (the rows in score order up to the one that fills the budget; rows after it are not
            judged, whatever ``block_size``). The message names the rows.
        KeyError: a column that the pool does not have.

    >>> import numpy as np
    >>> from datasets import Dataset
    >>> pool = Dataset.from_dict({"deita_score": [1.0, 3.0, 2.0],
    ...                           "embedding": np.array([[1, 0], [1, 0.01], [0, 1]], dtype=np.float32)})
    >>> result = select_indices(pool, budget=3, progress=False)
    >>> result.indices, result.examined, result.rejected
    ([1, 2], 3, 1)
    """
    reader = open_pool(pool)
    check_arguments(budget, threshold, block_size)
    threshold = float(threshold)
    budget = int(budget)
    scores = read_scores(reader, score_column, unscored)
    check_vector_type(require_column(reader, embedding_column, "embedding_column"), embedding_column)
    order = score_order(scores)
    n = len(order)
    capacity = min(budget, n)
    device = resolve_device(device)
    window = CandidateWindow(reader, embedding_column, order, columns)
    if n and window.dim == 0:  # the first candidate has no vector, or an empty one
        first = order[:1]
        vectors, _ = window.read(0, 1, 1)
        vectors.refuse_bad_shapes(first, embedding_column, 0, window.first_row)
        raise SelectionInputError(
            f"embedding column {embedding_column!r} holds empty vectors in {rows_text(first)}", first
        )
    dim = max(window.dim, 1)
    margin = float32_error_bound(dim)
    # The selected unit vectors, then room for one block, which is compared with itself in the same
    # product. Only finite values (zeros at first): a product's width is rounded up past the block. On the
    # CPU, the tensor and its host copy (read by the exact checks) are one buffer.
    host = np.zeros((capacity + block_size + _COLUMN_MULTIPLE, dim), dtype=np.float32)
    if device.type == "cpu":
        selected = torch.from_numpy(host)
    else:
        selected = torch.zeros(host.shape, dtype=torch.float32, device=device)
    # Strictly lower triangle: candidate i is compared with the candidates j < i of its block.
    lower = torch.ones((block_size, block_size), dtype=torch.bool, device=device).tril(-1)
    # One buffer for every block's similarities, rather than fresh memory per block.
    products = torch.empty(block_size * host.shape[0], dtype=torch.float32, device=device)
    indices: list[int] = []
    similarities: list[float] = []
    kept_rows: list[pa.Table] = []
    examined = 0
    bar = tqdm(total=capacity, desc="selecting", unit="row", disable=not progress)
    with exact_float32_matmul():
        while len(indices) < capacity and examined < n:
            k = len(indices)
            # What is likely still needed, judged from the acceptance rate so far: the block's size, and how
            # far the next window reads ahead.
            rate = k / examined if examined else 1.0
            needed = math.ceil((capacity - k) / max(rate, 1e-3) * 1.1) + 16
            size = min(block_size, needed, n - examined)
            rows = order[examined : examined + size]
            vectors, table = window.read(examined, examined + size, max(needed, block_size))
            unit, nonfinite, zero = unit_block_marked(vectors.values)
            selected[k : k + size] = torch.from_numpy(unit).to(device)
            # Against the selected rows, then against the block itself. A product whose width is a
            # multiple of 16 runs up to 1.4x faster on a CPU; the extra columns are ignored.
            width = -(-(k + size) // _COLUMN_MULTIPLE) * _COLUMN_MULTIPLE
            sims = torch.matmul(
                selected[k : k + size], selected[:width].T, out=products[: size * width].view(size, width)
            )
            block = _Block(unit, sims[:, :k], sims[:, k : k + size], threshold, margin, host, lower)
            kept = np.flatnonzero(block.kept(~block.rejected_by_selected()))

            if k + len(kept) >= capacity:  # the budget fills inside this block
                kept = kept[: capacity - k]
                seen = int(kept[-1]) + 1
            else:
                seen = size
            # A bad vector is an error where the sequential loop reaches its row, whatever the block size.
            judged = Vectors(vectors.values[:seen], vectors.missing[:seen], vectors.length[:seen])
            judged.refuse_bad_shapes(rows[:seen], embedding_column, window.dim, window.first_row)
            refuse_bad_vectors(rows[:seen], nonfinite[:seen], zero[:seen], embedding_column)
            examined += seen
            if len(kept) == 0:
                continue
            similarities.extend(block.nearest(kept).tolist())
            # The kept rows' vectors join the selected set, in order.
            selected[k : k + len(kept)] = torch.from_numpy(unit[kept]).to(device)
            if device.type != "cpu":
                host[k : k + len(kept)] = unit[kept]
            indices.extend(int(r) for r in rows[kept])
            if table is not None:
                kept_rows.append(table.take(pa.array(kept)))
            bar.update(len(kept))
            bar.set_postfix(examined=examined, refresh=False)
    bar.close()
    del window, host, selected, products
    pa.default_memory_pool().release_unused()  # the windows' memory, before the caller builds its output
    if len(indices) < budget:
        logger.info("the pool ran out: selected %d of a budget of %d from %d rows", len(indices), budget, n)
    result = SelectionResult(
        indices=indices,
        similarities=similarities,
        examined=examined,
        rejected=examined - len(indices),
        left_out=len(scores) - n,
    )
    if columns:
        result.rows = pa.concat_tables(kept_rows) if kept_rows else reader.take([], columns)
    return result
