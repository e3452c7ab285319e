"""The selection report: one Markdown page with PNG plots, written beside the selection.

``report/report.md`` shows the counts (pool, turns, selected, examined, rejected as too similar, shortened
prompts), the models, and four plots:

- ``scores.png``: complexity, quality and deita_score in the pool and in the selection;
- ``similarity.png``: the nearest-selected similarity of each selected row, with the threshold;
- ``score_rank.png``: deita_score against rank in the pool, the selected rows marked;
- ``turns.png``: turns per conversation in the pool and in the selection (only for a pool with multi-turn rows).

Its data is ``report/pool_scores.parquet`` (one row per pool row: scores, ``selection_rank``,
``nearest_selected_similarity``) and ``summary.json``, so ``deita-hf report OUTPUT_DIR`` makes it again.

With ``--compare``, ``report/strategies.json`` holds every strategy's subset (pool rows and nearest-selected
similarities, in selection order) and the report adds ``strategies.png`` (the deita_score and similarity
distributions of every subset on one figure) and a table of the subsets side by side.

>>> write_report("outputs/smoke/report", table, summary)  # doctest: +SKIP
PosixPath('outputs/smoke/report/report.md')
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .constants import COMPLEXITY_COLUMN, QUALITY_COLUMN, SCORE_COLUMN, SUMMARY_FILE
from .errors import MissingFileError
from .selection import SIMILARITY_COLUMN

REPORT_FILE = "report.md"
TABLE_FILE = "pool_scores.parquet"
STRATEGIES_FILE = "strategies.json"
PLOTS = ("scores.png", "similarity.png", "score_rank.png", "turns.png")  # turns.png: multi-turn pools only
SMOKE_NOTE = (
    "**Smoke run.** The scorers (or the embedder) are tiny models with random weights, built offline to test "
    "the pipeline: these scores and this selection mean nothing."
)

_POOL_COLOR = "#9aa5b1"
_SELECTED_COLOR = "#d1495b"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _flat(lists: list[Any]) -> np.ndarray:
    values = [v for scores in lists if scores for v in scores]
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _finite(values: Any) -> np.ndarray:
    values = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return values[np.isfinite(values)]


def _histograms(ax: Any, pool: np.ndarray, selected: np.ndarray, bins: Any, title: str) -> None:
    """Pool and selection as densities on one axis, so that sets of very different sizes compare."""
    for values, color, label, fill in (
        (pool, _POOL_COLOR, f"pool (n={len(pool):,})", True),
        (selected, _SELECTED_COLOR, f"selected (n={len(selected):,})", False),
    ):
        if len(values):
            ax.hist(
                values,
                bins=bins,
                density=True,
                color=color,
                label=label,
                histtype="stepfilled" if fill else "step",
                alpha=0.6 if fill else 1.0,
                linewidth=2,
            )
    ax.set_title(title)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)


def plot_scores(table: dict[str, list[Any]], selected_mask: np.ndarray, path: Path, smoke: bool) -> None:
    """Histograms of complexity and quality (per turn) and deita_score (per row), pool against selection."""
    plt = _plt()
    panels = [
        (name, label)
        for name, label in ((COMPLEXITY_COLUMN, "complexity (per turn)"), (QUALITY_COLUMN, "quality (per turn)"))
        if name in table
    ]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 3.4), squeeze=False)
    for ax, (name, label) in zip(axes[0], panels):
        column = table[name]
        chosen = [column[i] for i in np.flatnonzero(selected_mask)]
        _histograms(ax, _flat(column), _flat(chosen), np.linspace(1, 6, 26), label)
        ax.set_xlim(1, 6)
    scores = np.asarray([np.nan if v is None else v for v in table[SCORE_COLUMN]], dtype=np.float64)
    pool_scores, chosen_scores = _finite(scores), _finite(scores[selected_mask])
    low, high = (float(pool_scores.min()), float(pool_scores.max())) if len(pool_scores) else (0.0, 1.0)
    bins = np.linspace(low, high if high > low else low + 1.0, 31)
    _histograms(axes[0][-1], pool_scores, chosen_scores, bins, "deita_score (per row)")
    _finish(fig, path, "Scores: pool and selection", smoke)


def plot_similarity(similarities: np.ndarray, threshold: float, path: Path, smoke: bool) -> None:
    """The nearest-selected similarity of each selected row (the first has none), with the threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    values = similarities[np.isfinite(similarities)]
    if len(values):
        low = min(float(values.min()), threshold) - 0.02
        ax.hist(
            values,
            bins=np.linspace(low, 1.0, 41),
            color=_SELECTED_COLOR,
            alpha=0.8,
            label=f"selected rows ({len(values):,} after the first)",
        )
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold}")
    ax.set_xlabel("cosine similarity to the most similar row selected before it")
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    _finish(fig, path, "Nearest-selected similarity", smoke)


