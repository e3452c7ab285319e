"""Rows in the five formats become messages and turns paired by role (SPEC section 4)."""

import pytest

from deita_hf.errors import ConfigError
from deita_hf.formats import RowError, check_batch, detect_format, pair_turns, row_messages, row_turns

MESSAGES_ROW = {
    "messages": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
}
SHAREGPT_ROW = {"conversations": [{"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"}]}
ALPACA_ROW = {"instruction": "What is 2+2?", "input": "", "output": "4"}
PROMPT_RESPONSE_ROW = {"prompt": "What is 2+2?", "response": "4"}


@pytest.mark.parametrize(
    "row, expected",
    [
        (MESSAGES_ROW, "messages"),
        (SHAREGPT_ROW, "sharegpt"),
        (ALPACA_ROW, "alpaca"),
        (PROMPT_RESPONSE_ROW, "prompt_response"),
        ({"prompt": "p", "completion": "c"}, "prompt_response"),
    ],
)
def test_format_is_detected_from_columns(row, expected):
    assert detect_format(list(row)) == expected


def test_unknown_columns_name_the_columns_and_the_formats():
    with pytest.raises(ValueError, match=r"cannot tell the row format.*\['text'\]"):
        detect_format(["text"])


@pytest.mark.parametrize("row", [MESSAGES_ROW, SHAREGPT_ROW, ALPACA_ROW, PROMPT_RESPONSE_ROW])
def test_the_four_formats_give_the_same_turns(row):
    assert row_turns(row) == [("What is 2+2?", "4")]


def test_alpaca_input_is_joined_with_a_newline():
    row = {"instruction": "Translate.", "input": "Bonjour", "output": "Hello"}
    assert row_turns(row) == [("Translate.\nBonjour", "Hello")]


def test_alpaca_without_input_column():
    assert row_turns({"instruction": "Hi", "output": "Hello"}) == [("Hi", "Hello")]


def test_sharegpt_roles_user_assistant_and_system_are_accepted():
    row = {
        "conversations": [
            {"from": "system", "value": "S"},
            {"from": "user", "value": "q"},
            {"from": "assistant", "value": "a"},
        ]
    }
    assert row_messages(row) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]


def test_pairing_skips_system_and_leading_assistant_and_fills_missing_answers():
    messages = [
        {"role": "assistant", "content": "greeting"},
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
        {"role": "user", "content": "q3"},
        {"role": "assistant", "content": "a3"},
        {"role": "assistant", "content": "orphan"},
        {"role": "user", "content": "q4"},
    ]
    assert pair_turns(messages) == [("q1", "a1"), ("q2", ""), ("q3", "a3"), ("q4", "")]


def test_empty_response_is_kept_as_empty_string():
    assert row_turns({"prompt": "q", "response": ""}) == [("q", "")]


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"messages": [{"role": "assistant", "content": "a"}]}, "no user turn"),
        ({"messages": []}, "no user turn"),
        ({"messages": "hello"}, "must be a list of messages, got str"),
        (
            {"messages": [{"role": "user", "content": 3}]},
            r"messages\[0\].content must be a string or a list of text parts, got int",
        ),
        ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role 'robot'"),
        ({"messages": [{"content": "x"}]}, r"messages\[0\] must be a dict with 'role' and 'content'"),
        ({"conversations": [{"from": "alien", "value": "x"}]}, "unknown 'from' 'alien'"),
        ({"conversations": [{"from": "human", "value": None}]}, "must be a string, got NoneType"),
        ({"instruction": "q", "output": None}, "output must be a string, got NoneType"),
        ({"instruction": 1, "output": "a"}, "instruction must be a string, got int"),
        ({"prompt": ["q"], "response": "a"}, r"prompt\[0\] must be a dict with 'role' and 'content'"),
        ({"prompt": 3, "completion": "a"}, "prompt must be a string or a list of messages, got int"),
    ],
)
def test_bad_rows_raise_an_error_naming_the_row_and_the_problem(row, problem):
    with pytest.raises(RowError, match=rf"^row 7: .*{problem}"):
        row_turns(row, row=7)


def test_missing_column_of_an_explicit_format_is_named():
    with pytest.raises(RowError, match="row 2: missing column 'output'"):
        row_turns({"instruction": "q"}, format="alpaca", row=2)


def test_unknown_explicit_format_is_refused():
    with pytest.raises(ValueError, match="unknown row format 'chatml'"):
        row_turns(MESSAGES_ROW, format="chatml")


NOT_A_BATCH = "expected a batch of columns ({'column': [one value per row]}), but "


@pytest.mark.parametrize(
    "batch",
    [
        {"messages": [MESSAGES_ROW["messages"]]},
        {"messages": [None, MESSAGES_ROW["messages"]]},
        {"messages": []},
        {"instruction": ["q", "r"], "output": ["a", "b"], "meta": [{"source": "x"}, {"source": "y"}]},
    ],
)
def test_a_batch_of_columns_is_accepted(batch):
    assert check_batch(batch) is None


