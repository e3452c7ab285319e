"""Rows to the conversational and preference formats of TRL (without importing TRL): conversion, sampling split and the
rows that ``max_length`` leaves without a trained token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..formats import RowError, row_messages
from ..io import load_training_data, sample_rows

logger = logging.getLogger(__name__)

# The row number in the input of each training row: errors and dropped rows name it, also after sampling.
INPUT_ROW_COLUMN = "deita_hf_input_row"


def load_splits(script_args, training_args) -> tuple[Any, Any]:
    """The recipe's training rows, numbered (errors and dropped rows then name the row of the input, also after
    sampling) and sampled (``dataset_sample_size``); and its test split when the run evaluates, else None."""

    def load(split: str) -> Any:
        return load_training_data(
            script_args.dataset_name,
            split=split,
            config=script_args.dataset_config,
            revision=script_args.dataset_revision,
        )

    train = sample_rows(
        number_rows(load(script_args.dataset_train_split)),
        script_args.dataset_sample_size,
        script_args.dataset_sample_seed,
    )
    test = load(script_args.dataset_test_split) if training_args.eval_strategy != "no" else None
    return train, test


def number_rows(dataset):
    """The dataset with its row numbers in a column, so that errors and dropped rows name the input row after
    sampling and conversion (the column is dropped before training)."""
    if INPUT_ROW_COLUMN in dataset.column_names:
        return dataset
    return dataset.add_column(INPUT_ROW_COLUMN, list(range(len(dataset))))


def reference_train_split(dataset, fraction: float):
    """The rows that the reference's SFT script trained on (``make_supervised_data_module`` of
    ``src/deita/alignment/train.py``): ``np.random.seed(0)``, ``np.random.permutation(n)``, the first
    ``int(n * fraction)`` indices (the reference: 0.98), in that order. ``fraction`` 1 keeps all rows, in order.

    >>> from datasets import Dataset
    >>> list(reference_train_split(Dataset.from_dict({"x": list(range(10))}), 0.8)["x"])
    [2, 8, 4, 9, 1, 6, 7, 3]
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"dataset_train_fraction={fraction} must be in (0, 1]")
    if fraction == 1:
        return dataset
    import numpy as np

    permutation = np.random.RandomState(0).permutation(len(dataset))
    return dataset.select(permutation[: int(len(dataset) * fraction)].tolist())


def drop_unanswered_last_turn(dataset, num_proc: int | None = None):
    """The ``messages`` rows whose last message is not a user message: the reference's SFT trains nothing on a
    conversation that ends with a user turn nobody answered (its label check fails and masks the whole row);
    deita-hf otherwise trains its answered turns."""
    kept = dataset.filter(
        lambda row: row["messages"][-1]["role"] != "user", num_proc=num_proc, desc="Dropping unanswered last turns"
    )
    if len(kept) < len(dataset):
        logger.info("dropped %d conversation(s) that end with an unanswered user turn", len(dataset) - len(kept))
    return kept


def conversation_messages(row: Mapping[str, Any], format: str | None = None, index: int | None = None) -> list[dict]:
    """One row as a conversation that the Vicuna template renders and that has something to learn from:
    at most one system message, first; and at least one non-empty assistant message after a user message."""
    messages = row_messages(row, format, index)
    if any(message["role"] == "system" for message in messages[1:]):
        raise RowError(index, "a system message is only allowed as the first message")
    seen_user = False
    for message in messages:
        if message["role"] == "assistant" and seen_user and message["content"]:
            return messages
        seen_user = seen_user or message["role"] == "user"
    raise RowError(
        index, "the conversation has no non-empty assistant message after a user message: nothing to train on"
    )


def to_messages_dataset(dataset, format: str | None = None, num_proc: int | None = None):
    """The rows as TRL conversational data: one ``messages`` column, the other columns dropped.

    ShareGPT (``conversations``), Alpaca and prompt/response rows are converted (SPEC section 4). Scores and
    embeddings that a selection left in the rows are not needed to train and are dropped. A row that cannot be
    read raises :class:`deita_hf.formats.RowError` with its index.
    """

    def convert(row, index):
        return {"messages": conversation_messages(row, format, index)}

    return _convert_rows(dataset, convert, num_proc, "Reading conversations")


