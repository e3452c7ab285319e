"""Ranking the variants of a seed, and `make-scorer-data` end to end against a local OpenAI-compatible server."""

from __future__ import annotations

import json

import pytest
import yaml
from chat_server import Canned, ChatServer, fake_model, is_retry
from datasets import load_from_disk

from deita_hf.constants import SCORE_DIGITS
from deita_hf.scorers import generation
from deita_hf.scorers.data import ScorerDataConfig, make_generator
from deita_hf.scorers.data import main as make_scorer_data_main
from deita_hf.scorers.evol import Evolution
from deita_hf.scorers.generation import MalformedReply, OpenAIChat, TransformersChat
from deita_hf.scorers.ranking import Ranking, parse_ranking, rank, ranking_messages, scorer_rows, shown_order
from deita_hf.scoring import ComplexityScorer, QualityScorer


def chat(server, **kwargs):
    return OpenAIChat("test-model", base_url=server.url, progress=False, **kwargs)


def evolution(seed_id, rounds=5, task="complexity"):
    base = f"Task {seed_id}."
    variants = [base + " +" * k for k in range(rounds + 1)]
    return Evolution(seed_id, task, base if task == "complexity" else "Q?", "", variants, ["deepen"] * rounds)


def test_parse_ranking_reads_one_score_per_shown_number():
    reply = "Here are the scores:\n\nVersion 2: 6\nversion 1 : 3\n  Version 3:1  \n"
    assert parse_ranking(reply, count=3) == [3, 6, 1]
    assert parse_ranking("Response 1: 4\nResponse 2: 4", count=2, label="Response") == [4, 4]


