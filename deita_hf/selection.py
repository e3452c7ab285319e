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
- the embeddings are read through the public ``datasets`` API (one column, Arrow format, looked up by row),
  one block at a time in score order, so memory is the selected set plus one block, whatever the pool's
  size; the pool may be in memory, memory-mapped from disk, or a view (``select``, ``shuffle``...).

Rows without a score follow one rule everywhere (``unscored``: an error, or left out and counted), and
:func:`deita_select` and ``deita-hf select`` build their output with the one :func:`selection_dataset`.
The helpers without a leading underscore in the reading section are shared with
:mod:`deita_hf.strategies`; :mod:`deita_hf` exports only the selection functions.

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
from collections.abc import Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from tqdm.auto import tqdm

from .constants import DEFAULT_THRESHOLD, EMBEDDING_COLUMN, SCORE_COLUMN
from .errors import ConfigError, DataError
from .modeling import resolve_device

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
    """

    indices: list[int]
    similarities: list[float]
    examined: int
    rejected: int
    left_out: int = 0


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
# Used by deita_hf.strategies too: the pool is read only through these, and only through the public datasets
# API (``select_columns``, ``with_format("arrow")``, row lookups, ``select``), in bounded blocks.

# Rows per read when a whole column is scanned (the vector lengths); a block of 4,096-float vectors is 16 MB.
SCAN_ROWS = 1024
UNSCORED_POLICIES = ("raise", "leave_out")


def check_dataset(dataset: Any) -> None:
    """A ``datasets.Dataset``, or a ``TypeError`` that says what to pass."""
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        hint = " (select a split first, e.g. dataset['train'])" if type(dataset).__name__ == "DatasetDict" else ""
        raise TypeError(f"the pool must be a datasets.Dataset, got {type(dataset).__name__}{hint}")


def rows_text(rows: Sequence[int]) -> str:
    """``"row 3"``, ``"rows 1, 3"``, ..., the first few rows named and the count of the others."""
    shown = ", ".join(str(int(r)) for r in rows[:_SHOWN_ROWS])
    more = f" and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def column_reader(dataset: Any, name: str, argument: str) -> tuple[Any, pa.DataType]:
    """The dataset's column ``name`` alone, formatted as Arrow (``reader[rows]`` is a ``pyarrow.Table`` of
    those rows, a view's own rows included), and its Arrow type."""
    if name not in dataset.column_names:
        raise KeyError(
            f"{argument}={name!r} is not a column of the pool; its columns are {dataset.column_names}. "
            f"Add it first (deita_score / Embedder) or pass {argument}=<column name>."
        )
    # select_columns first: a row lookup gathers every column of the dataset it is made on.
    reader = dataset.select_columns([name]).with_format("arrow")
    return reader, reader[0:0].schema.field(name).type


def check_unscored(unscored: Any) -> None:
    if unscored not in UNSCORED_POLICIES:
        raise ConfigError(f"unscored must be one of {UNSCORED_POLICIES}, got {unscored!r}")


def read_scores(dataset: Any, name: str, unscored: str = "raise") -> np.ndarray:
    """The score column as float64 (read whole: 8 bytes a row). A row without a score (missing or NaN) is an
    error naming the rows, or with ``unscored="leave_out"`` NaN, for the caller to leave out."""
    check_unscored(unscored)
    reader, kind = column_reader(dataset, name, "score_column")
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise TypeError(f"score column {name!r} must be numeric, got Arrow type {kind}")
    column = reader[:][name]
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


