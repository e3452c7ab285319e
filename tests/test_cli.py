"""The `deita-hf` command line: recipes and flags, --help, dispatch, and the messages for the usual mistakes."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import pytest

from deita_hf.cli import DISPATCHED, main
from deita_hf.config import (
    ALL_ARGUMENTS,
    COMMAND_ARGUMENTS,
    DataArguments,
    HubArguments,
    ScoringArguments,
    SelectionArguments,
    load_recipe,
    parse_recipe,
)
from deita_hf.constants import (
    COMPLEXITY_SCORER_ID,
    DEFAULT_EMBEDDING_MODEL_ID,
    DEITA_SOTA_POOL_ID,
    QUALITY_SCORER_ID,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO_ROOT / "recipes").glob("*/select.yaml"))


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- recipes and flags -------------------------------------------------------------------------------------------
def test_flags_override_the_recipe_which_overrides_the_defaults(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "dataset_name: pool.jsonl\nbudget: 100\nthreshold: 0.8\n")
    data, selection = parse_recipe(["--config", str(recipe), "--budget", "7"], [DataArguments, SelectionArguments])
    assert data.dataset_name == "pool.jsonl"
    assert selection.budget == 7
    assert selection.threshold == 0.8
    assert data.shard_size == 1000


@pytest.mark.parametrize("value", ["false", "False", "no", "0"])
def test_false_is_false_on_the_command_line(value):
    (data,) = parse_recipe(["--overwrite", value, "--keep_shards", value], [DataArguments])
    assert data.overwrite is False and data.keep_shards is False


def test_a_bare_boolean_flag_is_true():
    (data,) = parse_recipe(["--overwrite"], [DataArguments])
    assert data.overwrite is True


@pytest.mark.parametrize("text", ["overwrite: false", 'overwrite: "false"', "overwrite: 'no'"])
def test_false_is_false_in_a_recipe(tmp_path, text):
    recipe = write_recipe(tmp_path / "r.yaml", text + "\n")
    (data,) = parse_recipe(["--config", str(recipe)], [DataArguments])
    assert data.overwrite is False


def test_a_flag_false_overrides_a_recipe_true(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "overwrite: true\n")
    (data,) = parse_recipe(["--config", str(recipe), "--overwrite", "false"], [DataArguments])
    assert data.overwrite is False


def test_a_recipe_may_hold_options_of_other_commands(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "budget: 5\nembedding_model: offline-minilm\n")
    (scoring,) = parse_recipe(["--config", str(recipe)], [ScoringArguments])
    assert scoring.complexity_model == COMPLEXITY_SCORER_ID


def test_an_unknown_recipe_option_names_the_closest_one(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "treshold: 0.8\n")
    with pytest.raises(ValueError, match=r"unknown option 'treshold'; did you mean 'threshold'\?"):
        load_recipe(recipe)


def test_a_recipe_that_is_not_a_mapping_is_refused(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "- budget: 5\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        load_recipe(recipe)


def test_help_documents_every_option_with_its_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # no line wrapping inside the help texts
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for group in ALL_ARGUMENTS:
        for field in dataclasses.fields(group):
            assert f"--{field.name} " in text or f"--{field.name}," in text, field.name
            help_text = " ".join(field.metadata["help"].split())
            assert f"{help_text} (default: {field.default})" in text, field.name


def test_each_command_offers_only_its_own_options(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = capsys.readouterr().out
    assert "--complexity_model" in text and "--budget" not in text and "--embedding_model" not in text


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in ("score", "embed", "select", "run", "report", *DISPATCHED):
        assert f"\n  {command} " in text


# -- the recipes in recipes/ ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", RECIPES, ids=[p.parent.name for p in RECIPES])
def test_every_recipe_parses(path):
    groups = parse_recipe(["--config", str(path)], COMMAND_ARGUMENTS["run"])
    values = {k: v for g in groups for k, v in vars(g).items()}
    assert set(load_recipe(path)) <= set(values)
    assert values["budget"] >= 1 and values["output_dir"].startswith("outputs/")


@pytest.mark.parametrize(("name", "budget"), [("deita-6k", 6000), ("deita-10k", 10000)])
def test_released_selection_recipes_use_the_papers_settings(name, budget):
    recipe = load_recipe(REPO_ROOT / "recipes" / name / "select.yaml")
    assert recipe["dataset_name"] == DEITA_SOTA_POOL_ID
    assert recipe["complexity_model"] == COMPLEXITY_SCORER_ID
    assert recipe["quality_model"] == QUALITY_SCORER_ID
    assert recipe["embedding_model"] == DEFAULT_EMBEDDING_MODEL_ID
    assert recipe["embedding_kind"] == "causal_lm"
    assert recipe["embedding_max_length"] == 2048
    assert recipe["threshold"] == 0.9
    assert recipe["budget"] == budget


def test_the_smoke_recipe_is_offline_and_labelled():
    text = (REPO_ROOT / "recipes" / "smoke" / "select.yaml").read_text()
    recipe = load_recipe(REPO_ROOT / "recipes" / "smoke" / "select.yaml")
    assert "SMOKE RUN" in text and "mean nothing" in text
    assert recipe["complexity_model"].startswith("tiny-random:") and recipe["quality_model"].startswith("tiny-random:")
    assert recipe["embedding_model"] == "offline-minilm"
    assert (REPO_ROOT / recipe["dataset_name"]).is_file()


# -- dispatch --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", sorted(DISPATCHED))
def test_training_commands_get_the_remaining_arguments(monkeypatch, command):
    calls = []
    fake = types.ModuleType(DISPATCHED[command])
    fake.main = lambda argv=None: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, DISPATCHED[command], fake)
    assert main([command, "--config", "x.yaml", "--learning_rate", "1e-5"]) == 0
    assert calls == [["--config", "x.yaml", "--learning_rate", "1e-5"]]


# -- the usual mistakes ----------------------------------------------------------------------------------------------
def test_an_unknown_command_exits_2(capsys):
    assert main(["selekt"]) == 2
    assert "unknown command 'selekt'" in capsys.readouterr().err


def test_a_missing_input_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert main(["score", "--dataset_name", str(missing), "--output_dir", str(tmp_path / "out")]) == 1
    assert f"no such file or folder: {missing}" in capsys.readouterr().err


def test_a_file_of_unknown_format_is_named(tmp_path, capsys):
    (tmp_path / "rows.txt").write_text("a")
    assert main(["score", "--dataset_name", str(tmp_path / "rows.txt"), "--output_dir", str(tmp_path / "out")]) == 1
    assert "unknown file format '.txt'" in capsys.readouterr().err


def test_a_finished_output_folder_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"command": "run"}))
    (tmp_path / "rows.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    assert main(["score", "--dataset_name", str(tmp_path / "rows.jsonl"), "--output_dir", str(out)]) == 1
    error = capsys.readouterr().err
    assert "already holds a finished run" in error and "--overwrite" in error
    assert (out / "summary.json").is_file()


def test_a_folder_of_other_files_needs_overwrite(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "rows.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    assert main(["score", "--dataset_name", str(tmp_path / "rows.jsonl"), "--output_dir", str(tmp_path)]) == 1
    assert "already holds other files" in capsys.readouterr().err


def test_select_without_a_budget_says_so(tmp_path, capsys):
    assert main(["select", "--dataset_name", "x.jsonl", "--output_dir", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    # Said once, without the command's prefix twice.
    assert error.startswith("deita-hf select: error: set how many rows to select with --budget")
    assert error.count("deita-hf select") == 1


def test_select_on_a_pool_without_embeddings_says_which_command_makes_them(tmp_path, capsys):
    (tmp_path / "rows.jsonl").write_text('{"instruction": "a", "output": "b", "deita_score": 3.0}\n')
    assert main(["select", "--dataset_name", str(tmp_path / "rows.jsonl"), "--output_dir", str(tmp_path / "out"),
                 "--budget", "1"]) == 1  # fmt: skip
    assert "no 'embedding' column; make it with `deita-hf embed`" in capsys.readouterr().err


def test_a_missing_output_folder_option_says_so(capsys):
    assert main(["score", "--dataset_name", "x.jsonl"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("deita-hf score: error: set the output folder with --output_dir")
    assert error.count("deita-hf score") == 1


def test_a_bad_choice_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--export_format", "xlsx"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'xlsx'" in capsys.readouterr().err


def test_report_of_a_folder_without_a_run_says_so(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "summary.json does not exist" in capsys.readouterr().err


def test_hub_options_are_documented_on_report(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(HubArguments):
        assert f"--{field.name}" in text


@pytest.mark.parametrize("command", ["sft", "dpo", "make-scorer-data", "train-scorer"])
def test_training_commands_name_themselves_in_their_usage_line(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert capsys.readouterr().out.startswith(f"usage: deita-hf {command} ")


@pytest.mark.parametrize(
    "line, message",
    [
        ("budget: 2.5", "budget must be an integer, got 2.5 (float)"),
        ("budget: true", "budget must be an integer, got True (bool)"),
        ("embedding_batch_size: 0", "embedding_batch_size must be at least 1, got 0"),
        ("shard_size: 2.5", "shard_size must be an integer, got 2.5 (float)"),
        ("max_rows: 2.5", "max_rows must be an integer, got 2.5 (float)"),
        ("dataset_name: 123", "dataset_name must be a string, got 123 (int)"),
        ("output_dir: [a, b]", "output_dir must be a string, got ['a', 'b'] (list)"),
        ("threshold: yes", "threshold must be a number, got True (bool)"),
        ("on_error: skip", "on_error must be one of 'raise', 'nan', got 'skip'"),
    ],
)
def test_every_recipe_value_is_checked_before_any_work(tmp_path, capsys, monkeypatch, line, message):
    import deita_hf.pipeline.run

    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(deita_hf.pipeline.run, "load_input", no_work)
    recipe = write_recipe(tmp_path / "r.yaml", f"dataset_name: pool.jsonl\noutput_dir: {tmp_path / 'out'}\n{line}\n")
    assert main(["run", "--config", str(recipe), "--budget", "3"] if "budget" not in line else
                ["run", "--config", str(recipe)]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert f"recipe {recipe}: " in err
    assert message in err
    assert not (tmp_path / "out").exists()
