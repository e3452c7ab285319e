"""Rows in, conversations and turns out.

Five row formats are accepted (SPEC section 4), detected from the columns or named explicitly:

- ``"messages"``: a ``messages`` column of ``{"role", "content"}`` dicts (TRL, chat templates);
- ``"sharegpt"``: a ``conversations`` column of ``{"from", "value"}`` dicts (Deita's released data);
- ``"alpaca"``: ``instruction``, optional ``input``, ``output``;
- ``"prompt_response"``: ``prompt`` and ``response`` (or ``completion``), each a string or, as in TRL's
  conversational prompt-completion format, a list of messages;
- ``"preference"``: TRL's preference rows, ``chosen`` and ``rejected`` (strings or lists of messages) with an
  optional ``prompt``; the conversation read is the prompt followed by the chosen answer.

A message's ``content`` may be a string or a list of text parts (``[{"type": "text", "text": ...}]``, as
multimodal chat templates take it); the parts are joined with newlines, and a part that is not text is an error.

Every row becomes a list of ``{"role", "content"}`` messages with roles ``system``, ``user`` and
``assistant``, and then a list of ``(user, assistant)`` turns paired by role. A row that cannot be read
raises :class:`RowError` naming the row index and the problem; nothing is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from .errors import ConfigError, DataError

logger = logging.getLogger(__name__)
T = TypeVar("T")

FORMATS = ("messages", "sharegpt", "alpaca", "prompt_response", "preference")

Message = dict[str, str]
Turn = tuple[str, str]

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "system": "system",
}
_MESSAGE_ROLES = ("system", "user", "assistant")


class RowError(DataError):
    """A row that cannot be read. ``row`` is its index in the dataset (or in the batch)."""

    def __init__(self, row: int | None, problem: str):
        self.row = row
        self.problem = problem
        where = f"row {row}" if row is not None else "row"
        super().__init__(f"{where}: {problem}")


def detect_format(columns: Sequence[str]) -> str:
    """Name the row format of a dataset from its column names.

    >>> detect_format(["messages", "id"])
    'messages'
    >>> detect_format(["instruction", "input", "output"])
    'alpaca'
    """
    columns = set(columns)
    if "messages" in columns:
        return "messages"
    if "conversations" in columns:
        return "sharegpt"
    if "instruction" in columns and "output" in columns:
        return "alpaca"
    if "prompt" in columns and ("response" in columns or "completion" in columns):
        return "prompt_response"
    if "chosen" in columns and "rejected" in columns:
        return "preference"
    raise DataError(
        f"cannot tell the row format from the columns {sorted(columns)}: expected 'messages', "
        "'conversations', 'instruction'+'output', 'prompt'+'response'/'completion' or 'chosen'+'rejected'. Name the "
        f"format explicitly with one of {FORMATS}, or rename the columns."
    )


def _text(value: Any, row: int | None, what: str) -> str:
    if not isinstance(value, str):
        raise RowError(row, f"{what} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate: no tokenizer can read it
        raise RowError(
            row,
            f"{what} holds {value[error.start]!r} at character {error.start}, a lone surrogate that is not "
            "valid Unicode text; repair the text (e.g. decode the source as UTF-8) or drop the row",
        ) from None
    return value


def _content(value: Any, row: int | None, what: str) -> str:
    """A message's text: a string, or a list of text parts joined with newlines."""
    if isinstance(value, str):
        return _text(value, row, what)
    if not isinstance(value, (list, tuple)):
        raise RowError(row, f"{what} must be a string or a list of text parts, got {type(value).__name__}")
    texts = []
    for k, part in enumerate(value):
        kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
        if kind != "text" or not isinstance(part.get("text"), str):
            raise RowError(
                row,
                f"{what}[{k}] is a {kind!r} part; deita-hf reads text only ({{'type': 'text', 'text': ...}}): "
                "drop the other parts or the row",
            )
        texts.append(_text(part["text"], row, f"{what}[{k}].text"))
    return "\n".join(texts)


def _column(row_data: Mapping[str, Any], name: str, row: int | None) -> Any:
    if name not in row_data:
        raise RowError(row, f"missing column {name!r}")
    return row_data[name]


