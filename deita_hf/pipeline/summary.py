"""``summary.json`` of a run and the lines the console prints at its end."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..config import DataArguments, SelectionArguments
from ..constants import COMPLEXITY_COLUMN, QUALITY_COLUMN, VERSION
from ..io import read_provenance
from .shards import Step


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
        "deita_hf_version": VERSION,
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
