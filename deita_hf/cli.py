"""The ``deita-hf`` command.

    deita-hf run --config recipes/smoke/select.yaml           # score, embed and select from one recipe
    deita-hf score --dataset_name pool.jsonl --output_dir out/scored
    deita-hf embed --dataset_name out/scored/pool --output_dir out/embedded
    deita-hf select --dataset_name out/embedded/pool --budget 6000 --output_dir out/selected
    deita-hf report out/selected                              # make the selection report again
    deita-hf eval --config recipes/deita-mistral-7b/eval.yaml # evaluate the trained model
    deita-hf released                                         # the released Deita models and data sets
    deita-hf released download hkust-nlp/deita-6k-v0 --local_dir data/deita-6k
    deita-hf sft | dpo | make-scorer-data | train-scorer ...  # training entry points

Every option can be set in a YAML recipe (``--config``) and overridden by a flag; ``deita-hf COMMAND --help``
lists them with their defaults.
"""

from __future__ import annotations

import importlib
import logging
import os
import shlex
import sys

from .config import COMMAND_ARGUMENTS, HubArguments, parse_recipe
from .constants import VERSION
from .errors import DeitaError

# Commands whose module parses its own flags: command -> module with main(argv).
DISPATCHED = {
    "sft": "deita_hf.training.sft",
    "dpo": "deita_hf.training.dpo",
    "make-scorer-data": "deita_hf.scorers.data",
    "train-scorer": "deita_hf.training.scorer",
}

DESCRIPTIONS = {
    "score": "Add complexity_scores, quality_scores and deita_score to every row (resumable, distributed).",
    "embed": "Add the embedding of every conversation for the diversity filter (resumable, distributed).",
    "select": "Select the best rows by deita_score, skipping near-duplicates; write the selection and its report.",
    "run": "Score, embed and select from one recipe.",
    "report": "Make the selection report of an output folder again (and optionally push the selection).",
    "eval": "Evaluate a trained model: Open LLM Leaderboard tasks (lm-eval), MT-Bench and AlpacaEval answers, judges.",
    "released": "List the released Deita models and data sets, or download one (`deita-hf released download ID`).",
    "sft": "Supervised fine-tuning on a selection (TRL SFTTrainer, Vicuna v1.1 template).",
    "dpo": "Direct preference optimisation after SFT (TRL DPOTrainer).",
    "make-scorer-data": "Evolve and rank seed data into training data for the complexity and quality scorers.",
    "train-scorer": "Train a complexity or quality scorer.",
}

logger = logging.getLogger("deita_hf")


def _usage() -> str:
    width = max(len(name) for name in DESCRIPTIONS)
    lines = [
        "usage: deita-hf COMMAND [--config RECIPE.yaml] [options]",
        "",
        "Deita data selection (complexity, quality, diversity) for Hugging Face datasets.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {text}" for name, text in DESCRIPTIONS.items()]
    lines += ["", "`deita-hf COMMAND --help` lists the options of a command with their defaults."]
    return "\n".join(lines)


class _TqdmHandler(logging.StreamHandler):
    """Writes log lines with ``tqdm.write``, above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _setup_logging(verbose: bool = False) -> None:
    """deita-hf's console: one progress bar per step, warnings and the summary; with ``verbose``, every log line
    and the libraries' own progress bars (loading and saving weights) too."""
    import transformers

    rank = int(os.environ.get("RANK", "0"))
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _TqdmHandler()
    handler.setFormatter(
        logging.Formatter("[deita-hf] %(message)s" if rank == 0 else f"[deita-hf {rank}] %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    # Details: which model loads where, texts truncated per shard (the run's summary counts them all).
    detail = logging.INFO if verbose else logging.WARNING
    for name in ("deita_hf.modeling", "deita_hf.embedding"):
        logging.getLogger(name).setLevel(detail)
    # The scorers report shortened prompts once per shard; the summary counts them all.
    logging.getLogger("deita_hf.scoring").setLevel(logging.INFO if verbose else logging.ERROR)
    if verbose:
        transformers.utils.logging.enable_progress_bar()
        transformers.utils.logging.set_verbosity_warning()
    else:
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()


def _report(argv: list[str]) -> int:
    from .config import make_parser
    from .errors import PipelineError
    from .hub import push_selection
    from .report import remake_report

    parser = make_parser([HubArguments], prog="deita-hf report", description=DESCRIPTIONS["report"], recipe=False)
    parser.add_argument("output_dir", help="The output folder of a finished `deita-hf select` or `deita-hf run`.")
    args = parser.parse_args(argv)
    path = remake_report(args.output_dir)
    print(f"report: {path}")
    if args.push_to_hub:
        try:
            url = push_selection(args.output_dir, args.push_to_hub, private=args.hub_private, license=args.hub_license)
        except DeitaError:  # no login, not a selection: already a sentence
            raise
        except Exception as error:  # the network, the Hub: one line, and the way to try again
            raise PipelineError(
                f"the push of {args.output_dir} to {args.push_to_hub} failed ({type(error).__name__}: {error}); "
                "nothing in the folder changed: run the same command again to retry"
            ) from error
        print(f"pushed: {url}")
    return 0


def _released(argv: list[str]) -> int:
    import argparse

    from .released import ARTIFACT_KINDS, download_released, format_released, released

    parser = argparse.ArgumentParser(prog="deita-hf released", description=DESCRIPTIONS["released"])
    parser.add_argument("--kind", choices=ARTIFACT_KINDS, default=None, help="List only this kind of artifact.")
    actions = parser.add_subparsers(dest="action", metavar="{download}")
    download = actions.add_parser(
        "download",
        prog="deita-hf released download",
        help="Download one (huggingface_hub's snapshot_download: resumable, cached).",
    )
    download.add_argument("repo_id", help="A released id from `deita-hf released` (any case).")
    download.add_argument("--local_dir", default=None, help="Put the files here (default: the Hugging Face cache).")
    download.add_argument("--revision", default=None, help="A branch, tag or commit (default: main).")
    args = parser.parse_args(argv)
    if args.action == "download":
        print(download_released(args.repo_id, local_dir=args.local_dir, revision=args.revision))
    else:
        print(format_released(released(args.kind)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deita-hf`` console script; returns the exit status.

    >>> main(["--version"])  # doctest: +SKIP
    deita-hf 0.1.0
    0
    """
    from .pipeline import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"deita-hf {VERSION}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in DESCRIPTIONS:
        print(f"deita-hf: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        if command in DISPATCHED:
            return importlib.import_module(DISPATCHED[command]).main(rest) or 0
        if command in ("report", "released", "eval"):
            _setup_logging()
        if command == "report":
            return _report(rest)
        if command == "eval":
            from .config import EVAL_ARGUMENTS
            from .evaluation import run_eval

            run_eval(*parse_recipe(rest, EVAL_ARGUMENTS, prog="deita-hf eval", description=DESCRIPTIONS[command]))
            return 0
        if command == "released":
            return _released(rest)
        groups = parse_recipe(
            rest, COMMAND_ARGUMENTS[command], prog=f"deita-hf {command}", description=DESCRIPTIONS[command]
        )
        _setup_logging(verbose=any(getattr(group, "verbose", False) for group in groups))
        run_command(command, *groups, command_line=shlex.join(["deita-hf", *argv]))
    except DeitaError as error:  # a problem the user can fix: one line; anything else keeps its traceback
        if os.environ.get("DEITA_HF_TRACEBACK"):
            raise
        print(f"deita-hf {command}: error: {error}\n(set DEITA_HF_TRACEBACK=1 to see where)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