@pytest.mark.parametrize(
    "reply, problem",
    [
        ("I would rate them all highly.", "no score for Version 1, 2, 3"),
        ("Version 1: 3\nVersion 2: 4", "no score for Version 3"),
        ("Version 1: 3\nVersion 2: 4\nVersion 3: 7", "not of the form 'Version 3: <score from 1 to 6>'"),
        ("Version 1: 3\nVersion 2: 4.5\nVersion 3: 1", "not of the form 'Version 2"),
        ("Version 1: 3 (simple)\nVersion 2: 4\nVersion 3: 1", "not of the form 'Version 1"),
        ("Version 1: 3\nVersion 2: 4\nVersion 3: 1\nVersion 4: 2", "there is no Version 4"),
        ("Version 1: 3\nVersion 1: 3\nVersion 2: 4\nVersion 3: 1", "Version 1 is scored twice"),
        ("Response 1: 3\nResponse 2: 4\nResponse 3: 1", "no score for Version 1, 2, 3"),
    ],
)
def test_a_malformed_ranking_is_refused_never_guessed(reply, problem):
    with pytest.raises(MalformedReply, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_ranking(reply, count=3)


def test_variants_are_shown_in_a_seeded_random_order():
    assert shown_order("5:0", 6, seed=1) == shown_order("5:0", 6, seed=1)
    orders = {tuple(shown_order(f"{i}:0", 6, seed=1)) for i in range(40)}
    assert len(orders) > 30  # the order differs from seed to seed
    assert sum(order[0] == 0 for order in orders) < 20  # the seed itself is not always shown first
    assert any(shown_order(f"{i}:0", 6, seed=1) != shown_order(f"{i}:0", 6, seed=2) for i in range(5))


def test_the_ranking_prompt_shows_every_variant_once_under_its_number():
    (message,) = ranking_messages("complexity", "", ["A", "B", "C"], [2, 0, 1])
    text = message["content"]
    assert "[Version 1]\nC\n\n[Version 2]\nA\n\n[Version 3]\nB\n\n" in text
    assert 'in the form "Version <number>: <score>"' in text and "exactly 3 lines" in text
    (message,) = ranking_messages("quality", "Why?", ["A", "B"], [1, 0])
    assert "<request>\nWhy?\n</request>" in message["content"] and "[Response 1]\nB" in message["content"]


def test_scores_are_given_back_to_the_variants_they_were_shown_for():
    evolutions = [evolution(f"{i}:0") for i in range(8)]
    with ChatServer(fake_model) as server:
        rankings = rank(evolutions, chat(server), seed=3)
    assert len(server.requests) == 8
    assert all(r.ok and r.scores == [1, 2, 3, 4, 5, 6] for r in rankings)
    assert any(r.order != sorted(r.order) for r in rankings)
    assert all(r.order == shown_order(r.seed_id, 6, seed=3) for r in rankings)


def test_ranking_requests_use_their_own_sampling_params():
    with ChatServer(fake_model) as server:
        rank([evolution("0:0")], chat(server, temperature=0.7), temperature=0.0, max_new_tokens=64)
    assert server.requests[0]["temperature"] == 0.0 and server.requests[0]["max_tokens"] == 64


def test_a_malformed_ranking_is_asked_again_then_reported():
    def answer(messages, seen):
        prompt = messages[0]["content"]
        if "Task 1:0." in prompt and not is_retry(messages):
            return "They are all fine."
        if "Task 2:0." in prompt:
            return "Version 1: 9"
        return fake_model(messages)

    with ChatServer(answer) as server:
        fixed, ok, failed = rank([evolution("1:0"), evolution("0:0"), evolution("2:0")], chat(server), retries=2)
    assert fixed.ok and fixed.scores == [1, 2, 3, 4, 5, 6] and len(fixed.replies) == 2
    assert ok.ok and len(ok.replies) == 1
    assert not failed.ok and failed.scores is None
    assert failed.problem.startswith("malformed reply: the line 'Version 1: 9' is not of the form")
    assert failed.replies == ["Version 1: 9"] * 3
    assert len(server.requests) == 1 + 2 + 3


def test_only_complete_evolutions_are_ranked():
    broken = evolution("0:0")
    broken.problem = "round 2: request failed"
    with pytest.raises(ValueError, match=r"seeds \['0:0'\] stopped early"):
        rank([broken], OpenAIChat("m", base_url="http://127.0.0.1:9"))


def test_scorer_rows_are_the_scorer_prompt_and_the_score_digit():
    complexity = Ranking("0:0", "complexity", "Say hi", "", ["Say hi", "Say hi twice"], ["deepen"], [1, 0], [2, 5])
    rows = scorer_rows([complexity])
    assert [row["prompt"] for row in rows] == [
        ComplexityScorer().render("Say hi", ""),
        ComplexityScorer().render("Say hi twice", ""),
    ]
    assert [(row["completion"], row["score"], row["round"], row["operation"]) for row in rows] == [
        ("2", 2, 0, ""),
        ("5", 5, 1, "deepen"),
    ]
    quality = Ranking("3:1", "quality", "Why?", "Because.", ["Because.", "Because of X."], ["depth"], [0, 1], [1, 6])
    rows = scorer_rows([quality])
    assert rows[1]["prompt"] == QualityScorer().render("Why?", "Because of X.")
    assert (rows[1]["instruction"], rows[1]["output"], rows[1]["completion"]) == ("Why?", "Because of X.", "6")
    assert all(row["completion"] in SCORE_DIGITS for row in rows)


# -- make-scorer-data end to end ----------------------------------------------------------------------------------
def write_recipe(tmp_path, server, **overrides):
    seeds = tmp_path / "seeds.jsonl"
    with open(seeds, "w") as f:
        for i in range(10):
            f.write(
                json.dumps({"instruction": f"Describe item number {i}.", "input": "", "output": f"Item {i}."}) + "\n"
            )
    recipe = {
        "task": "complexity",
        "seed_dataset": str(seeds),
        "scorer_data_dir": str(tmp_path / "scorer-data"),
        "test_fraction": 0.2,
        "rounds": 5,
        "generator": "openai",
        "generator_model": "test-model",
        "base_url": server.url,
        "max_retries": 1,
        "backoff": 0.0,
        **overrides,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def read_summary(tmp_path):
    return json.loads((tmp_path / "scorer-data" / "summary.json").read_text())


def test_make_scorer_data_writes_scorer_training_data_and_a_rerun_sends_no_request(tmp_path):
    with ChatServer(fake_model) as server:
        recipe = write_recipe(tmp_path, server)
        make_scorer_data_main(["--config", str(recipe)])
        summary = read_summary(tmp_path)
        first_run = len(server.requests)
        make_scorer_data_main(["--config", str(recipe)])
        again = read_summary(tmp_path)
        assert len(server.requests) == first_run == 10 * 5 + 10
    out = tmp_path / "scorer-data"
    data = load_from_disk(str(out / "dataset"))
    assert {name: len(split) for name, split in data.items()} == {"train": 48, "test": 12}
    rows = list(data["train"]) + list(data["test"])
    assert all(row["score"] == row["round"] + 1 and row["completion"] == str(row["score"]) for row in rows)
    assert all(row["prompt"] == ComplexityScorer().render(row["instruction"], "") for row in rows)
    assert not {row["seed_id"] for row in data["train"]} & {row["seed_id"] for row in data["test"]}
    assert summary["rows"] == {"train": 48, "test": 12} and summary["rejected"] == {"evol": 0, "rank": 0}
    assert again["generator"]["requests"] == 0 and again["generator"]["cache_hits"] == 60
    assert (out / "rejects.jsonl").read_text() == ""
    assert len((out / "evolutions.jsonl").read_text().splitlines()) == 10


def test_failed_requests_are_reported_then_asked_again_on_rerun(tmp_path, monkeypatch):
    monkeypatch.setattr(generation, "_sleep", lambda seconds: None)
    down = {"on": True}

    def flaky(messages, seen):
        if down["on"] and "item number 3." in messages[0]["content"]:
            return Canned("unavailable", status=503)
        return fake_model(messages)

    with ChatServer(flaky) as server:
        recipe = write_recipe(tmp_path, server, test_fraction=0.0)
        make_scorer_data_main(["--config", str(recipe)])
        summary = read_summary(tmp_path)
        (reject,) = [
            json.loads(line) for line in (tmp_path / "scorer-data" / "rejects.jsonl").read_text().splitlines()
        ]
        before = len(server.requests)
        down["on"] = False
        make_scorer_data_main(["--config", str(recipe)])
        rerun = read_summary(tmp_path)
    assert summary["rejected"]["evol"] == 1 and summary["rows"]["train"] == 54
    assert reject["seed_id"] == "3:0" and reject["stage"] == "evol" and "HTTP 503" in reject["problem"]
    # Only the failed seed is asked again: its 5 evolutions and its ranking.
    assert len(server.requests) - before == 6 and rerun["rows"]["train"] == 60


def test_an_unknown_recipe_key_is_an_error(tmp_path):
    with ChatServer(fake_model) as server:
        recipe = write_recipe(tmp_path, server, ranking_temprature=0.5)
        with pytest.raises(ValueError, match="unknown option.*ranking_temprature.*did you mean 'ranking_temperature'"):
            make_scorer_data_main(["--config", str(recipe)])
    assert server.requests == []


def test_a_local_chat_model_can_be_the_generator(tmp_path):
    config = ScorerDataConfig(
        seed_dataset="seeds.jsonl",
        generator="transformers",
        generator_model="some/chat-model",
        batch_size=4,
        temperature=0.5,
        scorer_data_dir=str(tmp_path),
    )
    generator = make_generator(config)
    assert isinstance(generator, TransformersChat) and generator.lm._model is None  # loaded on first use
    assert (generator.model_name, generator.batch_size, generator.temperature) == ("some/chat-model", 4, 0.5)
    assert generator.cache.path == tmp_path / "generation_cache.sqlite"


def test_quality_scorer_data_from_real_conversations(shared_data, tmp_path):
    with ChatServer(fake_model) as server:
        recipe = write_recipe(
            tmp_path,
            server,
            task="quality",
            seed_dataset=str(shared_data / "alpaca_eval_pool.jsonl"),
            seed_sample_size=6,
            test_fraction=0.0,
        )
        make_scorer_data_main(["--config", str(recipe)])
    rows = list(load_from_disk(str(tmp_path / "scorer-data" / "dataset"))["train"])
    assert len(rows) == 36 and read_summary(tmp_path)["rejected"] == {"evol": 0, "rank": 0}
    assert all(row["score"] == row["round"] + 1 for row in rows)
    assert all(row["prompt"] == QualityScorer().render(row["instruction"], row["output"]) for row in rows)
    # The instruction stays the seed's; the response evolves round after round.
    for seed_id in {row["seed_id"] for row in rows}:
        chain = sorted((row for row in rows if row["seed_id"] == seed_id), key=lambda row: row["round"])
        assert len({row["instruction"] for row in chain}) == 1
        assert [row["output"] for row in chain[1:]] == [chain[0]["output"] + " +" * k for k in range(1, 6)]