def _convert_rows(dataset, convert, num_proc: int | None, desc: str):
    """``convert(row, index)`` over the rows, where index is the input row (``INPUT_ROW_COLUMN`` when the rows
    were numbered, else the position); only the returned columns and ``INPUT_ROW_COLUMN`` are kept."""
    return dataset.map(
        lambda row, position: convert(row, row.get(INPUT_ROW_COLUMN, position)),
        with_indices=True,
        remove_columns=[name for name in dataset.column_names if name != INPUT_ROW_COLUMN],
        num_proc=num_proc,
        desc=desc,
    )


def _as_messages(value: Any, role: str, index: int, column: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    try:
        return row_messages({"messages": value}, "messages", index)
    except RowError as error:
        raise RowError(index, f"column {column!r}: {error.problem}") from None


def preference_pair(row: Mapping[str, Any], index: int | None = None) -> dict[str, list[dict]]:
    """One preference row in TRL's explicit conversational format: ``prompt`` (the messages before the answer),
    ``chosen`` and ``rejected`` (one assistant message each).

    Accepted: that format itself; plain strings; and whole conversations in ``chosen``/``rejected`` that share
    the messages before the last (``HuggingFaceH4/ultrafeedback_binarized``, whose string ``prompt`` repeats
    the first user message and is then ignored).

    >>> preference_pair({"prompt": "2+2?", "chosen": "4", "rejected": "5"})["chosen"]
    [{'role': 'assistant', 'content': '4'}]
    """
    for column in ("chosen", "rejected"):
        if column not in row:
            raise RowError(index, f"missing column {column!r}; a preference row needs 'chosen' and 'rejected'")
    chosen = _as_messages(row["chosen"], "assistant", index, "chosen")
    rejected = _as_messages(row["rejected"], "assistant", index, "rejected")
    if not chosen or not rejected:
        raise RowError(index, "'chosen' and 'rejected' must not be empty")
    prompt_value = row.get("prompt")
    if len(chosen) > 1 or len(rejected) > 1 or prompt_value is None:
        # Implicit prompt: the conversations share every message but the last.
        if chosen[:-1] != rejected[:-1]:
            raise RowError(index, "'chosen' and 'rejected' must share the messages before the last one")
        prompt, chosen, rejected = chosen[:-1], chosen[-1:], rejected[-1:]
    else:
        prompt = _as_messages(prompt_value, "user", index, "prompt")
    if not prompt or prompt[-1]["role"] != "user":
        raise RowError(index, "the prompt must end with a user message")
    if chosen[0]["role"] != "assistant" or rejected[0]["role"] != "assistant":
        raise RowError(index, "'chosen' and 'rejected' must end with an assistant message")
    conversation_messages({"messages": prompt + chosen}, "messages", index)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def to_preference_dataset(dataset, num_proc: int | None = None):
    """The rows as TRL explicit conversational preference data (``prompt``, ``chosen``, ``rejected``), the other
    columns dropped. See :func:`preference_pair`."""

    return _convert_rows(dataset, preference_pair, num_proc, "Reading preference pairs")


def check_dropped_rows(trainer, rows: list[int], max_dropped_share: float) -> list[int]:
    """The input rows that the trainer dropped while preparing its training data (``max_length`` cut away every
    token they train on), logged by number; an error when none is left or more than ``max_dropped_share`` of
    them were dropped. Removes the row-number column from the trainer's dataset."""
    dataset = trainer.train_dataset
    if INPUT_ROW_COLUMN not in dataset.column_names:  # packing regroups rows and drops none
        return []
    kept = set(dataset[INPUT_ROW_COLUMN])
    trainer.train_dataset = dataset.remove_columns(INPUT_ROW_COLUMN)
    dropped = sorted(set(rows) - kept)
    if not dropped:
        return []
    max_length = trainer.args.max_length
    shown = ", ".join(str(r) for r in dropped[:20]) + (f" and {len(dropped) - 20} more" if len(dropped) > 20 else "")
    what = f"{len(dropped)} of {len(rows)} rows ({shown})"
    if len(dropped) == len(rows):
        raise ConfigError(
            f"max_length={max_length} leaves nothing to train on: every row is cut before its first trained "
            f"token ({what}); raise max_length"
        )
    if len(dropped) > max_dropped_share * len(rows):
        raise ConfigError(
            f"max_length={max_length} cuts away every trained token of {what}, more than max_dropped_share="
            f"{max_dropped_share}; raise max_length, drop these rows, or raise max_dropped_share to train without them"
        )
    logger.warning("max_length=%s cuts away every trained token of %s: training without them", max_length, what)
    return dropped
