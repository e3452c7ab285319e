"""Reading a pool in bounded blocks, whatever holds it: a ``datasets.Dataset``, or Parquet files on disk.

The selection (:mod:`deita_hf.selection`, :mod:`deita_hf.strategies`) reads a pool only through a
:class:`PoolReader`: one small column whole (the scores), and the rows it needs in one sequential sweep
(:meth:`PoolReader.take`), a bounded batch at a time. Two readers:

- :class:`DatasetReader`, for a ``datasets.Dataset`` in memory, memory-mapped from its cache, or a view of
  one (``select``, ``shuffle``...), through the public ``datasets`` API (``select_columns``,
  ``with_format("arrow")``, ``iter``; a view's own rows are followed).
- :class:`ParquetPool`, for Parquet files: a folder in the Hub layout (``data/train-*.parquet``, what
  ``deita-hf score``, ``embed`` and ``run`` write as ``pool/``), a folder of ``*.parquet`` files or one file.
  It reads them with ``pyarrow.parquet``, only the columns and row groups it needs, never copying the pool
  into the ``datasets`` cache and never memory-mapping it: memory is one batch, whatever the pool's size.

>>> import pyarrow.parquet as pq, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> pq.write_table(pa.table({"id": ["a", "b", "c"], "deita_score": [1.0, 3.0, 2.0]}), folder / "pool.parquet")
>>> pool = ParquetPool(folder)
>>> len(pool), pool.column_names
(3, ['id', 'deita_score'])
>>> pool.take([2, 0], ["id"]).column("id").to_pylist()
['c', 'a']
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset, Features

# Rows per batch of a sweep: a batch of 4,096-float vectors is 16 MB.
SWEEP_ROWS = 1024
# How much of a Parquet file is read at a time.
_BUFFER_BYTES = 4 * 2**20
# Below this share of the rows in the range swept, a DatasetReader looks the rows up instead of sweeping.
_LOOKUP_SHARE = 1 / 64


class PoolReader:
    """What the selection reads from a pool. Subclasses give :attr:`num_rows`, :attr:`column_names`,
    :meth:`column`, :meth:`field_type`, :meth:`features` and :meth:`batches`; :meth:`take` is built on them."""

    num_rows: int
    column_names: list[str]

    def __len__(self) -> int:
        return self.num_rows

    def column(self, name: str) -> pa.ChunkedArray:
        """The column ``name`` whole (for the small ones: scores, score lists)."""
        raise NotImplementedError

    def field_type(self, name: str) -> pa.DataType:
        raise NotImplementedError

    def features(self) -> Features:
        raise NotImplementedError

    def batches(self, columns: Sequence[str], rows: np.ndarray) -> Iterator[tuple[np.ndarray, pa.Table]]:
        """``(row numbers, table)`` pieces in row order that hold at least the rows ``rows`` (sorted,
        non-empty): the tables hold ``columns``, and their rows are the pool's rows ``row numbers``
        (sorted)."""
        raise NotImplementedError

    def pieces(
        self, rows: Sequence[int] | np.ndarray, columns: Sequence[str]
    ) -> Iterator[tuple[np.ndarray, pa.Table]]:
        """The rows ``rows`` (any order, repeats allowed) in pieces, read in one sequential sweep over the rows
        between the first and the last (or the row groups that hold them): ``(positions, table)``, the table
        holding the rows ``rows[positions]``."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return
        if rows.min() < 0 or rows.max() >= self.num_rows:
            raise IndexError(f"rows out of range for a pool of {self.num_rows} rows")
        by_row = np.argsort(rows, kind="stable")
        wanted = rows[by_row]
        found = 0
        for numbers, table in self.batches(columns, wanted):
            lo, hi = np.searchsorted(wanted, [numbers[0], numbers[-1] + 1])
            if hi > lo:
                found += hi - lo
                yield by_row[lo:hi], table.take(pa.array(np.searchsorted(numbers, wanted[lo:hi])))
        if found != len(rows):  # a reader that skipped rows: a bug, never a silent loss
            raise DataError(f"read {found} of the {len(rows)} rows asked for")

    def take(self, rows: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None) -> pa.Table:
        """The rows ``rows`` (any order, repeats allowed) as one table in that order (see :meth:`pieces`)."""
        columns = list(self.column_names if columns is None else columns)
        positions, parts = [], []
        for slots, part in self.pieces(rows, columns):
            positions.append(slots)
            parts.append(part)
        if not parts:
            return self._empty(columns)
        # The pieces come in row order; back to the order asked for.
        where = np.empty(len(rows), dtype=np.int64)
        where[np.concatenate(positions)] = np.arange(len(rows))
        return pa.concat_tables(parts).combine_chunks().take(pa.array(where))

    def rows(self, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every row, as a dict of ``columns``, in row order (for the strategies that read the conversations)."""
        if not self.num_rows:
            return
        for _, table in self.batches(columns, np.arange(self.num_rows)):
            yield from table.to_pylist()

    def to_dataset(self, table: pa.Table) -> Dataset:
        """Rows read from this pool (all its columns) as an in-memory ``datasets.Dataset`` with the pool's
        features."""
        from datasets import Dataset

        features = self.features()
        return Dataset.from_dict({name: table.column(name) for name in features}, features=features)

    def _empty(self, columns: Sequence[str]) -> pa.Table:
        return pa.schema([pa.field(name, self.field_type(name)) for name in columns]).empty_table()


class DatasetReader(PoolReader):
    """A ``datasets.Dataset``, read through the public API: a column alone in Arrow format
    (``select_columns`` first: a row lookup gathers every column of the dataset it is made on), swept with
    ``iter`` over the range that holds the rows, or looked up by row when they are few in that range."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.num_rows = len(dataset)
        self.column_names = list(dataset.column_names)

    def _view(self, columns: Sequence[str]) -> Dataset:
        return self.dataset.select_columns(list(columns)).with_format("arrow")

    def column(self, name: str) -> pa.ChunkedArray:
        return self._view([name])[:][name]

    def field_type(self, name: str) -> pa.DataType:
        return self._view([name])[0:0].schema.field(name).type

    def features(self) -> Features:
        return self.dataset.features

    def batches(self, columns: Sequence[str], rows: np.ndarray) -> Iterator[tuple[np.ndarray, pa.Table]]:
        first, last = int(rows[0]), int(rows[-1])
        view = self._view(columns)
        if len(rows) < (last - first + 1) * _LOOKUP_SHARE:
            # A few rows in a long range: one lookup reads only those rows.
            unique = np.unique(rows)
            yield unique, view[unique]
            return
        # A contiguous select is a slice of the dataset (no copy); iter reads it in batches.
        start = first
        for table in view.select(range(first, last + 1)).iter(batch_size=SWEEP_ROWS):
            yield np.arange(start, start + table.num_rows), table
            start += table.num_rows


class ParquetPool(PoolReader):
    """A pool stored as Parquet files, read in bounded batches with ``pyarrow.parquet``, without a copy.

    Args:
        path: a folder in the Hub dataset layout (``data/<split>-*.parquet``, e.g. the ``pool/`` folder of a
            ``deita-hf`` run), a folder of ``*.parquet`` files (read in name order), or one Parquet file.
        split: the split's files in a Hub-layout folder (default ``train``).
        max_rows: read only the first ``max_rows`` rows.

    The features are those that ``datasets`` wrote in the files (``Features.from_arrow_schema``), so
    :meth:`to_dataset` gives back the same types as ``load_dataset`` would.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", max_rows: int | None = None):
        import pyarrow.parquet as pq

        self.path = Path(path).expanduser()
        self.files = parquet_files(self.path, split)
        if not self.files:
            raise DataError(f"no Parquet files in {self.path} (expected data/{split}-*.parquet or *.parquet)")
        # Buffered reads of a few MB rather than whole column chunks (about 100 MB of vectors each).
        self._files = [pq.ParquetFile(f, buffer_size=_BUFFER_BYTES, pre_buffer=False) for f in self.files]
        schema = self._files[0].schema_arrow
        for path_, file in zip(self.files[1:], self._files[1:]):
            if not file.schema_arrow.remove_metadata().equals(schema.remove_metadata()):
                raise DataError(
                    f"{path_} does not have the columns and types of {self.files[0]}: {file.schema_arrow} "
                    f"against {schema}"
                )
        self.schema = schema
        # Every row group: (file index, group index, first row, rows).
        self._groups: list[tuple[int, int, int, int]] = []
        start = 0
        for i, file in enumerate(self._files):
            for g in range(file.metadata.num_row_groups):
                rows = file.metadata.row_group(g).num_rows
                self._groups.append((i, g, start, rows))
                start += rows
        self.num_rows = start if max_rows is None else min(start, max_rows)
        self.column_names = list(schema.names)

    def __repr__(self) -> str:
        return f"ParquetPool({str(self.path)!r}, num_rows={self.num_rows}, columns={self.column_names})"

    def remove_columns(self, names: str | Sequence[str]) -> ParquetPool:
        """This pool without the columns ``names`` (nothing is read or written)."""
        names = [names] if isinstance(names, str) else list(names)
        missing = sorted(set(names) - set(self.column_names))
        if missing:
            raise KeyError(f"{missing} are not columns of {self!r}")
        view = copy.copy(self)  # the same open files and row groups; only the columns differ
        view.column_names = [c for c in self.column_names if c not in names]
        return view

    def __getitem__(self, name: str) -> list[Any]:
        """The column ``name`` as a list, as ``Dataset[name]`` gives it."""
        if not isinstance(name, str):
            raise TypeError(f"a ParquetPool gives whole columns by name, got {name!r}")
        return self.column(name).to_pylist()

    def _check(self, columns: Sequence[str]) -> None:
        missing = [c for c in columns if c not in self.column_names]
        if missing:
            raise KeyError(f"{missing} are not columns of {self!r}")

    def column(self, name: str) -> pa.ChunkedArray:
        self._check([name])
        chunks = [table.column(name) for _, table in self._read([name], 0, self.num_rows)]
        return pa.chunked_array([c for chunk in chunks for c in chunk.chunks], type=self.field_type(name))

    def field_type(self, name: str) -> pa.DataType:
        self._check([name])
        return self.schema.field(name).type

    def features(self) -> Features:
        from datasets import Features

        features = Features.from_arrow_schema(self.schema)
        return Features({name: features[name] for name in self.column_names})

    def batches(self, columns: Sequence[str], rows: np.ndarray) -> Iterator[tuple[np.ndarray, pa.Table]]:
        self._check(columns)
        for start, table in self._read(columns, int(rows[0]), int(rows[-1]) + 1, rows):
            yield np.arange(start, start + table.num_rows), table

    def _read(
        self, columns: Sequence[str], start: int, stop: int, rows: np.ndarray | None = None
    ) -> Iterator[tuple[int, pa.Table]]:
        """The rows ``[start, stop)`` in batches; with ``rows`` (sorted), only the row groups that hold one."""
        for i, g, first, count in self._groups:
            end = min(first + count, self.num_rows)
            if end <= start or first >= stop:
                continue
            if rows is not None:
                lo, hi = np.searchsorted(rows, [first, end])
                if hi == lo:
                    continue
            row = first
            for batch in self._files[i].iter_batches(batch_size=SWEEP_ROWS, row_groups=[g], columns=list(columns)):
                table = pa.Table.from_batches([batch])
                if row + table.num_rows > self.num_rows:
                    table = table.slice(0, self.num_rows - row)
                yield row, table
                row += table.num_rows
                if row >= min(end, stop):
                    break


def parquet_files(path: Path, split: str = "train") -> list[Path]:
    """The Parquet files of a pool: ``path`` itself, ``path/data/<split>-*.parquet`` (the Hub layout) or
    ``path/*.parquet``, in name order (the row order of a Hub-layout folder); none when ``path`` holds none."""
    if path.is_file():
        return [path] if path.suffix == ".parquet" else []
    for pattern in (f"data/{split}-*.parquet", f"{split}-*.parquet", "*.parquet"):
        files = sorted(p for p in path.glob(pattern) if p.is_file())
        if files:
            return files
    return []


def is_parquet_pool(path: str | os.PathLike, split: str = "train") -> bool:
    """Whether ``path`` is a Parquet file, or a folder in the Hub layout whose ``split`` is in Parquet files
    (``data/<split>-*.parquet`` or ``<split>-*.parquet``, as ``load_dataset`` would find them): what
    ``deita-hf select`` reads in place with a :class:`ParquetPool`."""
    path = Path(path).expanduser()
    if path.is_file():
        return path.suffix == ".parquet"
    if not path.is_dir() or (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        return False
    return any(
        p.is_file() for pattern in (f"data/{split}-*.parquet", f"{split}-*.parquet") for p in path.glob(pattern)
    )


def open_pool(pool: Any) -> PoolReader:
    """The reader of ``pool``: a ``datasets.Dataset``, a :class:`ParquetPool`, or the path of Parquet files
    (opened as a :class:`ParquetPool`); a ``TypeError`` that says what to pass otherwise."""
    from datasets import Dataset

    if isinstance(pool, PoolReader):
        return pool
    if isinstance(pool, Dataset):
        return DatasetReader(pool)
    if isinstance(pool, (str, os.PathLike)):
        if not Path(pool).expanduser().exists():
            raise FileNotFoundError(f"no such pool: {pool}")
        return ParquetPool(pool)
    hint = " (select a split first, e.g. dataset['train'])" if type(pool).__name__ == "DatasetDict" else ""
    raise TypeError(
        f"the pool must be a datasets.Dataset, a ParquetPool or the path of Parquet files, got "
        f"{type(pool).__name__}{hint}"
    )