@pytest.mark.parametrize(
    "row, problem",
    [
        (MESSAGES_ROW, "column 'messages' holds messages ({'role': 'user', 'content': 'What is 2+2?'})"),
        (SHAREGPT_ROW, "column 'conversations' holds messages ({'from': 'human', 'value': 'What is 2+2?'})"),
        (ALPACA_ROW, "column 'instruction' holds 'What is 2+2?'"),
        ({"instruction": ["q"], "input": None, "output": ["a"]}, "column 'input' holds None"),
    ],
)
def test_a_row_given_as_a_batch_is_refused_saying_to_pass_batched_false(row, problem):
    with pytest.raises(ConfigError) as error:
        check_batch(row)
    assert str(error.value) == f"{NOT_A_BATCH}{problem}, as one row does; to pass one row, call with batched=False"


def test_a_batch_with_columns_of_different_lengths_is_refused():
    with pytest.raises(ConfigError) as error:
        check_batch({"instruction": ["q", "r"], "output": ["a"]})
    assert str(error.value) == f"{NOT_A_BATCH}its columns have different lengths: {{'instruction': 2, 'output': 1}}"


# -- TRL's conversational formats --------------------------------------------------------------------------------
TRL_PROMPT_COMPLETION_ROW = {
    "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    "completion": [{"role": "assistant", "content": "4"}],
}


def test_trl_conversational_prompt_completion_rows_are_read():
    assert detect_format(list(TRL_PROMPT_COMPLETION_ROW)) == "prompt_response"
    assert row_messages(TRL_PROMPT_COMPLETION_ROW) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    assert row_turns(TRL_PROMPT_COMPLETION_ROW) == [("What is 2+2?", "4")]


def test_trl_conversational_preference_rows_read_the_prompt_and_the_chosen_answer():
    explicit = {
        "prompt": [{"role": "user", "content": "What is 2+2?"}],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }
    implicit = {
        "chosen": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
        "rejected": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "5"}],
    }
    standard = {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}
    for row in (explicit, implicit, standard):
        assert detect_format(list(row)) == "preference"
        assert row_turns(row) == [("What is 2+2?", "4")]


def test_a_preference_row_without_rejected_is_named():
    with pytest.raises(RowError, match="row 3: missing column 'rejected'"):
        row_turns({"prompt": "q", "chosen": "a"}, format="preference", row=3)


def test_content_as_a_list_of_text_parts_is_joined_with_newlines():
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": "text", "text": "2+2?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
        ]
    }
    assert row_turns(row) == [("Look:\n2+2?", "4")]
    conversational = {"prompt": [row["messages"][0]], "completion": [row["messages"][1]]}
    assert row_turns(conversational) == [("Look:\n2+2?", "4")]


def test_a_part_that_is_not_text_is_an_error_naming_the_row_and_the_part():
    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image"}]}]}
    with pytest.raises(
        RowError, match=r"^row 4: messages\[0\].content\[1\] is a 'image' part; deita-hf reads text only"
    ):
        row_turns(row, row=4)


def test_conversational_rows_given_as_a_batch_are_refused_and_their_batches_accepted():
    check_batch({key: [value] for key, value in TRL_PROMPT_COMPLETION_ROW.items()})
    check_batch({"prompt": ["q"], "chosen": ["a"], "rejected": ["b"]})
    with pytest.raises(ConfigError, match=r"but column 'prompt' holds messages \({'role': 'system', 'content'"):
        check_batch(TRL_PROMPT_COMPLETION_ROW)
    with pytest.raises(ConfigError, match="but column 'prompt' holds 'q', as one row does"):
        check_batch({"prompt": "q", "chosen": "a", "rejected": "b"})


def test_a_lone_surrogate_is_an_error_naming_the_row_and_the_character():
    row = {"messages": [{"role": "user", "content": "caf\udce9"}, {"role": "assistant", "content": "ok"}]}
    with pytest.raises(
        RowError, match=r"row 4: messages\[0\].content holds '\\udce9' at character 3, a lone surrogate"
    ):
        row_messages(row, row=4)


def test_a_lone_surrogate_stops_a_scorer_with_the_row_not_a_tokenizer_error(tiny_llama, byte_tokenizer):
    from deita_hf import ComplexityScorer

    scorer = ComplexityScorer(tiny_llama, byte_tokenizer, progress=False)
    batch = {"prompt": ["fine", "bad \ud800 text"], "response": ["a", "b"]}
    with pytest.raises(RowError, match="row 11: prompt holds '\\\\ud800' at character 4"):
        scorer(batch, indices=[10, 11])
