"""Direct preference optimisation with Deita's recipe (SPEC section 8): on the Deita SFT model, 10K pairs sampled
with seed 42 from ``HuggingFaceH4/ultrafeedback_binarized`` (``train_prefs``), in the Vicuna v1.1 chat format.

Usage::

    accelerate launch --config_file recipes/accelerate_configs/zero3.yaml -m deita_hf.training.dpo \\
        --config recipes/deita-mistral-7b/dpo.yaml

or ``deita-hf dpo --config ...``. Every TRL ``DPOConfig`` / ``ModelConfig`` flag works in the YAML and on the
command line (the command line wins). Rerunning the same command resumes from the last checkpoint in
``output_dir``.
"""

from __future__ import annotations

import logging

from trl import DPOConfig, DPOTrainer, ModelConfig, TrlParser

from ..chat_template import load_tokenizer
from .common import ScriptArguments, train_and_finish
from .data import load_splits, to_preference_dataset

logger = logging.getLogger(__name__)


def make_parser() -> TrlParser:
    # The same script runs as `deita-hf dpo` and as `accelerate launch -m deita_hf.training.dpo`.
    return TrlParser((ScriptArguments, DPOConfig, ModelConfig), prog="deita-hf dpo")


def main(argv: list[str] | None = None) -> None:
    """Run DPO from a recipe YAML (``--config``) and command-line flags; ``argv`` defaults to ``sys.argv[1:]``."""
    script_args, training_args, model_args = make_parser().parse_args_and_config(argv)
    logging.basicConfig(level=training_args.get_process_log_level(), format="%(asctime)s %(name)s: %(message)s")

    # The tokenizer first: a model path or Hub id that cannot be loaded fails before the data is read.
    tokenizer = load_tokenizer(
        model_args.model_name_or_path, model_args.model_revision, training_args.trust_remote_code
    )

    # Data: the sampled pairs (Deita: 10K with seed 42), as TRL conversational prompt/chosen/rejected.
    with training_args.main_process_first(desc="loading the preference data"):
        train_dataset, eval_dataset = load_splits(script_args, training_args)
        train_dataset = to_preference_dataset(train_dataset, training_args.dataset_num_proc)
        if eval_dataset is not None:
            eval_dataset = to_preference_dataset(eval_dataset, training_args.dataset_num_proc)

    # Model: the policy and its frozen reference copy are loaded by the trainer; train, save, card, push.
    train_and_finish(DPOTrainer, script_args, training_args, model_args, tokenizer, train_dataset, eval_dataset, "DPO")


if __name__ == "__main__":
    main()