class VectorReader:
    """Rows of the embedding column, by dataset row index, as ``(rows, d)`` arrays, through the public API.

    Opening it checks the whole column's lengths and missing vectors in blocks of :data:`SCAN_ROWS` rows
    (from the list offsets: the values are not read unless the dataset is a view); :meth:`read` copies only
    the rows asked for.
    """

    def __init__(self, dataset: Any, name: str):
        self.reader, self.type = column_reader(dataset, name, "embedding_column")
        value_type = getattr(self.type, "value_type", None)
        if not (
            pa.types.is_list(self.type) or pa.types.is_large_list(self.type) or pa.types.is_fixed_size_list(self.type)
        ) or not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
            raise TypeError(f"embedding column {name!r} must hold lists of numbers, got Arrow type {self.type}")
        self.name = name
        self.dim = 0
        missing: list[np.ndarray] = []
        odd: list[np.ndarray] = []
        odd_length = 0
        for start in range(0, len(dataset), SCAN_ROWS):
            column = self.reader[start : start + SCAN_ROWS][name]
            if column.null_count:
                missing.append(start + np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False)))
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            if start == 0 and len(lengths):
                self.dim = 0 if np.isnan(lengths[0]) else int(lengths[0])
            wrong = np.flatnonzero((lengths != self.dim) & ~np.isnan(lengths))
            if len(wrong):
                odd_length = odd_length or int(lengths[wrong[0]])
                odd.append(start + wrong)
        if missing:
            rows = np.concatenate(missing)
            raise SelectionInputError(f"embedding column {name!r} is missing (null) in {rows_text(rows)}", rows)
        if odd:
            rows = np.concatenate(odd)
            raise SelectionInputError(
                f"embedding column {name!r} holds vectors of different lengths: row 0 has {self.dim} values but "
                f"{rows_text(rows)} {'have' if len(rows) > 1 else 'has'} {odd_length}"
                f"{' (first shown)' if len(rows) > 1 else ''}; embed all rows with the same model",
                rows,
            )
        if len(dataset) and self.dim == 0:
            raise SelectionInputError(f"embedding column {name!r} holds empty vectors", np.arange(len(dataset)))

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of ``rows`` (dataset row indices, any order) as a float32 ``(len(rows), d)`` array; a
        null value inside a vector becomes NaN."""
        if len(rows) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        column = self.reader[np.asarray(rows, dtype=np.int64)][self.name].combine_chunks()
        # flatten() honours the array's offset; without nulls, to_numpy() does not copy.
        values = column.flatten().to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype=np.float32).reshape(len(rows), self.dim)

    def close(self) -> None:
        """Nothing to release (kept so that ``contextlib.closing`` reads the same)."""


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
    dataset: Any,
    budget: int,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    score_column: str = SCORE_COLUMN,
    embedding_column: str = EMBEDDING_COLUMN,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: str | torch.device | None = None,
    progress: bool = True,
    unscored: str = "raise",
) -> SelectionResult:
    """The rows that the Repr Filter selects from ``dataset``, in selection order (SPEC section 7).

    Args:
        dataset: the pool, a ``datasets.Dataset`` with a score column and an embedding column.
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

    Raises:
        SelectionInputError: a NaN or missing score (unless left out), or a missing vector, anywhere in the pool; a zero or
            non-finite vector in a row that the sequential loop examines (the rows in score order up to the one
            that fills the budget; rows after it are not judged, whatever ``block_size``); vectors of different
            lengths. The message names the rows.
        KeyError: a column that the pool does not have.

    >>> import numpy as np
    >>> from datasets import Dataset
    >>> pool = Dataset.from_dict({"deita_score": [1.0, 3.0, 2.0],
    ...                           "embedding": np.array([[1, 0], [1, 0.01], [0, 1]], dtype=np.float32)})
    >>> result = select_indices(pool, budget=3, progress=False)
    >>> result.indices, result.examined, result.rejected
    ([1, 2], 3, 1)
    """
    check_dataset(dataset)
    check_arguments(budget, threshold, block_size)
    threshold = float(threshold)
    budget = int(budget)
    scores = read_scores(dataset, score_column, unscored)
    reader = VectorReader(dataset, embedding_column)
    order = score_order(scores)
    n = len(order)
    capacity = min(budget, n)
    device = resolve_device(device)
    dim = max(reader.dim, 1)
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
    examined = 0
    bar = tqdm(total=capacity, desc="selecting", unit="row", disable=not progress)
    with exact_float32_matmul(), closing(reader):
        while len(indices) < capacity and examined < n:
            k = len(indices)
            # Size the block to what is likely still needed, judged from the acceptance rate so far.
            rate = k / examined if examined else 1.0
            size = min(block_size, math.ceil((capacity - k) / max(rate, 1e-3) * 1.1) + 16, n - examined)
            rows = order[examined : examined + size]
            unit, nonfinite, zero = unit_block_marked(reader.read(rows))
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
            bar.update(len(kept))
            bar.set_postfix(examined=examined, refresh=False)
    bar.close()
    if len(indices) < budget:
        logger.info("the pool ran out: selected %d of a budget of %d from %d rows", len(indices), budget, n)
    return SelectionResult(
        indices=indices,
        similarities=similarities,
        examined=examined,
        rejected=examined - len(indices),
        left_out=len(scores) - n,
    )


def deita_select(
    dataset: Any,
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
    seed: int = 42,
    unscored: str = "raise",
) -> Any:
    """The rows of the pool that the Repr Filter selects, as a ``datasets.Dataset`` in selection order.

    Every column of the pool comes back unchanged, plus ``similarity_column`` (float64): each row's highest
    cosine similarity to the rows selected before it, NaN for the first (``None`` leaves it out). The
    selection for a budget is a prefix of the selection for any larger budget. Arguments as in
    :func:`select_indices`.

    ``strategy`` picks one of the paper's baselines instead of the Repr Filter: ``score``, ``complexity``,
    ``quality``, ``length`` or ``random`` (drawn from ``seed``); see :mod:`deita_hf.strategies`.

    >>> import numpy as np
    >>> from datasets import Dataset
    >>> pool = Dataset.from_dict({"id": ["a", "b", "c"], "deita_score": [1.0, 3.0, 2.0],
    ...                           "embedding": np.array([[1, 0], [1, 0.01], [0, 1]], dtype=np.float32)})
    >>> list(deita_select(pool, budget=2, progress=False)["id"])
    ['b', 'c']
    """
    check_dataset(dataset)
    if similarity_column is not None and similarity_column in dataset.column_names:
        raise ConfigError(
            f"the pool already has a column {similarity_column!r}; remove it (dataset.remove_columns) or pass "
            "another similarity_column name (or None)"
        )
    from .strategies import strategy_indices

    result = strategy_indices(
        dataset,
        budget,
        strategy,
        threshold=threshold,
        seed=seed,
        score_column=score_column,
        embedding_column=embedding_column,
        block_size=block_size,
        device=device,
        progress=progress,
        unscored=unscored,
    )
    return selection_dataset(dataset, result.indices, result.similarities, similarity_column)


def selection_dataset(
    dataset: Any, indices: Sequence[int], similarities: Sequence[float], similarity_column: str | None
) -> Any:
    """The rows ``indices`` of ``dataset``, in that order, as a new in-memory dataset: every column and
    feature unchanged, plus ``similarity_column`` (float64; ``None`` for none). The one output of
    :func:`deita_select` and of ``deita-hf select``; its fingerprint follows the pool's and the rows, as a
    ``datasets`` transform's does.
    """
    from datasets import Value

    selected = dataset.select(indices).flatten_indices(keep_in_memory=True)
    if similarity_column is None:
        return selected
    return selected.add_column(similarity_column, [float(s) for s in similarities], feature=Value("float64"))
