"""The Vicuna v1.1 chat template: exact rendering, and the assistant-only loss labels TRL builds from it."""

from __future__ import annotations

import copy

import pytest
from jinja2.exceptions import TemplateError

from deita_hf.chat_template import VICUNA_CHAT_TEMPLATE, set_vicuna_chat_template
from deita_hf.constants import VICUNA_SYSTEM
from deita_hf.embedding import vicuna_text

TWO_TURNS = [
    {"role": "user", "content": "q1"},
    {"role": "assistant", "content": "a1"},
    {"role": "user", "content": "q2"},
    {"role": "assistant", "content": "a2"},
]


@pytest.fixture()
def tokenizer(byte_tokenizer):
    return set_vicuna_chat_template(copy.deepcopy(byte_tokenizer))


def render(tokenizer, messages, **kwargs):
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def test_multi_turn_renders_vicuna_v11_exactly(tokenizer):
    expected = "<s>" + VICUNA_SYSTEM + " USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>"
    assert render(tokenizer, TWO_TURNS) == expected


def test_generation_prompt_ends_with_assistant_colon(tokenizer):
    text = render(tokenizer, TWO_TURNS[:3], add_generation_prompt=True)
    assert text == "<s>" + VICUNA_SYSTEM + " USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT:"


def test_system_message_replaces_the_default_system_text(tokenizer):
    text = render(tokenizer, [{"role": "system", "content": "Be brief."}, *TWO_TURNS[:2]])
    assert text == "<s>Be brief. USER: q1 ASSISTANT: a1</s>"


def test_leading_assistant_message_is_dropped(tokenizer):
    text = render(tokenizer, [{"role": "assistant", "content": "Hello!"}, *TWO_TURNS[:2]])
    assert text == "<s>" + VICUNA_SYSTEM + " USER: q1 ASSISTANT: a1</s>"


def test_two_system_messages_render_the_same_in_the_template_and_the_embedder(tokenizer):
    # Both system texts, joined by a newline, replace the default system text, wherever the second one is.
    messages = [{"role": "system", "content": "Be brief."}, *TWO_TURNS[:2], {"role": "system", "content": "late"}]
    text = render(tokenizer, messages)
    assert text == tokenizer.bos_token + "Be brief.\nlate USER: q1 ASSISTANT: a1" + tokenizer.eos_token
    assert text == tokenizer.bos_token + vicuna_text(messages)


def test_a_role_other_than_system_user_assistant_is_an_error(tokenizer):
    with pytest.raises(TemplateError, match="takes system, user and assistant messages; got the role tool"):
        render(tokenizer, [*TWO_TURNS[:2], {"role": "tool", "content": "42"}])


def test_template_uses_the_tokenizer_eos_token(tokenizer):
    tokenizer.eos_token = "<pad>"
    assert render(tokenizer, TWO_TURNS[:2]).endswith("ASSISTANT: a1<pad>")


def test_assistant_mask_covers_answers_and_eos_only(tokenizer):
    out = tokenizer.apply_chat_template(TWO_TURNS, return_dict=True, return_assistant_tokens_mask=True)
    masked = "".join(
        tokenizer.convert_ids_to_tokens(token) for token, bit in zip(out["input_ids"], out["assistant_masks"]) if bit
    )
    # Byte-level pieces: "Ġ" is the space that the answer's first token carries.
    assert masked == "Ġa1</s>Ġa2</s>"


def test_set_vicuna_chat_template_requires_bos_and_eos(byte_tokenizer):
    tokenizer = copy.deepcopy(byte_tokenizer)
    tokenizer.bos_token = None
    with pytest.raises(ValueError, match="no bos_token"):
        set_vicuna_chat_template(tokenizer)


def test_trl_recognises_the_generation_markers_and_the_trained_stop_token(tokenizer):
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    assert has_generation_markers(VICUNA_CHAT_TEMPLATE)
    assert is_chat_template_stop_token_trained(tokenizer)


