"""Supervised fine-tuning with Deita's recipe (SPEC section 8): Vicuna v1.1 chat format, loss on the assistant
tokens only, on a Deita selection.

Usage::

    accelerate launch --config_file recipes/accelerate_configs/zero3.yaml -m deita_hf.training.sft \\
        --config recipes/deita-mistral-7b/sft.yaml

or ``deita-hf sft --config ...``. Every TRL ``SFTConfig`` / ``ModelConfig`` flag works in the YAML and on the
command line (the command line wins). Rerunning the same command resumes from the last checkpoint in
``output_dir``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trl
from trl import ModelConfig, SFTTrainer, TrlParser

from ..chat_template import load_tokenizer
from ..constants import SFT_MAX_LENGTH
from .common import ScriptArguments, train_and_finish
from .data import (
    drop_unanswered_last_turn,
    load_splits,
    reference_train_split,
    to_messages_dataset,
)

logger = logging.getLogger(__name__)


@dataclass
class SFTConfig(trl.SFTConfig):
    """TRL's ``SFTConfig`` with Deita's defaults.

    Parameters:
        assistant_only_loss (`bool`, *optional*, defaults to `True`):
            Compute the loss on the assistant tokens only (each answer and its EOS), as Deita did.
        max_length (`int`, *optional*, defaults to `2048`):
            Truncate tokenized conversations to this length (Deita: 2048).
        dataset_train_fraction (`float`, *optional*, defaults to `1.0`):
            Below 1, train on the reference's split of the rows: ``np.random.seed(0)``, a permutation, its first
            ``int(n * fraction)`` rows (the reference's SFT script: 0.98, the rest held out and never used).
        drop_unanswered_last_turn (`bool`, *optional*, defaults to `False`):
            Leave out conversations that end with a user message nobody answered, on which the reference trains
            nothing (deita-hf trains their answered turns by default).
        label_space_before_answer (`bool`, *optional*, defaults to `False`):
            Train the bare space token that SentencePiece puts before an answer that starts with a digit or a
            newline (``▁`` then ``4``), as the reference did; by default it is part of the prompt.

    See the parity table in ``docs/training.md`` for what each option changes.
    """

    assistant_only_loss: bool = field(
        default=True, metadata={"help": "Loss on the assistant tokens only (each answer and its EOS), as Deita did."}
    )
    max_length: int | None = field(
        default=SFT_MAX_LENGTH, metadata={"help": "Truncate conversations to this many tokens."}
    )
    dataset_train_fraction: float = field(
        default=1.0, metadata={"help": "Below 1: train on the reference's np.random.seed(0) split (it used 0.98)."}
    )
    drop_unanswered_last_turn: bool = field(
        default=False, metadata={"help": "Leave out conversations that end with an unanswered user message."}
    )
    label_space_before_answer: bool = field(
        default=False, metadata={"help": "Train the bare space token before an answer, as the reference did."}
    )


def make_parser() -> TrlParser:
    # The same script runs as `deita-hf sft` and as `accelerate launch -m deita_hf.training.sft`.
    return TrlParser((ScriptArguments, SFTConfig, ModelConfig), prog="deita-hf sft")


def main(argv: list[str] | None = None) -> None:
    """Run SFT from a recipe YAML (``--config``) and command-line flags; ``argv`` defaults to ``sys.argv[1:]``."""
    script_args, training_args, model_args = make_parser().parse_args_and_config(argv)
    logging.basicConfig(level=training_args.get_process_log_level(), format="%(asctime)s %(name)s: %(message)s")

    # The tokenizer first: a model path or Hub id that cannot be loaded fails before the data is read.
    tokenizer = load_tokenizer(
        model_args.model_name_or_path,
        model_args.model_revision,
        training_args.trust_remote_code,
        label_space_before_answer=training_args.label_space_before_answer,
    )

    # Data: a Hub id, a local file or a selection output folder, as TRL conversational `messages`.
    with training_args.main_process_first(desc="loading the training data"):
        train_dataset, eval_dataset = load_splits(script_args, training_args)
        train_dataset = reference_train_split(train_dataset, training_args.dataset_train_fraction)
        train_dataset = to_messages_dataset(train_dataset, script_args.dataset_format, training_args.dataset_num_proc)
        if training_args.drop_unanswered_last_turn:
            train_dataset = drop_unanswered_last_turn(train_dataset, training_args.dataset_num_proc)
        if eval_dataset is not None:
            eval_dataset = to_messages_dataset(
                eval_dataset, script_args.dataset_format, training_args.dataset_num_proc
            )

    # Model: loaded by the trainer; train, save, card, push.
    train_and_finish(SFTTrainer, script_args, training_args, model_args, tokenizer, train_dataset, eval_dataset, "SFT")


if __name__ == "__main__":
    main()
