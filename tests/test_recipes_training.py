"""The shipped training recipes: they parse into the scripts' config classes with the paper's hyperparameters,
their READMEs launch what exists, and the scripts train end to end under `accelerate launch` on 2 CPU processes
(DeepSpeed ZeRO-3 and DDP) on the real data in ../shared/data, starting from the shipped recipe YAMLs."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ports import free_port

from deita_hf.constants import (
    DEITA_6K_DATASET_ID,
    DEITA_10K_DATASET_ID,
    DPO_DATASET_ID,
    DPO_DATASET_SPLIT,
    DPO_NUM_PAIRS,
    DPO_SAMPLE_SEED,
    PAPER_RESULTS,
)
from deita_hf.training import dpo, sft

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = REPO_ROOT / "recipes"
ACCELERATE_CONFIGS = RECIPES / "accelerate_configs"
GPUS = 8  # the hardware every recipe README assumes, and num_processes in the accelerate configs

# SPEC section 8, one row per shipped recipe: (script, global batch, epochs, LR, warmup ratio, schedule, data).
PAPER = {
    "deita-mistral-7b/sft.yaml": (sft, 512, 6, 2e-5, 0.1, "cosine", DEITA_6K_DATASET_ID),
    "deita-llama2-13b/sft.yaml": (sft, 128, 6, 2e-5, 0.1, "cosine", DEITA_10K_DATASET_ID),
    "deita-llama1-13b/sft.yaml": (sft, 128, 6, 1e-5, 0.03, "cosine", DEITA_10K_DATASET_ID),
    "deita-mistral-7b/dpo.yaml": (dpo, 32, 9, 5e-7, 0.1, "linear", "HuggingFaceH4/ultrafeedback_binarized"),
}


def parse_recipe(name: str, *overrides: str):
    # The recipes ask for bf16, which TrainingArguments refuses on a machine without a GPU unless use_cpu is set.
    module = PAPER[name][0]
    return module.make_parser().parse_args_and_config(
        ["--config", str(RECIPES / name), "--use_cpu", "true", *overrides]
    )


def test_every_shipped_training_recipe_is_checked_here():
    shipped = {str(path.relative_to(RECIPES)) for path in RECIPES.glob("*/*.yaml") if path.stem in ("sft", "dpo")}
    assert shipped == set(PAPER)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_parses_into_the_config_classes_with_the_papers_hyperparameters(name):
    # fail_with_unknown_args (TrlParser's default) makes a misspelt or stale YAML key an error.
    script_args, training_args, model_args = parse_recipe(name)
    _, global_batch, epochs, learning_rate, warmup, schedule, data = PAPER[name]
    assert training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * GPUS == global_batch
    assert training_args.num_train_epochs == epochs
    assert training_args.learning_rate == learning_rate
    assert training_args.warmup_steps == warmup  # below 1: a ratio of the total steps
    assert training_args.lr_scheduler_type.value == schedule
    assert training_args.max_length == 2048
    assert training_args.bf16 is True
    assert script_args.dataset_name == data
    assert script_args.reproduces in PAPER_RESULTS
    assert model_args.dtype == "bfloat16"


@pytest.mark.parametrize("name", sorted(name for name in PAPER if name.endswith("sft.yaml")))
def test_sft_recipes_train_on_the_assistant_tokens_only(name):
    _, training_args, _ = parse_recipe(name)
    assert training_args.assistant_only_loss is True
    assert training_args.packing is False


def test_dpo_recipe_samples_ten_thousand_ultrafeedback_pairs_with_seed_42():
    script_args, training_args, model_args = parse_recipe("deita-mistral-7b/dpo.yaml")
    assert (script_args.dataset_train_split, script_args.dataset_sample_size) == ("train_prefs", 10000)
    assert script_args.dataset_sample_seed == 42
    # The values that the paper table (constants.PAPER_RESULTS) and the docs quote.
    assert (script_args.dataset_name, script_args.dataset_train_split) == (DPO_DATASET_ID, DPO_DATASET_SPLIT)
    assert (script_args.dataset_sample_size, script_args.dataset_sample_seed) == (DPO_NUM_PAIRS, DPO_SAMPLE_SEED)
    assert script_args.dataset_revision == "2a3fb934ee563e5441bf211adaf5215c3fa508dd"  # train_prefs: 61,135 rows
    assert training_args.beta == 0.1
    assert model_args.model_name_or_path == parse_recipe("deita-mistral-7b/sft.yaml")[1].output_dir


@pytest.mark.parametrize("folder", sorted({name.split("/")[0] for name in PAPER}))
def test_recipe_readme_launches_each_recipe_with_existing_files(folder):
    readme = (RECIPES / folder / "README.md").read_text()
    launches = re.findall(
        r"accelerate launch --config_file (\S+) -m deita_hf\.training\.(sft|dpo) --config (\S+)", readme
    )
    # eval.yaml is launched by `deita-hf eval` (tests/test_evaluation.py checks its line).
    recipes = {f"{folder}/{path.name}" for path in (RECIPES / folder).glob("*.yaml") if path.name != "eval.yaml"}
    assert {config.removeprefix("recipes/") for _, _, config in launches} == recipes
    for accelerate_config, script, config in launches:
        assert (REPO_ROOT / accelerate_config).is_file()
        assert PAPER[config.removeprefix("recipes/")][0].__name__ == f"deita_hf.training.{script}"


@pytest.mark.parametrize("folder", sorted({name.split("/")[0] for name in PAPER}))
def test_recipe_readme_batch_arithmetic_matches_the_yaml(folder):
    readme = (RECIPES / folder / "README.md").read_text()
    rows = re.findall(r"^\|(?: `(\w+\.yaml)` \|)? (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", readme, flags=re.MULTILINE)
    assert rows
    for recipe, per_device, accumulation, gpus, global_batch in rows:
        name = f"{folder}/{recipe or 'sft.yaml'}"
        _, training_args, _ = parse_recipe(name)
        assert (training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps) == (
            int(per_device),
            int(accumulation),
        )
        assert int(gpus) == GPUS
        assert int(per_device) * int(accumulation) * int(gpus) == int(global_batch) == PAPER[name][1]


@pytest.mark.parametrize(
    ("name", "distributed_type", "zero_stage"),
    [("zero3.yaml", "DEEPSPEED", 3), ("zero2.yaml", "DEEPSPEED", 2), ("ddp.yaml", "MULTI_GPU", None)],
)
def test_accelerate_configs_leave_precision_to_the_recipe(name, distributed_type, zero_stage):
    config = yaml.safe_load((ACCELERATE_CONFIGS / name).read_text())
    assert config["distributed_type"] == distributed_type
    assert config["num_processes"] == GPUS
    # No mixed_precision key: bf16 comes from the recipe, and the same file runs the CPU tests.
    assert "mixed_precision" not in config
    if zero_stage is not None:
        assert config["deepspeed_config"]["zero_stage"] == zero_stage
    if zero_stage == 3:
        # The saved model must be the gathered weights, not ZeRO-3's empty placeholders.
        assert config["deepspeed_config"]["zero3_save_16bit_model"] is True


# -- end to end: 2 CPU processes under accelerate launch -------------------------------------------------------------
# Tiny-model overrides of the shipped recipes for CPU: everything else (schedule, warmup ratio, assistant-only loss,
# beta, the DPO sample seed, ...) comes from the recipe YAML.
CPU_FLAGS = [
    "--dtype", "float32", "--bf16", "false", "--activation_checkpointing", "false", "--use_cpu", "true",
    "--ddp_backend", "gloo", "--report_to", "none", "--push_to_hub", "false", "--logging_steps", "1",
    "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--max_length", "256",
    "--learning_rate", "5e-3", "--attn_implementation", "eager", "--disable_tqdm", "true",
    # max_length 256 (for CPU speed) leaves some long rows of the pool without an answer token: TRL drops them.
    "--max_dropped_share", "0.25",
]  # fmt: skip


def launch(accelerate_config: str, script: str, recipe: str, *flags: str) -> str:
    """``accelerate launch --config_file recipes/accelerate_configs/<config> -m deita_hf.training.<script> --config <recipe>``
    on 2 processes; returns the output, or fails the test with its tail."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ACCELERATE_CONFIGS / accelerate_config),
        "--num_processes", "2", "--main_process_port", str(free_port()),
        "-m", f"deita_hf.training.{script}", "--config", str(RECIPES / recipe), *CPU_FLAGS, *flags,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=420)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({result.returncode}):\n{output[-6000:]}")
    return output


