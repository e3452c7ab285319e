"""What goes into and comes out of a run: loading input rows and training data, the names of the files
of an output folder, its lock, atomic writes, exports and provenance.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import DataArguments
from .constants import (
    DEFAULT_SEED,
    EMBEDDING_COLUMN,
    POOL_DIR,
    PROVENANCE_FILE,
    RECIPE_FILE,
    REPORT_DIR,
    SELECTED_DIR,
    SHARDS_DIR,
    SUMMARY_FILE,
)
from .distributed import ProcessInfo, barrier
from .errors import ConfigError, DataError, PipelineError

# What a run may write in its output folder; --overwrite removes exactly these.
_EXPORT_FORMATS = ("parquet", "jsonl")
OUTPUT_ENTRIES = (
    POOL_DIR,
    SELECTED_DIR,
    REPORT_DIR,
    SHARDS_DIR,
    RECIPE_FILE,
    SUMMARY_FILE,
    *(f"{name}.{ext}" for name in (POOL_DIR, SELECTED_DIR) for ext in _EXPORT_FORMATS),
)
# Held by the main process while a run writes in its output folder: one writer per folder.
LOCK_FILE = ".deita_hf.lock"
_FILE_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


# -- input and output ------------------------------------------------------------------------------------------


def load_input(
    dataset_name: str,
    dataset_config: str | None = None,
    dataset_split: str = "train",
    max_rows: int | None = None,
    revision: str | None = None,
) -> Any:
    """Load the pool: a local json / jsonl / parquet / csv file, a ``save_to_disk`` folder, or a Hub dataset
    (at ``revision``).

    >>> ds = load_input("deita_hf/data/alpaca_eval_sample.jsonl", max_rows=8)  # doctest: +SKIP
    """
    import datasets

    path = Path(dataset_name).expanduser()
    if path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            dataset = datasets.load_from_disk(str(path))
            if isinstance(dataset, datasets.DatasetDict):
                if dataset_split not in dataset:
                    raise PipelineError(
                        f"{path} has no split {dataset_split!r}; its splits are {sorted(dataset)} (set --dataset_split)"
                    )
                dataset = dataset[dataset_split]
        else:
            dataset = datasets.load_dataset(str(path), dataset_config, split=dataset_split)
    elif path.is_file():
        builder = _FILE_FORMATS.get(path.suffix.lower())
        if builder is None:
            raise PipelineError(
                f"cannot read {path}: unknown file format {path.suffix!r}; expected one of "
                f"{', '.join(sorted(_FILE_FORMATS))} or a save_to_disk folder"
            )
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
    elif _looks_like_path(dataset_name):
        raise PipelineError(f"no such file or folder: {dataset_name}")
    else:
        from .modeling import ModelSourceError, model_source

        try:
            # An unreachable Hub fails here in seconds, naming the data set, not after datasets' retries.
            with model_source(dataset_name, revision, repo_type="dataset"):
                dataset = datasets.load_dataset(dataset_name, dataset_config, split=dataset_split, revision=revision)
        except ModelSourceError:
            raise
        except Exception as error:
            raise PipelineError(
                f"cannot load {dataset_name!r} (config {dataset_config!r}, split {dataset_split!r}) from the Hub: "
                f"{error}. For a local file, check the path."
            ) from error
    if max_rows is not None:
        dataset = dataset.select(range(min(max_rows, len(dataset))))
    if len(dataset) == 0:
        raise PipelineError(f"{dataset_name} has no rows")
    return dataset


def load_pool(
    dataset_name: str, dataset_config: str | None = None, dataset_split: str = "train", max_rows: int | None = None
) -> Any:
    """The input of a selection: a Parquet file or a Hub-layout folder of Parquet files (a ``pool/`` folder) is
    read in place as a :class:`deita_hf.pool.ParquetPool` (no copy into the ``datasets`` cache); anything else
    as :func:`load_input` loads it."""
    from .pool import ParquetPool, is_parquet_pool

    if is_parquet_pool(dataset_name, dataset_split):
        pool = ParquetPool(dataset_name, dataset_split, max_rows)
        if len(pool) == 0:
            raise PipelineError(f"{dataset_name} has no rows")
        return pool
    return load_input(dataset_name, dataset_config, dataset_split, max_rows)


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~"))
        or Path(name).suffix.lower() in _FILE_FORMATS
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def output_state(output_dir: Path) -> str:
    """``"new"`` (absent or empty), ``"finished"`` (has summary.json), ``"unfinished"`` (has shards only) or
    ``"foreign"`` (holds something else)."""
    if not output_dir.exists() or not any(p.name != LOCK_FILE for p in output_dir.iterdir()):
        return "new"
    if (output_dir / SUMMARY_FILE).exists():
        return "finished"
    if (output_dir / SHARDS_DIR).is_dir():
        return "unfinished"
    return "foreign"


def check_input_outside_outputs(dataset_name: str, output_dir: Path) -> None:
    """Refuse, before anything is touched, an input that lies where the run writes or removes its outputs."""
    path = Path(dataset_name).expanduser()
    if not path.exists():
        return
    path = path.resolve()
    for name in OUTPUT_ENTRIES:
        entry = (output_dir / name).resolve()
        if path == entry or entry in path.parents:
            raise PipelineError(
                f"the input {dataset_name} is the output {name} of --output_dir {output_dir}, which this run "
                "writes (and --overwrite removes); choose another --output_dir, or move the input out of it"
            )


def _files_of_finished_run(output_dir: Path) -> list[str]:
    """The top-level entries that the finished run in ``output_dir`` wrote, from its summary.json, and its work
    folder shards/ (kept with ``keep_shards``)."""
    try:
        files = json.loads((output_dir / SUMMARY_FILE).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        files = None
    if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
        # A summary of an older version, or a damaged one: the names a run may write.
        return list(OUTPUT_ENTRIES)
    return [name for name in files if name in OUTPUT_ENTRIES] + [SHARDS_DIR]


def prepare_output_dir(output_dir: Path, overwrite: bool, info: ProcessInfo) -> str:
    """Check the output folder (every process), then clear it for a new run on the main process.

    A folder holding a finished run, or anything else, is refused unless ``overwrite``; an unfinished run is
    resumed (with or without ``overwrite``). Only what a run of deita-hf wrote is ever removed: the files that
    a finished run's summary.json lists, or, in an unfinished run, its outputs and temporary files. In a
    folder of other files, an entry with the name of an output is refused rather than replaced.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise PipelineError(f"--output_dir {output_dir} is a file, not a folder")
    state = output_state(output_dir)
    if state in ("finished", "foreign") and not overwrite:
        what = "a finished run (summary.json)" if state == "finished" else "other files"
        raise PipelineError(
            f"output folder {output_dir} already holds {what}; pass --overwrite to replace it, or choose another "
            "--output_dir"
        )
    if state == "foreign":
        clashes = [name for name in OUTPUT_ENTRIES if (output_dir / name).exists()]
        if clashes:
            raise PipelineError(
                f"output folder {output_dir} holds {', '.join(clashes)}, which deita-hf did not write and a run "
                "would replace; move them, or choose another --output_dir"
            )
    barrier(info)
    if info.is_main:
        if state == "finished":
            for name in _files_of_finished_run(output_dir):
                _remove(output_dir / name)
        elif state == "unfinished":
            for name in OUTPUT_ENTRIES:
                if name != SHARDS_DIR:
                    _remove(output_dir / name)
        if output_dir.is_dir() and state != "foreign":
            for name in OUTPUT_ENTRIES:  # outputs that a killed run was writing under a temporary name
                for leftover in output_dir.glob(f".{name}.tmp-*"):
                    _remove(leftover)
        output_dir.mkdir(parents=True, exist_ok=True)
    barrier(info)
    return state


