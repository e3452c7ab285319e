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
- the embeddings are read from the dataset's Arrow table (memory-mapped for a dataset on disk), one block
  at a time in score order, so memory is the selected set plus one block, whatever the pool's size.

>>> import numpy as np
>>> from datasets import Dataset
>>> pool = Dataset.from_dict({"deita_score": [3.0, 2.0, 1.0],
...                           "embedding": np.array([[1, 0], [0.99, 0.1], [0, 1]], dtype=np.float32)})
>>> select_indices(pool, budget=2, progress=False).indices
[0, 2]
"""

from __future__ import annotations

import bisect
import logging
import math
import os
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
    """

    indices: list[int]
    similarities: list[float]
    examined: int
    rejected: int


class SelectionInputError(DataError):
    """Bad input to the selection: a NaN score, a zero or non-finite vector, ... ``rows`` names them."""

    def __init__(self, message: str, rows: Sequence[int] = ()):
        self.rows = list(rows)
        super().__init__(message)


def _rows_text(rows: Sequence[int]) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:_SHOWN_ROWS])
    more = f" and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


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
def _exact_float32_matmul():
    """Matrix products in true float32 (no TF32 or bf16 shortcuts), which the error bound assumes."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


# -- reading the pool --------------------------------------------------------------------------------------
def _check_dataset(dataset: Any) -> None:
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        hint = " (select a split first, e.g. dataset['train'])" if type(dataset).__name__ == "DatasetDict" else ""
        raise TypeError(f"the pool must be a datasets.Dataset, got {type(dataset).__name__}{hint}")


def _column(dataset: Any, name: str, argument: str) -> pa.ChunkedArray:
    if name not in dataset.column_names:
        raise KeyError(
            f"{argument}={name!r} is not a column of the pool; its columns are {dataset.column_names}. "
            f"Add it first (deita_score / Embedder) or pass {argument}=<column name>."
        )
    return dataset.data.table.column(name)


def _table_rows(dataset: Any) -> np.ndarray | None:
    """The Arrow table row of each dataset row, where the dataset is a view (``select``, ``shuffle``...)."""
    indices = getattr(dataset, "_indices", None)
    if indices is None:
        return None
    return indices.column(0).to_numpy().astype(np.int64)


def _scores(dataset: Any, name: str, table_rows: np.ndarray | None) -> np.ndarray:
    column = _column(dataset, name, "score_column")
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise TypeError(f"score column {name!r} must be numeric, got Arrow type {column.type}")
    if table_rows is not None:
        column = column.take(pa.array(table_rows))
    if column.null_count:
        rows = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
        raise SelectionInputError(f"score column {name!r} is missing (null) in {_rows_text(rows)}", rows)
    scores = column.to_numpy().astype(np.float64)
    bad = np.flatnonzero(np.isnan(scores))
    if len(bad):
        raise SelectionInputError(
            f"score column {name!r} is NaN in {_rows_text(bad)}; score these rows again or drop them first", bad
        )
    return scores


class _MappedFiles:
    """The files behind this process's memory mappings (Linux ``/proc/self/maps``).

    Rows of a memory-mapped Arrow file are read from the file with ``os.pread`` rather than through the
    mapping: a page fault maps the neighbouring pages of the file too (read-around), so reading scattered
    rows through the mapping makes most of the pool resident; a read copies just the row. Where there is
    no ``/proc/self/maps`` (or the data is in memory), rows are read through the mapping.
    """

    def __init__(self) -> None:
        self.segments: list[tuple[int, int, int, str]] = []  # start, end, file offset, path
        try:
            with open("/proc/self/maps") as maps:
                for line in maps:
                    fields = line.split(maxsplit=5)
                    if len(fields) == 6 and fields[5].startswith("/") and not fields[5].rstrip().endswith("(deleted)"):
                        start, end = (int(x, 16) for x in fields[0].split("-"))
                        self.segments.append((start, end, int(fields[2], 16), fields[5].rstrip("\n")))
        except OSError:
            pass
        self.segments.sort()
        self.starts = [segment[0] for segment in self.segments]
        self.descriptors: dict[str, int] = {}

    def locate(self, address: int, size: int) -> tuple[int, int] | None:
        """An open file descriptor and the offset in it of ``size`` mapped bytes at ``address``, or None."""
        i = bisect.bisect_right(self.starts, address) - 1
        if i < 0 or address + size > self.segments[i][1]:
            return None
        start, _, offset, path = self.segments[i]
        if path not in self.descriptors:
            try:
                descriptor = os.open(path, os.O_RDONLY)
            except OSError:
                return None
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_RANDOM)  # no read-ahead of other rows
            self.descriptors[path] = descriptor
        return self.descriptors[path], offset + address - start

    def close(self) -> None:
        for descriptor in self.descriptors.values():
            os.close(descriptor)
        self.descriptors.clear()


class _EmbeddingReader:
    """Reads rows of the embedding column, by dataset row index, as a ``(rows, d)`` array.

    A chunk of a memory-mapped file is read row by row from the file (see :class:`_MappedFiles`); a chunk
    in memory is seen as an ``(n, d)`` array without copying. Either way a read copies only its rows.
    """

    def __init__(self, dataset: Any, name: str, table_rows: np.ndarray | None):
        column = _column(dataset, name, "embedding_column")
        value_type = getattr(column.type, "value_type", None)
        if not (
            pa.types.is_list(column.type)
            or pa.types.is_large_list(column.type)
            or pa.types.is_fixed_size_list(column.type)
        ) or not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
            raise TypeError(f"embedding column {name!r} must hold lists of numbers, got Arrow type {column.type}")
        self.name = name
        self.type = column.type
        self.table_rows = table_rows
        lengths = pc.list_value_length(column)
        if table_rows is not None:
            lengths = lengths.take(pa.array(table_rows))
        if lengths.null_count:
            rows = np.flatnonzero(lengths.is_null().to_numpy(zero_copy_only=False))
            raise SelectionInputError(f"embedding column {name!r} is missing (null) in {_rows_text(rows)}", rows)
        lengths = lengths.to_numpy()
        if len(lengths) == 0:
            self.dim = 0
        else:
            self.dim = int(lengths[0])
            odd = np.flatnonzero(lengths != self.dim)
            if len(odd):
                raise SelectionInputError(
                    f"embedding column {name!r} holds vectors of different lengths: row 0 has {self.dim} values but "
                    f"{_rows_text(odd)} {'have' if len(odd) > 1 else 'has'} {int(lengths[odd[0]])}"
                    f"{' (first shown)' if len(odd) > 1 else ''}; embed all rows with the same model",
                    odd,
                )
            if self.dim == 0:
                raise SelectionInputError(f"embedding column {name!r} holds empty vectors", np.arange(len(lengths)))
        self.chunks = [chunk for chunk in column.chunks if len(chunk)]
        self.starts = np.cumsum([0] + [len(chunk) for chunk in self.chunks])
        self.files = _MappedFiles()
        self._sources: dict[int, Any] = {}

    def _source(self, c: int) -> Any:
        """Chunk ``c`` as an ``(n, d)`` array, or as (file descriptor, offset, dtype) of its values."""
        source = self._sources.get(c)
        if source is None:
            # flatten() honours the chunk's slice offset; without nulls, to_numpy() does not copy (null values
            # become NaN in a copy, which is not kept: the rows read from it are rejected as non-finite).
            flat = self.chunks[c].flatten()
            if flat.null_count == 0:
                itemsize = flat.type.byte_width
                address = flat.buffers()[1].address + flat.offset * itemsize
                place = self.files.locate(address, len(flat) * itemsize)
                if place is not None:
                    source = (*place, np.dtype(flat.type.to_pandas_dtype()))
            if source is None:
                source = flat.to_numpy(zero_copy_only=False).reshape(len(self.chunks[c]), self.dim)
            if flat.null_count == 0:
                self._sources[c] = source
        return source

    def read(self, rows: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
        table_rows = rows if self.table_rows is None else self.table_rows[rows]
        chunk_of = np.searchsorted(self.starts, table_rows, side="right") - 1
        out = np.empty((len(rows), self.dim), dtype=dtype)
        for c in np.unique(chunk_of):
            here = np.flatnonzero(chunk_of == c)
            local = table_rows[here] - self.starts[c]
            source = self._source(int(c))
            if isinstance(source, np.ndarray):
                out[here] = source[local]
                continue
            descriptor, offset, stored = source
            row_bytes = self.dim * stored.itemsize
            for i, row in zip(here, local):
                out[i] = np.frombuffer(os.pread(descriptor, row_bytes, offset + int(row) * row_bytes), dtype=stored)
        return out

    def column(self, rows: np.ndarray) -> pa.Array:
        """The stored vectors of ``rows``, as an Arrow array of the column's own type (values unchanged)."""
        values = self.read(rows, dtype=np.dtype(self.type.value_type.to_pandas_dtype()))
        flat = pa.array(values.reshape(-1), type=self.type.value_type)
        if pa.types.is_fixed_size_list(self.type):
            return pa.FixedSizeListArray.from_arrays(flat, self.dim).cast(self.type)
        large = pa.types.is_large_list(self.type)
        offsets = pa.array(np.arange(0, values.size + 1, max(self.dim, 1), dtype=np.int64 if large else np.int32))
        return (pa.LargeListArray if large else pa.ListArray).from_arrays(offsets, flat).cast(self.type)

    def close(self) -> None:
        self.files.close()


