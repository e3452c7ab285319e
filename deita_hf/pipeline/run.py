"""Orchestration of ``deita-hf score | embed | select | run``: one output folder, one lock, the steps in order."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ..config import (
    dump_recipe,
    to_recipe,
)
from ..constants import (
    POOL_DIR,
    PROVENANCE_FILE,
    RECIPE_FILE,
    REPORT_DIR,
    SELECTED_DIR,
    SHARDS_DIR,
    SUMMARY_FILE,
)
from ..distributed import ProcessInfo, barrier, finish_processes, init_processes, leave, main_process_first
from ..errors import PipelineError
from ..formats import detect_format
from ..io import (
    _remove,
    _write_text_atomic,
    check_input_outside_outputs,
    describe_os_error,
    export,
    load_input,
    load_pool,
    output_lock,
    prepare_output_dir,
    quiet_datasets,
    save_dataset_folder,
)
from ..selection import SIMILARITY_COLUMN
from .config import RunConfig
from .shards import add_columns, compute_shards, merge_shards
from .steps import embedding_step, scoring_step, select_pool
from .summary import _summary, format_summary

logger = logging.getLogger(__name__)

# -- the command -----------------------------------------------------------------------------------------------


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
    config = RunConfig.from_groups(command, groups, command_line)
    data, runtime = config.data, config.runtime

    started = time.time()
    info = init_processes(runtime.ddp_timeout)
    try:
        with quiet_datasets():
            try:
                outcome = _run(config, info, progress)
            except OSError as error:
                message = describe_os_error(error, data)
                if message is None:
                    raise
                raise PipelineError(message) from error
    except BaseException:
        leave(info)
        raise
    finish_processes(info)
    if outcome is None:
        return None
    summary, resumed, pushed = outcome
    print(format_summary(summary, Path(data.output_dir), time.time() - started, resumed, pushed))
    return summary


def _run(config: RunConfig, info: ProcessInfo, progress: bool) -> tuple[dict[str, Any], bool, str | None] | None:
    output_dir = Path(config.data.output_dir)
    check_input_outside_outputs(config.data.dataset_name, output_dir)
    with output_lock(output_dir, info, config.command_line):
        return _run_locked(config, info, output_dir, progress)


def _run_locked(
    config: RunConfig, info: ProcessInfo, output_dir: Path, progress: bool
) -> tuple[dict[str, Any], bool, str | None] | None:
    command, data, selection, hub = config.command, config.data, config.selection, config.hub
    state = prepare_output_dir(output_dir, data.overwrite, info)
    with main_process_first(info):
        # The selection alone reads a Parquet pool in place; scoring and embedding map over a dataset.
        load = load_pool if command == "select" else load_input
        dataset = load(data.dataset_name, data.dataset_config, data.dataset_split, data.max_rows)
    row_format = data.dataset_format or detect_format(dataset.column_names)
    steps = []
    if config.scoring is not None:
        steps.append(scoring_step(config, info))
    if config.embedding is not None:
        steps.append(embedding_step(config, info))
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
    summary = _summary(command, config.command_line, data, selection, pool, row_format, steps, stats)
    recipe_text = dump_recipe(to_recipe(*config.groups))
    if command in ("score", "embed", "run"):
        from ..hub import pool_card

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
        from ..hub import selection_card
        from ..report import budget_shortfall, write_report

        selected, table, counts = select_pool(pool, selection, config.runtime, row_format)
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
        from ..hub import push_selection

        try:
            pushed = push_selection(output_dir, hub.push_to_hub, private=hub.hub_private, license=hub.hub_license)
        except Exception as error:
            raise PipelineError(
                f"the run is complete in {output_dir}, but the push to {hub.push_to_hub} failed: {error}. Push it "
                f"again with: deita-hf report {output_dir} --push_to_hub {hub.push_to_hub}"
            ) from error
    return summary, state == "unfinished", pushed