@contextlib.contextmanager
def output_lock(output_dir: Path, info: ProcessInfo, command_line: str | None) -> Iterator[None]:
    """Hold the output folder's lock (main process) while the run writes in it: a second run into the same
    folder stops at once, naming the process that holds it."""
    if not info.is_main:
        yield
        return
    from filelock import FileLock, Timeout

    if output_dir.exists() and not output_dir.is_dir():
        raise PipelineError(f"--output_dir {output_dir} is a file, not a folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOCK_FILE
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = path.read_text().strip() or "a process that has not said"
        except OSError:
            holder = "another process"
        raise PipelineError(
            f"another deita-hf run is writing in {output_dir} ({holder}); wait for it to finish, stop it, or "
            "choose another --output_dir"
        ) from None
    try:
        # The lock file's content is only informative: the lock itself is the flock on it.
        with open(path, "w") as f:
            f.write(f"pid {os.getpid()} on {socket.gethostname()}: {command_line or 'deita-hf'}\n")
        yield
    finally:
        lock.release()
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Hide the progress bars of ``datasets`` (saving shards, flattening indices): the pipeline shows its own."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_dataset_folder(
    dataset: Any, path: Path, card: Any, extra_files: dict[str, str] | None = None, keep_embeddings: bool = True
) -> None:
    """Write ``dataset`` at ``path`` in the Hub dataset-repository layout (:func:`deita_hf.hub.write_dataset_folder`),
    under a temporary name renamed when complete; without the embedding column unless ``keep_embeddings``."""
    from .hub import write_dataset_folder

    if not keep_embeddings and EMBEDDING_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(EMBEDDING_COLUMN)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    write_dataset_folder(dataset, tmp, card)
    for name, text in (extra_files or {}).items():
        (tmp / name).write_text(text)
    _remove(path)
    os.rename(tmp, path)


