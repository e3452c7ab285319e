"""``deita-hf eval``: the paper's benchmarks on a trained model, with the tools the field uses.

    deita-hf eval --config recipes/deita-mistral-7b/eval.yaml --model_name_or_path outputs/deita-mistral-7b-sft

Three benchmarks (``benchmarks``), each written under ``output_dir``:

- ``leaderboard``: the Open LLM Leaderboard (v1) tasks as the paper reports them (ARC-Challenge 25-shot,
  HellaSwag 10-shot, MMLU 5-shot, TruthfulQA mc2 0-shot), run in-process with ``lm-eval``
  (lm-evaluation-harness); ``accelerate launch`` spreads them over several GPUs. -> ``leaderboard/results.json``
- ``mt_bench``: answers to FastChat's MT-Bench questions with the model's chat template (Vicuna v1.1 for the
  Deita models), both turns, the second conditioned on the model's own first answer, in batches.
  -> ``mt_bench/model_answer/<model>.jsonl`` (FastChat's file). FastChat's judge needs ``openai<1``, which
  cannot live beside ``alpaca-eval``: the exact commands to judge the file are printed and written to
  ``mt_bench/JUDGE.md``, and ``mt_bench_judgments`` reads the score back from FastChat's judgment file.
- ``alpaca_eval``: answers to the AlpacaEval instructions. -> ``alpaca_eval/model_outputs.json`` (the file
  ``alpaca_eval`` reads); with ``judge: true``, ``alpaca-eval``'s own evaluator (its prompts and parser, read
  from the installed package) judges it against an OpenAI-compatible endpoint.

Questions come from their official sources at run time (a URL, a local file or a Hub dataset id). A verdict that
a judge's parser cannot read is counted (``malformed``), never guessed. ``results.json``, ``results.md`` and a
model card ``README.md`` with a ``model-index`` block (the Hub's evaluation results) sum it up, with the paper's
numbers beside the model's own when the run ``reproduces`` a released model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import shlex
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .chat_template import load_chat_tokenizer
from .config import EvalArguments, RuntimeArguments
from .constants import DEFAULT_OPENAI_BASE_URL, DEFAULT_SEED, PAPER_RESULTS
from .errors import DeitaError

logger = logging.getLogger(__name__)

BENCHMARKS = ("leaderboard", "mt_bench", "alpaca_eval")
RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
CARD_FILE = "README.md"


@dataclass(frozen=True)
class LeaderboardTask:
    """How the Open LLM Leaderboard (v1) reported an lm-eval task, for the table and the model card."""

    title: str
    dataset: str  # the Hub dataset, as the leaderboard's model-index blocks name it
    config: str | None
    split: str
    metric: str  # lm-eval's metric name
    card_metric: str  # the leaderboard's name for it


LEADERBOARD_TASKS = {
    "arc_challenge": LeaderboardTask(
        "AI2 Reasoning Challenge", "ai2_arc", "ARC-Challenge", "test", "acc_norm", "acc_norm"
    ),
    "hellaswag": LeaderboardTask("HellaSwag", "hellaswag", None, "validation", "acc_norm", "acc_norm"),
    "mmlu": LeaderboardTask("MMLU", "cais/mmlu", "all", "test", "acc", "acc"),
    "truthfulqa_mc2": LeaderboardTask("TruthfulQA", "truthful_qa", "multiple_choice", "validation", "acc", "mc2"),
}

# FastChat's MT-Bench sampling temperature per category (fastchat/llm_judge/common.py, temperature_config);
# another category samples at 0.7, and a temperature below 1e-4 is greedy.
MT_BENCH_TEMPERATURES = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}
MT_BENCH_OTHER_TEMPERATURE = 0.7


class EvaluationError(DeitaError, ValueError):
    """A problem with the evaluation's inputs that the user can fix (a source, a task, a judge)."""


# -- sources -----------------------------------------------------------------------------------------------------
def _parse_records(text: str, where: str) -> list[dict[str, Any]]:
    text = text.strip()
    if text.startswith("["):
        records = json.loads(text)
    else:
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise EvaluationError(f"{where}, line {number}: not a JSON object ({error})") from None
    if not all(isinstance(record, dict) for record in records):
        raise EvaluationError(f"{where}: expected JSON objects (a JSON list or JSON lines)")
    return records