def _message_list(value: Any, row: int | None, column: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise RowError(row, f"column {column!r} must be a list of messages, got {type(value).__name__}")
    return list(value)


def _from_messages(row_data: Mapping[str, Any], row: int | None, column: str = "messages") -> list[Message]:
    messages = []
    for j, message in enumerate(_message_list(_column(row_data, column, row), row, column)):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise RowError(row, f"{column}[{j}] must be a dict with 'role' and 'content'")
        role = message["role"]
        if role not in _MESSAGE_ROLES:
            raise RowError(row, f"{column}[{j}] has unknown role {role!r}; expected one of {_MESSAGE_ROLES}")
        messages.append({"role": role, "content": _content(message["content"], row, f"{column}[{j}].content")})
    return messages


def _from_sharegpt(row_data: Mapping[str, Any], row: int | None) -> list[Message]:
    messages = []
    turns = _message_list(_column(row_data, "conversations", row), row, "conversations")
    for j, message in enumerate(turns):
        if not isinstance(message, Mapping) or "from" not in message or "value" not in message:
            raise RowError(row, f"conversations[{j}] must be a dict with 'from' and 'value'")
        role = _SHAREGPT_ROLES.get(str(message["from"]).lower())
        if role is None:
            raise RowError(
                row,
                f"conversations[{j}] has unknown 'from' {message['from']!r}; expected one of "
                f"{sorted(_SHAREGPT_ROLES)}",
            )
        messages.append({"role": role, "content": _text(message["value"], row, f"conversations[{j}].value")})
    return messages


def _from_alpaca(row_data: Mapping[str, Any], row: int | None) -> list[Message]:
    instruction = _text(_column(row_data, "instruction", row), row, "instruction")
    extra = row_data.get("input")
    if extra is not None:
        extra = _text(extra, row, "input")
        if extra:
            instruction = instruction + "\n" + extra
    output = _text(_column(row_data, "output", row), row, "output")
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": output}]


def _part(row_data: Mapping[str, Any], column: str, role: str, row: int | None) -> list[Message]:
    """A column that holds a string (one message of ``role``) or a list of messages (TRL's conversational form)."""
    value = _column(row_data, column, row)
    if isinstance(value, str):
        return [{"role": role, "content": _text(value, row, column)}]
    if isinstance(value, (list, tuple)):
        return _from_messages(row_data, row, column)
    raise RowError(row, f"{column} must be a string or a list of messages, got {type(value).__name__}")


def _from_prompt_response(row_data: Mapping[str, Any], row: int | None) -> list[Message]:
    name = "response" if "response" in row_data else "completion"
    return _part(row_data, "prompt", "user", row) + _part(row_data, name, "assistant", row)


def _from_preference(row_data: Mapping[str, Any], row: int | None) -> list[Message]:
    _column(row_data, "rejected", row)
    chosen = _part(row_data, "chosen", "assistant", row)
    if row_data.get("prompt") is None:  # implicit prompt: `chosen` is the whole conversation
        return chosen
    return _part(row_data, "prompt", "user", row) + chosen


_READERS = {
    "messages": _from_messages,
    "sharegpt": _from_sharegpt,
    "alpaca": _from_alpaca,
    "prompt_response": _from_prompt_response,
    "preference": _from_preference,
}


def row_messages(row_data: Mapping[str, Any], format: str | None = None, row: int | None = None) -> list[Message]:
    """The conversation of one row as ``{"role", "content"}`` messages, in order.

    >>> row_messages({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]})
    [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]
    """
    format = format or detect_format(list(row_data))
    if format not in _READERS:
        raise ConfigError(f"unknown row format {format!r}; expected one of {FORMATS}")
    return _READERS[format](row_data, row)


def pair_turns(messages: Sequence[Message], row: int | None = None) -> list[Turn]:
    """Pair each user message with the assistant message right after it (SPEC section 4).

    System messages are skipped; an assistant message with no user message before it is skipped; a user
    message with no answer gets ``""``. A conversation without a user message is an error.

    >>> pair_turns([{"role": "system", "content": "S"}, {"role": "user", "content": "q1"},
    ...             {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}])
    [('q1', 'a1'), ('q2', '')]
    """
    turns: list[Turn] = []
    pending: str | None = None
    for message in messages:
        if message["role"] == "user":
            if pending is not None:
                turns.append((pending, ""))
            pending = message["content"]
        elif message["role"] == "assistant" and pending is not None:
            turns.append((pending, message["content"]))
            pending = None
    if pending is not None:
        turns.append((pending, ""))
    if not turns:
        raise RowError(row, "the conversation has no user turn")
    return turns


def row_turns(row_data: Mapping[str, Any], format: str | None = None, row: int | None = None) -> list[Turn]:
    """The ``(user, assistant)`` turns of one row."""
    return pair_turns(row_messages(row_data, format, row), row)


def batch_size_of(batch: Mapping[str, Sequence[Any]]) -> int:
    """Number of rows in a columnar batch (``{"column": [values...]}``)."""
    return len(next(iter(batch.values()))) if batch else 0


# The columns a conversation is read from. In a batch each holds one value per row (a string, a list of messages
# or None), never a message: a column that holds message dicts is one row's conversation.
_CONVERSATION_COLUMNS = ("messages", "conversations", "prompt", "response", "completion", "chosen", "rejected")
_NOT_A_BATCH = "expected a batch of columns ({'column': [one value per row]})"


def check_batch(batch: Mapping[str, Any]) -> None:
    """Refuse a dict given as a batch of columns (``{"column": [one value per row]}``) that is not one.

    A column that is not a list of values, or a conversation column that holds messages, is what one row holds:
    the error says to pass ``batched=False``. Columns of different lengths are refused too.

    >>> check_batch({"instruction": ["Say hi", "Add 2+2"], "output": ["Hi!", "4"]})  # two rows: no error
    """
    lengths = {}
    for name, column in batch.items():
        if isinstance(column, (str, bytes, Mapping)) or not hasattr(column, "__len__"):
            raise ConfigError(
                f"{_NOT_A_BATCH}, but column {name!r} holds {column!r:.60}, as one row does; "
                "to pass one row, call with batched=False"
            )
        if name in _CONVERSATION_COLUMNS:
            message = next((value for value in column if isinstance(value, Mapping)), None)
            if message is not None:
                raise ConfigError(
                    f"{_NOT_A_BATCH}, but column {name!r} holds messages ({message!r:.60}), as one row does; "
                    "to pass one row, call with batched=False"
                )
        lengths[name] = len(column)
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"{_NOT_A_BATCH}, but its columns have different lengths: {lengths}")


