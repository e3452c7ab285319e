"""The paper's selection baselines beside Deita (docs/selection.md): each strategy's exact rows on a small pool."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, load_dataset

from deita_hf.cli import main
from deita_hf.selection import SelectionInputError
from deita_hf.strategies import STRATEGIES, nearest_similarities, strategy_indices
from deita_hf.subset import deita_select

# Six rows. deita_score = sum over turns of complexity x quality; "length" = characters of the user turns.
#   row  users            length  complexity  quality    deita_score  embedding
#   0    aaaa             4       2.0         3.0        6.0          [1, 0]
#   1    bb, cccccc       8       1.0 + 1.5   5.0 + 4.0  11.0         [1, 0.01]      near-duplicate of 0 and 3
#   2    dddddddddd       10      4.0         1.0        4.0          [0, 1]
#   3    eee              3       3.0         4.0        12.0         [0.999, 0.02]  near-duplicate of 0
#   4    ff               2       5.0         2.0        10.0         [0.7, 0.7]
#   5    gggg             4       0.5         2.0        1.0          [-1, 0]
USERS = [["aaaa"], ["bb", "cccccc"], ["d" * 10], ["eee"], ["ff"], ["gggg"]]
COMPLEXITY = [[2.0], [1.0, 1.5], [4.0], [3.0], [5.0], [0.5]]
QUALITY = [[3.0], [5.0, 4.0], [1.0], [4.0], [2.0], [2.0]]
VECTORS = [[1, 0], [1, 0.01], [0, 1], [0.999, 0.02], [0.7, 0.7], [-1, 0]]


def conversation(users):
    messages = []
    for i, text in enumerate(users):
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": f"answer {i}"}]
    return messages


def small_pool(with_embedding: bool = True) -> Dataset:
    columns = {
        "id": [f"r{i}" for i in range(6)],
        "messages": [conversation(users) for users in USERS],
        "complexity_scores": COMPLEXITY,
        "quality_scores": QUALITY,
        "deita_score": [math.fsum(c * q for c, q in zip(cs, qs)) for cs, qs in zip(COMPLEXITY, QUALITY)],
    }
    if with_embedding:
        columns["embedding"] = np.asarray(VECTORS, dtype=np.float32)
    return Dataset.from_dict(columns)


# Worked out by hand from the table above (budget 3).
EXPECTED = {
    "deita": [3, 4, 2],  # 1 and 0 are rejected as near-duplicates of 3 (cos > 0.9)
    "score": [3, 1, 4],
    "complexity": [4, 2, 3],
    "quality": [1, 3, 0],
    "length": [2, 1, 0],
    "random": [3, 2, 5],  # numpy.random.default_rng(42).permutation(6)[:3]
}


def test_the_pool_has_the_scores_of_the_table():
    assert small_pool()["deita_score"] == [6.0, 11.0, 4.0, 12.0, 10.0, 1.0]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_selects_its_exact_rows(strategy):
    result = strategy_indices(small_pool(), 3, strategy, seed=42, progress=False)
    assert result.indices == EXPECTED[strategy]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_deita_select_takes_the_strategy_and_keeps_every_column(strategy):
    selected = deita_select(small_pool(), budget=3, strategy=strategy, seed=42, progress=False)
    assert selected["id"] == [f"r{i}" for i in EXPECTED[strategy]]
    assert selected.column_names == [*small_pool().column_names, "nearest_selected_similarity"]


def test_ties_keep_the_row_order():
    # Rows 0 and 5 both have 4 characters of instructions: 0 comes first.
    assert strategy_indices(small_pool(), 4, "length", progress=False).indices == [2, 1, 0, 5]


def test_random_is_reproducible_from_its_seed():
    pool = small_pool()
    first = strategy_indices(pool, 4, "random", seed=7, progress=False).indices
    assert strategy_indices(pool, 4, "random", seed=7, progress=False).indices == first
    assert first == np.random.default_rng(7).permutation(6)[:4].tolist() == [5, 2, 0, 4]
    assert strategy_indices(pool, 4, "random", seed=8, progress=False).indices != first


def test_a_baseline_reports_each_rows_similarity_to_the_rows_before_it():
    result = strategy_indices(small_pool(), 3, "score", progress=False)
    unit = np.asarray(VECTORS, dtype=np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    expected = [math.nan, unit[1] @ unit[3], max(unit[4] @ unit[3], unit[4] @ unit[1])]
    assert math.isnan(result.similarities[0])
    assert result.similarities[1:] == pytest.approx(expected[1:], abs=1e-6)
    assert result.similarities[1] > 0.9  # what the Repr Filter would have rejected
    assert (result.examined, result.rejected) == (3, 0)


def test_nearest_similarities_of_the_deita_rows_equal_the_repr_filter_s_own():
    pool = small_pool()
    result = strategy_indices(pool, 3, "deita", progress=False)
    assert nearest_similarities(pool, result.indices)[1:] == pytest.approx(result.similarities[1:], abs=1e-6)


@pytest.mark.parametrize("strategy", ["score", "complexity", "quality", "length", "random"])
def test_baselines_need_no_embedding_column(strategy):
    selected = deita_select(small_pool(with_embedding=False), budget=3, strategy=strategy, seed=42, progress=False)
    assert selected["id"] == [f"r{i}" for i in EXPECTED[strategy]]
    assert all(math.isnan(s) for s in selected["nearest_selected_similarity"])


def test_an_unknown_strategy_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match="unknown selection strategy 'longest'.*'deita', 'score'"):
        strategy_indices(small_pool(), 3, "longest")


def test_a_nan_score_sum_names_the_row():
    pool = small_pool().map(lambda row, i: {"quality_scores": [math.nan] if i == 4 else row["quality_scores"]},
                            with_indices=True)  # fmt: skip
    with pytest.raises(SelectionInputError, match="'quality_scores' is missing, empty or NaN in row 4"):
        strategy_indices(pool, 3, "quality")


# -- the command ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool_folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pool") / "pool"
    small_pool().save_to_disk(str(path))
    return path


def test_select_strategy_from_the_command_line(pool_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["select", "--dataset_name", str(pool_folder), "--output_dir", str(out), "--budget", "3",
                 "--strategy", "quality"]) == 0  # fmt: skip
    assert (
        "selected   3 of budget 3 by the 'quality' strategy (a baseline: no diversity filter)"
        in capsys.readouterr().out
    )
    assert load_dataset(str(out / "selected"), split="train")["id"] == ["r1", "r3", "r0"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["selection"] == {"budget": 3, "threshold": 0.9, "strategy": "quality", "seed": 42}
    assert summary["counts"]["rejected_too_similar"] == 0
    report = (out / "report" / "report.md").read_text()
    assert "rows by the `quality` strategy, a baseline of the paper (Evol Quality" in report


def test_compare_reports_every_strategy_beside_the_others(pool_folder, tmp_path):
    out = tmp_path / "out"
    assert main(["select", "--dataset_name", str(pool_folder), "--output_dir", str(out), "--budget", "3",
                 "--compare", "true"]) == 0  # fmt: skip
    strategies = json.loads((out / "report" / "strategies.json").read_text())
    assert list(strategies) == list(STRATEGIES)
    assert {name: subset["rows"] for name, subset in strategies.items()} == EXPECTED
    assert (out / "report" / "strategies.png").stat().st_size > 10_000
    report = (out / "report" / "report.md").read_text()
    assert "![strategies](strategies.png)" in report
    # deita: scores 12, 10, 4 (mean 8.667); score: 12, 11, 10 (mean 11.0), one row above the threshold.
    assert "| `deita` | Deita: score-first" in report and "| 3 | 8.667 |" in report
    score_line = next(line for line in report.splitlines() if line.startswith("| `score` |"))
    assert "| 3 | 11.000 |" in score_line and score_line.endswith("| 1 | 2 |")  # 1 above 0.9; shares 3 and 4
    # `deita-hf report` makes the same page again from the saved subsets.
    before = (out / "report" / "report.md").read_text()
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "report.md").read_text() == before


def test_rows_without_a_score_are_left_out_for_every_strategy(tmp_path):
    pool = small_pool()
    pool = pool.map(lambda row, i: {"deita_score": math.nan if i == 3 else row["deita_score"]}, with_indices=True)
    pool.save_to_disk(str(tmp_path / "pool"))
    out = tmp_path / "out"
    assert main(["select", "--dataset_name", str(tmp_path / "pool"), "--output_dir", str(out), "--budget", "3",
                 "--strategy", "score", "--compare", "true"]) == 0  # fmt: skip
    assert load_dataset(str(out / "selected"), split="train")["id"] == ["r1", "r4", "r0"]
    strategies = json.loads((out / "report" / "strategies.json").read_text())
    # Pool row numbers, row 3 never among them: deita rejects 0 as a near-duplicate of 1.
    assert strategies["deita"]["rows"] == [1, 4, 2]
    assert strategies["complexity"]["rows"] == [4, 2, 1]
    assert all(3 not in subset["rows"] for subset in strategies.values())


@pytest.mark.parametrize("strategy", ["deita", "complexity", "random"])
def test_the_command_and_deita_select_leave_out_the_same_rows_and_build_the_same_output(tmp_path, strategy):
    pool = small_pool().map(
        lambda row, i: {"deita_score": math.nan if i == 3 else row["deita_score"]}, with_indices=True
    )
    pool.save_to_disk(str(tmp_path / "pool"))
    out = tmp_path / "out"
    argv = ["select", "--dataset_name", str(tmp_path / "pool"), "--output_dir", str(out), "--budget", "3"]
    assert main([*argv, "--strategy", strategy]) == 0
    expected = deita_select(pool, 3, strategy=strategy, progress=False, unscored="leave_out")
    with pytest.raises(SelectionInputError, match=r"'deita_score' is NaN in row 3;"):
        deita_select(pool, 3, strategy=strategy, progress=False)
    selected = load_dataset(str(out / "selected"), split="train")
    assert selected["id"] == expected["id"] and "r3" not in selected["id"]
    np.testing.assert_array_equal(selected["nearest_selected_similarity"], expected["nearest_selected_similarity"])
    assert json.loads((out / "summary.json").read_text())["counts"]["left_out_without_score"] == 1
