"""``deita-hf train-scorer``: fine-tune a causal LM into a Deita scorer, with the loss on the score token only.

The data is what ``deita-hf make-scorer-data`` writes (:mod:`deita_hf.scorers.data`): TRL prompt-completion
rows whose ``prompt`` is the scorer prompt and ``completion`` the score digit. The output folder is a model
and tokenizer that :class:`~deita_hf.scoring.ComplexityScorer` / :class:`~deita_hf.scoring.QualityScorer`
load like the released scorers::

    deita-hf train-scorer --config recipes/scorers/mistral-7b-complexity/train-scorer.yaml
    accelerate launch --config_file <accelerate.yaml> -m deita_hf.training.scorer --config <recipe.yaml>

Each row is tokenized here, exactly as the scorer tokenizes at inference (:meth:`TurnScorer.encode`: BOS
and the prompt's SentencePiece ids where the base model has a ``tokenizer.model``, else the tokenizer's ids
with its default special tokens; shortened to ``max_length - 1`` tokens by cutting the
middle of the response, then of the instruction), followed by the one token of the score digit. TRL's
``SFTTrainer`` gets ``input_ids`` and a ``completion_mask`` that marks that one token, and with
``completion_only_loss=True`` only that token is learned. Letting TRL tokenize the text instead would
append EOS to the completion (and learn it), merge the digit with the space before it in some tokenizers,
and cut long prompts at the end, where the ``##Complexity:`` tail is.

After training, the main process scores the ``test`` split with the saved scorer and writes
``scorer_eval.json`` (accuracy of the rounded score, mean absolute error, Spearman correlation).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trl

from ..constants import SCORE_DIGITS, SCORER_CONTEXT_LENGTH
from ..errors import ConfigError
from ..formats import RowError
from ..scorers.evol import check_task
from ..scorers.ranking import SCORERS
from ..scoring import TurnScorer, digit_token_ids
from ..tokenization import SENTENCEPIECE_FILE
from .common import create_hub_repo, model_init_kwargs, upload_output_dir, write_model_card

logger = logging.getLogger(__name__)


@dataclass
class ScorerScriptArguments(trl.ScriptArguments):
    """TRL's ``ScriptArguments`` (``dataset_name``, ``dataset_train_split``, ``dataset_test_split``, ...) and:

    Parameters:
        task (`str`, defaults to `"complexity"`): the scorer to train, ``complexity`` or ``quality``.
        scorer_data_dir (`str`, *optional*): the folder written by ``make-scorer-data``; read when
            ``dataset_name`` is not set.
        evaluate_scorer (`bool`, defaults to `True`): after training, score the test split with the saved
            scorer and write ``scorer_eval.json``.
    """

    task: str = field(default="complexity", metadata={"help": "The scorer to train: complexity or quality."})
    scorer_data_dir: str | None = field(
        default=None, metadata={"help": "Folder written by make-scorer-data; read when dataset_name is not set."}
    )
    evaluate_scorer: bool = field(
        default=True, metadata={"help": "Score the test split with the saved scorer and write scorer_eval.json."}
    )

    def __post_init__(self) -> None:
        check_task(self.task)


@dataclass
class ScorerTrainingConfig(trl.SFTConfig):
    """TRL's ``SFTConfig`` with the defaults of a scorer:

    Parameters:
        completion_only_loss (`bool`, defaults to `True`): learn the score token only (required).
        max_length (`int`, defaults to `2048`): longest sequence, the score token included; longer prompts are
            shortened in the middle, as the scorer does at inference. The released scorers: 2048.
    """

    completion_only_loss: bool | None = field(
        default=True, metadata={"help": "Learn the score token only (required)."}
    )
    max_length: int | None = field(
        default=SCORER_CONTEXT_LENGTH,
        metadata={"help": "Longest sequence with the score token; longer prompts are cut in the middle."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.completion_only_loss is not True:
            raise ConfigError("a scorer learns the score token only: keep completion_only_loss true")
        if self.packing:
            raise ConfigError("packing is not supported for scorer training: each row is one prompt and its score")


def training_types() -> tuple[type, ...]:
    """The config classes of ``train-scorer``, in parse order."""
    return ScorerScriptArguments, ScorerTrainingConfig, trl.ModelConfig


def parse_recipe_args(argv: Sequence[str] | None, prog: str = "deita-hf train-scorer") -> tuple:
    """Parse ``--config recipe.yaml`` and flags with TRL's ``TrlParser`` into :func:`training_types`.

    An unknown recipe key or flag is an error with the closest known name as a hint.
    """
    dataclass_types = training_types()
    parser = trl.TrlParser(list(dataclass_types), prog=prog)
    *parsed, from_config, from_flags = parser.parse_args_and_config(
        list(argv) if argv is not None else None, return_remaining_strings=True, separate_remaining_strings=True
    )
    if from_flags:
        parser.error(f"unrecognized arguments: {' '.join(from_flags)}")
    unknown = [key[2:] for key in from_config[::2]]
    if unknown:
        known = {f.name for t in dataclass_types for f in dataclasses.fields(t)}
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown option(s) {unknown} in the --config recipe{hint}")
    return tuple(parsed)


def load_scorer_tokenizer(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """The base model's tokenizer, set to reload as it loaded. transformers 5 does not save the ``legacy``
    setting of a LLaMA/Mistral SentencePiece tokenizer, which changes the tokens after a special token; it is
    written to the tokenizer config, so that the trained scorer tokenizes its prompts as in training."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    if getattr(tokenizer, "legacy", None) is not None:
        tokenizer.init_kwargs["legacy"] = tokenizer.legacy
    return tokenizer