def export(dataset: Any, path: Path, keep_embeddings: bool) -> Path:
    """Write ``dataset`` as parquet or JSON lines (from ``path``'s suffix), without the embedding column
    unless ``keep_embeddings``."""
    if not keep_embeddings and EMBEDDING_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(EMBEDDING_COLUMN)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if path.suffix == ".parquet":
        dataset.to_parquet(str(tmp))
    else:
        dataset.to_json(str(tmp), lines=True, force_ascii=False)
    os.replace(tmp, path)
    return path


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def space_needed(output_dir: Path, dataset_name: str) -> int:
    """About how many bytes a run writes in all: the shards (extrapolated from the finished ones), the same
    columns again in pool/, and two copies of the input's columns (pool/ and the export)."""
    total = 2 * _size(Path(dataset_name).expanduser())
    for plan_path in (output_dir / SHARDS_DIR).glob("*/plan.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            rows = json.loads(plan_path.read_text())["rows"]
            done = [p for p in plan_path.parent.iterdir() if p.name.isdigit() and (p / "shard.json").is_file()]
            done_rows = sum(json.loads((p / "shard.json").read_text())["rows"] for p in done)
            if done_rows:
                total += 2 * sum(_size(p) for p in done) * rows // done_rows
    return total


def _bytes_text(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{max(n / 1e3, 0.1):.1f} KB"


def describe_os_error(error: OSError, data: DataArguments) -> str | None:
    """One line for a full disk or a folder that cannot be written: what happened where, and what to do (None
    for other errors)."""
    output_dir = Path(data.output_dir)
    where = error.filename or output_dir
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{_bytes_text(shutil.disk_usage(output_dir).free)} are free now"
        except OSError:
            free = "the free space cannot be read"
        needed = space_needed(output_dir, data.dataset_name or "")
        return (
            f"the disk is full while writing {where} ({error.strerror}): the run needs about {_bytes_text(needed)} "
            f"in {output_dir} in all and {free}; free some space (or choose another --output_dir) and run the same "
            "command again: it resumes from the finished shards"
        )
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {where}: {error.strerror}; make {output_dir} writable or choose another --output_dir"
    return None


def read_provenance(dataset_name: str) -> dict[str, Any]:
    """What an input folder written by deita-hf says about how it was made (empty for other inputs)."""
    path = Path(dataset_name).expanduser() / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


# -- data ---------------------------------------------------------------------------------------------------------
def resolve_training_data(name_or_path: str) -> str:
    """The dataset to train on: for the output folder of a deita-hf selection (``deita-hf run`` / ``select``),
    the dataset folder that its ``summary.json`` names (``selected/``); otherwise ``name_or_path`` itself."""
    path = Path(name_or_path).expanduser()
    summary = path / SUMMARY_FILE
    if path.is_dir() and summary.is_file():
        try:
            dataset = json.loads(summary.read_text(encoding="utf-8")).get("outputs", {}).get("dataset")
        except (ValueError, AttributeError) as error:
            raise DataError(f"{summary} cannot be read ({error}); pass the dataset folder itself.") from None
        if not isinstance(dataset, str) or not dataset or not (path / dataset).is_dir():
            raise DataError(f"{summary} names no dataset folder under 'outputs'; pass the dataset folder itself.")
        # The dataset must lie inside the output folder: a summary cannot send training to data elsewhere.
        folder = path.resolve()
        resolved = (path / dataset).resolve()
        if folder not in resolved.parents:
            raise DataError(
                f"{summary} names the dataset {dataset!r}, which is not inside {path}; pass the dataset folder "
                "itself if that is what you mean to train on."
            )
        return str(resolved)
    return name_or_path


def load_training_data(
    name_or_path: str | None, *, split: str = "train", config: str | None = None, revision: str | None = None
):
    """Load one split of training data as a ``datasets.Dataset``.

    ``name_or_path`` is the output folder of a deita-hf selection (its selected rows are loaded), a
    ``save_to_disk`` folder, a local ``.json``/``.jsonl``/``.csv``/``.parquet``/``.arrow`` file, or a Hub
    dataset id (``hkust-nlp/deita-6k-v0``, read with ``datasets.load_dataset(name_or_path, config, split=split,
    revision=revision)``).

    >>> import json, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "rows.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write(json.dumps({"instruction": "Say hi", "output": "Hi"}) + "\\n")
    >>> load_training_data(path).column_names
    ['instruction', 'output']
    """
    from .io import load_input

    if not name_or_path:
        raise ConfigError("no training data: set dataset_name to a Hub dataset id, a local file or a folder.")
    return load_input(resolve_training_data(name_or_path), config, split, revision=revision)


def sample_indices(n: int, size: int, seed: int = DEFAULT_SEED) -> list[int]:
    """The row indices that Deita's DPO sample took (``src/deita/data/sample_ultrafeedback.py`` of the
    reference): ``random.seed(seed)`` then ``random.sample(range(n), size)``, in that order. A generator of its
    own gives the same numbers without touching the global ``random`` state.

    >>> sample_indices(10, 3, seed=42)
    [1, 0, 4]
    """
    return random.Random(seed).sample(range(n), size)


def sample_rows(dataset, size: int | None, seed: int = DEFAULT_SEED):
    """A random sample of ``size`` rows, in the order drawn (all rows, in order, when ``size`` is None): the
    rows :func:`sample_indices` names, so that the DPO recipe trains on the reference's 10K pairs of the same
    data.

    >>> from datasets import Dataset
    >>> list(sample_rows(Dataset.from_dict({"x": list(range(10))}), 3, seed=42)["x"])
    [1, 0, 4]
    """
    if size is None:
        return dataset
    if not 0 < size <= len(dataset):
        raise ConfigError(f"dataset_sample_size={size} must be between 1 and the number of rows ({len(dataset)}).")
    return dataset.select(sample_indices(len(dataset), size, seed))
