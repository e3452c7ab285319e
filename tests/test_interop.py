"""Stock `datasets` and stock TRL read the smoke run's outputs as they are (docs/pipeline.md, outputs)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset

from deita_hf.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke recipe on its first 24 rows, budget 6 (tiny random scorers, the offline MiniLM embedder)."""
    os.environ.setdefault("DEITA_HF_CACHE", str(tmp_path_factory.getbasetemp() / "deita-hf-cache"))
    out = tmp_path_factory.mktemp("smoke") / "smoke"
    assert main(["run", "--config", "recipes/smoke/select.yaml", "--output_dir", str(out), "--max_rows", "24",
                 "--budget", "6"]) == 0  # fmt: skip
    return out


def selection_order(output_dir: Path) -> list[int]:
    """Pool row numbers of the selected rows, in selection order, from the report's table."""
    import pyarrow.parquet as pq

    table = pq.read_table(output_dir / "report" / "pool_scores.parquet").to_pydict()
    ranked = sorted((rank, row) for row, rank in zip(table["row"], table["selection_rank"]) if rank >= 0)
    return [row for _, row in ranked]


def test_stock_load_dataset_reads_the_smoke_selection_in_selection_order(smoke_run):
    selected = load_dataset(str(smoke_run / "selected"))
    assert list(selected) == ["train"] and len(selected["train"]) == 6
    pool = load_dataset(str(smoke_run / "pool"), split="train")
    assert len(pool) == 24
    assert selected["train"]["id"] == [pool[row]["id"] for row in selection_order(smoke_run)]
    assert selected["train"]["deita_score"] == [pool[row]["deita_score"] for row in selection_order(smoke_run)]
    assert "embedding" in pool.column_names and "embedding" not in selected["train"].column_names
    assert selected["train"][0]["messages"][0]["role"] == "user"


def test_stock_load_dataset_reads_a_pushed_copy_of_the_selection(smoke_run, tmp_path):
    from deita_hf.hub import stage_selection

    staged = stage_selection(smoke_run, tmp_path / "repo", "me/deita-smoke")
    # The pushed card has `configs`, under which datasets caches a local folder by its name only: rebuild.
    pushed = load_dataset(str(staged), split="train", download_mode="force_redownload")
    assert pushed["id"] == load_dataset(str(smoke_run / "selected"), split="train")["id"]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    """A tiny random LLaMA whose tokenizer carries a chat template (Vicuna v1.1), saved like a Hub model."""
    from deita_hf.chat_template import load_tokenizer
    from deita_hf.testing import save_tiny_scorer

    folder = save_tiny_scorer(tmp_path_factory.mktemp("chat") / "tiny-chat", seed=0)
    load_tokenizer(str(folder)).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_stock_trl_sft_cli_trains_on_the_smoke_selection(smoke_run, chat_model, tmp_path):
    trl = shutil.which("trl", path=str(Path(sys.executable).parent)) or shutil.which("trl")
    if trl is None:
        pytest.skip("the trl command is not installed")
    # The README's line with a tiny local model, the CPU flags it gives (TRL defaults to bf16 and gradient
    # checkpointing), and 2 steps.
    (line,) = [line for line in (REPO_ROOT / "README.md").read_text().splitlines() if line.startswith("trl sft ")]
    words = shlex.split(line)
    replaced = {"--model_name_or_path": str(chat_model), "--output_dir": str(tmp_path / "sft")}
    words = [replaced.get(words[i - 1], word) if i else trl for i, word in enumerate(words)]
    assert words[words.index("--dataset_name") + 1] == "outputs/smoke/selected"
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "smoke").symlink_to(smoke_run)
    command = words + [
        "--bf16", "false", "--gradient_checkpointing", "false", "--use_cpu", "true",
        "--max_steps", "2", "--per_device_train_batch_size", "2", "--max_length", "128",
        "--dtype", "float32", "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    losses = [float(value) for value in re.findall(r"'loss': '?([0-9.]+)", output)]
    assert len(losses) == 2, output[-4000:]
    assert (tmp_path / "sft" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "sft" / "config.json").read_text())["model_type"] == "llama"