def iter_batch_rows(batch: Mapping[str, Sequence[Any]]) -> Iterator[dict[str, Any]]:
    """The rows of a columnar batch, one dict each."""
    columns = list(batch)
    for i in range(batch_size_of(batch)):
        yield {name: batch[name][i] for name in columns}


def read_rows(
    batch: Mapping[str, Any],
    batched: bool,
    indices: Sequence[int] | int | None,
    read: Callable[[dict[str, Any], int | None], T],
    on_error: str,
    count: Callable[[str], None],
) -> list[T | None]:
    """``read(row, position)`` for each row of a batch (or of one row), where position is the dataset row index
    (``indices``, from ``Dataset.map(with_indices=True)``) or else the position in the batch.

    A :class:`RowError` is raised (without dataset indices, its message says that the row number is a position in
    the batch), or with ``on_error="nan"`` logged, counted as ``count("unreadable_rows")`` and read as None.

    >>> read_rows({"x": [1, None]}, True, [7, 8], lambda row, i: row["x"] + 1 if row["x"] else None, "raise", print)
    [2, None]
    """
    rows = list(iter_batch_rows(batch)) if batched else [dict(batch)]
    if indices is None:
        positions: list[int | None] = list(range(len(rows))) if batched else [None]
    else:
        positions = list(indices) if batched else [indices]  # type: ignore[arg-type, list-item]
    values: list[T | None] = []
    for row, position in zip(rows, positions):
        try:
            values.append(read(row, position))
        except RowError as error:
            if on_error != "nan":
                if indices is None and batched:
                    raise RowError(
                        position,
                        f"{error.problem} (position in this batch; pass with_indices=True "
                        "to Dataset.map for dataset row indices)",
                    ) from None
                raise
            logger.warning("%s; recording NaN", error)
            count("unreadable_rows")
            values.append(None)
    return values


def to_messages_column(row_data: Mapping[str, Any], format: str | None = None) -> dict[str, list[Message]]:
    """A ``Dataset.map`` function that adds a ``messages`` column in TRL's conversational format."""
    return {"messages": row_messages(row_data, format)}
