"""The selection report: Markdown with PNG plots, made by `select` and again by `deita-hf report`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import Dataset

from deita_hf.cli import main
from deita_hf.report import PLOTS, SMOKE_NOTE, render_markdown


def load_folder(path):
    """A dataset folder written by deita-hf (Hub layout) or by ``save_to_disk``."""
    from deita_hf.io import load_input

    return load_input(str(path))


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_pool(rows: int = 40, seed: int = 0) -> Dataset:
    """A scored and embedded pool without models: random scores, and embeddings in near-duplicate pairs."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(rows // 2, 8)).astype(np.float32)
    embeddings = np.repeat(base, 2, axis=0) + rng.normal(scale=0.05, size=(rows, 8)).astype(np.float32)
    turns = [1 + i % 3 for i in range(rows)]
    complexity = [rng.uniform(1, 6, size=t).tolist() for t in turns]
    quality = [rng.uniform(1, 6, size=t).tolist() for t in turns]
    return Dataset.from_dict(
        {
            "id": [f"row-{i}" for i in range(rows)],
            "messages": [
                [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(rows)
            ],
            "complexity_scores": complexity,
            "quality_scores": quality,
            "deita_score": [sum(c * q for c, q in zip(cs, qs)) for cs, qs in zip(complexity, quality)],
            "embedding": list(embeddings),
        }
    )


@pytest.fixture(scope="module")
def selection_run(tmp_path_factory) -> Path:
    """A finished `deita-hf select` of 8 rows from the 40-row synthetic pool."""
    folder = tmp_path_factory.mktemp("report")
    synthetic_pool().save_to_disk(str(folder / "pool"))
    out = folder / "out"
    assert main(["select", "--dataset_name", str(folder / "pool"), "--output_dir", str(out), "--budget", "8"]) == 0
    return out


def test_select_writes_the_report_and_its_plots(selection_run):
    report = selection_run / "report"
    for name in PLOTS:
        assert (report / name).read_bytes()[:8] == PNG_MAGIC, name
    text = (report / "report.md").read_text()
    for name in PLOTS:
        assert f"]({name})" in text, name


def test_report_counts_are_the_summarys(selection_run):
    counts = json.loads((selection_run / "summary.json").read_text())["counts"]
    text = (selection_run / "report" / "report.md").read_text()
    assert f"| pool rows | {counts['pool']} |" in text
    assert f"| selected | {counts['selected']} |" in text
    assert f"| examined by the selection | {counts['examined']} |" in text
    assert f"| rejected as too similar | {counts['rejected_too_similar']} |" in text
    assert f"| turns in the pool | {counts['turns']} |" in text
    assert counts["turns"] == sum(1 + i % 3 for i in range(40))
    # A pool scored elsewhere: the scorer counts of this run are unknown, and the report says so.
    assert "| shortened scorer prompts | n/a |" in text


def test_the_data_table_marks_the_selection_in_order(selection_run):
    table = pq.read_table(selection_run / "report" / "pool_scores.parquet").to_pydict()
    selected = load_folder(selection_run / "selected")
    ranks = {row: rank for row, rank in zip(table["row"], table["selection_rank"]) if rank >= 0}
    assert [f"row-{row}" for row, _ in sorted(ranks.items(), key=lambda item: item[1])] == selected["id"]
    nearest = [table["nearest_selected_similarity"][row] for row in sorted(ranks, key=ranks.get)]
    np.testing.assert_array_equal(nearest, selected["nearest_selected_similarity"])


def test_near_duplicates_are_rejected_and_counted(selection_run):
    counts = json.loads((selection_run / "summary.json").read_text())["counts"]
    selected = load_folder(selection_run / "selected")
    pairs = [int(row.split("-")[1]) // 2 for row in selected["id"]]
    assert len(set(pairs)) == len(pairs)  # never both rows of a near-duplicate pair
    assert counts["rejected_too_similar"] >= 1


def test_report_command_makes_the_same_report_again(selection_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(selection_run, out)
    for name in ("report.md", *PLOTS):
        (out / "report" / name).unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "report.md").read_text() == (selection_run / "report" / "report.md").read_text()
    for name in PLOTS:
        assert (out / "report" / name).read_bytes()[:8] == PNG_MAGIC


def test_a_smoke_run_is_labelled_and_a_real_run_is_not(selection_run):
    summary = json.loads((selection_run / "summary.json").read_text())
    table = pq.read_table(selection_run / "report" / "pool_scores.parquet").to_pydict()
    mask = np.asarray(table["selection_rank"]) >= 0
    assert summary["smoke_run"] is False
    assert SMOKE_NOTE not in render_markdown(summary, table, mask)
    assert SMOKE_NOTE in render_markdown({**summary, "smoke_run": True}, table, mask)


def test_score_statistics_compare_pool_and_selection(selection_run):
    text = (selection_run / "report" / "report.md").read_text()
    pool = load_folder(selection_run.parent / "pool")["deita_score"]
    selected = load_folder(selection_run / "selected")["deita_score"]
    assert f"| mean | {np.mean(pool):.3f} | {np.mean(selected):.3f} |" in text
    assert f"| max | {max(pool):.3f} | {max(selected):.3f} |" in text


def test_a_budget_the_pool_cannot_fill_is_a_warning_in_the_summary_report_and_card(tmp_path, capsys):
    synthetic_pool().save_to_disk(str(tmp_path / "pool"))
    out = tmp_path / "out"
    assert (
        main(["select", "--dataset_name", str(tmp_path / "pool"), "--output_dir", str(out), "--budget", "1000"]) == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    selected = summary["counts"]["selected"]
    assert selected < 40
    expected = f"the pool ran out before the budget was filled: {selected:,} of 1,000 rows selected"
    assert summary["warnings"] and summary["warnings"][0].startswith(expected)
    captured = capsys.readouterr()
    assert f"  WARNING    {expected}" in captured.out
    assert f"[deita-hf] {expected}" in captured.err
    assert f"> **Warning**: {expected}" in (out / "report" / "report.md").read_text()
    assert f"> **Warning**: {expected}" in (out / "selected" / "README.md").read_text()


def test_a_filled_budget_has_no_warning(selection_run):
    summary = json.loads((selection_run / "summary.json").read_text())
    assert "warnings" not in summary and "Warning" not in (selection_run / "report" / "report.md").read_text()


def test_turns_plot_only_for_a_pool_with_multi_turn_rows(tmp_path):
    single = synthetic_pool()
    single = single.map(lambda row: {"complexity_scores": row["complexity_scores"][:1],
                                     "quality_scores": row["quality_scores"][:1]})  # fmt: skip
    single.save_to_disk(str(tmp_path / "pool"))
    out = tmp_path / "out"
    assert main(["select", "--dataset_name", str(tmp_path / "pool"), "--output_dir", str(out), "--budget", "8"]) == 0
    assert not (out / "report" / "turns.png").exists()
    assert "turns.png" not in (out / "report" / "report.md").read_text()
    assert (out / "report" / "scores.png").exists()