def logged_losses(output_dir: Path) -> list[tuple[int, float]]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    """The base model of the runs: a tiny random LLaMA with the byte-level tokenizer, saved like a Hub model."""
    from deita_hf.testing import save_tiny_scorer

    return save_tiny_scorer(tmp_path_factory.mktemp("base") / "tiny-llama", seed=0)


@pytest.fixture(scope="module")
def zero3_sft(base_model, shared_data, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("zero3") / "sft"
    launch(
        "zero3.yaml", "sft", "deita-mistral-7b/sft.yaml",
        "--model_name_or_path", str(base_model), "--output_dir", str(output_dir),
        "--dataset_name", str(shared_data / "alpaca_eval_pool.jsonl"), "--dataset_sample_size", "64",
        "--max_steps", "8", "--save_strategy", "no",
    )  # fmt: skip
    return output_dir


@pytest.fixture(scope="module")
def zero3_dpo(zero3_sft, shared_data, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("zero3") / "dpo"
    launch(
        "zero3.yaml", "dpo", "deita-mistral-7b/dpo.yaml",
        "--model_name_or_path", str(zero3_sft), "--output_dir", str(output_dir),
        "--dataset_name", str(shared_data / "alpaca_eval_prefs.jsonl"), "--dataset_sample_size", "32",
        "--max_steps", "8", "--save_strategy", "no",
    )  # fmt: skip
    return output_dir


DDP_SFT_FLAGS = [
    "--dataset_sample_size", "64", "--max_steps", "4",
    "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def ddp_sft(base_model, shared_data, tmp_path_factory) -> tuple[Path, list[tuple[int, float]], str]:
    """A DDP run of 4 steps with a checkpoint every 2; then the same command again after removing everything
    written after step 2, as if the first run had been killed there. Returns the folder, the first run's losses
    and the second run's output."""
    output_dir = tmp_path_factory.mktemp("ddp") / "sft"
    flags = [
        "--model_name_or_path", str(base_model), "--output_dir", str(output_dir),
        "--dataset_name", str(shared_data / "alpaca_eval_pool.jsonl"), "--ddp_find_unused_parameters", "false",
        *DDP_SFT_FLAGS,
    ]  # fmt: skip
    launch("ddp.yaml", "sft", "deita-mistral-7b/sft.yaml", *flags)
    uninterrupted = logged_losses(output_dir)
    for path in output_dir.iterdir():
        if path.name != "checkpoint-2":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    resumed_output = launch("ddp.yaml", "sft", "deita-mistral-7b/sft.yaml", *flags)
    return output_dir, uninterrupted, resumed_output


@pytest.fixture(scope="module")
def ddp_dpo(ddp_sft, shared_data, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("ddp") / "dpo"
    launch(
        "ddp.yaml", "dpo", "deita-mistral-7b/dpo.yaml",
        "--model_name_or_path", str(ddp_sft[0]), "--output_dir", str(output_dir),
        "--dataset_name", str(shared_data / "alpaca_eval_prefs.jsonl"), "--dataset_sample_size", "32",
        "--max_steps", "6", "--save_strategy", "no", "--ddp_find_unused_parameters", "false",
    )  # fmt: skip
    return output_dir


def assert_reloads_and_generates(output_dir: Path, base_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deita_hf.chat_template import VICUNA_CHAT_TEMPLATE

    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert tokenizer.chat_template == VICUNA_CHAT_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(output_dir, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    trained, initial = dict(model.named_parameters()), dict(base.named_parameters())
    # Real gathered weights (not ZeRO-3 placeholders), moved away from the base model by training.
    assert {name: p.shape for name, p in trained.items()} == {name: p.shape for name, p in initial.items()}
    assert any(not torch.equal(trained[name], initial[name]) for name in trained)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name a color."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    generated = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert generated.shape == (1, inputs["input_ids"].shape[1] + 8)


def assert_card(output_dir: Path, method: str, expected_rows: list[str]) -> None:
    from huggingface_hub import ModelCard

    card = ModelCard.load(output_dir / "README.md")
    assert method.lower() in card.data.tags and "deita" in card.data.tags
    losses = logged_losses(output_dir)
    text = card.text
    assert f"Training ran {losses[-1][0]} optimizer steps" in text
    assert f"from {losses[0][1]:.4f} at the first logged step to {losses[-1][1]:.4f} at the last" in text
    for row in ["| num_processes | 2 |", "| global_batch_size | 8 |", "| precision | fp32 |", *expected_rows]:
        assert row in text


@pytest.mark.slow
def test_zero3_sft_loss_goes_down(zero3_sft):
    losses = [loss for _, loss in logged_losses(zero3_sft)]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.5


@pytest.mark.slow
def test_zero3_sft_model_reloads_and_generates(zero3_sft, base_model):
    assert_reloads_and_generates(zero3_sft, base_model)


@pytest.mark.slow
def test_zero3_sft_card_renders(zero3_sft):
    assert_card(
        zero3_sft,
        "SFT",
        [
            "| deepspeed_zero_stage | 3 |",
            "| assistant_only_loss | True |",
            "| lr_scheduler_type | cosine |",
            # A tiny base model on other data: the recipe's hyperparameters, not the paper's model.
            "the paper's results for that model do not apply to this one",
        ],
    )
    assert "7.22" not in (zero3_sft / "README.md").read_text()


@pytest.mark.slow
def test_zero3_dpo_loss_starts_at_log_two_and_goes_down(zero3_dpo):
    losses = [loss for _, loss in logged_losses(zero3_dpo)]
    assert len(losses) == 8
    # At the first step the policy is its own reference: the sigmoid DPO loss is exactly ln 2.
    assert math.isclose(losses[0], math.log(2), abs_tol=1e-4)
    assert sum(losses[-3:]) / 3 < math.log(2) - 0.2


@pytest.mark.slow
def test_zero3_dpo_model_reloads_and_generates(zero3_dpo, zero3_sft):
    assert_reloads_and_generates(zero3_dpo, zero3_sft)


@pytest.mark.slow
def test_zero3_dpo_card_renders(zero3_dpo):
    assert_card(
        zero3_dpo,
        "DPO",
        [
            "| deepspeed_zero_stage | 3 |",
            "| beta | 0.1 |",
            "| lr_scheduler_type | linear |",
            "the paper's results for that model do not apply to this one",
        ],
    )
    assert "7.55" not in (zero3_dpo / "README.md").read_text()
    assert "32 rows sampled with seed 42" in (zero3_dpo / "README.md").read_text()


@pytest.mark.slow
def test_ddp_sft_loss_goes_down(ddp_sft):
    losses = [loss for _, loss in logged_losses(ddp_sft[0])]
    assert len(losses) == 4
    assert losses[-1] < losses[0] - 0.5


@pytest.mark.slow
def test_ddp_sft_rerun_resumes_from_the_last_checkpoint_and_matches_the_uninterrupted_run(ddp_sft):
    output_dir, uninterrupted, resumed_output = ddp_sft
    # The rerun trained steps 3 and 4 only; steps 1 and 2 come from checkpoint-2's state.
    assert len(re.findall(r"\{'loss': ", resumed_output)) == 2
    resumed = logged_losses(output_dir)
    assert [step for step, _ in resumed] == [1, 2, 3, 4]
    for (_, expected), (_, loss) in zip(uninterrupted, resumed):
        assert math.isclose(loss, expected, rel_tol=1e-5)


@pytest.mark.slow
def test_ddp_sft_model_reloads_and_generates_and_its_card_renders(ddp_sft, base_model):
    assert_reloads_and_generates(ddp_sft[0], base_model)
    assert_card(ddp_sft[0], "SFT", ["| assistant_only_loss | True |"])
    assert "deepspeed_zero_stage" not in (ddp_sft[0] / "README.md").read_text()


@pytest.mark.slow
def test_ddp_dpo_trains_reloads_and_its_card_renders(ddp_dpo, ddp_sft):
    losses = [loss for _, loss in logged_losses(ddp_dpo)]
    assert math.isclose(losses[0], math.log(2), abs_tol=1e-4)
    assert sum(losses[-3:]) / 3 < math.log(2) - 0.2
    assert_reloads_and_generates(ddp_dpo, ddp_sft[0])
    assert_card(ddp_dpo, "DPO", ["| beta | 0.1 |"])