def tokenize_scorer_data(dataset: Any, scorer: TurnScorer, *, num_proc: int | None = None) -> Any:
    """``input_ids`` (the scorer prompt as ``scorer.encode`` makes it, then the score digit's token) and a
    ``completion_mask`` on that last token, for TRL's ``SFTTrainer``; the other columns are dropped.

    A row whose ``prompt`` is not the scorer prompt of its ``instruction``/``output``, or whose ``completion``
    is not a digit 1..6, is an error that names it. Shortened prompts are counted in a warning.
    """
    tokenizer = scorer.tokenizer  # a tokenizer passed in: no model is loaded
    digits = dict(zip(SCORE_DIGITS, digit_token_ids(tokenizer)))
    missing = {"prompt", "completion", "instruction", "output"} - set(dataset.column_names)
    if missing:
        raise ConfigError(
            f"the scorer data has no column(s) {sorted(missing)}; make it with `deita-hf make-scorer-data` "
            "(prompt, completion, instruction, output)"
        )

    def tokenize(row: dict[str, Any], index: int) -> dict[str, Any]:
        if row["completion"] not in digits:
            raise RowError(
                index, f"completion must be one of the digits {list(SCORE_DIGITS)}, got {row['completion']!r}"
            )
        if row["prompt"] != scorer.render(row["instruction"], row["output"]):
            raise RowError(index, f"prompt is not the {scorer.column} prompt of its instruction and output")
        ids, shortened = scorer.encode(row["instruction"], row["output"])
        return {
            "input_ids": ids + [digits[row["completion"]]],
            "completion_mask": [0] * len(ids) + [1],
            "shortened": shortened,
        }

    tokenized = dataset.map(
        tokenize, with_indices=True, remove_columns=dataset.column_names, num_proc=num_proc, desc="Tokenizing"
    )
    shortened = sum(tokenized["shortened"])
    if shortened:
        logger.warning(
            "%d of %d prompts were longer than %d tokens and were shortened in the middle, as at inference",
            shortened,
            len(tokenized),
            scorer.max_length,
        )
    return tokenized.remove_columns("shortened")


def save_sentencepiece_model(scorer: TurnScorer, output_dir: str | Path, main_process: bool = True) -> None:
    """Copy the SentencePiece model that encoded the training prompts into the trained scorer's folder.

    transformers 5 saves a LLaMA/Mistral tokenizer as ``tokenizer.json`` only; without ``tokenizer.model``
    the trained scorer would encode its prompts with the tokenizer, whose ids differ from SentencePiece's on
    runs of spaces, and so from the ids it was trained on.
    """
    encoder = scorer.prompt_encoder
    if main_process and encoder.sentencepiece_file is not None:
        shutil.copyfile(encoder.sentencepiece_file, Path(output_dir) / SENTENCEPIECE_FILE)


