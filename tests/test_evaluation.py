"""`deita-hf eval` (docs/evaluation.md): lm-eval tasks, MT-Bench and AlpacaEval answers, judges, model card.

Everything runs offline: a tiny random model, a local lm-eval task over local files, a handful of local
MT-Bench-shaped and AlpacaEval-shaped questions, and the local OpenAI-compatible test server as the judge.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from chat_server import ChatServer

from deita_hf.cli import main
from deita_hf.config import EVAL_ARGUMENTS, EvalArguments, parse_recipe
from deita_hf.constants import VICUNA_SYSTEM
from deita_hf.evaluation import (
    ChatGenerator,
    EvaluationError,
    alpaca_eval_instructions,
    generate_alpaca_eval,
    generate_mt_bench,
    mt_bench_questions,
    mt_bench_temperature,
    parse_task,
    read_mt_bench_judgments,
    read_records,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a poem about the sea.", "Now make it rhyme."]},
    {"question_id": 111, "category": "math", "turns": ["What is 2+2?", "And 3+3?"]},
    {"question_id": 131, "category": "extraction", "turns": ["Name the capital of France.", "And of Italy?"]},
    {"question_id": 151, "category": "stem", "turns": ["Explain photosynthesis.", "In one line."]},
]
INSTRUCTIONS = [
    {"instruction": "What is the capital of France?", "output": "Paris.", "generator": "text_davinci_003",
     "dataset": "helpful_base"},
    {"instruction": "Write a short poem about the sea.", "output": "Waves.", "generator": "text_davinci_003",
     "dataset": "vicuna"},
    {"instruction": "Explain how photosynthesis works in plants.", "output": "Light.",
     "generator": "text_davinci_003", "dataset": "koala"},
]  # fmt: skip
TASK_ROWS = [
    {"question": "What is 1+1?", "choices": ["2", "3", "4"], "label": 0},
    {"question": "What is the capital of France?", "choices": ["Paris", "Rome"], "label": 0},
    {"question": "Which colour is the sky?", "choices": ["green", "blue"], "label": 1},
    {"question": "Is sea water salty?", "choices": ["yes", "no"], "label": 0},
    {"question": "Write a short poem.", "choices": ["The sea", "A chat", "helpful"], "label": 2},
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random LLaMA and the byte tokenizer (no chat template of its own: `auto` picks Vicuna v1.1)."""
    from deita_hf.testing import byte_bpe_tokenizer, tiny_causal_lm

    path = tmp_path_factory.mktemp("tiny-chat")
    tokenizer = byte_bpe_tokenizer()
    tiny_causal_lm(tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("benchmarks")
    (folder / "question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    (folder / "alpaca_eval.json").write_text(json.dumps(INSTRUCTIONS))
    tasks = folder / "tasks"
    tasks.mkdir()
    (tasks / "tiny_qa.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TASK_ROWS))
    (tasks / "tiny_qa.yaml").write_text(
        "task: tiny_qa\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {tasks / 'tiny_qa.jsonl'}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        'doc_to_target: "{{label}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    return {"questions": folder / "question.jsonl", "instructions": folder / "alpaca_eval.json", "tasks": tasks}


@pytest.fixture(scope="module")
def generator(tiny_model_dir) -> ChatGenerator:
    return ChatGenerator.load(str(tiny_model_dir), chat_template="auto", device="cpu", batch_size=4)


def vicuna(*messages: str) -> str:
    """The Vicuna v1.1 prompt of alternating user/assistant texts, ending where the next answer starts."""
    text = "<s>" + VICUNA_SYSTEM + " "
    for i, message in enumerate(messages):
        text += f"USER: {message} " if i % 2 == 0 else f"ASSISTANT: {message}</s>"
    return text + "ASSISTANT:"


# -- questions from their sources --------------------------------------------------------------------------------
def test_questions_are_read_from_a_local_file(sources):
    assert mt_bench_questions(str(sources["questions"])) == QUESTIONS
    assert mt_bench_questions(str(sources["questions"]), max_questions=2) == QUESTIONS[:2]
    assert alpaca_eval_instructions(str(sources["instructions"])) == INSTRUCTIONS


def test_questions_are_read_from_a_url(sources):
    handler = partial(SimpleHTTPRequestHandler, directory=str(sources["questions"].parent))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert mt_bench_questions(f"{url}/question.jsonl") == QUESTIONS
        assert read_records(f"{url}/alpaca_eval.json") == INSTRUCTIONS
        with pytest.raises(EvaluationError, match="cannot download .*missing.jsonl.*pass the local file instead"):
            read_records(f"{url}/missing.jsonl")
    finally:
        server.shutdown()


def test_a_malformed_question_names_the_question(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question_id": 1, "turns": "not a list"}) + "\n")
    with pytest.raises(EvaluationError, match=r"q.jsonl, question 0: 'turns' must be a list of strings"):
        mt_bench_questions(str(path))


# -- answers -------------------------------------------------------------------------------------------------------
def test_mt_bench_answers_are_fastchat_model_answer_records(generator):
    records = generate_mt_bench(generator, QUESTIONS, "tiny-chat", max_new_tokens=6, sampling="greedy")
    assert [r["question_id"] for r in records] == [81, 111, 131, 151]
    for record in records:
        assert set(record) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
        assert record["model_id"] == "tiny-chat"
        assert isinstance(record["answer_id"], str) and len(record["answer_id"]) == 22
        assert isinstance(record["tstamp"], float)
        [choice] = record["choices"]
        assert set(choice) == {"index", "turns"} and choice["index"] == 0
        assert len(choice["turns"]) == 2 and all(isinstance(t, str) for t in choice["turns"])


def test_the_second_turn_sees_the_model_s_first_answer_in_the_vicuna_template(generator, monkeypatch):
    prompts = []
    render = generator.render
    monkeypatch.setattr(generator, "render", lambda messages: prompts.append(render(messages)) or prompts[-1])
    [record] = generate_mt_bench(generator, QUESTIONS[1:2], "tiny-chat", max_new_tokens=6, sampling="greedy")
    first, second = record["choices"][0]["turns"]
    assert first  # a non-empty answer, so that the template writes "ASSISTANT: a1</s>"
    assert prompts == [vicuna("What is 2+2?"), vicuna("What is 2+2?", first, "And 3+3?")]
    # The template's "<s>" is the BOS token, once; no second BOS from the tokenizer.
    ids = generator.tokenizer(prompts[1], add_special_tokens=False)["input_ids"]
    assert ids[0] == generator.tokenizer.bos_token_id and ids.count(generator.tokenizer.bos_token_id) == 1


def test_answers_are_the_model_s_greedy_continuation_whatever_the_batch(generator, tiny_model_dir):
    conversations = [[{"role": "user", "content": q["turns"][0]}] for q in QUESTIONS]
    batched = generator.generate(conversations, max_new_tokens=6)
    single = ChatGenerator(generator.model, generator.tokenizer, batch_size=1).generate(conversations, 6)
    assert batched == single
    # And equal to transformers' own greedy generation of the rendered prompt.
    ids = generator.tokenizer(generator.render(conversations[2]), return_tensors="pt", add_special_tokens=False)
    output = generator.model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=3)
    text = generator.tokenizer.decode(output[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert batched[2] == text


def test_mt_bench_samples_at_fastchat_s_temperature_per_category(generator, monkeypatch):
    assert [mt_bench_temperature(q["category"], "benchmark") for q in QUESTIONS] == [0.7, 0.0, 0.0, 0.1]
    assert mt_bench_temperature("unknown-category", "benchmark") == 0.7
    assert mt_bench_temperature("writing", "greedy") == 0.0
    calls = []
    original = generator.generate
    monkeypatch.setattr(generator, "generate", lambda c, n, t=0.0: calls.append((len(c), t)) or original(c, n, t))
    generate_mt_bench(generator, QUESTIONS, "tiny-chat", max_new_tokens=4, sampling="benchmark")
    # Per turn, one call per temperature: writing 0.7, math + extraction greedy, stem 0.1.
    assert sorted(calls) == sorted([(1, 0.7), (2, 0.0), (1, 0.1)] * 2)


def test_sampled_answers_are_reproducible_from_the_seed(generator):
    first = generate_mt_bench(generator, QUESTIONS[:1], "m", max_new_tokens=6, sampling="benchmark", seed=3)
    again = generate_mt_bench(generator, QUESTIONS[:1], "m", max_new_tokens=6, sampling="benchmark", seed=3)
    assert first[0]["choices"] == again[0]["choices"]


def test_alpaca_eval_outputs_are_model_outputs_json_records(generator):
    records = generate_alpaca_eval(generator, INSTRUCTIONS, "tiny-chat", max_new_tokens=6)
    assert [r["instruction"] for r in records] == [r["instruction"] for r in INSTRUCTIONS]
    for record, row in zip(records, INSTRUCTIONS):
        assert set(record) == {"instruction", "output", "generator", "dataset"}
        assert record["generator"] == "tiny-chat" and record["dataset"] == row["dataset"]
    expected = generator.generate([[{"role": "user", "content": r["instruction"]}] for r in INSTRUCTIONS], 6)
    assert [r["output"] for r in records] == expected


# -- judging -------------------------------------------------------------------------------------------------------
def test_fastchat_judgments_count_a_malformed_verdict_instead_of_guessing(tmp_path):
    path = tmp_path / "gpt-4_single.jsonl"
    rows = [
        {"question_id": 81, "model": "tiny", "score": 8, "turn": 1},
        {"question_id": 81, "model": "tiny", "score": 6, "turn": 2},
        {"question_id": 111, "model": "tiny", "score": -1, "turn": 1},  # FastChat's "no [[rating]] found"
        {"question_id": 111, "model": "tiny", "score": 3, "turn": 2},
        {"question_id": 81, "model": "other", "score": 10, "turn": 1},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = read_mt_bench_judgments(path, "tiny")
    assert result == {"score": 17 / 3, "verdicts": 4, "malformed": 1, "turn_1": 8.0, "turn_2": 4.5}


def test_judged_mt_bench_answers_are_read_into_the_results_and_the_card(tmp_path):
    from huggingface_hub import metadata_load

    out = tmp_path / "eval"
    answers = out / "mt_bench" / "model_answer" / "tiny.jsonl"
    answers.parent.mkdir(parents=True)
    answers.write_text("".join(json.dumps({"question_id": q}) + "\n" for q in (81, 111)))
    before = answers.read_text()
    judgments = tmp_path / "gpt-4_single.jsonl"
    rows = [(81, 1, 9), (81, 2, 7), (111, 1, -1), (111, 2, 5)]
    judgments.write_text("".join(json.dumps({"question_id": q, "model": "tiny", "turn": t, "score": s}) + "\n"
                                 for q, t, s in rows))  # fmt: skip
    # No model is loaded and the judged answers are kept: only the judgments are read.
    assert main(["eval", "--model_name_or_path", "no/such-model", "--model_name", "tiny", "--output_dir", str(out),
                 "--benchmarks", "mt_bench", "--mt_bench_judgments", str(judgments),
                 "--reproduces", "hkust-nlp/deita-llama2-13b-v1.0-sft"]) == 0  # fmt: skip
    assert answers.read_text() == before
    mt_bench = json.loads((out / "results.json").read_text())["mt_bench"]
    assert (mt_bench["score"], mt_bench["verdicts"], mt_bench["malformed"], mt_bench["questions"]) == (7.0, 4, 1, 2)
    assert (
        "| MT-Bench | 2 questions, 2 turns | score (1-10) | 7.00 (1 malformed verdict, left out) | 6.79 |"
        in (out / "results.md").read_text()
    )
    [index] = metadata_load(out / "README.md")["model-index"]
    assert [(r["dataset"]["name"], r["metrics"][0]["value"]) for r in index["results"]] == [("MT-Bench", 7.0)]


def test_the_results_go_into_the_model_folder_s_own_card(tmp_path):
    from huggingface_hub import ModelCard, metadata_load

    model = tmp_path / "my-sft"
    model.mkdir()
    card = model / "README.md"
    card.write_text("---\nlicense: apache-2.0\nbase_model: mistralai/Mistral-7B-v0.1\n---\n\n# my-sft\n\nTrained.\n")
    out = tmp_path / "eval"
    answers = out / "mt_bench" / "model_answer" / "my-sft.jsonl"
    answers.parent.mkdir(parents=True)
    answers.write_text(json.dumps({"question_id": 81}) + "\n")
    judgments = tmp_path / "judgments.jsonl"
    arguments = ["eval", "--model_name_or_path", str(model), "--output_dir", str(out), "--benchmarks", "mt_bench",
                 "--mt_bench_judgments", str(judgments), "--update_model_card", "true"]  # fmt: skip
    for score in (8, 6):  # a second run replaces the first one's results
        judgments.write_text(json.dumps({"question_id": 81, "model": "my-sft", "turn": 1, "score": score}) + "\n")
        assert main(arguments) == 0
    metadata = metadata_load(card)
    assert (metadata["license"], metadata["base_model"]) == ("apache-2.0", "mistralai/Mistral-7B-v0.1")
    [index] = metadata["model-index"]
    assert index["name"] == "my-sft" and index["results"][0]["metrics"][0]["value"] == 6.0
    text = ModelCard.load(card).text
    assert text.startswith("\n# my-sft\n\nTrained.\n")
    assert text.count("## Evaluation") == 1
    assert "| MT-Bench | 1 question, 2 turns | score (1-10) | 6.00 | - |" in text


def test_without_alpaca_eval_the_answers_are_left_ready_with_the_command(tiny_model_dir, sources, tmp_path, monkeypatch,
                                                                        capsys):  # fmt: skip
    import deita_hf.evaluation as evaluation

    monkeypatch.setattr(evaluation, "_installed", lambda module: False)
    out = tmp_path / "eval"
    assert main(["eval", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--benchmarks",
                 "alpaca_eval", "--alpaca_eval_instructions", str(sources["instructions"]),
                 "--alpaca_eval_max_new_tokens", "4", "--judge", "true"]) == 0  # fmt: skip
    alpaca = json.loads((out / "results.json").read_text())["alpaca_eval"]
    assert alpaca["judge_unavailable"] == 'alpaca-eval is not installed (pip install "deita-hf[eval]")'
    outputs = out / "alpaca_eval" / "model_outputs.json"
    assert alpaca["judge_command"].endswith(
        f"alpaca_eval --model_outputs {outputs} --annotators_config alpaca_eval_gpt4"
    )
    assert alpaca["judge_command"] in capsys.readouterr().out
    assert len(json.loads(outputs.read_text())) == 3
    assert "| AlpacaEval | 3 instructions | win rate (%) | not judged | - |" in (out / "results.md").read_text()


def test_the_judges_endpoint_is_the_option_else_openai_base_url_else_openai_s(tmp_path, monkeypatch):
    from deita_hf.evaluation import alpaca_eval_command, mt_bench_commands

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    outputs, answers = tmp_path / "model_outputs.json", tmp_path / "tiny.jsonl"
    arguments = EvalArguments(model_name_or_path="tiny", output_dir=str(tmp_path))
    for env, option, expected in [
        (None, None, "https://api.openai.com/v1"),
        ("http://env:1/v1", None, "http://env:1/v1"),
        ("http://env:1/v1", "http://option:2/v1", "http://option:2/v1"),
    ]:
        if env is not None:
            monkeypatch.setenv("OPENAI_BASE_URL", env)
        arguments = dataclasses.replace(arguments, judge_base_url=option)
        assert alpaca_eval_command(outputs, arguments) == (
            f"IS_ALPACA_EVAL_2=False OPENAI_API_BASE={expected} alpaca_eval --model_outputs {outputs} "
            "--annotators_config alpaca_eval_gpt4"
        )
        assert (
            f"OPENAI_API_BASE={expected} OPENAI_API_KEY=$OPENAI_API_KEY python gen_judgment.py --model-list tiny "
            "--judge-model gpt-4\n"
        ) in mt_bench_commands(answers, "tiny", arguments)


def test_a_reference_without_outputs_is_refused_before_generating(tiny_model_dir, tmp_path):
    instructions = tmp_path / "instructions.json"
    instructions.write_text(json.dumps([{"instruction": "Hi"}]))
    out = tmp_path / "eval"
    with pytest.raises(EvaluationError, match="has no reference 'output' in row 0; pass --alpaca_eval_reference"):
        evaluation_run(["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--benchmarks",
                        "alpaca_eval", "--alpaca_eval_instructions", str(instructions), "--judge", "true"])  # fmt: skip
    assert not (out / "alpaca_eval" / "model_outputs.json").exists()


def evaluation_run(argv: list[str]):
    from deita_hf.evaluation import run_eval

    return run_eval(*parse_recipe(argv, EVAL_ARGUMENTS))


def test_every_eval_option_is_documented():
    text = (REPO_ROOT / "docs" / "evaluation.md").read_text()
    for field in dataclasses.fields(EvalArguments):
        assert f"| `{field.name}` |" in text, field.name


def _ranking_judge(model_wins: set[str], malformed: set[str]):
    """A judge for alpaca-eval's AlpacaEval v1 prompt: prefers the model's answer for the instructions in
    ``model_wins``, the reference's for the others, and answers something unreadable for ``malformed``."""
    references = {row["output"] for row in INSTRUCTIONS}

    def respond(messages, seen):
        prompt = messages[-1]["content"]
        instruction = re.search(r'"instruction": """(.*?)"""', prompt, re.S).group(1)
        if instruction in malformed:
            return "Both answers are fine."
        first = re.search(r'"model": "model_1",\s*"answer": """(.*?)"""', prompt, re.S).group(1)
        model_is_first = first not in references
        winner = "model_1" if model_is_first == (instruction in model_wins) else "model_2"
        loser = "model_2" if winner == "model_1" else "model_1"
        return f"[{{'model': '{winner}', 'rank': 1}}, {{'model': '{loser}', 'rank': 2}}]"

    return respond


@pytest.mark.slow
def test_eval_end_to_end_offline(tiny_model_dir, sources, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    pytest.importorskip("alpaca_eval")
    from huggingface_hub import ModelCard, metadata_load

    out = tmp_path / "eval"
    monkeypatch.setenv("DEITA_TEST_JUDGE_KEY", "secret-key")
    judge = _ranking_judge(model_wins={INSTRUCTIONS[0]["instruction"]}, malformed={INSTRUCTIONS[2]["instruction"]})
    with ChatServer(judge) as server:
        assert main([
            "eval", "--model_name_or_path", str(tiny_model_dir), "--model_name", "tiny-chat", "--output_dir", str(out),
            "--leaderboard_tasks", "tiny_qa:0", "--lm_eval_include_path", str(sources["tasks"]),
            "--lm_eval_batch_size", "2", "--mt_bench_questions", str(sources["questions"]),
            "--alpaca_eval_instructions", str(sources["instructions"]), "--mt_bench_max_new_tokens", "6",
            "--alpaca_eval_max_new_tokens", "6", "--judge", "true",
            "--judge_base_url", server.url, "--judge_model", "local-judge",
            "--judge_api_key_env", "DEITA_TEST_JUDGE_KEY", "--reproduces", "hkust-nlp/deita-7b-v1.0-sft",
        ]) == 0  # fmt: skip
    # The judge saw alpaca-eval's own prompt, the configured model and the key from the environment.
    assert {request["model"] for request in server.requests} == {"local-judge"}
    keys = {value for headers in server.headers for name, value in headers.items() if name.lower() == "authorization"}
    assert keys == {"Bearer secret-key"} and len(server.headers) == 3
    assert all("rank the models" in request["messages"][-1]["content"] for request in server.requests)
    assert "secret-key" not in "".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())

    results = json.loads((out / "results.json").read_text())
    # AlpacaEval: one win, one loss, one malformed verdict counted and left out -> 50%.
    alpaca = results["alpaca_eval"]
    assert (alpaca["win_rate"], alpaca["verdicts"], alpaca["malformed"]) == (50.0, 3, 1)
    assert json.loads((out / "alpaca_eval" / "model_outputs.json").read_text())[0]["generator"] == "tiny-chat"
    # MT-Bench: the answers, and the command that judges them (FastChat's judge cannot be installed here).
    answers = (out / "mt_bench" / "model_answer" / "tiny-chat.jsonl").read_text().splitlines()
    assert [json.loads(line)["question_id"] for line in answers] == [81, 111, 131, 151]
    assert "gen_judgment.py --model-list tiny-chat --judge-model local-judge" in results["mt_bench"]["judge_command"]
    assert results["mt_bench"]["judge_command"] in (out / "mt_bench" / "JUDGE.md").read_text()
    # The leaderboard task: lm-eval's accuracy equals the log-likelihood choice computed here.
    task = results["leaderboard"]["tasks"]["tiny_qa"]
    assert (task["shots"], task["metric"]) == (0, "acc")
    assert task["value"] == pytest.approx(_expected_accuracy(tiny_model_dir), abs=1e-12)
    assert results["leaderboard"]["average"] == task["value"]
    assert json.loads((out / "leaderboard" / "results.json").read_text())["tiny_qa"]["shots"] == 0

    # The table puts the paper's numbers beside the model's.
    table = (out / "results.md").read_text()
    assert "| AlpacaEval | 3 instructions | win rate (%) | 50.00 (1 malformed verdict, left out) | 80.78 |" in table
    assert "| MT-Bench | 4 questions, 2 turns | score (1-10) | not judged | 7.22 |" in table
    assert f"| tiny_qa | 0-shot | acc (%) | {task['value'] * 100:.2f} | - |" in table
    # The model card's model-index parses back with huggingface_hub.
    metadata = metadata_load(out / "README.md")
    [index] = metadata["model-index"]
    assert index["name"] == "tiny-chat"
    values = {r["dataset"]["name"]: r["metrics"][0]["value"] for r in index["results"]}
    assert values == {"tiny_qa (0-Shot)": round(task["value"] * 100, 2), "AlpacaEval": 50.0}
    card = ModelCard.load(out / "README.md")
    assert [(r.task_type, r.task_name, r.dataset_type, r.metric_type) for r in card.data.eval_results] == [
        ("text-generation", "Text Generation", "tiny_qa", "acc"),
        ("text-generation", "Text Generation", "tatsu-lab/alpaca_eval", "win_rate"),
    ]
    assert card.data.eval_results[0].dataset_args == {"num_few_shot": 0}
    assert "| AlpacaEval |" in card.text


@pytest.mark.slow
def test_two_processes_under_accelerate_give_the_single_process_scores(tiny_model_dir, sources, tmp_path):
    """lm-eval splits the documents over the processes of `accelerate launch`; the main process writes the
    results and the answers."""
    pytest.importorskip("lm_eval")
    from test_pipeline import ACCELERATE_CPU_CONFIG

    config = tmp_path / "accelerate.yaml"
    config.write_text(ACCELERATE_CPU_CONFIG.format(port=29531))
    common = ["--model_name_or_path", str(tiny_model_dir), "--model_name", "tiny-chat", "--benchmarks", "leaderboard",
              "mt_bench", "--leaderboard_tasks", "tiny_qa:0", "--lm_eval_include_path", str(sources["tasks"]),
              "--lm_eval_batch_size", "2", "--mt_bench_questions", str(sources["questions"]),
              "--mt_bench_max_new_tokens", "4", "--sampling", "greedy"]  # fmt: skip
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*launch, "-m", "deita_hf.cli", "eval", *common, "--output_dir", str(tmp_path / "two")],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert main(["eval", *common, "--output_dir", str(tmp_path / "one")]) == 0
    two, one = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("two", "one"))
    assert two["leaderboard"]["tasks"] == one["leaderboard"]["tasks"]
    assert two["leaderboard"]["tasks"]["tiny_qa"]["value"] == pytest.approx(_expected_accuracy(tiny_model_dir))
    answers = [
        (tmp_path / name / "mt_bench" / "model_answer" / "tiny-chat.jsonl").read_text() for name in ("two", "one")
    ]
    assert [json.loads(line)["choices"] for line in answers[0].splitlines()] == [
        json.loads(line)["choices"] for line in answers[1].splitlines()
    ]


def _expected_accuracy(model_dir: Path) -> float:
    """The accuracy of the tiny task by hand: the choice with the highest log-likelihood of " choice" after
    the prompt, encoded as lm-eval encodes a pair (the whole text, split after the context's tokens)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    correct = 0
    for row in TASK_ROWS:
        context = f"Question: {row['question']}\nAnswer:"
        scores = []
        for choice in row["choices"]:
            whole = tokenizer(context + " " + choice)["input_ids"]
            start = len(tokenizer(context)["input_ids"])
            with torch.no_grad():
                logits = model(torch.tensor([whole])).logits[0].double().log_softmax(-1)
            scores.append(math.fsum(float(logits[i - 1, whole[i]]) for i in range(start, len(whole))))
        correct += max(range(len(scores)), key=scores.__getitem__) == row["label"]
    return correct / len(TASK_ROWS)


# -- options and errors ----------------------------------------------------------------------------------------------
def test_task_specs_are_task_colon_shots():
    assert parse_task("arc_challenge:25") == ("arc_challenge", 25)
    with pytest.raises(EvaluationError, match="write it as task:shots, e.g. arc_challenge:25"):
        parse_task("arc_challenge")


def test_an_unknown_benchmark_is_an_error(tmp_path, capsys):
    assert main(["eval", "--model_name_or_path", "m", "--output_dir", str(tmp_path), "--benchmarks", "mmlu"]) == 1
    assert (
        "unknown benchmark(s) ['mmlu']; choose from ['leaderboard', 'mt_bench', 'alpaca_eval']"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("recipe", sorted(REPO_ROOT.glob("recipes/*/eval.yaml")))
def test_eval_recipes_parse_and_use_the_paper_s_settings(recipe):
    arguments, runtime = parse_recipe(["--config", str(recipe)], EVAL_ARGUMENTS)
    assert isinstance(arguments, EvalArguments)
    assert arguments.leaderboard_tasks == ["arc_challenge:25", "hellaswag:10", "mmlu:5", "truthfulqa_mc2:0"]
    assert arguments.chat_template == "vicuna" and arguments.judge_model == "gpt-4"
    assert arguments.alpaca_eval_annotator == "alpaca_eval_gpt4"
    assert arguments.reproduces is not None
    assert f"deita-hf eval --config {recipe.relative_to(REPO_ROOT)}" in (recipe.parent / "README.md").read_text()


def test_an_eval_recipe_with_a_selection_option_is_refused(tmp_path):
    recipe = tmp_path / "eval.yaml"
    recipe.write_text("model_name_or_path: m\nbudget: 10\n")
    with pytest.raises(ValueError, match="unknown option 'budget'"):
        parse_recipe(["--config", str(recipe)], EVAL_ARGUMENTS)
