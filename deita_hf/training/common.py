"""What ``sft`` and ``dpo`` share: the script arguments, model loading keyword arguments, checkpoints, the
Deita model card and the push.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import trl

from ..constants import (
    CITATION,
    DEFAULT_SEED,
    PAPER_RESULTS,
    RECIPE_FILE,
    RELEASED_SELECTIONS,
    SUMMARY_FILE,
    card_template,
)
from ..hub import is_hub_id
from ..modeling import resolve_model
from .data import INPUT_ROW_COLUMN, check_dropped_rows

logger = logging.getLogger(__name__)

MODEL_CARD_TEMPLATE = card_template("model_card.md")


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
    dataset_sample_seed: int = field(default=DEFAULT_SEED, metadata={"help": "Seed of the random sample of rows."})
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
    scorer_task: str | None = None,
    load_id: str | None = None,
    template_path: str | Path = MODEL_CARD_TEMPLATE,
):
    """The model card of a trained model: ``deita_hf/templates/model_card.md`` rendered with ``ModelCard.from_template``.

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
    from ..modeling import is_smoke_model

    smoke = (
        is_smoke_selection(dataset_name)
        or is_smoke_model(base_model)
        or "smoke-test" in (_local_card_data(base_model).get("tags") or [])
    )
    reproduced = reproduced_model(reproduces, base_model, dataset_name)
    extra = {"deita_reproduces": reproduced} if reproduced and not smoke else {}
    card_data = ModelCardData(
        base_model=base_model if is_hub_id(base_model) else None,
        datasets=[dataset_name] if is_hub_id(dataset_name) else None,
        library_name="transformers",
        tags=["deita", "trl", method.lower(), "generated_from_trainer"]
        + (["deita-scorer", f"{scorer_task}-scorer"] if scorer_task else [])
        + (["smoke-test"] if smoke else []),
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
        base_model_is_hub=is_hub_id(base_model),
        dataset_name=dataset_name,
        dataset_is_hub=is_hub_id(dataset_name),
        method=method,
        scorer_task=scorer_task,
        scorer_class=f"{scorer_task.capitalize()}Scorer" if scorer_task else None,
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


def write_model_card(
    trainer,
    script_args,
    model_args,
    method: str,
    model_name: str | None = None,
    *,
    dataset_name: str | None = None,
    scorer_task: str | None = None,
) -> Any:
    """Render the card of a finished run and save it as ``README.md`` in the output folder; ``scorer_task``
    (``"complexity"`` or ``"quality"``) for a trained scorer, whose data is ``dataset_name``."""
    args = trainer.args
    params = hyperparameters(args, trainer.accelerator.num_processes)
    if getattr(script_args, "dataset_sample_size", None) is not None:
        params["dataset_sample_size"] = script_args.dataset_sample_size
        params["dataset_sample_seed"] = script_args.dataset_sample_seed
    if getattr(script_args, "dataset_revision", None) is not None:
        params["dataset_revision"] = script_args.dataset_revision
    card = render_model_card(
        model_name=model_name or args.hub_model_id or Path(args.output_dir).name,
        load_id=model_name or str(args.output_dir),
        base_model=model_args.model_name_or_path,
        dataset_name=dataset_name or script_args.dataset_name,
        method=method,
        hyperparameters=params,
        results=training_results(trainer.state.log_history),
        reproduces=getattr(script_args, "reproduces", None),
        scorer_task=scorer_task,
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


def train_and_finish(
    trainer_class, script_args, training_args, model_args, tokenizer, train_dataset, eval_dataset, method: str
) -> None:
    """The end of the SFT and DPO scripts: the TRL trainer (it loads the model, ZeRO-3 aware), the rows that
    ``max_length`` leaves without a trained token (:func:`check_dropped_rows`), training (resumed from the last
    checkpoint), then :func:`finish`. The push happens once, in :func:`finish`, with the Deita model card (the
    Trainer would push its own card first)."""
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = trainer_class(
        model=resolve_model(model_args.model_name_or_path),  # tiny-random:seed=N becomes its folder
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=trl.get_peft_config(model_args),
        quantization_config=trl.get_quantization_config(model_args),
    )
    check_dropped_rows(trainer, train_dataset[INPUT_ROW_COLUMN], script_args.max_dropped_share)
    trainer.train(resume_from_checkpoint=last_checkpoint(training_args))
    finish(trainer, script_args, model_args, method=method, push_to_hub=push_to_hub)


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