def _ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[order[j + 1]] == values[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (NaN when either side is constant).

    >>> spearman([1, 2, 3], [10, 30, 20])
    0.5
    """
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def evaluate_scorer(scorer: TurnScorer, dataset: Any) -> dict[str, float]:
    """How well ``scorer`` predicts the scores of scorer data rows (``instruction``, ``output``, ``completion``).

    Returns ``rows``, ``accuracy`` (the score rounded half up equals the label), ``mean_absolute_error`` and
    ``spearman`` (rank correlation of the expected score and the label).
    """
    predicted = scorer.score_turns(list(zip(dataset["instruction"], dataset["output"])))
    truth = [int(c) for c in dataset["completion"]]
    return {
        "rows": len(truth),
        "accuracy": float(np.mean([math.floor(p + 0.5) == t for p, t in zip(predicted, truth)])),
        "mean_absolute_error": float(np.mean([abs(p - t) for p, t in zip(predicted, truth)])),
        "spearman": spearman(predicted, truth),
    }


def _load_split(name: str, split: str, config: str | None, required: bool) -> Any:
    from ..io import load_training_data

    try:
        return load_training_data(name, split=split, config=config)
    except ValueError:
        if required:
            raise
        logger.info("%s has no %r split", name, split)
        return None


def main(argv: Sequence[str] | None = None) -> None:
    """``deita-hf train-scorer --config recipe.yaml [--flag value ...]``."""
    from transformers import AutoConfig

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    script_args, training_args, model_args = parse_recipe_args(argv)
    if model_args.model_name_or_path is None:
        raise ConfigError(
            "set model_name_or_path: the base model to turn into a scorer (e.g. mistralai/Mistral-7B-v0.1)"
        )
    if model_args.use_peft:
        raise ConfigError("use_peft is not supported: a scorer is saved as a full model that ComplexityScorer loads")
    from ..modeling import resolve_model

    model_args.model_name_or_path = resolve_model(model_args.model_name_or_path)  # tiny-random:seed=N: its folder
    data_name = script_args.dataset_name or script_args.scorer_data_dir
    if data_name is None:
        raise ConfigError("set scorer_data_dir (the folder of make-scorer-data) or dataset_name")

    # -- data: tokenized exactly as the scorer tokenizes at inference --------------------------------------------
    tokenizer = load_scorer_tokenizer(
        model_args.model_name_or_path, model_args.model_revision, training_args.trust_remote_code
    )
    max_length = training_args.max_length
    if max_length is None:
        config = AutoConfig.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
        max_length = config.max_position_embeddings
    scorer = SCORERS[script_args.task](model_args.model_name_or_path, tokenizer, max_length=max_length - 1)
    with training_args.main_process_first(desc="tokenizing the scorer data"):
        train = _load_split(data_name, script_args.dataset_train_split, script_args.dataset_config, required=True)
        test = _load_split(data_name, script_args.dataset_test_split, script_args.dataset_config, required=False)
        train_ids = tokenize_scorer_data(train, scorer, num_proc=training_args.dataset_num_proc)
        test_ids = (
            tokenize_scorer_data(test, scorer) if test is not None and training_args.eval_strategy != "no" else None
        )

    # -- train ------------------------------------------------------------------------------------------------------
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    # Pushed once at the end, with the Deita model card (the Trainer would push its own card first).
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = trl.SFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_ids,
        eval_dataset=test_ids,
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    save_sentencepiece_model(scorer, training_args.output_dir, trainer.is_world_process_zero())
    if trainer.is_world_process_zero():
        repo_id = create_hub_repo(training_args) if push_to_hub else None
        write_model_card(
            trainer, script_args, model_args, "SFT", repo_id, dataset_name=data_name, scorer_task=script_args.task
        )
        if repo_id is not None:
            upload_output_dir(training_args, repo_id)
            logger.info("pushed %s to https://huggingface.co/%s", training_args.output_dir, repo_id)
    trainer.end()

    output_dir = Path(training_args.output_dir)
    if script_args.evaluate_scorer and test is not None and trainer.is_world_process_zero():
        trained = SCORERS[script_args.task](str(output_dir), max_length=max_length - 1, progress=False)
        metrics = evaluate_scorer(trained, test)
        (output_dir / "scorer_eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(
            f"{script_args.task} scorer on {metrics['rows']} held-out rows: accuracy {metrics['accuracy']:.3f}, "
            f"mean absolute error {metrics['mean_absolute_error']:.3f}, Spearman {metrics['spearman']:.3f}"
        )


__all__ = [
    "ScorerScriptArguments",
    "ScorerTrainingConfig",
    "evaluate_scorer",
    "load_scorer_tokenizer",
    "parse_recipe_args",
    "main",
    "save_sentencepiece_model",
    "spearman",
    "tokenize_scorer_data",
    "training_types",
]

if __name__ == "__main__":
    main()
