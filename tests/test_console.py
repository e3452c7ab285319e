"""The console of `deita-hf`: one progress bar per step, log lines above the bars, details with --verbose."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from deita_hf.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "deita_hf" / "data" / "alpaca_eval_sample.jsonl"


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory) -> Path:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:16]]
    for row in rows:
        for message in row["messages"]:
            message["content"] = message["content"][:200]
    path = tmp_path_factory.mktemp("console") / "pool.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run(pool_file: Path, out: Path, *extra: str) -> int:
    os.environ.setdefault("DEITA_HF_CACHE", str(out.parent / "deita-hf-cache"))
    return main(["run", "--dataset_name", str(pool_file), "--output_dir", str(out), "--budget", "4",
                 "--complexity_model", "tiny-random:seed=1", "--quality_model", "tiny-random:seed=2",
                 "--embedding_model", "tiny-random:seed=3", "--scorer_max_length", "160",
                 "--embedding_max_length", "128", "--shard_size", "8", *extra])  # fmt: skip


def bars(stderr: str) -> set[str]:
    """The names of the progress bars drawn (the text before ':' of each bar update)."""
    return {part.split(":")[0].strip() for part in stderr.split("\r") if "%|" in part}


def test_by_default_one_bar_per_step_and_no_loading_details(pool_file, tmp_path, capsys):
    assert run(pool_file, tmp_path / "out") == 0
    stderr = capsys.readouterr().err
    assert bars(stderr) == {"score", "embed", "selecting"}
    assert "[deita-hf] loading" not in stderr and "Loading weights" not in stderr


def test_verbose_shows_the_details_each_on_its_own_line_above_the_bars(pool_file, tmp_path, capsys):
    assert run(pool_file, tmp_path / "out", "--verbose") == 0
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.split("\n") if "[deita-hf] loading" in line]
    assert len(lines) == 3  # two scorers, one embedder
    # Written with tqdm.write: after the bar is cleared (\r), the line starts with the message.
    assert all(line.split("\r")[-1].startswith("[deita-hf] loading") for line in lines), lines


def test_a_log_line_is_written_once_however_often_the_command_runs_in_one_process(tmp_path, capsys):
    rows = [
        {"instruction": f"q{i}", "output": f"a{i}", "deita_score": float(i), "embedding": [1.0, i]} for i in range(3)
    ]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(row) + "\n" for row in rows))
    line = "[deita-hf] the pool ran out before the budget was filled: 3 of 10 rows selected"
    for run_number in range(2):
        assert main(["select", "--dataset_name", str(pool), "--output_dir", str(tmp_path / f"out{run_number}"),
                     "--budget", "10", "--strategy", "score"]) == 0  # fmt: skip
        assert capsys.readouterr().err.count(line) == 1
    assert len(logging.getLogger("deita_hf").handlers) == 1