# A ShareGPT row (Deita's released data format) with a system message and two turns, and the tokens that the real
# Mistral-7B-v0.1 tokenizer (legacy SentencePiece, as Deita trained) gives for it, each with whether it is trained.
SHAREGPT_ROW = {
    "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi there"},
        {"from": "gpt", "value": "Hello! How can I help?"},
        {"from": "human", "value": "Name a color."},
        {"from": "gpt", "value": "Blue."},
    ]
}
EXPECTED_TOKENS = [
    (1, "<s>", False),
    (1739, "▁Be", False),
    (6817, "▁brief", False),
    (28723, ".", False),
    (2223, "▁US", False),
    (725, "ER", False),
    (28747, ":", False),
    (15359, "▁Hi", False),
    (736, "▁there", False),
    (8602, "▁ASS", False),
    (8048, "IST", False),
    (12738, "ANT", False),
    (28747, ":", False),
    (22557, "▁Hello", True),
    (28808, "!", True),
    (1602, "▁How", True),
    (541, "▁can", True),
    (315, "▁I", True),
    (1316, "▁help", True),
    (28804, "?", True),
    (2, "</s>", True),
    (2223, "▁US", False),
    (725, "ER", False),
    (28747, ":", False),
    (6620, "▁Name", False),
    (264, "▁a", False),
    (3181, "▁color", False),
    (28723, ".", False),
    (8602, "▁ASS", False),
    (8048, "IST", False),
    (12738, "ANT", False),
    (28747, ":", False),
    (8836, "▁Blue", True),
    (28723, ".", True),
    (2, "</s>", True),
]


def test_sft_labels_exactly_the_assistant_tokens_and_their_eos(mistral_tokenizer, tmp_path):
    """Through the training script's own data path (ShareGPT -> messages) and TRL's SFTTrainer, token by token."""
    from datasets import Dataset
    from trl import SFTTrainer

    from deita_hf.testing import tiny_causal_lm
    from deita_hf.training.data import to_messages_dataset
    from deita_hf.training.sft import SFTConfig

    tokenizer = set_vicuna_chat_template(copy.deepcopy(mistral_tokenizer))
    args = SFTConfig(
        output_dir=str(tmp_path),
        bf16=False,
        activation_checkpointing=False,
        use_cpu=True,
        report_to="none",
        dataset_num_proc=None,
    )
    assert args.assistant_only_loss is True  # Deita's default in deita_hf.training.sft.SFTConfig
    trainer = SFTTrainer(
        model=tiny_causal_lm(tokenizer, architecture="mistral"),
        args=args,
        train_dataset=to_messages_dataset(Dataset.from_list([SHAREGPT_ROW])),
        processing_class=tokenizer,
    )
    example = trainer.train_dataset[0]
    tokens = tokenizer.convert_ids_to_tokens(example["input_ids"])
    trained = [label != -100 for label in example["labels"]]
    assert list(zip(example["input_ids"], tokens, trained)) == EXPECTED_TOKENS
    # A trained position predicts its own token; the collator keeps the labels as they are.
    assert all(label in (-100, token) for label, token in zip(example["labels"], example["input_ids"]))
    batch = trainer.data_collator([example])
    assert batch["labels"][0].tolist() == example["labels"]


@pytest.mark.parametrize(
    "messages",
    [
        TWO_TURNS,
        [{"role": "system", "content": "Be brief."}, *TWO_TURNS],
        [{"role": "assistant", "content": "Hello!"}, *TWO_TURNS],
        [{"role": "user", "content": "q1"}, {"role": "assistant", "content": ""}],
    ],
    ids=["two-turns", "system", "leading-assistant", "empty-answer"],
)
def test_template_text_after_bos_is_the_embedders_vicuna_text(tokenizer, messages):

    assert render(tokenizer, messages) == "<s>" + vicuna_text(messages)


# The tokens that the reference's SFT (src/deita/alignment/train.py, slow Mistral tokenizer) trains on these
# answers, recorded with benchmarks/reference_parity.py: the bare "▁" before a digit or a newline is trained.
REFERENCE_TRAINED = {
    "4 legs.": ["▁", "4", "▁legs", ".", "</s>"],
    "\n- a\n- b": ["▁", "<0x0A>", "-", "▁a", "<0x0A>", "-", "▁b", "</s>"],
    "Blue.": ["▁Blue", ".", "</s>"],
}


@pytest.mark.parametrize("answer", sorted(REFERENCE_TRAINED))
def test_label_space_before_answer_trains_the_tokens_the_reference_trained(mistral_tokenizer, answer):
    messages = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": answer}]

    def trained(label_space_before_answer):
        tokenizer = set_vicuna_chat_template(copy.deepcopy(mistral_tokenizer), label_space_before_answer)
        out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
        tokens = tokenizer.convert_ids_to_tokens(out["input_ids"])
        return out["input_ids"], [token for token, bit in zip(tokens, out["assistant_masks"]) if bit]

    default_ids, default_trained = trained(False)
    variant_ids, variant_trained = trained(True)
    assert variant_ids == default_ids  # the same text and ids; only the labels move
    assert variant_trained == REFERENCE_TRAINED[answer]
    leading_space = REFERENCE_TRAINED[answer][0] == "▁"
    assert default_trained == (REFERENCE_TRAINED[answer][1:] if leading_space else REFERENCE_TRAINED[answer])