def _unit_block_marked(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unit vectors of a block, and which rows have a NaN or infinite value or are zero vectors. A bad
    row's vector is set to zeros, so that it cannot change what is decided for the rows before it."""
    finite = np.isfinite(vectors).all(axis=1)
    unit = unit_rows(np.where(finite[:, None], vectors, 0))
    zero = finite & ~np.isfinite(unit).all(axis=1)
    unit[~finite | zero] = 0
    return unit, ~finite, zero


def _unit_block(vectors: np.ndarray, rows: np.ndarray, name: str) -> np.ndarray:
    """The unit vectors of ``rows``; a zero or non-finite vector among them is an error naming its rows."""
    unit, nonfinite, zero = _unit_block_marked(vectors)
    _refuse_bad_vectors(rows, nonfinite, zero, name)
    return unit


def _refuse_bad_vectors(rows: np.ndarray, nonfinite: np.ndarray, zero: np.ndarray, name: str) -> None:
    if nonfinite.any():
        bad = rows[nonfinite]
        raise SelectionInputError(f"embedding column {name!r} has NaN or infinite values in {_rows_text(bad)}", bad)
    if zero.any():
        bad = rows[zero]
        raise SelectionInputError(
            f"embedding column {name!r} has a zero vector in {_rows_text(bad)}; a zero vector has no direction to "
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


def _check_arguments(budget: Any, threshold: Any, block_size: Any) -> None:
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

    Raises:
        SelectionInputError: a NaN or missing score, or a missing vector, anywhere in the pool; a zero or
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
    _check_dataset(dataset)
    _check_arguments(budget, threshold, block_size)
    threshold = float(threshold)
    budget = int(budget)
    table_rows = _table_rows(dataset)
    scores = _scores(dataset, score_column, table_rows)
    reader = _EmbeddingReader(dataset, embedding_column, table_rows)
    n = len(scores)
    # Descending by score, ties in row order: a stable sort of the negated scores.
    order = np.argsort(-scores, kind="stable")
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
    with _exact_float32_matmul(), closing(reader):
        while len(indices) < capacity and examined < n:
            k = len(indices)
            # Size the block to what is likely still needed, judged from the acceptance rate so far.
            rate = k / examined if examined else 1.0
            size = min(block_size, math.ceil((capacity - k) / max(rate, 1e-3) * 1.1) + 16, n - examined)
            rows = order[examined : examined + size]
            unit, nonfinite, zero = _unit_block_marked(reader.read(rows))
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
            _refuse_bad_vectors(rows[:seen], nonfinite[:seen], zero[:seen], embedding_column)
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
        indices=indices, similarities=similarities, examined=examined, rejected=examined - len(indices)
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
    _check_dataset(dataset)
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
    )
    settings = (budget, threshold, score_column, embedding_column)
    if strategy != "deita":
        settings += (strategy, seed)
    if embedding_column not in dataset.column_names:  # a baseline that reads no vectors
        from datasets import Value

        selected = dataset.select(result.indices)
        if similarity_column is None:
            return selected
        return selected.add_column(similarity_column, result.similarities, feature=Value("float64"))
    return _rows_in_order(dataset, result, embedding_column, similarity_column, settings)


def _rows_in_order(
    dataset: Any, result: SelectionResult, embedding_column: str, similarity_column: str | None, settings: tuple
) -> Any:
    """The selected rows as a new in-memory dataset, plus the similarity column.

    The rows are gathered from the Arrow table directly (a copy of the selected rows only), several times
    faster than ``dataset.select(...).add_column(...)``, which rewrites them through ``map``.
    """
    from datasets import Dataset, Value
    from datasets.fingerprint import Hasher
    from datasets.table import InMemoryTable

    rows = np.asarray(result.indices, dtype=np.int64)
    table_rows = _table_rows(dataset)
    source = dataset.data.table
    # The other columns through datasets' gather (views of the rows, then one copy); the vectors, the bulk
    # of a row, read row by row from the file (see _MappedFiles).
    others = [name for name in source.column_names if name != embedding_column]
    with closing(_EmbeddingReader(dataset, embedding_column, table_rows)) as reader:
        vectors = reader.column(rows)
    field = source.schema.field(embedding_column)
    if not others:
        table = pa.Table.from_arrays([vectors], schema=pa.schema([field]))
    else:
        if len(rows):
            table = InMemoryTable(source.select(others)).fast_gather(rows if table_rows is None else table_rows[rows])
            table = table.combine_chunks()
        else:
            table = source.select(others).slice(0, 0)
        table = table.add_column(source.column_names.index(embedding_column), field, vectors)
    info = dataset.info.copy()
    info.features = dataset.features.copy()
    if similarity_column is not None:
        table = table.append_column(similarity_column, pa.array(result.similarities, type=pa.float64()))
        info.features[similarity_column] = Value("float64")
    # Deterministic, like the fingerprint of a datasets transform: the pool's, the call's settings.
    fingerprint = Hasher.hash((dataset._fingerprint, "deita_select", similarity_column, settings))
    return Dataset(InMemoryTable(table), info=info, split=dataset.split, fingerprint=fingerprint)
