"""Helpers shared by the training entry points :mod:`deita_hf.sft` and :mod:`deita_hf.dpo`.

- data: load training rows from a Hub id, a local file, or the output folder of a deita-hf selection, and
  turn them into TRL's conversational formats (``messages`` for SFT; ``prompt``/``chosen``/``rejected`` for
  DPO), with errors that name the row;
- the tokenizer: the Vicuna v1.1 chat template of the Deita models and a pad token;
- the model card (``model_cards/model_card.md`` rendered with huggingface_hub's ``ModelCard``) and the push
  of the output folder to the Hub, on the main process only.

>>> from datasets import Dataset
>>> rows = Dataset.from_list([{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}])
>>> to_messages_dataset(rows)[0]["messages"]
[{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import trl

from .chat_template import load_chat_tokenizer, set_vicuna_chat_template
from .constants import CITATION, PAPER_RESULTS, RELEASED_SELECTIONS, card_template
from .formats import RowError, row_messages

logger = logging.getLogger(__name__)

MODEL_CARD_TEMPLATE = card_template("model_card.md")

# Files of a deita-hf selection output folder (`deita_hf.pipeline`): the effective recipe and the run summary.
RECIPE_FILE = "recipe.yaml"
SUMMARY_FILE = "summary.json"
# The row number in the input of each training row: errors and dropped rows name it, also after sampling.
INPUT_ROW_COLUMN = "deita_hf_input_row"


@dataclass
class ScriptArguments(trl.ScriptArguments):
    """TRL's ``ScriptArguments`` (``dataset_name``, ``dataset_config``, ``dataset_train_split``, ...) and:

    Parameters:
        dataset_format (`str`, *optional*):
            Row format of SFT data: ``"messages"``, ``"sharegpt"``, ``"alpaca"`` or ``"prompt_response"``.
            Detected from the columns when not set.
        dataset_revision (`str`, *optional*):
            Revision (branch, tag or commit) of a Hub dataset ``dataset_name``.
        dataset_sample_size (`int`, *optional*):
            Train on a random sample of this many rows of the training split (Deita's DPO data: 10000), drawn
            as the reference drew it: see :func:`sample_rows`.
        dataset_sample_seed (`int`, *optional*, defaults to `42`):
            Seed of that sample (Deita's DPO data: 42).
        max_dropped_share (`float`, *optional*, defaults to `0.01`):
            TRL drops a row when ``max_length`` cuts away every token it trains on (SFT: every assistant
            token; DPO: the prompt alone fills ``max_length``). Such rows are counted and named (input row
            numbers) before training; more than this share of the rows, or no row left, stops the run.
        reproduces (`str`, *optional*):
            Hub id of the released Deita model that the recipe reproduces; the model card quotes its paper
            results (e.g. ``hkust-nlp/deita-7b-v1.0-sft``).

    ``dataset_name`` may also be a local file or a deita-hf selection output folder: see
    :func:`load_training_data`.
    """

    dataset_format: str | None = field(
        default=None,
        metadata={"help": "Row format: messages, sharegpt, alpaca or prompt_response (SFT). Detected when not set."},
    )
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Revision (branch, tag or commit) of a Hub dataset."}
    )
    dataset_sample_size: int | None = field(
        default=None, metadata={"help": "Train on a random sample of this many rows of the training split."}
    )
    dataset_sample_seed: int = field(default=42, metadata={"help": "Seed of the random sample of rows."})
    max_dropped_share: float = field(
        default=0.01,
        metadata={
            "help": "Stop before training when more than this share of the rows would be dropped because "
            "max_length cuts away every token they train on (0 allows none, 1 allows all but one)."
        },
    )
    reproduces: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the released Deita model this recipe reproduces; its paper results go in the card."
        },
    )


# -- data ---------------------------------------------------------------------------------------------------------
def resolve_training_data(name_or_path: str) -> str:
    """The dataset to train on: for the output folder of a deita-hf selection (``deita-hf run`` / ``select``),
    the dataset folder that its ``summary.json`` names (``selected/``); otherwise ``name_or_path`` itself."""
    path = Path(name_or_path).expanduser()
    summary = path / SUMMARY_FILE
    if path.is_dir() and summary.is_file():
        try:
            dataset = json.loads(summary.read_text(encoding="utf-8")).get("outputs", {}).get("dataset")
        except (ValueError, AttributeError) as error:
            raise ValueError(f"{summary} cannot be read ({error}); pass the dataset folder itself.") from None
        if not isinstance(dataset, str) or not dataset or not (path / dataset).is_dir():
            raise ValueError(f"{summary} names no dataset folder under 'outputs'; pass the dataset folder itself.")
        # The dataset must lie inside the output folder: a summary cannot send training to data elsewhere.
        folder = path.resolve()
        resolved = (path / dataset).resolve()
        if folder not in resolved.parents:
            raise ValueError(
                f"{summary} names the dataset {dataset!r}, which is not inside {path}; pass the dataset folder "
                "itself if that is what you mean to train on."
            )
        return str(resolved)
    return name_or_path


def load_training_data(
    name_or_path: str | None, *, split: str = "train", config: str | None = None, revision: str | None = None
):
    """Load one split of training data as a ``datasets.Dataset``.

    ``name_or_path`` is the output folder of a deita-hf selection (its selected rows are loaded), a
    ``save_to_disk`` folder, a local ``.json``/``.jsonl``/``.csv``/``.parquet``/``.arrow`` file, or a Hub
    dataset id (``hkust-nlp/deita-6k-v0``, read with ``datasets.load_dataset(name_or_path, config, split=split,
    revision=revision)``).

    >>> import json, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "rows.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write(json.dumps({"instruction": "Say hi", "output": "Hi"}) + "\\n")
    >>> load_training_data(path).column_names
    ['instruction', 'output']
    """
    from .pipeline import load_input

    if not name_or_path:
        raise ValueError("no training data: set dataset_name to a Hub dataset id, a local file or a folder.")
    return load_input(resolve_training_data(name_or_path), config, split, revision=revision)


def sample_indices(n: int, size: int, seed: int = 42) -> list[int]:
    """The row indices that Deita's DPO sample took (``src/deita/data/sample_ultrafeedback.py`` of the
    reference): ``random.seed(seed)`` then ``random.sample(range(n), size)``, in that order. A generator of its
    own gives the same numbers without touching the global ``random`` state.

    >>> sample_indices(10, 3, seed=42)
    [1, 0, 4]
    """
    return random.Random(seed).sample(range(n), size)


def number_rows(dataset):
    """The dataset with its row numbers in a column, so that errors and dropped rows name the input row after
    sampling and conversion (the column is dropped before training)."""
    if INPUT_ROW_COLUMN in dataset.column_names:
        return dataset
    return dataset.add_column(INPUT_ROW_COLUMN, list(range(len(dataset))))


def sample_rows(dataset, size: int | None, seed: int = 42):
    """A random sample of ``size`` rows, in the order drawn (all rows, in order, when ``size`` is None): the
    rows :func:`sample_indices` names, so that the DPO recipe trains on the reference's 10K pairs of the same
    data.

    >>> from datasets import Dataset
    >>> list(sample_rows(Dataset.from_dict({"x": list(range(10))}), 3, seed=42)["x"])
    [1, 0, 4]
    """
    if size is None:
        return dataset
    if not 0 < size <= len(dataset):
        raise ValueError(f"dataset_sample_size={size} must be between 1 and the number of rows ({len(dataset)}).")
    return dataset.select(sample_indices(len(dataset), size, seed))


def reference_train_split(dataset, fraction: float):
    """The rows that the reference's SFT script trained on (``make_supervised_data_module`` of
    ``src/deita/alignment/train.py``): ``np.random.seed(0)``, ``np.random.permutation(n)``, the first
    ``int(n * fraction)`` indices (the reference: 0.98), in that order. ``fraction`` 1 keeps all rows, in order.

    >>> from datasets import Dataset
    >>> list(reference_train_split(Dataset.from_dict({"x": list(range(10))}), 0.8)["x"])
    [2, 8, 4, 9, 1, 6, 7, 3]
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"dataset_train_fraction={fraction} must be in (0, 1]")
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
        return {"messages": conversation_messages(row, format, row.get(INPUT_ROW_COLUMN, index))}

    return dataset.map(
        convert,
        with_indices=True,
        remove_columns=[name for name in dataset.column_names if name != INPUT_ROW_COLUMN],
        num_proc=num_proc,
        desc="Reading conversations",
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

    def convert(row, index):
        return preference_pair(row, row.get(INPUT_ROW_COLUMN, index))

    return dataset.map(
        convert,
        with_indices=True,
        remove_columns=[name for name in dataset.column_names if name != INPUT_ROW_COLUMN],
        num_proc=num_proc,
        desc="Reading preference pairs",
    )


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
        raise ValueError(
            f"max_length={max_length} leaves nothing to train on: every row is cut before its first trained "
            f"token ({what}); raise max_length"
        )
    if len(dropped) > max_dropped_share * len(rows):
        raise ValueError(
            f"max_length={max_length} cuts away every trained token of {what}, more than max_dropped_share="
            f"{max_dropped_share}; raise max_length, drop these rows, or raise max_dropped_share to train without them"
        )
    logger.warning("max_length=%s cuts away every trained token of %s: training without them", max_length, what)
    return dropped


# -- tokenizer ----------------------------------------------------------------------------------------------------
def load_tokenizer(
    model_name_or_path: str,
    revision: str = "main",
    trust_remote_code: bool = False,
    label_space_before_answer: bool = False,
) -> Any:
    """The tokenizer of ``model_name_or_path`` with the Vicuna v1.1 chat template of the Deita models and a pad
    token (``<unk>`` where the tokenizer has none, as in Deita's training code; else EOS).

    A LLaMA/Mistral SentencePiece tokenizer (``LlamaTokenizer``) is loaded with ``legacy=True``, the behaviour
    of the tokenizer Deita trained with: each piece of text after a special token starts a new word, so the
    template's ``<s>A chat`` gives ``▁A`` (as the reference's BOS + text did) and ``</s>USER`` gives ``▁US``.
    transformers 5 loads these tokenizers non-legacy unless told, and does not save the setting; it is written
    to the tokenizer config so that the trained model's tokenizer reloads the same way.

    ``label_space_before_answer`` sets the template variant that trains a bare space token before an answer
    (see :func:`deita_hf.chat_template.vicuna_chat_template`).
    """
    tokenizer = load_chat_tokenizer(model_name_or_path, revision, trust_remote_code, chat_template="vicuna")
    return set_vicuna_chat_template(tokenizer, label_space_before_answer) if label_space_before_answer else tokenizer


def model_init_kwargs(model_args, training_args) -> dict[str, Any]:
    """The ``from_pretrained`` arguments of the model, from ``ModelConfig`` (revision, dtype, attention) and the
    training config (``trust_remote_code``, ``model_init_kwargs``, which win)."""
    kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    kwargs.update(training_args.model_init_kwargs or {})
    return kwargs


def last_checkpoint(training_args) -> str | None:
    """The checkpoint to resume from: ``resume_from_checkpoint`` if set, else the last ``checkpoint-N`` folder
    in ``output_dir`` (a rerun of the same command continues where it stopped), else None."""
    from transformers.trainer_utils import get_last_checkpoint

    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if os.path.isdir(training_args.output_dir):
        checkpoint = get_last_checkpoint(training_args.output_dir)
        if checkpoint is not None:
            logger.info("checkpoint found, resuming training from %s", checkpoint)
        return checkpoint
    return None


# -- model card and push ------------------------------------------------------------------------------------------
def framework_versions() -> dict[str, str]:
    """Installed versions of the libraries that the training ran on."""
    versions = {}
    for package in ("deita-hf", "transformers", "trl", "datasets", "accelerate", "torch", "deepspeed", "peft"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _is_hub_id(name: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not Path(name).exists()


def _selection_folder(dataset_name: str) -> Path | None:
    """The output folder of a deita-hf selection that ``dataset_name`` names: the folder itself, or the folder
    around its ``selected/`` dataset folder; None for anything else."""
    path = Path(dataset_name).expanduser()
    for folder in (path, path.parent):
        if (folder / SUMMARY_FILE).is_file():
            outputs = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8")).get("outputs", {})
            if folder == path or outputs.get("dataset") == path.name:
                return folder
    return None


def selection_description(dataset_name: str) -> tuple[str | None, dict[str, str]]:
    """How the training data was selected: the text for a released Deita selection, and for the output folder
    of a deita-hf selection (or its ``selected/`` folder) its ``recipe.yaml`` and ``summary.json``."""
    folder = _selection_folder(dataset_name)
    files = {}
    if folder is not None:
        for name in (RECIPE_FILE, SUMMARY_FILE):
            if (folder / name).is_file():
                files[name] = (folder / name).read_text(encoding="utf-8").strip()
    return RELEASED_SELECTIONS.get(dataset_name), files


def is_smoke_selection(dataset_name: str) -> bool:
    """Whether ``dataset_name`` is a deita-hf selection made with tiny random-weight models (a smoke run)."""
    folder = _selection_folder(dataset_name)
    if folder is None:
        return False
    summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    return bool(summary.get("smoke_run")) or any(
        model.get("random_weights") for model in summary.get("models", {}).values()
    )


def _local_card_data(model: str) -> dict[str, Any]:
    """The metadata of the model card beside a local model (a model trained here), else ``{}``."""
    card = Path(model).expanduser() / "README.md"
    if not Path(model).expanduser().is_dir():
        return {}
    if not card.is_file():
        return {}
    from huggingface_hub import ModelCard

    return ModelCard.load(card).data.to_dict()


def reproduced_model(reproduces: str | None, base_model: str, dataset_name: str) -> str | None:
    """``reproduces`` if this run trains the paper's base model on the paper's data for that released model
    (the base may also be a local model whose card says it reproduces the paper's base); else None."""
    paper = PAPER_RESULTS.get(reproduces or "")
    if paper is None or dataset_name != paper["dataset"]:
        return None
    if (
        base_model == paper["base_model"]
        or _local_card_data(base_model).get("deita_reproduces") == paper["base_model"]
    ):
        return reproduces
    return None


def hyperparameters(training_args, world_size: int) -> dict[str, Any]:
    """The hyperparameters that define a run, with the global batch size spelled out."""
    params: dict[str, Any] = {
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": str(getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)),
        "warmup_steps": training_args.warmup_steps,
        "num_train_epochs": training_args.num_train_epochs,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "num_processes": world_size,
        "global_batch_size": training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * world_size,
        "max_length": getattr(training_args, "max_length", None),
        "optimizer": str(getattr(training_args.optim, "value", training_args.optim)),
        "weight_decay": training_args.weight_decay,
        "precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32",
        "seed": training_args.seed,
    }
    if training_args.max_steps and training_args.max_steps > 0:
        params["max_steps"] = training_args.max_steps
    if getattr(training_args, "assistant_only_loss", None) is not None:
        params["assistant_only_loss"] = training_args.assistant_only_loss
    if hasattr(training_args, "beta"):
        params["beta"] = training_args.beta
        params["loss_type"] = (
            ",".join(training_args.loss_type) if isinstance(training_args.loss_type, list) else training_args.loss_type
        )
    plugin = getattr(training_args, "deepspeed_plugin", None)
    if plugin is not None:
        params["deepspeed_zero_stage"] = plugin.zero_stage
    return params


def training_results(log_history: list[dict]) -> dict[str, Any]:
    """Steps and first/last training loss from a trainer's ``state.log_history``."""
    losses = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry]
    results: dict[str, Any] = {}
    if losses:
        results = {"steps": losses[-1][0], "first_loss": losses[0][1], "last_loss": losses[-1][1]}
    summary = next((entry for entry in reversed(log_history) if "train_runtime" in entry), None)
    if summary is not None:
        results["train_runtime_s"] = round(summary["train_runtime"], 1)
    return results


def render_model_card(
    *,
    model_name: str,
    base_model: str,
    dataset_name: str,
    method: str,
    hyperparameters: Mapping[str, Any],
    results: Mapping[str, Any] | None = None,
    reproduces: str | None = None,
    load_id: str | None = None,
    template_path: str | Path = MODEL_CARD_TEMPLATE,
):
    """The model card of a trained model: ``model_cards/model_card.md`` rendered with ``ModelCard.from_template``.

    ``method`` is ``"SFT"`` or ``"DPO"``. The card names the base model and the training data with the selection
    that made it, lists the hyperparameters and framework versions, and ends with the Deita citation. It quotes
    the paper's results for the released model that ``reproduces`` names only when the run shares that model's
    base model and data (:func:`reproduced_model`); otherwise it says that they do not apply. A model trained on
    a smoke selection (tiny random-weight scorers), or from a model that was, says so at the top. ``load_id`` is
    what the usage example loads (default ``model_name``): the full Hub id, or the local folder.

    >>> card = render_model_card(model_name="my-deita", base_model="mistralai/Mistral-7B-v0.1",
    ...     dataset_name="hkust-nlp/deita-6k-v0", method="SFT", hyperparameters={"learning_rate": 2e-5},
    ...     reproduces="hkust-nlp/deita-7b-v1.0-sft")
    >>> card.data.base_model, "7.22" in card.text
    ('mistralai/Mistral-7B-v0.1', True)
    """
    from huggingface_hub import ModelCard, ModelCardData

    selection, selection_files = selection_description(dataset_name)
    from .pipeline import is_smoke_model

    smoke = (
        is_smoke_selection(dataset_name)
        or is_smoke_model(base_model)
        or "smoke-test" in (_local_card_data(base_model).get("tags") or [])
    )
    reproduced = reproduced_model(reproduces, base_model, dataset_name)
    extra = {"deita_reproduces": reproduced} if reproduced and not smoke else {}
    card_data = ModelCardData(
        base_model=base_model if _is_hub_id(base_model) else None,
        datasets=[dataset_name] if _is_hub_id(dataset_name) else None,
        library_name="transformers",
        tags=["deita", "trl", method.lower(), "generated_from_trainer"] + (["smoke-test"] if smoke else []),
        model_name=model_name,
        **extra,
    )
    paper = PAPER_RESULTS.get(reproduces) if reproduces else None
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_name=model_name,
        load_id=load_id or model_name,
        smoke_run=smoke,
        base_model=base_model,
        base_model_is_hub=_is_hub_id(base_model),
        dataset_name=dataset_name,
        dataset_is_hub=_is_hub_id(dataset_name),
        method=method,
        selection=selection,
        selection_files=selection_files,
        hyperparameters=dict(hyperparameters),
        results=dict(results or {}),
        reproduces=reproduces,
        paper_results=paper if reproduced and not smoke else None,
        paper_recipe=paper,
        framework_versions=framework_versions(),
        citation=CITATION,
    )


def write_model_card(trainer, script_args, model_args, method: str, model_name: str | None = None) -> Any:
    """Render the card of a finished run and save it as ``README.md`` in the output folder."""
    args = trainer.args
    params = hyperparameters(args, trainer.accelerator.num_processes)
    if script_args.dataset_sample_size is not None:
        params["dataset_sample_size"] = script_args.dataset_sample_size
        params["dataset_sample_seed"] = script_args.dataset_sample_seed
    if script_args.dataset_revision is not None:
        params["dataset_revision"] = script_args.dataset_revision
    card = render_model_card(
        model_name=model_name or args.hub_model_id or Path(args.output_dir).name,
        load_id=model_name or str(args.output_dir),
        base_model=model_args.model_name_or_path,
        dataset_name=script_args.dataset_name,
        method=method,
        hyperparameters=params,
        results=training_results(trainer.state.log_history),
        reproduces=script_args.reproduces,
    )
    card.save(os.path.join(args.output_dir, "README.md"))
    return card


def create_hub_repo(training_args) -> str:
    """Create (or find) the Hub model repository ``hub_model_id`` (default: the output folder's name, in the
    namespace of the logged-in user) and return its full id. The token comes from ``hub_token`` or the usual
    Hugging Face login."""
    from huggingface_hub import HfApi

    name = training_args.hub_model_id or Path(training_args.output_dir).absolute().name
    api = HfApi(token=training_args.hub_token)
    return api.create_repo(name, private=training_args.hub_private_repo, exist_ok=True).repo_id


def upload_output_dir(training_args, repo_id: str, commit_message: str = "End of training") -> None:
    """Upload ``output_dir`` (model, tokenizer, card, trainer state; not the ``checkpoint-*`` folders) to
    ``repo_id`` at ``hub_revision``."""
    from huggingface_hub import HfApi

    HfApi(token=training_args.hub_token).upload_folder(
        repo_id=repo_id,
        folder_path=training_args.output_dir,
        commit_message=commit_message,
        revision=training_args.hub_revision,
        ignore_patterns=["_*", "checkpoint-*", "checkpoint-*/**"],
    )


def finish(trainer, script_args, model_args, method: str, push_to_hub: bool = False) -> None:
    """Save the model (all processes: ZeRO-3 gathers the shards), then on the main process the trainer state
    (``trainer_state.json`` with the log history) and the model card, and push the output folder if
    ``push_to_hub``; then end the distributed run.

    The scripts turn the Trainer's own pushing off (it would push a card of its own first) and pass the
    recipe's ``push_to_hub`` here.
    """
    args = trainer.args
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.save_state()
        # Training turns the KV cache off; the saved model should generate with it.
        trainer.model.config.use_cache = True
        trainer.model.config.save_pretrained(args.output_dir)
        repo_id = create_hub_repo(args) if push_to_hub else None
        write_model_card(trainer, script_args, model_args, method, model_name=repo_id)
        if repo_id is not None:
            upload_output_dir(args, repo_id)
            logger.info("pushed %s to https://huggingface.co/%s", args.output_dir, repo_id)
    trainer.accelerator.wait_for_everyone()
    trainer.end()