def plot_score_rank(scores: np.ndarray, selected_mask: np.ndarray, examined: int, path: Path, smoke: bool) -> None:
    """deita_score of the pool sorted from best to worst; selected rows and rows rejected as too similar
    (the examined rows that were not selected) marked at their rank."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    ranked = scores[order]
    ax.plot(np.arange(1, len(ranked) + 1), ranked, color=_POOL_COLOR, linewidth=2, label="pool")
    chosen = np.flatnonzero(selected_mask[order])
    rejected = np.flatnonzero(~selected_mask[order][:examined])
    ax.scatter(chosen + 1, ranked[chosen], s=8, color=_SELECTED_COLOR, label=f"selected ({len(chosen):,})", zorder=3)
    if len(rejected):
        ax.scatter(
            rejected + 1,
            ranked[rejected],
            s=14,
            marker="x",
            color="black",
            linewidths=0.8,
            label=f"rejected as too similar ({len(rejected):,})",
            zorder=4,
        )
    ax.set_xlabel("rank in the pool by deita_score")
    ax.set_ylabel("deita_score")
    if len(ranked) > 1000:
        ax.set_xscale("log")
    ax.legend(fontsize=8)
    _finish(fig, path, "deita_score against rank", smoke)


def plot_turns(table: dict[str, list[Any]], selected_mask: np.ndarray, path: Path, smoke: bool) -> None:
    """The share of conversations with 1, 2, ... turns, in the pool and in the selection (10 or more in one bar)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    turns = np.asarray([len(s) if s else 0 for s in table.get(COMPLEXITY_COLUMN, [])], dtype=np.int64)
    if len(turns):
        turns = np.minimum(turns, 10)
        ticks = np.arange(1, int(turns.max()) + 1)
        for offset, values, color, label in (
            (-0.2, turns, _POOL_COLOR, f"pool (n={len(turns):,})"),
            (0.2, turns[selected_mask], _SELECTED_COLOR, f"selected (n={int(selected_mask.sum()):,})"),
        ):
            shares = np.array([(values == t).mean() if len(values) else 0.0 for t in ticks])
            ax.bar(ticks + offset, shares, width=0.4, color=color, label=label)
        ax.set_xticks(ticks, [str(t) if t < 10 else "10+" for t in ticks])
        ax.set_xlabel("turns per conversation")
        ax.set_ylabel("share of rows")
        ax.legend(fontsize=8)
    _finish(fig, path, "Turns per conversation", smoke)


