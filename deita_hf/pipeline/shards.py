"""The shard engine of ``deita-hf score`` / ``embed``: fixed-size row shards computed once, committed by
rename, checked and merged in order.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..distributed import ProcessInfo, barrier, shard_bounds, shards_of_rank
from ..errors import PipelineError
from ..io import SHARDS_DIR, _remove, _write_text_atomic

logger = logging.getLogger(__name__)

# -- resumable shards ------------------------------------------------------------------------------------------


@dataclass
class Step:
    """A sharded, resumable ``Dataset.map`` step.

    Args:
        name: the step's folder under ``shards/`` (``"score"``, ``"embed"``).
        function: the ``Dataset.map`` callable, built once from the recipe: a :class:`~deita_hf.modeling.LazyModel`
            (or one holding them) whose weights load on the first call.
        key: what the results depend on (:func:`resume_key`); a resumed run must have the same.
        columns: the columns the step adds.
        models: what the summary says about the step's models (see :func:`~deita_hf.modeling.describe_model`).
    """

    name: str
    function: Any
    key: dict[str, Any]
    columns: tuple[str, ...]
    models: dict[str, dict[str, Any]]


def resume_key(
    function: Any, models: dict[str, dict[str, Any]], device: str | None, dtype: str | None, info: ProcessInfo
) -> dict[str, Any]:
    """What the results of a step's ``function`` depend on, recorded in ``plan.json`` and compared on resume.

    - ``fingerprint``: the callable's own state hashed as the ``datasets`` cache hashes it (every setting it was
      built with, the model revisions and the signature of the weights: :meth:`LazyModel.__getstate__`), so no
      setting can be left out by hand;
    - ``device`` and ``dtype``: the device type and the dtype the weights load in on this machine, resolved
      (bf16 on a GPU, fp32 on a CPU when not set), so a run started in fp32 does not resume in bf16;
    - readable entries (the recipe's model names, the callable's settings), which name what changed.
    """
    from datasets.fingerprint import Hasher

    from ..modeling import resolve_device, resolve_dtype

    resolved = resolve_device(device, info.local_rank)
    key: dict[str, Any] = {f"{name}_model": model["model"] for name, model in models.items()}
    key.update(_settings(function))
    key.update(
        fingerprint=Hasher.hash(function),
        device=resolved.type,
        dtype=str(resolve_dtype(dtype, resolved)).removeprefix("torch."),
    )
    return key


def _settings(function: Any, prefix: str = "") -> dict[str, Any]:
    """The public settings of a callable and of the models it holds, flattened (``complexity.batch_size``)."""
    from ..modeling import LazyModel

    state = function.__getstate__() if isinstance(function, LazyModel) else vars(function)
    settings: dict[str, Any] = {}
    for name, value in state.items():
        if name.startswith("_"):
            continue
        if value is None or isinstance(value, (str, int, float, bool)):
            settings[prefix + name] = value
        elif isinstance(value, LazyModel):
            settings.update(_settings(value, f"{prefix}{name}."))
    return settings


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
    plan = {"step": step.name, "rows": len(dataset), "shard_size": shard_size, "settings": step.key}
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
    # A copy of the step's callable for this computation (its pickled settings, never weights): its models load
    # on this process's device at the first call and are freed with it when the step ends.
    function = pickle.loads(pickle.dumps(step.function))
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
        columns = function(batch, batched=True, indices=list(range(start, stop)), rank=info.local_rank)
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
