"""Evol Complexity and Evol Quality against a local OpenAI-compatible server (real HTTP, canned replies)."""

from __future__ import annotations

import pytest
from chat_server import ChatServer, fake_model, is_retry

from deita_hf.constants import EVOL_COMPLEXITY_OPERATIONS, EVOL_QUALITY_OPERATIONS
from deita_hf.formats import RowError
from deita_hf.scorers.evol import Seed, evol_messages, evolve, operation_plan, parse_evolved, seeds_from_rows
from deita_hf.scorers.generation import MalformedReply, OpenAIChat, Reply

SEEDS = [Seed("0:0", "Name a primary color.", "Red."), Seed("1:0", "Add 2 and 3.", "5.")]


def chat(server, **kwargs):
    return OpenAIChat("test-model", base_url=server.url, progress=False, **kwargs)


def test_complexity_evolution_builds_each_round_on_the_last():
    with ChatServer(fake_model) as server:
        evolutions = evolve(SEEDS, chat(server), task="complexity", rounds=5)
    assert [e.variants for e in evolutions] == [
        ["Name a primary color."] + ["Name a primary color." + " +" * k for k in range(1, 6)],
        ["Add 2 and 3."] + ["Add 2 and 3." + " +" * k for k in range(1, 6)],
    ]
    assert all(e.ok and len(e.operations) == 5 for e in evolutions)
    # One request per seed and round, each showing the previous round's text.
    assert len(server.requests) == 10
    shown = [r["messages"][0]["content"] for r in server.requests if "primary" in r["messages"][0]["content"]]
    assert [f"<request>\nName a primary color.{' +' * k}\n</request>" in p for k, p in enumerate(shown)] == [True] * 5


def test_quality_evolution_keeps_the_instruction_and_evolves_the_response():
    with ChatServer(fake_model) as server:
        (evolution,) = evolve(SEEDS[:1], chat(server), task="quality", rounds=3)
    assert evolution.instruction == "Name a primary color."
    assert evolution.variants == ["Red.", "Red. +", "Red. + +", "Red. + + +"]
    prompt = server.requests[-1]["messages"][0]["content"]
    assert "<request>\nName a primary color.\n</request>" in prompt and "<response>\nRed. + +\n</response>" in prompt


def test_operations_are_drawn_per_seed_from_the_seed_alone():
    plan = operation_plan("3:0", "complexity", rounds=50, seed=7)
    assert plan == operation_plan("3:0", "complexity", rounds=50, seed=7)
    assert plan != operation_plan("4:0", "complexity", rounds=50, seed=7)
    assert plan != operation_plan("3:0", "complexity", rounds=50, seed=8)
    assert set(plan) == set(EVOL_COMPLEXITY_OPERATIONS)
    assert set(operation_plan("3:0", "quality", rounds=50)) == set(EVOL_QUALITY_OPERATIONS)


def test_the_evol_prompt_states_the_operation_and_the_text():
    (message,) = evol_messages("complexity", "Add 2 and 3.", "", "add_constraints")
    assert message["role"] == "user"
    assert EVOL_COMPLEXITY_OPERATIONS["add_constraints"] in message["content"]
    assert "<request>\nAdd 2 and 3.\n</request>" in message["content"]


@pytest.mark.parametrize(
    "text, finish_reason, problem",
    [
        ("Name a color.", "stop", "once between <request> and </request>"),
        ("<request>\nA\n</request> <request>\nB\n</request>", "stop", "once between"),
        ("</request>A<request>", "stop", "once between"),
        ("<request>\n  \n</request>", "stop", "is empty"),
        ("<request>\nName colors.\n</request>", "stop", "the same as before"),
        ("<request>\nName four colors.", "length", "cut off at the token limit"),
    ],
)
def test_a_malformed_evolution_is_refused(text, finish_reason, problem):
    with pytest.raises(MalformedReply, match=problem):
        parse_evolved("complexity", Reply(text, finish_reason=finish_reason), "Name colors.")


def test_a_malformed_evolution_is_asked_again_with_the_problem():
    def first_without_tags(messages, seen):
        if "Add 2 and 3." in messages[0]["content"] and not is_retry(messages):
            return "Add 2 and 3, then double it."
        return fake_model(messages)

    with ChatServer(first_without_tags) as server:
        evolutions = evolve(SEEDS, chat(server), task="complexity", rounds=2)
    assert [e.variants[-1] for e in evolutions] == ["Name a primary color. + +", "Add 2 and 3. + +"]
    retries = [r["messages"] for r in server.requests if len(r["messages"]) == 3]
    assert len(retries) == 2  # once per round for the second seed
    assert "expected the new text once between <request> and </request>" in retries[0][2]["content"]


def test_an_evolution_that_stays_malformed_stops_and_is_reported():
    def stuck(messages, seen):
        prompt = messages[0]["content"]
        if "Add 2 and 3. +\n</request>" in prompt:  # round 2 of the second seed
            return "<request>\nAdd 2 and 3. +\n</request>"  # the same text: never accepted
        return fake_model(messages)

    with ChatServer(stuck) as server:
        ok, failed = evolve(SEEDS, chat(server), task="complexity", rounds=3, retries=1)
    assert ok.ok and len(ok.variants) == 4
    assert not failed.ok and failed.variants == ["Add 2 and 3.", "Add 2 and 3. +"]
    assert failed.problem.startswith("round 2 (") and "is the same as before" in failed.problem
    assert failed.replies == ["<request>\nAdd 2 and 3. +\n</request>"] * 2
    # The failed seed is not asked again in round 3.
    assert sum("Add 2 and 3." in r["messages"][0]["content"] for r in server.requests) == 1 + 2


def test_a_failed_request_stops_the_seed_and_is_reported(monkeypatch):
    from deita_hf.scorers import generation

    monkeypatch.setattr(generation, "_sleep", lambda seconds: None)

    def down_for_one(messages, seen):
        from chat_server import Canned

        if "Add 2 and 3." in messages[0]["content"]:
            return Canned("boom", status=500)
        return fake_model(messages)

    with ChatServer(down_for_one) as server:
        ok, failed = evolve(SEEDS, chat(server, max_retries=1), task="complexity", rounds=2)
    assert ok.ok and not failed.ok
    assert (
        failed.problem.startswith("round 1 (") and "request failed" in failed.problem and "HTTP 500" in failed.problem
    )


def test_seeds_are_the_turns_of_rows_in_any_format():
    rows = [
        {"conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
                           {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]},
        {"conversations": [{"from": "human", "value": "q3"}]},
    ]  # fmt: skip
    assert seeds_from_rows(rows) == [Seed("0:0", "q1", "a1"), Seed("0:1", "q2", "a2"), Seed("1:0", "q3", "")]


def test_an_unreadable_seed_row_is_an_error_that_names_it():
    with pytest.raises(RowError, match="row 1: missing column 'output'"):
        seeds_from_rows([{"instruction": "a", "output": "b"}, {"instruction": "c"}], format="alpaca")


def test_a_seed_without_a_response_is_reported_by_the_quality_task_without_a_request():
    seeds = [Seed("0:0", "Say hi", "Hi!"), Seed("1:0", "Say bye", " "), Seed("2:0", " ", "Yes.")]
    with ChatServer(fake_model) as server:
        ok, no_response, no_instruction = evolve(seeds, chat(server), task="quality", rounds=1)
    assert ok.ok and ok.variants == ["Hi!", "Hi! +"]
    assert no_response.problem == "the seed has no response to evolve (the quality task evolves responses)"
    assert no_instruction.problem == "the seed has an empty instruction"
    assert len(server.requests) == 1