def _finish(fig: Any, path: Path, title: str | None, smoke: bool) -> None:
    if title:
        fig.suptitle(title)
    if smoke:
        fig.text(
            0.5,
            0.5,
            "SMOKE RUN: random models",
            ha="center",
            va="center",
            rotation=20,
            fontsize=26,
            color="grey",
            alpha=0.25,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


# The counts of summary.json shown in the report and in a pushed selection's card, with their labels.
COUNT_LABELS = (
    ("pool", "pool rows"),
    ("turns", "turns in the pool"),
    ("selected", "selected"),
    ("examined", "examined by the selection"),
    ("rejected_too_similar", "rejected as too similar"),
    ("left_out_without_score", "left out without a score"),
    ("shortened_prompts", "shortened scorer prompts"),
    ("unreadable_rows", "unreadable rows"),
)


def format_count(value: Any) -> str:
    """A count as the report and the card show it.

    >>> format_count(12345), format_count({"complexity": 3, "quality": 1}), format_count(None)
    ('12,345', 'complexity 3, quality 1', 'n/a')
    """
    if value is None:
        return "n/a"
    if isinstance(value, dict):
        return ", ".join(f"{key} {format_count(v)}" for key, v in value.items())
    return f"{value:,}" if isinstance(value, int) else str(value)


def model_revision(model: dict[str, Any]) -> str:
    """The revision to show for a model: the commit (or the revision asked for) of a Hub model, else "-"."""
    if model.get("origin", "Hugging Face Hub") != "Hugging Face Hub":
        return "-"
    return model.get("commit") or model.get("revision") or "main"


def _model_line(role: str, model: dict[str, Any]) -> str:
    return f"| {role} | `{model['model']}` | {model.get('origin', '')} | `{model_revision(model)}` |"


def has_multi_turn_rows(table: dict[str, list[Any]]) -> bool:
    """Whether some row of the pool has more than one scored turn (then ``turns.png`` is drawn)."""
    return any(scores is not None and len(scores) > 1 for scores in table.get(COMPLEXITY_COLUMN, []))


def budget_shortfall(summary: dict[str, Any]) -> str | None:
    """The warning for a budget that the pool could not fill, or None when it was filled."""
    counts, selection = summary.get("counts", {}), summary.get("selection", {})
    if "selected" not in counts or counts["selected"] >= selection.get("budget", 0):
        return None
    message = (
        f"the pool ran out before the budget was filled: {counts['selected']:,} of {selection['budget']:,} rows "
        "selected"
    )
    if counts.get("left_out_without_score"):
        message += f" ({counts['left_out_without_score']:,} rows without a score left out)"
    if selection.get("strategy", "deita") != "deita":
        return message + "; every row with a score was taken. A larger pool gives more rows."
    return message + (
        f"; all {counts.get('examined', 0):,} rows with a score were examined and "
        f"{counts.get('rejected_too_similar', 0):,} were too similar to a selected row (threshold "
        f"{selection['threshold']}). A larger pool or a higher threshold gives more rows."
    )


def render_markdown(
    summary: dict[str, Any], table: dict[str, list[Any]], selected_mask: np.ndarray, sections: tuple[str, ...] = ()
) -> str:
    """The text of ``report.md`` (``sections``: more Markdown, before the command line)."""
    counts = summary["counts"]
    source = summary["source"]
    lines = ["# Deita selection report", ""]
    if summary.get("smoke_run"):
        lines += [f"> {SMOKE_NOTE}", ""]
    where = source["dataset"] + (f" (config `{source['config']}`)" if source.get("config") else "")
    lines += [
        f"Pool: `{where}`, split `{source.get('split')}`, {counts['pool']:,} rows in `{source.get('format')}` format.",
        "",
    ]
    selection = summary.get("selection", {})
    if selection.get("strategy", "deita") != "deita":
        from .strategies import PAPER_ROWS

        seed = f", seed {selection['seed']}" if selection["strategy"] == "random" else ""
        lines += [
            f"Selection: {selection['budget']:,} rows by the `{selection['strategy']}` strategy{seed}, a baseline of "
            f"the paper ({PAPER_ROWS[selection['strategy']]}); no diversity filter.",
            "",
        ]
    elif selection:
        lines += [
            f"Selection: the {selection['budget']:,} best rows by deita_score (complexity x quality, summed over "
            f"turns), skipping a row whose cosine similarity to a row already selected is above "
            f"{selection['threshold']}.",
            "",
        ]
    shortfall = budget_shortfall(summary)
    if shortfall:
        lines += [f"> **Warning**: {shortfall}", ""]
    lines += ["## Counts", "", "| | |", "|---|---|"]
    rows = [(label, counts.get(key)) for key, label in COUNT_LABELS]
    if counts.get("embedding"):
        rows.append(("embedder", counts["embedding"]))
    lines += [f"| {label} | {format_count(value)} |" for label, value in rows]
    models = summary.get("models", {})
    if models:
        lines += ["", "## Models", "", "| role | model | from | revision |", "|---|---|---|---|"]
        lines += [_model_line(role, model) for role, model in models.items()]
    lines += ["", "## Scores", "", "![scores](scores.png)", ""]
    scores = np.asarray([np.nan if v is None else v for v in table[SCORE_COLUMN]], dtype=np.float64)
    pool_scores, chosen = _finite(scores), _finite(scores[selected_mask])
    if len(pool_scores) and len(chosen):
        lines += [
            "| deita_score | pool | selected |",
            "|---|---|---|",
            f"| mean | {pool_scores.mean():.3f} | {chosen.mean():.3f} |",
            f"| median | {np.median(pool_scores):.3f} | {np.median(chosen):.3f} |",
            f"| min | {pool_scores.min():.3f} | {chosen.min():.3f} |",
            f"| max | {pool_scores.max():.3f} | {chosen.max():.3f} |",
            "",
        ]
    lines += [
        "## Diversity",
        "",
        "Each selected row's cosine similarity to the most similar row selected before it (at most the "
        "threshold, by construction).",
        "",
        "![similarity](similarity.png)",
        "",
        "## Score against rank",
        "",
        "![score against rank](score_rank.png)",
        "",
    ]
    if has_multi_turn_rows(table):
        lines += ["## Turns", "", "![turns](turns.png)", ""]
    lines += list(sections)
    if summary.get("command_line"):
        lines += ["## Command", "", "```bash", summary["command_line"], "```", ""]
    return "\n".join(lines)


def write_report(
    folder: str | os.PathLike, table: Any, summary: dict[str, Any], strategies: dict[str, Any] | None = None
) -> Path:
    """Write ``report.md``, its plots and its data table into ``folder``; returns the Markdown file.

    ``table`` holds one row per pool row (a ``datasets.Dataset`` or a dict of columns): ``deita_score``,
    ``selection_rank`` (-1 when not selected), ``nearest_selected_similarity`` and, when known,
    ``complexity_scores`` and ``quality_scores``. ``strategies`` (``--compare``) maps each strategy to its
    subset: ``{"rows": [...], "similarities": [...]}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if strategies is not None:
        (folder / STRATEGIES_FILE).write_text(json.dumps(strategies) + "\n")
    if hasattr(table, "to_parquet"):
        table.to_parquet(str(folder / TABLE_FILE))
        columns = table.to_dict()
    else:
        columns = dict(table)
        from datasets import Dataset

        Dataset.from_dict(columns).to_parquet(str(folder / TABLE_FILE))
    return _render(folder, columns, summary)


def _render(folder: Path, columns: dict[str, list[Any]], summary: dict[str, Any]) -> Path:
    smoke = bool(summary.get("smoke_run"))
    rank = np.asarray(columns["selection_rank"], dtype=np.int64)
    selected_mask = rank >= 0
    scores = np.asarray([np.nan if v is None else v for v in columns[SCORE_COLUMN]], dtype=np.float64)
    similarities = np.full(int(selected_mask.sum()), np.nan)
    nearest = np.asarray([np.nan if v is None else v for v in columns[SIMILARITY_COLUMN]], dtype=np.float64)
    similarities[rank[selected_mask]] = nearest[selected_mask]
    threshold = summary.get("selection", {}).get("threshold", math.nan)
    plot_scores(columns, selected_mask, folder / "scores.png", smoke)
    plot_similarity(similarities, threshold, folder / "similarity.png", smoke)
    examined = int(summary.get("counts", {}).get("examined", int(selected_mask.sum())))
    if summary.get("selection", {}).get("strategy", "deita") != "deita":
        examined = 0  # a baseline rejects nothing: no row of the score order is marked as rejected
    plot_score_rank(scores, selected_mask, examined, folder / "score_rank.png", smoke)
    if has_multi_turn_rows(columns):
        plot_turns(columns, selected_mask, folder / "turns.png", smoke)
    else:  # one turn per row: nothing to compare
        (folder / "turns.png").unlink(missing_ok=True)
    sections = ()
    if (folder / STRATEGIES_FILE).is_file():
        strategies = json.loads((folder / STRATEGIES_FILE).read_text())
        plot_strategies(strategies, scores, threshold, folder / "strategies.png", smoke)
        sections = (render_strategies(strategies, columns, threshold),)
    path = folder / REPORT_FILE
    path.write_text(render_markdown(summary, columns, selected_mask, sections))
    return path


def strategy_table(strategies: dict[str, Any], columns: dict[str, list[Any]], threshold: float) -> list[dict]:
    """One row per strategy: its subset's size, mean scores, similarities and overlap with ``deita``."""
    scores = np.asarray([np.nan if v is None else v for v in columns[SCORE_COLUMN]], dtype=np.float64)
    deita = set(strategies.get("deita", {}).get("rows", []))
    out = []
    for name, subset in strategies.items():
        rows = np.asarray(subset["rows"], dtype=np.int64)
        sims = np.asarray(subset["similarities"], dtype=np.float64)
        sims = sims[np.isfinite(sims)]
        entry = {
            "strategy": name,
            "rows": len(rows),
            "mean_deita_score": float(np.nanmean(scores[rows])) if len(rows) else math.nan,
            "mean_nearest_similarity": float(sims.mean()) if len(sims) else math.nan,
            "above_threshold": int((sims > threshold).sum()),
            "shared_with_deita": len(deita.intersection(rows.tolist())),
        }
        for column in (COMPLEXITY_COLUMN, QUALITY_COLUMN):
            if column in columns:
                sums = [math.fsum(columns[column][r] or [math.nan]) for r in rows]
                entry[f"mean_{column}_sum"] = float(np.mean(sums)) if sums else math.nan
        out.append(entry)
    return out


def plot_strategies(strategies: dict[str, Any], scores: np.ndarray, threshold: float, path: Path, smoke: bool) -> None:
    """The deita_score and nearest-selected similarity distributions of every strategy's subset."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    finite = _finite(scores)
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    score_bins = np.linspace(low, high if high > low else low + 1.0, 31)
    colors = plt.get_cmap("tab10").colors
    for i, (name, subset) in enumerate(strategies.items()):
        rows = np.asarray(subset["rows"], dtype=np.int64)
        style = {"histtype": "step", "density": True, "linewidth": 2.5 if name == "deita" else 1.4}
        chosen = _finite(scores[rows]) if len(rows) else rows
        if len(chosen):
            left.hist(chosen, bins=score_bins, color=colors[i % 10], label=name, **style)
        sims = _finite(subset["similarities"])
        if len(sims):
            right.hist(
                sims,
                bins=np.linspace(min(float(sims.min()), threshold) - 0.02, 1.0, 41),
                color=colors[i % 10],
                label=name,
                **style,
            )
    left.set_title("deita_score of each subset")
    left.set_ylabel("density")
    left.legend(fontsize=8)
    right.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold}")
    right.set_title("similarity to the nearest row selected before")
    right.legend(fontsize=8)
    _finish(fig, path, "Selection strategies at the same budget", smoke)


def render_strategies(strategies: dict[str, Any], columns: dict[str, list[Any]], threshold: float) -> str:
    """The report's section comparing every strategy's subset (``--compare``)."""
    from .strategies import PAPER_ROWS

    table = strategy_table(strategies, columns, threshold)
    extra = [key for key in (f"mean_{COMPLEXITY_COLUMN}_sum", f"mean_{QUALITY_COLUMN}_sum") if key in table[0]]
    lines = [
        "## Strategies",
        "",
        "Every strategy on the same pool at the same budget (docs/selection.md maps them to the paper's rows).",
        "",
        "![strategies](strategies.png)",
        "",
        "| strategy | paper | rows | mean deita_score | "
        + "".join(f"mean {key[5:-4]} (sum over turns) | " for key in extra)
        + f"mean nearest similarity | above {threshold} | shared with deita |",
        "|---|---|---|---|" + "---|" * len(extra) + "---|---|---|",
    ]
    for entry in table:
        lines.append(
            f"| `{entry['strategy']}` | {PAPER_ROWS.get(entry['strategy'], '')} | {entry['rows']:,} | "
            f"{entry['mean_deita_score']:.3f} | "
            + "".join(f"{entry[key]:.3f} | " for key in extra)
            + f"{entry['mean_nearest_similarity']:.3f} | {entry['above_threshold']:,} | "
            f"{entry['shared_with_deita']:,} |"
        )
    return "\n".join(lines) + "\n"


def remake_report(output_dir: str | os.PathLike) -> Path:
    """Make the report of a finished ``select`` or ``run`` again from its output folder (``deita-hf report``)."""
    output_dir = Path(output_dir)
    summary_path = output_dir / SUMMARY_FILE
    table_path = output_dir / "report" / TABLE_FILE
    if not summary_path.is_file():
        raise MissingFileError(f"{summary_path} does not exist: is {output_dir} the output folder of a finished run?")
    if not table_path.is_file():
        raise MissingFileError(
            f"{table_path} does not exist: only `deita-hf select` and `deita-hf run` write a selection report"
        )
    import pyarrow.parquet as pq

    summary = json.loads(summary_path.read_text())
    columns = pq.read_table(table_path).to_pydict()
    return _render(output_dir / "report", columns, summary)
