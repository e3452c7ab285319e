"""Helpers of the training scripts: data loading and conversion, the DPO data step, checkpoints, card, push."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
from datasets import Dataset, DatasetDict

from deita_hf.constants import CITATION, DEITA_6K_DATASET_ID
from deita_hf.formats import RowError
from deita_hf.io import load_training_data, sample_rows
from deita_hf.training.common import (
    hyperparameters,
    last_checkpoint,
    render_model_card,
    training_results,
    upload_output_dir,
)
from deita_hf.training.data import (
    drop_unanswered_last_turn,
    preference_pair,
    reference_train_split,
    to_messages_dataset,
    to_preference_dataset,
)

SHAREGPT = {
    "id": "x",
    "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
    "deita_score": 12.5,
    "embedding": [0.1, 0.2],
}


# -- loading ------------------------------------------------------------------------------------------------------
def test_jsonl_file_loads_all_rows(shared_data):
    dataset = load_training_data(str(shared_data / "alpaca_eval_pool.jsonl"))
    assert len(dataset) == 3220
    assert set(dataset.column_names) == {"id", "source", "generator", "messages"}


def test_save_to_disk_folder_loads_the_requested_split(tmp_path):
    DatasetDict({"train": Dataset.from_list([SHAREGPT]), "test": Dataset.from_list([SHAREGPT] * 2)}).save_to_disk(
        tmp_path / "data"
    )
    assert len(load_training_data(str(tmp_path / "data"), split="test")) == 2
    with pytest.raises(Exception, match="no split .valid."):
        load_training_data(str(tmp_path / "data"), split="valid")


def test_selection_output_folder_loads_the_selected_rows_not_the_pool(tmp_path):
    Dataset.from_list([{**SHAREGPT, "id": f"pool-{i}"} for i in range(5)]).save_to_disk(tmp_path / "pool")
    Dataset.from_list([{**SHAREGPT, "id": "chosen"}]).save_to_disk(tmp_path / "selected")
    (tmp_path / "summary.json").write_text(json.dumps({"outputs": {"dataset": "selected", "pool": "pool"}}))
    assert load_training_data(str(tmp_path))["id"][:] == ["chosen"]


def test_selection_summary_without_a_dataset_folder_is_an_error(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"outputs": {"dataset": "selected"}}))
    with pytest.raises(ValueError, match="names no dataset folder"):
        load_training_data(str(tmp_path))


def test_missing_local_file_is_named_in_the_error(tmp_path):
    with pytest.raises(Exception, match="no such file or folder"):
        load_training_data(str(tmp_path / "missing.jsonl"))


def test_no_dataset_name_is_an_actionable_error():
    with pytest.raises(ValueError, match="set dataset_name"):
        load_training_data(None)


# -- SFT rows -----------------------------------------------------------------------------------------------------
def test_sharegpt_rows_become_messages_and_other_columns_are_dropped():
    dataset = to_messages_dataset(Dataset.from_list([SHAREGPT]))
    assert dataset.column_names == ["messages"]
    assert dataset[0]["messages"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def test_alpaca_rows_join_instruction_and_input():
    rows = Dataset.from_list([{"instruction": "Translate", "input": "chat", "output": "cat"}])
    assert to_messages_dataset(rows)[0]["messages"] == [
        {"role": "user", "content": "Translate\nchat"},
        {"role": "assistant", "content": "cat"},
    ]


def test_row_without_an_answer_is_an_error_naming_the_row():
    rows = Dataset.from_list([SHAREGPT, {**SHAREGPT, "conversations": [{"from": "human", "value": "Hi"}]}])
    with pytest.raises(RowError, match="row 1: .*nothing to train on"):
        to_messages_dataset(rows)


def test_system_message_after_the_first_is_an_error_naming_the_row():
    late_system = SHAREGPT["conversations"] + [{"from": "system", "value": "late"}]
    with pytest.raises(RowError, match="row 0: a system message is only allowed as the first message"):
        to_messages_dataset(Dataset.from_list([{"conversations": late_system}]))


# -- DPO rows -----------------------------------------------------------------------------------------------------
def test_explicit_conversational_pairs_pass_through(shared_data):
    rows = load_training_data(str(shared_data / "alpaca_eval_prefs.jsonl")).select(range(3))
    pairs = to_preference_dataset(rows)
    assert pairs.column_names == ["prompt", "chosen", "rejected"]
    for row, pair in zip(rows, pairs):
        assert (pair["prompt"], pair["chosen"], pair["rejected"]) == (row["prompt"], row["chosen"], row["rejected"])


def test_ultrafeedback_layout_splits_the_shared_prompt_off():
    # HuggingFaceH4/ultrafeedback_binarized: a string prompt, and whole conversations in chosen/rejected.
    user = {"role": "user", "content": "2+2?"}
    row = {
        "prompt": "2+2?",
        "prompt_id": "abc",
        "chosen": [user, {"role": "assistant", "content": "4"}],
        "rejected": [user, {"role": "assistant", "content": "5"}],
        "score_chosen": 9.0,
        "score_rejected": 2.0,
    }
    assert preference_pair(row) == {
        "prompt": [user],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }


def test_string_pairs_become_conversational():
    assert preference_pair({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) == {
        "prompt": [{"role": "user", "content": "2+2?"}],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }


def test_pairs_with_different_prompts_are_an_error_naming_the_row():
    row = {
        "chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"}],
        "rejected": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "y"}],
    }
    with pytest.raises(RowError, match="row 7: 'chosen' and 'rejected' must share"):
        preference_pair(row, 7)


def test_empty_answer_list_is_an_error_naming_the_row():
    with pytest.raises(RowError, match="row 3: 'chosen' and 'rejected' must not be empty"):
        preference_pair({"prompt": "2+2?", "chosen": [], "rejected": "5"}, 3)


def test_dpo_sample_is_the_references_random_sample_of_ultrafeedback_train_prefs():
    # src/deita/data/sample_ultrafeedback.py: random.seed(42); random.sample(range(len(data)), 10000); select.
    rows = Dataset.from_dict({"row": list(range(61135))})  # as many rows as train_prefs
    state = random.getstate()
    random.seed(42)
    expected = random.sample(range(len(rows)), 10000)
    random.setstate(state)
    sample = sample_rows(rows, 10000, seed=42)
    assert sample["row"][:] == expected  # the same rows, in the order drawn
    assert random.getstate() == state  # the global generator is left alone
    assert len(set(expected) & set(rows.shuffle(seed=42)["row"][:10000])) == 1617  # deita-hf 0.1.0's sample


def test_dpo_data_step_sample_is_seeded(shared_data):
    prefs = load_training_data(str(shared_data / "alpaca_eval_prefs.jsonl"))
    ten = sample_rows(prefs, 10, seed=42)["id"][:]
    assert ten == [prefs[i]["id"] for i in random.Random(42).sample(range(len(prefs)), 10)]
    assert ten != sample_rows(prefs, 10, seed=43)["id"][:]
    assert sample_rows(prefs, None) is prefs


def test_sample_larger_than_the_data_is_an_error():
    with pytest.raises(ValueError, match="between 1 and the number of rows \\(2\\)"):
        sample_rows(Dataset.from_dict({"x": [1, 2]}), 3)


# -- checkpoints --------------------------------------------------------------------------------------------------
def test_rerun_resumes_from_the_highest_checkpoint(tmp_path):
    for step in (2, 10, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
    args = SimpleNamespace(output_dir=str(tmp_path), resume_from_checkpoint=None)
    assert last_checkpoint(args) == str(tmp_path / "checkpoint-10")


def test_explicit_resume_from_checkpoint_wins(tmp_path):
    (tmp_path / "checkpoint-10").mkdir()
    args = SimpleNamespace(output_dir=str(tmp_path), resume_from_checkpoint="elsewhere/checkpoint-3")
    assert last_checkpoint(args) == "elsewhere/checkpoint-3"


def test_fresh_output_dir_starts_from_scratch(tmp_path):
    assert last_checkpoint(SimpleNamespace(output_dir=str(tmp_path / "new"), resume_from_checkpoint=None)) is None


# -- card and push ------------------------------------------------------------------------------------------------
def test_hyperparameters_spell_out_the_global_batch(tmp_path):
    from deita_hf.training.sft import SFTConfig

    args = SFTConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=16,
        bf16=False,
        activation_checkpointing=False,
        use_cpu=True,
        lr_scheduler_type="cosine",
    )
    params = hyperparameters(args, world_size=8)
    assert params["global_batch_size"] == 512
    assert (params["lr_scheduler_type"], params["assistant_only_loss"], params["precision"]) == (
        "cosine",
        True,
        "fp32",
    )


def test_training_results_read_the_log_history():
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}, {"step": 2, "train_runtime": 3.14159}]
    assert training_results(history) == {"steps": 2, "first_loss": 2.0, "last_loss": 1.5, "train_runtime_s": 3.1}


def test_card_of_a_released_recipe_names_base_data_selection_results_and_citation():
    from huggingface_hub import ModelCard

    card = render_model_card(
        model_name="me/deita-mistral-7b-sft",
        base_model="mistralai/Mistral-7B-v0.1",
        dataset_name=DEITA_6K_DATASET_ID,
        method="SFT",
        hyperparameters={"learning_rate": 2e-5, "global_batch_size": 512},
        results={"steps": 72, "first_loss": 1.25, "last_loss": 0.5},
        reproduces="hkust-nlp/deita-7b-v1.0-sft",
    )
    reloaded = ModelCard(str(card))
    assert reloaded.data.base_model == "mistralai/Mistral-7B-v0.1"
    assert reloaded.data.datasets == [DEITA_6K_DATASET_ID]
    assert "deita" in reloaded.data.tags and "sft" in reloaded.data.tags
    text = reloaded.text
    assert "AndrewZeng/deita_sota_pool" in text and "threshold 0.9" in text
    assert "| global_batch_size | 512 |" in text
    assert "| 7.22 | 80.78 |" in text
    assert "from 1.2500 at the first logged step to 0.5000 at the last" in text
    assert CITATION in text
    assert "- transformers: " in text and "- trl: " in text


def test_card_of_a_local_selection_quotes_its_recipe_and_summary(tmp_path):
    (tmp_path / "recipe.yaml").write_text("budget: 6000\nthreshold: 0.9\n")
    (tmp_path / "summary.json").write_text(json.dumps({"counts": {"selected": 6000}}))
    card = render_model_card(
        model_name="m", base_model=str(tmp_path / "base"), dataset_name=str(tmp_path), method="DPO", hyperparameters={}
    )
    assert "```yaml\nbudget: 6000\nthreshold: 0.9\n```" in card.text
    assert '"selected": 6000' in card.text
    assert card.data.base_model is None and card.data.datasets is None  # local paths are not Hub ids
    assert "Results reported in the paper" not in card.text


def test_card_of_a_trained_scorer_shows_how_to_score_with_it(tmp_path):
    data = tmp_path / "scorer-data"
    data.mkdir()
    card = render_model_card(
        model_name="me/quality-scorer",
        base_model="mistralai/Mistral-7B-v0.1",
        dataset_name=str(data),
        method="SFT",
        hyperparameters={"learning_rate": 2e-5},
        scorer_task="quality",
    )
    assert {"deita-scorer", "quality-scorer"} <= set(card.data.tags)
    assert "me/quality-scorer is a Deita quality scorer, [mistralai/Mistral-7B-v0.1]" in card.text
    assert 'from deita_hf import QualityScorer\n\nscorer = QualityScorer("me/quality-scorer")' in card.text
    assert "the loss is computed on\nthe score digit only" in card.text
    assert "## Prompt format" not in card.text and "assistant tokens only" not in card.text


def test_upload_sends_the_output_dir_without_checkpoints(monkeypatch, tmp_path):
    from huggingface_hub import HfApi

    calls = {}
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kwargs: calls.update(kwargs))
    args = SimpleNamespace(output_dir=str(tmp_path), hub_token=None, hub_revision=None)
    upload_output_dir(args, "me/deita-mistral-7b-sft")
    assert calls["repo_id"] == "me/deita-mistral-7b-sft"
    assert calls["folder_path"] == str(tmp_path)
    assert "checkpoint-*" in calls["ignore_patterns"]


def test_hub_repo_defaults_to_the_output_folder_name(monkeypatch, tmp_path):
    from huggingface_hub import HfApi

    from deita_hf.training.common import create_hub_repo

    created = {}

    def create_repo(self, repo_id, private=None, exist_ok=False):
        created.update(repo_id=repo_id, private=private, exist_ok=exist_ok)
        return SimpleNamespace(repo_id=f"me/{repo_id}")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    args = SimpleNamespace(
        output_dir=str(tmp_path / "deita-run"), hub_model_id=None, hub_token=None, hub_private_repo=True
    )
    assert create_hub_repo(args) == "me/deita-run"
    assert created == {"repo_id": "deita-run", "private": True, "exist_ok": True}


def test_sft_main_without_data_says_what_to_set(tmp_path):
    from deita_hf.testing import save_tiny_scorer
    from deita_hf.training import sft

    model = save_tiny_scorer(tmp_path / "model")
    with pytest.raises(ValueError, match="set dataset_name"):
        sft.main(
            [
                "--model_name_or_path",
                str(model),
                "--output_dir",
                str(tmp_path),
                "--use_cpu",
                "true",
                "--activation_checkpointing",
                "false",
            ]
        )


def test_llama_tokenizer_loads_legacy_like_deitas_and_reloads_the_same_after_saving(mistral_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    from deita_hf.chat_template import load_tokenizer

    # transformers 5 saves no `legacy` key, so a plain reload of this folder is non-legacy ("<s>A", "</s>USER").
    mistral_tokenizer.save_pretrained(tmp_path / "base")
    assert AutoTokenizer.from_pretrained(tmp_path / "base").legacy is False
    tokenizer = load_tokenizer(str(tmp_path / "base"))
    conversation = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    ids = tokenizer.apply_chat_template(conversation, return_dict=True)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:3] == ["<s>", "▁A", "▁chat"]
    eos = tokens.index("</s>")
    assert tokens[eos + 1 : eos + 3] == ["▁US", "ER"]
    assert tokenizer.pad_token == "<unk>"
    tokenizer.save_pretrained(tmp_path / "trained")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "trained")
    assert reloaded.apply_chat_template(conversation, return_dict=True)["input_ids"] == ids


def fake_trainer(tmp_path, events):
    from transformers import LlamaConfig

    from deita_hf.training.sft import SFTConfig

    args = SFTConfig(
        output_dir=str(tmp_path), hub_model_id="deita-test", bf16=False, activation_checkpointing=False, use_cpu=True
    )
    return SimpleNamespace(
        args=args,
        accelerator=SimpleNamespace(
            is_main_process=True, num_processes=1, wait_for_everyone=lambda: events.append("wait_for_everyone")
        ),
        state=SimpleNamespace(log_history=[{"step": 1, "loss": 2.0}]),
        model=SimpleNamespace(config=LlamaConfig(use_cache=False)),
        save_model=lambda output_dir: events.append("save_model"),
        save_state=lambda: events.append("save_state"),
        end=lambda: events.append("end"),
    )


@pytest.mark.parametrize("push_to_hub", [True, False])
def test_finish_saves_then_writes_the_card_then_pushes_it(monkeypatch, tmp_path, push_to_hub):
    from huggingface_hub import HfApi

    from deita_hf.training.common import ScriptArguments, finish

    events = []
    monkeypatch.setattr(
        HfApi,
        "create_repo",
        lambda self, repo_id, private=None, exist_ok=False: (
            events.append("create_repo") or SimpleNamespace(repo_id=f"me/{repo_id}")
        ),
    )
    monkeypatch.setattr(
        HfApi, "upload_folder", lambda self, **kwargs: events.append(("upload", (tmp_path / "README.md").read_text()))
    )
    script_args = ScriptArguments(dataset_name=DEITA_6K_DATASET_ID, reproduces="hkust-nlp/deita-7b-v1.0-sft")
    model_args = SimpleNamespace(model_name_or_path="mistralai/Mistral-7B-v0.1")
    finish(fake_trainer(tmp_path, events), script_args, model_args, "SFT", push_to_hub=push_to_hub)

    names = [event if isinstance(event, str) else event[0] for event in events]
    pushed = ["create_repo", "upload"] if push_to_hub else []
    assert names == ["save_model", "save_state", *pushed, "wait_for_everyone", "end"]
    card = (tmp_path / "README.md").read_text()
    # The usage example loads what exists: the full Hub id after a push, else the output folder.
    load_id = "me/deita-test" if push_to_hub else str(tmp_path)
    assert f'AutoTokenizer.from_pretrained("{load_id}")' in card
    if push_to_hub:
        assert events[3][1] == card  # the card was written before the upload
    assert json.loads((tmp_path / "config.json").read_text())["use_cache"] is True


def test_reference_train_split_is_the_first_98_percent_of_numpy_seed_0_permutation():
    import numpy as np

    rows = Dataset.from_dict({"row": list(range(3220))})
    state = np.random.get_state()
    np.random.seed(0)  # src/deita/alignment/train.py, make_supervised_data_module
    permutation = np.random.permutation(len(rows))
    np.random.set_state(state)
    split = reference_train_split(rows, 0.98)
    assert split["row"][:] == permutation[: int(len(permutation) * 0.98)].tolist()
    assert len(split) == 3155  # as the reference's own run on the AlpacaEval pool recorded
    assert reference_train_split(rows, 1.0) is rows
    with pytest.raises(ValueError, match="dataset_train_fraction=0"):
        reference_train_split(rows, 0)


def test_drop_unanswered_last_turn_leaves_out_conversations_ending_with_a_user_message():
    answered = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    rows = Dataset.from_dict({"messages": [answered, [*answered, {"role": "user", "content": "and?"}], answered]})
    assert drop_unanswered_last_turn(rows)["messages"][:] == [answered, answered]


def test_sft_config_parses_the_reference_options():
    from deita_hf.training.sft import make_parser

    _, training_args, _ = make_parser().parse_args_and_config(
        ["--output_dir", "out", "--dataset_train_fraction", "0.98", "--drop_unanswered_last_turn", "true",
         "--label_space_before_answer", "true", "--use_cpu", "true", "--bf16", "false",
         "--activation_checkpointing", "false"]
    )  # fmt: skip
    assert training_args.dataset_train_fraction == 0.98
    assert training_args.drop_unanswered_last_turn and training_args.label_space_before_answer


def test_card_quotes_the_paper_only_for_the_papers_base_model_and_data():
    common = dict(method="SFT", hyperparameters={}, reproduces="hkust-nlp/deita-7b-v1.0-sft", model_name="m")
    other_data = render_model_card(base_model="mistralai/Mistral-7B-v0.1", dataset_name="me/my-selection", **common)
    other_base = render_model_card(base_model="Qwen/Qwen2.5-7B", dataset_name=DEITA_6K_DATASET_ID, **common)
    for card in (other_data, other_base):
        assert "Results reported in the paper" not in card.text and "7.22" not in card.text
        assert "the paper's results for that model do not apply to this one" in card.text
        assert "deita_reproduces" not in card.data.to_dict()
    paper = render_model_card(base_model="mistralai/Mistral-7B-v0.1", dataset_name=DEITA_6K_DATASET_ID, **common)
    assert "| 7.22 | 80.78 |" in paper.text and paper.data.deita_reproduces == "hkust-nlp/deita-7b-v1.0-sft"


def test_dpo_from_a_local_sft_model_that_reproduces_the_papers_sft_quotes_the_paper(tmp_path):
    sft = render_model_card(
        model_name="me/sft", base_model="mistralai/Mistral-7B-v0.1", dataset_name=DEITA_6K_DATASET_ID,
        method="SFT", hyperparameters={}, reproduces="hkust-nlp/deita-7b-v1.0-sft",
    )  # fmt: skip
    sft.save(tmp_path / "README.md")
    dpo = render_model_card(
        model_name="me/dpo", base_model=str(tmp_path), dataset_name="HuggingFaceH4/ultrafeedback_binarized",
        method="DPO", hyperparameters={}, reproduces="hkust-nlp/deita-7B-v1.0",
    )  # fmt: skip
    assert "| 7.55 | 90.06 |" in dpo.text


def test_a_model_trained_on_a_smoke_selection_says_so(tmp_path):
    (tmp_path / "selected").mkdir()
    summary = {"smoke_run": True, "outputs": {"dataset": "selected"}, "models": {}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    for dataset_name in (str(tmp_path), str(tmp_path / "selected")):
        card = render_model_card(
            model_name="m", base_model="mistralai/Mistral-7B-v0.1", dataset_name=dataset_name, method="SFT",
            hyperparameters={}, reproduces="hkust-nlp/deita-7b-v1.0-sft",
        )  # fmt: skip
        assert (
            "> **Smoke run.** This model was trained on a selection made with tiny random-weight scorers" in card.text
        )
        assert "smoke-test" in card.data.tags and "7.22" not in card.text
    # A model trained from it inherits the warning.
    (tmp_path / "model").mkdir()
    card.save(tmp_path / "model" / "README.md")
    dpo = render_model_card(
        model_name="d", base_model=str(tmp_path / "model"), dataset_name="HuggingFaceH4/ultrafeedback_binarized",
        method="DPO", hyperparameters={},
    )  # fmt: skip
    assert "> **Smoke run.**" in dpo.text


# -- row numbers and dropped rows ---------------------------------------------------------------------------------
def _numbered_sample(rows, size):
    from deita_hf.training.data import number_rows

    return sample_rows(number_rows(Dataset.from_list(rows)), size, seed=42)


def _a_sampled_row_off_its_place(rows, size):
    """An input row that the sample keeps at another position, so that a position would name the wrong row."""
    sampled = list(_numbered_sample(rows, size)["deita_hf_input_row"])
    row = next(r for position, r in enumerate(sampled) if r != position)
    return row


def test_an_sft_error_after_sampling_names_the_input_row():
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(10)]
    bad = _a_sampled_row_off_its_place(rows, 6)
    rows[bad]["response"] = ""
    with pytest.raises(RowError, match=f"row {bad}: the conversation has no non-empty assistant message"):
        to_messages_dataset(_numbered_sample(rows, 6))


def test_a_dpo_error_after_sampling_names_the_input_row():
    rows = [{"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(10)]
    bad = _a_sampled_row_off_its_place(rows, 6)
    rows[bad]["chosen"] = ""
    with pytest.raises(RowError, match=f"row {bad}: the conversation has no non-empty assistant message"):
        to_preference_dataset(_numbered_sample(rows, 6))


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from deita_hf.chat_template import load_tokenizer
    from deita_hf.testing import save_tiny_scorer

    path = save_tiny_scorer(tmp_path_factory.mktemp("base") / "tiny", seed=0)
    return str(path), load_tokenizer(str(path))


def _trainer(kind, tiny_base, rows, tmp_path):
    import trl

    path, tokenizer = tiny_base
    common = dict(output_dir=str(tmp_path), max_length=64, report_to=[], use_cpu=True)
    if kind == "sft":
        data = to_messages_dataset(_numbered_sample(rows, len(rows) - 1))
        args = trl.SFTConfig(assistant_only_loss=True, **common)
        return trl.SFTTrainer(model=path, args=args, train_dataset=data, processing_class=tokenizer), data
    data = to_preference_dataset(_numbered_sample(rows, len(rows) - 1))
    args = trl.DPOConfig(**common)
    return trl.DPOTrainer(model=path, args=args, train_dataset=data, processing_class=tokenizer), data


def _rows(kind, long_rows, n=8):
    def prompt(i):
        return "word " * (200 if i in long_rows else 2)

    if kind == "sft":
        return [{"prompt": prompt(i), "response": "an answer"} for i in range(n)]
    return [{"prompt": prompt(i), "chosen": "yes", "rejected": "no"} for i in range(n)]


@pytest.mark.parametrize("kind", ["sft", "dpo"])
def test_rows_that_max_length_empties_are_named_and_counted_before_training(kind, tiny_base, tmp_path, caplog):
    from deita_hf.training.data import check_dropped_rows

    trainer, data = _trainer(kind, tiny_base, _rows(kind, {2, 5}), tmp_path)
    sampled = data["deita_hf_input_row"]
    expected = sorted({2, 5} & set(sampled))
    with pytest.raises(ValueError, match=rf"cuts away every trained token of {len(expected)} of 7 rows \(2, 5\)"):
        check_dropped_rows(trainer, sampled, max_dropped_share=0.2)
    trainer, _ = _trainer(kind, tiny_base, _rows(kind, {2, 5}), tmp_path)
    assert check_dropped_rows(trainer, sampled, max_dropped_share=0.5) == expected
    assert "training without them" in caplog.text
    assert "deita_hf_input_row" not in trainer.train_dataset.column_names
    assert len(trainer.train_dataset) == 7 - len(expected)


@pytest.mark.parametrize("kind", ["sft", "dpo"])
def test_no_row_left_to_train_on_is_a_clear_error(kind, tiny_base, tmp_path):
    from deita_hf.training.data import check_dropped_rows

    trainer, data = _trainer(kind, tiny_base, _rows(kind, set(range(8))), tmp_path)
    with pytest.raises(ValueError, match="max_length=64 leaves nothing to train on"):
        check_dropped_rows(trainer, data["deita_hf_input_row"], max_dropped_share=1.0)


@pytest.mark.parametrize("where", ["../elsewhere", "absolute", "link"])
def test_a_summary_naming_a_dataset_outside_its_folder_is_refused(tmp_path, where):
    run = tmp_path / "run"
    run.mkdir()
    Dataset.from_list([{**SHAREGPT, "id": "elsewhere"}]).save_to_disk(tmp_path / "elsewhere")
    name = {"../elsewhere": "../elsewhere", "absolute": str(tmp_path / "elsewhere"), "link": "selected"}[where]
    if where == "link":
        (run / "selected").symlink_to(tmp_path / "elsewhere")
    (run / "summary.json").write_text(json.dumps({"outputs": {"dataset": name}}))
    with pytest.raises(ValueError, match=f"names the dataset '{name}', which is not inside {run}"):
        load_training_data(str(run))