def read_records(source: str, split: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``source``: a local JSON / JSON-lines / parquet file, an http(s) URL of a JSON or JSON-lines
    file, or a Hub dataset id (``split``, default its first)."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix == ".parquet":
            from datasets import Dataset

            return Dataset.from_parquet(str(path)).to_list()
        return _parse_records(path.read_text(encoding="utf-8"), str(path))
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=60) as response:
                text = response.read().decode("utf-8")
        except OSError as error:
            raise EvaluationError(
                f"cannot download {source} ({error}); download it elsewhere and pass the local file instead"
            ) from None
        return _parse_records(text, source)
    if source.count("/") == 1 and not path.exists():
        from datasets import load_dataset

        try:
            dataset = load_dataset(source)
        except Exception as error:
            raise EvaluationError(
                f"cannot load the Hub dataset {source} ({error}); pass a URL or a local file instead"
            ) from None
        return dataset[split or next(iter(dataset))].to_list()
    raise EvaluationError(f"{source} is not a file, a URL or a Hub dataset id")


def mt_bench_questions(source: str, max_questions: int | None = None) -> list[dict[str, Any]]:
    """MT-Bench questions as FastChat writes them: ``question_id``, ``category``, ``turns`` (2 user messages).

    A Hub copy with ``prompt_id`` / ``prompt`` columns is read too."""
    questions = []
    for i, record in enumerate(read_records(source)):
        turns = record.get("turns", record.get("prompt"))
        question_id = record.get("question_id", record.get("prompt_id"))
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise EvaluationError(f"{source}, question {i}: 'turns' must be a list of strings, got {turns!r:.80}")
        if question_id is None:
            raise EvaluationError(f"{source}, question {i}: no 'question_id'")
        questions.append({"question_id": question_id, "category": record.get("category", ""), "turns": turns})
    return questions[:max_questions] if max_questions else questions


def alpaca_eval_instructions(source: str, max_questions: int | None = None) -> list[dict[str, Any]]:
    """AlpacaEval rows: ``instruction`` (and ``dataset``, ``output``, ``generator`` where the source has them)."""
    rows = read_records(source, split="eval")
    for i, row in enumerate(rows):
        if not isinstance(row.get("instruction"), str):
            raise EvaluationError(f"{source}, row {i}: no 'instruction' text")
    return rows[:max_questions] if max_questions else rows


# -- answers -----------------------------------------------------------------------------------------------------
class ChatGenerator:
    """Answers conversations with a causal LM and its chat template, in left-padded batches.

    >>> generator = ChatGenerator.load("outputs/deita-mistral-7b-sft", chat_template="vicuna")  # doctest: +SKIP
    >>> generator.generate([[{"role": "user", "content": "Hi"}]], max_new_tokens=32)  # doctest: +SKIP
    ['Hello! How can I help you today?']
    """

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        tokenizer.padding_side = "left"  # new tokens follow each prompt's last real token

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        revision: str | None = None,
        *,
        chat_template: str = "auto",
        dtype: str | None = None,
        device: str | None = None,
        batch_size: int = 8,
        trust_remote_code: bool = False,
    ) -> ChatGenerator:
        from transformers import AutoModelForCausalLM

        from .modeling import resolve_device, resolve_dtype

        tokenizer = load_chat_tokenizer(model_name_or_path, revision, trust_remote_code, chat_template)
        place = resolve_device(device)
        model = AutoModelForCausalLM.from_pretrained(
            model_name_or_path,
            revision=revision,
            dtype=resolve_dtype(dtype, place),
            trust_remote_code=trust_remote_code,
        )
        return cls(model.to(place).eval(), tokenizer, batch_size)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text of a conversation: the chat template, ending where the assistant's answer starts."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(
        self, conversations: Sequence[list[dict[str, str]]], max_new_tokens: int, temperature: float = 0.0
    ) -> list[str]:
        """The answer to each conversation; greedy below a temperature of 1e-4, else sampled (top-p 1)."""
        import torch

        prompts = [self.render(messages) for messages in conversations]
        # The template writes the special tokens (BOS) itself.
        lengths = [len(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])  # similar lengths share a batch
        answers: list[str] = [""] * len(prompts)
        sample = temperature >= 1e-4
        settings = {"do_sample": sample, "temperature": temperature, "top_p": 1.0} if sample else {"do_sample": False}
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [prompts[i] for i in rows], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.model.device)
            with torch.no_grad():
                output = self.model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                    **settings,
                )
            new = output[:, batch["input_ids"].shape[1] :]
            for i, ids in zip(rows, new):
                answers[i] = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return answers


def _answer_id(model_name: str, question_id: Any) -> str:
    # FastChat uses a random shortuuid; a digest of the model and question keeps reruns identical.
    return hashlib.sha256(f"{model_name}/{question_id}".encode()).hexdigest()[:22]


