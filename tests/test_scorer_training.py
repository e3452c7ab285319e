"""Scorer training: tokenization like the scorer's, loss on the score token only, and a tiny scorer that learns."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict
from huggingface_hub import ModelCard

from deita_hf.scorers.data import ScorerDataConfig
from deita_hf.scorers.ranking import Ranking, scorer_rows
from deita_hf.scoring import ComplexityScorer, QualityScorer, digit_token_ids
from deita_hf.testing import tiny_causal_lm
from deita_hf.training.scorer import (
    ScorerTrainingConfig,
    load_scorer_tokenizer,
    main,
    parse_recipe_args,
    save_sentencepiece_model,
    spearman,
    tokenize_scorer_data,
)

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(path for path in (REPO / "recipes" / "scorers").iterdir() if path.is_dir())

# The synthetic task: the score of an instruction is the position of its one marker word in this list.
MARKERS = ["apple", "river", "stone", "cloud", "green", "music"]
FILLER = "please write tell me about the a of and some short long story poem list explain why how".split()


def synthetic_rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rankings = []
    for i in range(count):
        score = rng.randint(1, 6)
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        words.insert(rng.randint(0, len(words)), MARKERS[score - 1])
        text = " ".join(words).capitalize() + "."
        rankings.append(Ranking(f"{seed}-{i}:0", "complexity", text, "", [text], [], [0], [score]))
    return scorer_rows(rankings)


def cpu_args(tmp_path, **kwargs) -> ScorerTrainingConfig:
    kwargs = {
        "output_dir": str(tmp_path / "out"),
        "bf16": False,
        "activation_checkpointing": False,
        "use_cpu": True,
        "report_to": "none",
        **kwargs,
    }
    return ScorerTrainingConfig(**kwargs)


def test_rows_are_tokenized_as_the_scorer_prompt_then_the_score_token(byte_tokenizer):
    rows = synthetic_rows(4, seed=1)
    scorer = ComplexityScorer("unused/model", byte_tokenizer, max_length=511)
    tokenized = tokenize_scorer_data(Dataset.from_list(rows), scorer)
    digits = digit_token_ids(byte_tokenizer)
    for row, out in zip(rows, tokenized):
        prompt_ids = byte_tokenizer(ComplexityScorer.template.format(instruction=row["instruction"])).input_ids
        assert out["input_ids"] == prompt_ids + [digits[row["score"] - 1]]
        assert out["completion_mask"] == [0] * len(prompt_ids) + [1]
    assert tokenized.column_names == ["input_ids", "completion_mask"]


def test_a_sentencepiece_base_trains_on_sentencepiece_ids_and_its_scorer_keeps_them(released_layout_scorer, tmp_path):
    import sentencepiece
    from transformers import AutoModelForCausalLM

    sp = sentencepiece.SentencePieceProcessor(model_file=str(released_layout_scorer / "tokenizer.model"))
    tokenizer = load_scorer_tokenizer(str(released_layout_scorer))
    scorer = ComplexityScorer(str(released_layout_scorer), tokenizer, max_length=2047)
    instructions = ['Be concise:    "Many', "Indent:\n    def f():\n        return 1", "Plain text."]
    rows = [
        {"prompt": scorer.render(text, ""), "completion": "3", "instruction": text, "output": ""}
        for text in instructions
    ]
    tokenized = tokenize_scorer_data(Dataset.from_list(rows), scorer)
    three = sp.piece_to_id("3")
    for text, out in zip(instructions, tokenized):
        assert out["input_ids"] == [sp.bos_id(), *sp.encode(scorer.render(text, "")), three]
    assert tokenizer(rows[0]["prompt"]).input_ids != tokenized[0]["input_ids"][:-1]  # the tokenizer would differ
    # The trained scorer's folder: transformers 5 saves no tokenizer.model; the training script copies it.
    out = tmp_path / "trained"
    AutoModelForCausalLM.from_pretrained(released_layout_scorer).save_pretrained(out)
    tokenizer.save_pretrained(out)
    assert not (out / "tokenizer.model").exists()
    save_sentencepiece_model(scorer, out)
    trained = ComplexityScorer(str(out), progress=False)
    assert trained.encoding == "sentencepiece"
    assert [trained.encode(text)[0] + [three] for text in instructions] == tokenized["input_ids"]


def test_long_prompts_are_cut_in_the_middle_as_at_inference(byte_tokenizer):
    ranking = Ranking("0:0", "quality", "Why? " * 40, "", ["Because. " * 300], [], [0], [4])
    scorer = QualityScorer("unused/model", byte_tokenizer, max_length=127)
    (out,) = tokenize_scorer_data(Dataset.from_list(scorer_rows([ranking])), scorer)
    inference_ids, shortened = QualityScorer("unused/model", byte_tokenizer, max_length=127).encode(
        "Why? " * 40, "Because. " * 300
    )
    assert shortened and 100 < len(out["input_ids"]) <= 128
    assert out["input_ids"][:-1] == inference_ids
    assert byte_tokenizer.decode(out["input_ids"][-8:]).endswith("##Quality: 4")


def test_the_trainer_puts_the_loss_on_the_score_token_only(byte_tokenizer, tmp_path):
    import trl

    rows = synthetic_rows(6, seed=2)
    scorer = ComplexityScorer("unused/model", byte_tokenizer, max_length=511)
    trainer = trl.SFTTrainer(
        model=tiny_causal_lm(byte_tokenizer),
        args=cpu_args(tmp_path, max_length=512),
        train_dataset=tokenize_scorer_data(Dataset.from_list(rows), scorer),
        processing_class=byte_tokenizer,
    )
    digits = digit_token_ids(byte_tokenizer)
    for row, example in zip(rows, trainer.train_dataset):
        learned = [(i, label) for i, label in enumerate(example["labels"]) if label != -100]
        assert learned == [(len(example["input_ids"]) - 1, digits[row["score"] - 1])]


@pytest.mark.parametrize("legacy", [True, False])
def test_the_scorer_tokenizer_reloads_as_it_was_loaded(mistral_tokenizer, tmp_path, legacy):
    from transformers import AutoTokenizer, LlamaTokenizer

    base = tmp_path / "base"
    LlamaTokenizer.from_pretrained(mistral_tokenizer.name_or_path, legacy=legacy).save_pretrained(base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    (base / "tokenizer_config.json").write_text(json.dumps({**config, "legacy": legacy}))  # a base that says so
    tokenizer = load_scorer_tokenizer(str(base))
    assert tokenizer.legacy is legacy
    tokenizer.save_pretrained(tmp_path / "scorer")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "scorer")
    text = ComplexityScorer.template.format(instruction="Hi</s>USER: go")
    assert reloaded.legacy is legacy and reloaded(text).input_ids == tokenizer(text).input_ids


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"completion": "7"}, "row 0: completion must be one of the digits"),
        ({"completion": "3</s>"}, "row 0: completion must be one of the digits"),
        ({"prompt": "Rate this: x"}, "row 0: prompt is not the complexity_scores prompt"),
    ],
)
def test_a_row_that_is_not_scorer_data_is_an_error_that_names_it(byte_tokenizer, change, problem):
    rows = [{**synthetic_rows(1, seed=3)[0], **change}]
    with pytest.raises(Exception, match=problem):
        tokenize_scorer_data(Dataset.from_list(rows), ComplexityScorer("unused/model", byte_tokenizer, max_length=511))


@pytest.mark.parametrize("setting", [{"completion_only_loss": False}, {"packing": True}])
def test_settings_that_would_learn_more_than_the_score_are_refused(tmp_path, setting):
    with pytest.raises(ValueError, match="score token only|packing is not supported"):
        cpu_args(tmp_path, **setting)


def test_spearman_ranks_ties_by_their_average():
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert spearman([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)
    assert spearman([0.1, 0.4, 0.2, 0.9], [1, 1, 2, 2]) == pytest.approx(0.4472135955)


@pytest.mark.parametrize("folder", RECIPES, ids=lambda path: path.name)
def test_each_scorer_has_one_recipe_per_command_that_agree(folder):
    from deita_hf.config import parse_recipe

    assert sorted(path.name for path in folder.glob("*.yaml")) == ["make-scorer-data.yaml", "train-scorer.yaml"]
    (data,) = parse_recipe(["--config", str(folder / "make-scorer-data.yaml")], [ScorerDataConfig])
    # The recipes train in bf16 on GPUs; this CPU machine parses them with bf16 off.
    on_cpu = ["--config", str(folder / "train-scorer.yaml"), "--bf16", "false"]
    script, training, model = parse_recipe_args(on_cpu)
    task = folder.name.rsplit("-", 1)[1]
    assert data.task == script.task == task
    assert data.rounds == 5 and data.seed_sample_size == 2000
    assert model.model_name_or_path == "mistralai/Mistral-7B-v0.1"
    assert training.max_length >= 4096 and training.completion_only_loss is True
    assert (script.dataset_name or script.scorer_data_dir) == data.scorer_data_dir


def test_a_recipe_of_the_other_scorer_command_is_refused_with_a_hint():
    from deita_hf.config import parse_recipe

    folder = RECIPES[0]
    with pytest.raises(ValueError, match="unknown option 'model_name_or_path'"):
        parse_recipe(["--config", str(folder / "train-scorer.yaml")], [ScorerDataConfig])
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['seed_dataset'"):
        parse_recipe_args(["--config", str(folder / "make-scorer-data.yaml"), "--bf16", "false"])


@pytest.fixture
def one_torch_thread():
    """Tiny matrices gain nothing from more threads, and on a shared, busy CPU extra threads wait on each other
    (75 steps: 8 s with one thread, over 100 s with two under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_a_tiny_scorer_trained_by_the_recipe_predicts_held_out_scores(byte_tokenizer, tmp_path, one_torch_thread):
    # Scorer data on disk, as make-scorer-data writes it.
    data_dir = tmp_path / "scorer-data"
    splits = {"train": synthetic_rows(240, seed=10), "test": synthetic_rows(60, seed=11)}
    DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(data_dir / "dataset")
    base = tmp_path / "base"
    tiny_causal_lm(byte_tokenizer, seed=0).save_pretrained(base)
    byte_tokenizer.save_pretrained(base)

    # The complexity recipe, with a tiny model and CPU settings on top.
    overrides = {
        "model_name_or_path": str(base),
        "dtype": "float32",
        "scorer_data_dir": str(data_dir),
        "output_dir": str(tmp_path / "scorer"),
        "max_length": 256,
        "learning_rate": 3e-3,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "num_train_epochs": 5,
        "per_device_train_batch_size": 16,
        "gradient_accumulation_steps": 1,
        "eval_strategy": "no",
        "save_strategy": "no",
        "bf16": False,
        "activation_checkpointing": False,
        "use_cpu": True,
        "seed": 0,
        "disable_tqdm": True,
    }
    flags = [item for key, value in overrides.items() for item in (f"--{key}", str(value))]
    recipe = REPO / "recipes" / "scorers" / "mistral-7b-complexity" / "train-scorer.yaml"
    main(["--config", str(recipe), *flags])
    output_dir = tmp_path / "scorer"

    # The saved folder loads like a released scorer, through the same ComplexityScorer code path.
    scorer = ComplexityScorer(str(output_dir), progress=False)
    test = splits["test"]
    predicted = [
        scores[0]
        for scores in scorer({"instruction": [r["instruction"] for r in test], "output": [""] * len(test)})[
            "complexity_scores"
        ]
    ]
    truth = [r["score"] for r in test]
    accuracy = sum(round(p) == t for p, t in zip(predicted, truth)) / len(truth)
    assert accuracy >= 0.9  # chance: 1/6
    assert spearman(predicted, truth) >= 0.9
    reported = json.loads((output_dir / "scorer_eval.json").read_text())
    assert reported["rows"] == 60 and reported["accuracy"] == pytest.approx(accuracy)
    # The Deita card of a scorer, not TRL's generic one.
    card = ModelCard.load(output_dir / "README.md")
    assert {"deita", "deita-scorer", "complexity-scorer"} <= set(card.data.tags)
    assert f'scorer = ComplexityScorer("{output_dir}")' in card.text and "fine-tuned version of" not in card.text