def mt_bench_temperature(category: str, sampling: str) -> float:
    if sampling == "greedy":
        return 0.0
    return MT_BENCH_TEMPERATURES.get(category, MT_BENCH_OTHER_TEMPERATURE)


def generate_mt_bench(
    generator: ChatGenerator,
    questions: list[dict[str, Any]],
    model_name: str,
    *,
    max_new_tokens: int = 1024,
    sampling: str = "benchmark",
    seed: int = DEFAULT_SEED,
) -> list[dict[str, Any]]:
    """FastChat's ``model_answer`` records: every turn answered, turn k seeing the model's own answers before it."""
    import torch

    torch.manual_seed(seed)
    conversations: list[list[dict[str, str]]] = [[] for _ in questions]
    answers: list[list[str]] = [[] for _ in questions]
    for turn in range(max(len(q["turns"]) for q in questions)):
        by_temperature: dict[float, list[int]] = {}
        for i, question in enumerate(questions):
            if turn < len(question["turns"]):
                conversations[i].append({"role": "user", "content": question["turns"][turn]})
                by_temperature.setdefault(mt_bench_temperature(question["category"], sampling), []).append(i)
        for temperature, rows in by_temperature.items():
            texts = generator.generate([conversations[i] for i in rows], max_new_tokens, temperature)
            for i, text in zip(rows, texts):
                conversations[i].append({"role": "assistant", "content": text})
                answers[i].append(text)
    now = time.time()
    return [
        {
            "question_id": question["question_id"],
            "answer_id": _answer_id(model_name, question["question_id"]),
            "model_id": model_name,
            "choices": [{"index": 0, "turns": turns}],
            "tstamp": now,
        }
        for question, turns in zip(questions, answers)
    ]


def generate_alpaca_eval(
    generator: ChatGenerator,
    rows: list[dict[str, Any]],
    model_name: str,
    *,
    max_new_tokens: int = 2048,
    sampling: str = "benchmark",
    seed: int = DEFAULT_SEED,
) -> list[dict[str, Any]]:
    """AlpacaEval's ``model_outputs.json`` records: ``instruction``, ``output``, ``generator`` (+ ``dataset``).

    Greedy in both samplings: AlpacaEval leaves decoding to the model (its own configs mostly sample at 0.7;
    greedy is the reproducible choice)."""
    import torch

    torch.manual_seed(seed)
    outputs = generator.generate([[{"role": "user", "content": row["instruction"]}] for row in rows], max_new_tokens)
    records = []
    for row, output in zip(rows, outputs):
        record = {"instruction": row["instruction"], "output": output, "generator": model_name}
        if "dataset" in row:
            record["dataset"] = row["dataset"]
        records.append(record)
    return records


# -- the Open LLM Leaderboard tasks --------------------------------------------------------------------------------
def parse_task(spec: str) -> tuple[str, int]:
    """``"arc_challenge:25"`` -> ``("arc_challenge", 25)``."""
    name, _, shots = spec.partition(":")
    if not name or not shots.strip().isdigit():
        raise EvaluationError(f"leaderboard task {spec!r}: write it as task:shots, e.g. arc_challenge:25")
    return name.strip(), int(shots)


def task_metric(name: str, results: dict[str, Any]) -> tuple[str, float, float | None]:
    """The metric to report for a task: the leaderboard's, else ``acc_norm``, ``acc`` or the first number."""
    known = LEADERBOARD_TASKS.get(name)
    candidates = [known.metric] if known else []
    candidates += ["acc_norm", "acc", "exact_match"]
    for metric in candidates:
        if f"{metric},none" in results:
            stderr = results.get(f"{metric}_stderr,none")
            return metric, float(results[f"{metric},none"]), (float(stderr) if isinstance(stderr, float) else None)
    for key, value in results.items():
        if isinstance(value, float) and "_stderr" not in key:
            return key.split(",")[0], value, None
    raise EvaluationError(f"lm-eval gave no metric for task {name}: {results}")


def run_leaderboard(
    arguments: EvalArguments, runtime: RuntimeArguments
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """lm-eval on the tasks, grouped by shot count over one loaded model: the summary (one metric per task and
    their average) and lm-eval's results per task; None on the other processes of a distributed launch."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise EvaluationError(
            'the leaderboard tasks need lm-eval: pip install "deita-hf[eval]" (or drop leaderboard from benchmarks)'
        ) from None
    from .modeling import resolve_device

    tasks = [parse_task(spec) for spec in arguments.leaderboard_tasks]
    batch_size = arguments.lm_eval_batch_size
    model = HFLM(
        pretrained=arguments.model_name_or_path,
        revision=arguments.model_revision or "main",
        dtype=arguments.dtype or "auto",
        batch_size=int(batch_size) if str(batch_size).isdigit() else batch_size,
        # lm-eval wants a device name; under `accelerate launch` it places each process's copy itself.
        device=str(resolve_device(runtime.device)),
        trust_remote_code=runtime.trust_remote_code,
    )
    manager = TaskManager(include_path=arguments.lm_eval_include_path)
    raw: dict[str, Any] = {}
    for shots in sorted({shots for _, shots in tasks}):
        names = [name for name, n in tasks if n == shots]
        output = lm_eval.simple_evaluate(
            model=model,
            tasks=names,
            num_fewshot=shots,
            limit=arguments.lm_eval_limit,
            task_manager=manager,
            log_samples=False,
            random_seed=arguments.seed,
            numpy_random_seed=arguments.seed,
            torch_random_seed=arguments.seed,
            fewshot_random_seed=arguments.seed,
        )
        if output is None:  # a non-main process of a distributed run
            return None
        for name in names:
            raw[name] = {"shots": shots, "results": output["results"][name], "version": output["versions"].get(name)}
    summary: dict[str, Any] = {"tasks": {}, "lm_eval_version": getattr(lm_eval, "__version__", None)}
    for name, shots in tasks:
        metric, value, stderr = task_metric(name, raw[name]["results"])
        summary["tasks"][name] = {"shots": shots, "metric": metric, "value": value, "stderr": stderr}
    values = [task["value"] for task in summary["tasks"].values()]
    summary["average"] = sum(values) / len(values)
    summary["limit"] = arguments.lm_eval_limit
    return summary, raw


# -- judging -------------------------------------------------------------------------------------------------------
def _judge_base_url(arguments: EvalArguments) -> str:
    """The judges' endpoint: ``judge_base_url``, else ``$OPENAI_BASE_URL``, else OpenAI's API."""
    return arguments.judge_base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL


def alpaca_eval_command(outputs: Path, arguments: EvalArguments) -> str:
    """The command that judges ``model_outputs.json`` with alpaca-eval's own CLI."""
    base_url = _judge_base_url(arguments)
    parts = ["alpaca_eval", "--model_outputs", str(outputs), "--annotators_config", arguments.alpaca_eval_annotator]
    if arguments.alpaca_eval_reference:
        parts += ["--reference_outputs", arguments.alpaca_eval_reference]
    return f"IS_ALPACA_EVAL_2=False OPENAI_API_BASE={shlex.quote(base_url)} " + shlex.join(parts)


def mt_bench_commands(answers: Path, model_name: str, arguments: EvalArguments) -> str:
    """The commands that judge ``model_answer/<model>.jsonl`` with FastChat's judge (it needs openai<1)."""
    base_url = _judge_base_url(arguments)
    return "\n".join(
        [
            "# In a separate environment: FastChat's judge needs openai<1.",
            'pip install "fschat[llm_judge]==0.2.36"',
            "git clone https://github.com/lm-sys/FastChat && cd FastChat/fastchat/llm_judge",
            "mkdir -p data/mt_bench/model_answer",
            f"cp {shlex.quote(str(answers.resolve()))} data/mt_bench/model_answer/",
            f"OPENAI_API_BASE={shlex.quote(base_url)} OPENAI_API_KEY=${arguments.judge_api_key_env} "
            + shlex.join(
                ["python", "gen_judgment.py", "--model-list", model_name, "--judge-model", arguments.judge_model]
            ),
            shlex.join(
                ["python", "show_result.py", "--model-list", model_name, "--judge-model", arguments.judge_model]
            ),
            "# Then read the score into the results: deita-hf eval ... --benchmarks mt_bench --mt_bench_judgments "
            f"data/mt_bench/model_judgment/{arguments.judge_model}_single.jsonl",
        ]
    )


def read_mt_bench_judgments(path: str | os.PathLike, model_name: str) -> dict[str, Any]:
    """The MT-Bench score of ``model_name`` from FastChat's single-answer judgment file.

    FastChat records a verdict it cannot parse (no ``[[rating]]``) as score -1: it is counted as malformed and
    left out of the mean, as FastChat's ``show_result.py`` does."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"mt_bench_judgments: {path} does not exist")
    scores: dict[int, list[float]] = {}
    malformed = 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise EvaluationError(f"{path}, line {number}: not a JSON object ({error})") from None
        if record.get("model") != model_name:
            continue
        if record.get("score", -1) == -1:
            malformed += 1
            continue
        scores.setdefault(int(record.get("turn", 1)), []).append(float(record["score"]))
    valid = [score for turn in scores.values() for score in turn]
    if not valid:
        raise EvaluationError(f"{path} holds no valid judgment of the model {model_name!r}")
    result = {"score": sum(valid) / len(valid), "verdicts": len(valid) + malformed, "malformed": malformed}
    for turn, values in sorted(scores.items()):
        result[f"turn_{turn}"] = sum(values) / len(values)
    return result


def judge_alpaca_eval(outputs: Path, reference: list[dict[str, Any]], arguments: EvalArguments) -> dict[str, Any]:
    """alpaca-eval's evaluator (its prompt template and parser, from the installed package) on ``outputs``,
    against ``reference``, through the OpenAI-compatible endpoint ``judge_base_url``.

    The key is read from the environment variable ``judge_api_key_env`` (a placeholder for a local server
    without one); nothing but the endpoint's address is written to disk."""
    import yaml

    try:
        import alpaca_eval
        from alpaca_eval import constants as alpaca_constants
    except ImportError as error:
        raise EvaluationError(
            f"alpaca-eval does not import ({error}); the answers are ready in {outputs}; judge them later with:\n"
            + alpaca_eval_command(outputs, arguments)
        ) from None
    source = alpaca_constants.EVALUATORS_CONFIG_DIR / arguments.alpaca_eval_annotator / "configs.yaml"
    if not source.is_file():
        raise EvaluationError(
            f"alpaca-eval has no evaluator config {arguments.alpaca_eval_annotator!r} (looked for {source})"
        )
    folder = outputs.parent / arguments.alpaca_eval_annotator
    folder.mkdir(parents=True, exist_ok=True)
    configs = yaml.safe_load(source.read_text())
    base_url = _judge_base_url(arguments)
    with tempfile.TemporaryDirectory() as scratch:
        client_config = Path(scratch) / "openai_client.yaml"
        client_config.write_text(yaml.safe_dump({"default": [{"base_url": base_url}]}))
        for config in configs.values():
            # The package's own prompt, found from its config folder; only the model and the endpoint change.
            config["prompt_template"] = str(source.parent.parent / config["prompt_template"])
            kwargs = config.setdefault("completions_kwargs", {})
            kwargs["model_name"] = arguments.judge_model
            kwargs["client_config_path"] = str(client_config)
        config_path = folder / "configs.yaml"
        config_path.write_text(yaml.safe_dump(configs, sort_keys=False))
        previous = os.environ.get("OPENAI_API_KEY")
        os.environ["OPENAI_API_KEY"] = os.environ.get(arguments.judge_api_key_env) or "EMPTY"
        try:
            leaderboard, annotations = alpaca_eval.evaluate(
                model_outputs=json.loads(outputs.read_text()),
                reference_outputs=reference,
                annotators_config=str(config_path),
                name=json.loads(outputs.read_text())[0]["generator"],
                output_path=str(folder),
                precomputed_leaderboard=None,
                is_return_instead_of_print=True,
                fn_metric="get_winrate",
                sort_by="win_rate",
                is_cache_leaderboard=False,
            )
        finally:
            if previous is None:
                os.environ.pop("OPENAI_API_KEY", None)
            else:
                os.environ["OPENAI_API_KEY"] = previous
    preferences = [annotation.get("preference") for annotation in annotations]
    malformed = sum(1 for p in preferences if p is None or (isinstance(p, float) and math.isnan(p)))
    row = leaderboard.iloc[0].to_dict()
    return {
        "win_rate": float(row["win_rate"]),
        "standard_error": float(row["standard_error"]),
        "verdicts": len(preferences),
        "malformed": malformed,
        "annotator": arguments.alpaca_eval_annotator,
        "judge_model": arguments.judge_model,
        "judge_base_url": base_url,
        "annotations": str((folder / "annotations.json").relative_to(outputs.parent.parent)),
    }


# -- results, table, model card -------------------------------------------------------------------------------------
def _number(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _count(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _malformed_note(count: int | None) -> str:
    return f" ({_count(count, 'malformed verdict')}, left out)" if count else ""


def _judged_row(benchmark: str, setting: str, metric: str, result: dict[str, Any], key: str, paper: Any) -> str:
    """The table row of a judged benchmark: the judge's number ``result[key]`` (or "not judged") with the
    malformed verdicts left out, and the paper's number."""
    judged = result.get(key)
    value = _number(judged) if judged is not None else "not judged"
    note = _malformed_note(result.get("malformed"))
    return f"| {benchmark} | {setting} | {metric} | {value}{note} | {_number(paper)} |"


def results_table(results: dict[str, Any]) -> str:
    """The results as a Markdown table, the paper's numbers beside them when known."""
    paper = results.get("paper") or {}
    lines = ["| benchmark | setting | metric | this model | paper |", "|---|---|---|---|---|"]
    mt_bench = results.get("mt_bench")
    if mt_bench:
        setting = f"{_count(mt_bench['questions'], 'question')}, 2 turns"
        lines.append(_judged_row("MT-Bench", setting, "score (1-10)", mt_bench, "score", paper.get("MT-Bench")))
    alpaca = results.get("alpaca_eval")
    if alpaca:
        setting = _count(alpaca["instructions"], "instruction")
        lines.append(_judged_row("AlpacaEval", setting, "win rate (%)", alpaca, "win_rate", paper.get("AlpacaEval")))
    leaderboard = results.get("leaderboard")
    if leaderboard:
        for name, task in leaderboard["tasks"].items():
            title = LEADERBOARD_TASKS[name].title if name in LEADERBOARD_TASKS else name
            lines.append(
                f"| {title} | {task['shots']}-shot | {task['metric']} (%) | {_number(task['value'], 100)} | - |"
            )
        lines.append(f"| Open LLM Leaderboard (v1) | average of the tasks above | (%) | "
                     f"{_number(leaderboard['average'], 100)} | - |")  # fmt: skip
    return "\n".join(lines) + "\n"


def eval_results(results: dict[str, Any]) -> list[Any]:
    """The results as ``huggingface_hub.EvalResult`` entries of a model card's ``model-index``."""
    from huggingface_hub import EvalResult

    # Every benchmark here is a text-generation task.
    generation_result = functools.partial(EvalResult, task_type="text-generation", task_name="Text Generation")
    entries = []
    leaderboard = results.get("leaderboard") or {}
    for name, task in leaderboard.get("tasks", {}).items():
        known = LEADERBOARD_TASKS.get(name)
        entries.append(
            generation_result(
                dataset_type=known.dataset if known else name,
                dataset_name=f"{known.title if known else name} ({task['shots']}-Shot)",
                dataset_config=known.config if known else None,
                dataset_split=known.split if known else None,
                dataset_args={"num_few_shot": task["shots"]},
                metric_type=known.card_metric if known else task["metric"],
                metric_value=round(task["value"] * 100, 2),
                source_name="lm-evaluation-harness",
                source_url="https://github.com/EleutherAI/lm-evaluation-harness",
            )
        )
    mt_bench = results.get("mt_bench") or {}
    if mt_bench.get("score") is not None:
        entries.append(
            generation_result(
                dataset_type="lmsys/mt-bench",
                dataset_name="MT-Bench",
                metric_type="score",
                metric_name=f"MT-Bench score (judge {mt_bench.get('judge_model', 'gpt-4')})",
                metric_value=round(mt_bench["score"], 2),
                source_name="FastChat llm_judge",
                source_url="https://github.com/lm-sys/FastChat/tree/main/fastchat/llm_judge",
            )
        )
    alpaca = results.get("alpaca_eval") or {}
    if alpaca.get("win_rate") is not None:
        entries.append(
            generation_result(
                dataset_type="tatsu-lab/alpaca_eval",
                dataset_name="AlpacaEval",
                metric_type="win_rate",
                metric_name=f"win rate (%, {alpaca['annotator']}, judge {alpaca['judge_model']})",
                metric_value=round(alpaca["win_rate"], 2),
                source_name="alpaca-eval",
                source_url="https://github.com/tatsu-lab/alpaca_eval",
            )
        )
    return entries


def render_card(results: dict[str, Any]) -> str:
    """A model card (``README.md``) with the results as ``model-index`` metadata and as a table."""
    from huggingface_hub import ModelCardData

    entries = eval_results(results)
    data = ModelCardData(model_name=results["model"], eval_results=entries or None)
    lines = ["---", data.to_yaml(), "---", "", f"# Evaluation of {results['model']}", ""]
    lines += [f"Model: `{results['model_name_or_path']}`" + (f" (revision `{results['revision']}`)" if results.get("revision") else "") + ".", ""]  # fmt: skip
    if results.get("paper"):
        lines += [f"The paper column is the result reported for `{results['reproduces']}` "
                  f"({results['paper']['recipe']}) in Liu et al. (2024).", ""]  # fmt: skip
    lines += [results_table(results), "Made with `deita-hf eval`; the settings are in `results.json`.", ""]
    return "\n".join(lines)


CARD_SECTION_START = "<!-- deita-hf eval: start -->"
CARD_SECTION_END = "<!-- deita-hf eval: end -->"


def update_model_card(card_path: str | os.PathLike, results: dict[str, Any]) -> None:
    """Write the results into an existing model card: its ``model-index`` metadata (replaced; the other
    metadata kept) and an "Evaluation" section (replaced on a later run, else appended)."""
    from huggingface_hub import metadata_load, metadata_save
    from huggingface_hub.repocard_data import eval_results_to_model_index

    card_path = Path(card_path)
    if not card_path.is_file():
        raise EvaluationError(f"update_model_card: {card_path} does not exist (is the model a local folder?)")
    entries = eval_results(results)
    metadata = metadata_load(card_path) or {}
    if entries:
        metadata["model-index"] = eval_results_to_model_index(results["model"], entries)
    metadata_save(card_path, metadata)
    text = card_path.read_text()
    section = f"{CARD_SECTION_START}\n## Evaluation\n\n{results_table(results)}\n{CARD_SECTION_END}"
    if CARD_SECTION_START in text and CARD_SECTION_END in text:
        before, rest = text.split(CARD_SECTION_START, 1)
        text = before + section + rest.split(CARD_SECTION_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    card_path.write_text(text)


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


# -- the command ---------------------------------------------------------------------------------------------------
def _check(arguments: EvalArguments) -> None:
    if not arguments.model_name_or_path:
        raise EvaluationError("deita-hf eval: set the model with --model_name_or_path")
    if not arguments.output_dir:
        raise EvaluationError("deita-hf eval: set the output folder with --output_dir")
    unknown = [b for b in arguments.benchmarks if b not in BENCHMARKS]
    if unknown:
        raise EvaluationError(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    for spec in arguments.leaderboard_tasks:
        parse_task(spec)
    if arguments.reproduces and arguments.reproduces not in PAPER_RESULTS:
        raise EvaluationError(
            f"reproduces: {arguments.reproduces!r} is none of the released models {list(PAPER_RESULTS)}"
        )


def run_eval(arguments: EvalArguments, runtime: RuntimeArguments | None = None) -> dict[str, Any] | None:
    """Run ``deita-hf eval``; the main process returns the results (also in ``output_dir/results.json``)."""
    runtime = runtime or RuntimeArguments()
    _check(arguments)
    output_dir = Path(arguments.output_dir)
    model_name = arguments.model_name or arguments.model_name_or_path.rstrip("/").split("/")[-1]
    results: dict[str, Any] = {
        "model": model_name,
        "model_name_or_path": arguments.model_name_or_path,
        "revision": arguments.model_revision,
        "reproduces": arguments.reproduces,
        "paper": PAPER_RESULTS.get(arguments.reproduces) if arguments.reproduces else None,
        "settings": {
            key: getattr(arguments, key)
            for key in ("benchmarks", "chat_template", "sampling", "seed", "max_questions", "dtype")
        },
    }
    if "leaderboard" in arguments.benchmarks:
        outcome = run_leaderboard(arguments, runtime)
        if outcome is None:
            return None  # another process of the launch writes the results
        summary, raw = outcome
        _write_json(output_dir / "leaderboard" / "results.json", raw)
        results["leaderboard"] = summary
    if int(os.environ.get("RANK", "0")) != 0:
        return None  # answers and judges run on the main process
    # MT-Bench answers that were judged already (mt_bench_judgments) are read, not generated again.
    answering = "alpaca_eval" in arguments.benchmarks or (
        "mt_bench" in arguments.benchmarks and not arguments.mt_bench_judgments
    )
    generator = None
    if answering:
        generator = ChatGenerator.load(
            arguments.model_name_or_path,
            arguments.model_revision,
            chat_template=arguments.chat_template,
            dtype=arguments.dtype,
            device=runtime.device,
            batch_size=arguments.generation_batch_size,
            trust_remote_code=runtime.trust_remote_code,
        )
    if "mt_bench" in arguments.benchmarks:
        results["mt_bench"] = _mt_bench(generator, arguments, output_dir, model_name)
    if "alpaca_eval" in arguments.benchmarks:
        results["alpaca_eval"] = _alpaca_eval(generator, arguments, output_dir, model_name)
    _write_json(output_dir / RESULTS_FILE, results)
    (output_dir / TABLE_FILE).write_text(results_table(results))
    (output_dir / CARD_FILE).write_text(render_card(results))
    if arguments.update_model_card:
        update_model_card(Path(arguments.model_name_or_path) / CARD_FILE, results)
    return results


def _mt_bench(generator: Any, arguments: EvalArguments, output_dir: Path, model_name: str) -> dict[str, Any]:
    answers = output_dir / "mt_bench" / "model_answer" / f"{model_name}.jsonl"
    if not arguments.mt_bench_judgments:
        questions = mt_bench_questions(arguments.mt_bench_questions, arguments.max_questions)
        records = generate_mt_bench(
            generator,
            questions,
            model_name,
            max_new_tokens=arguments.mt_bench_max_new_tokens,
            sampling=arguments.sampling,
            seed=arguments.seed,
        )
        answers.parent.mkdir(parents=True, exist_ok=True)
        answers.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    elif not answers.is_file():
        raise EvaluationError(
            f"no MT-Bench answers at {answers}: generate them first (without mt_bench_judgments) and judge them"
        )
    count = sum(1 for line in answers.read_text().splitlines() if line.strip())
    commands = mt_bench_commands(answers, model_name, arguments)
    (output_dir / "mt_bench" / "JUDGE.md").write_text(
        "# Judging the MT-Bench answers\n\nFastChat's judge (GPT-4 single-answer grading) reads "
        f"`model_answer/{model_name}.jsonl`:\n\n```bash\n{commands}\n```\n"
    )
    result: dict[str, Any] = {"answers": str(answers.relative_to(output_dir)), "questions": count}
    if arguments.mt_bench_judgments:
        result.update(read_mt_bench_judgments(arguments.mt_bench_judgments, model_name))
        result["judge_model"] = arguments.judge_model
    else:
        result["judge_command"] = commands
        print(
            "MT-Bench: FastChat's judge cannot be installed beside alpaca-eval (it needs openai<1). Judge "
            f"{answers} with:\n{commands}"
        )
    return result


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _alpaca_eval_reference(rows: list[dict[str, Any]], arguments: EvalArguments) -> list[dict[str, Any]]:
    """The reference outputs the judge compares with, for the instructions of ``rows``."""
    if arguments.alpaca_eval_reference:
        reference = read_records(arguments.alpaca_eval_reference)
    else:
        missing = [i for i, row in enumerate(rows) if not isinstance(row.get("output"), str)]
        if missing:
            raise EvaluationError(
                f"{arguments.alpaca_eval_instructions} has no reference 'output' in row {missing[0]}; pass "
                "--alpaca_eval_reference"
            )
        reference = rows
    wanted = {row["instruction"] for row in rows}
    reference = [
        {key: row[key] for key in ("instruction", "output", "generator", "dataset") if key in row}
        for row in reference
        if row.get("instruction") in wanted
    ]
    if len({row["instruction"] for row in reference}) < len(wanted):
        raise EvaluationError(f"{arguments.alpaca_eval_reference} lacks a reference output for some instructions")
    return reference


def _alpaca_eval(generator: Any, arguments: EvalArguments, output_dir: Path, model_name: str) -> dict[str, Any]:
    rows = alpaca_eval_instructions(arguments.alpaca_eval_instructions, arguments.max_questions)
    reference = _alpaca_eval_reference(rows, arguments) if arguments.judge else None  # checked before generating
    outputs = output_dir / "alpaca_eval" / "model_outputs.json"
    records = generate_alpaca_eval(
        generator,
        rows,
        model_name,
        max_new_tokens=arguments.alpaca_eval_max_new_tokens,
        sampling=arguments.sampling,
        seed=arguments.seed,
    )
    _write_json(outputs, records)
    result: dict[str, Any] = {"outputs": str(outputs.relative_to(output_dir)), "instructions": len(records)}
    if arguments.judge and _installed("alpaca_eval"):
        result.update(judge_alpaca_eval(outputs, reference, arguments))
        return result
    result["judge_command"] = alpaca_eval_command(outputs, arguments)
    if arguments.judge:
        result["judge_unavailable"] = 'alpaca-eval is not installed (pip install "deita-hf[eval]")'
        print(f"AlpacaEval: {result['judge_unavailable']}; the answers are ready in {outputs}. Judge them with:")
    else:
        print(f"AlpacaEval: judge {outputs} with:")
    print(result["judge_command"])
    return result
