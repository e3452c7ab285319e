"""Evol Complexity and Evol Quality: evolve seed turns step by step (paper section 2).

Evol Complexity rewrites a seed instruction into a harder one, ``rounds`` times (default 5), each round
building on the last with one operation drawn at random (seeded): add constraints, deepen, concretize,
increase reasoning steps, complicate the input. Evol Quality keeps the instruction and improves the
response the same way: helpfulness, relevance, depth, creativity, details. The seed and its evolved
variants (6 with the default 5 rounds) are then scored together by :mod:`deita_hf.scorers.ranking`.

Every round is one batch of requests over all seeds that are still going. A reply that does not follow
the format (no ``<request>...</request>`` block, an empty text, the same text as before) is asked again
with a note of what was wrong; a seed whose reply stays malformed, or whose request fails, stops there and
is reported with its replies, never patched up.

>>> from deita_hf.scorers.generation import OpenAIChat
>>> seeds = [Seed("0", "Name three primary colors.")]
>>> evolutions = evolve(seeds, OpenAIChat("gpt-4o-mini"), task="complexity")  # doctest: +SKIP
>>> evolutions[0].variants  # doctest: +SKIP
['Name three primary colors.', 'Name three primary colors and explain ...', ...]
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..constants import (
    DEFAULT_SEED,
    EVOL_COMPLEXITY_OPERATIONS,
    EVOL_COMPLEXITY_PROMPT,
    EVOL_QUALITY_OPERATIONS,
    EVOL_QUALITY_PROMPT,
    EVOL_ROUNDS,
)
from ..errors import ConfigError
from ..formats import Message, row_turns
from .generation import ChatGenerator, MalformedReply, Reply, generate_checked

TASKS = ("complexity", "quality")

_PROMPTS = {"complexity": EVOL_COMPLEXITY_PROMPT, "quality": EVOL_QUALITY_PROMPT}
_OPERATIONS = {"complexity": EVOL_COMPLEXITY_OPERATIONS, "quality": EVOL_QUALITY_OPERATIONS}
# The tag around the evolved text in the reply: the instruction (complexity) or the response (quality).
_TAGS = {"complexity": "request", "quality": "response"}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; expected one of {TASKS}")
    return task


@dataclass
class Seed:
    """One seed turn: an id, the instruction, and the response (needed by the quality task)."""

    seed_id: str
    instruction: str
    output: str = ""


@dataclass
class Evolution:
    """A seed and its evolved variants.

    ``variants[0]`` is the seed text and ``variants[k]`` the text after round ``k``: instructions for the
    complexity task, responses to ``instruction`` for the quality task. ``operations[k - 1]`` made round
    ``k``. ``problem`` says why the evolution stopped early (``None`` when all rounds are done);
    ``replies`` holds the raw replies of the round that failed.
    """

    seed_id: str
    task: str
    instruction: str
    output: str
    variants: list[str]
    operations: list[str] = field(default_factory=list)
    problem: str | None = None
    replies: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def seeds_from_rows(rows: Iterable[Mapping[str, Any]], format: str | None = None) -> list[Seed]:
    """One :class:`Seed` per turn of each row (any format of :mod:`deita_hf.formats`), ids ``"<row>:<turn>"``.

    >>> seeds_from_rows([{"instruction": "Say hi", "output": "Hi!"}])
    [Seed(seed_id='0:0', instruction='Say hi', output='Hi!')]
    """
    return [
        Seed(f"{index}:{turn}", instruction, output)
        for index, row in enumerate(rows)
        for turn, (instruction, output) in enumerate(row_turns(row, format, index))
    ]


def operation_plan(seed_id: str, task: str, rounds: int = EVOL_ROUNDS, seed: int = DEFAULT_SEED) -> list[str]:
    """The operations of a seed's rounds: drawn at random with replacement, from ``(seed, seed_id)`` alone.

    >>> operation_plan("0:0", "complexity", rounds=2) == operation_plan("0:0", "complexity", rounds=2)
    True
    """
    names = sorted(_OPERATIONS[check_task(task)])
    rng = random.Random(f"{seed}:{seed_id}:evol")
    return [rng.choice(names) for _ in range(rounds)]


def evol_messages(task: str, instruction: str, output: str, operation: str) -> list[Message]:
    """The request that evolves one turn with one operation (a single user message)."""
    template = _PROMPTS[check_task(task)]
    prompt = template.format(instruction=instruction, output=output, operation=_OPERATIONS[task][operation])
    return [{"role": "user", "content": prompt}]


def parse_evolved(task: str, reply: Reply, previous: str) -> str:
    """The evolved text of a reply: what stands between the one ``<request>``/``<response>`` tag pair.

    Raises :class:`MalformedReply` when the tags are missing or repeated, the text is empty or the same as
    before, or the reply was cut at ``max_new_tokens``.

    >>> parse_evolved("complexity", Reply("Sure!\\n<request>\\nName 3 colors.\\n</request>"), "Name colors.")
    'Name 3 colors.'
    """
    tag = _TAGS[check_task(task)]
    text = reply.text or ""
    opening, closing = f"<{tag}>", f"</{tag}>"
    if reply.finish_reason == "length":
        raise MalformedReply("the reply was cut off at the token limit; write a shorter text")
    found = (len(re.findall(re.escape(opening), text)), len(re.findall(re.escape(closing), text)))
    if found != (1, 1) or text.index(opening) > text.index(closing):
        raise MalformedReply(f"expected the new text once between {opening} and {closing}")
    evolved = text[text.index(opening) + len(opening) : text.index(closing)].strip()
    if not evolved:
        raise MalformedReply(f"the text between {opening} and {closing} is empty")
    if evolved == previous.strip():
        raise MalformedReply(f"the text between {opening} and {closing} is the same as before; change it")
    return evolved


def evolve(
    seeds: Sequence[Seed],
    generator: ChatGenerator,
    *,
    task: str,
    rounds: int = EVOL_ROUNDS,
    seed: int = DEFAULT_SEED,
    retries: int = 2,
    **overrides: Any,
) -> list[Evolution]:
    """Evolve every seed for ``rounds`` rounds; one :class:`Evolution` per seed, in order.

    Args:
        seeds: the seed turns (see :func:`seeds_from_rows`).
        generator: the chat model that rewrites (:class:`~deita_hf.scorers.generation.OpenAIChat` or
            :class:`~deita_hf.scorers.generation.TransformersChat`).
        task: ``"complexity"`` (evolve instructions) or ``"quality"`` (evolve responses).
        rounds: evolution rounds per seed (the paper's M = 5).
        seed: draws the operations of each seed (:func:`operation_plan`).
        retries: how often a malformed reply is asked again before the seed is reported.
        overrides: sampling parameters for these requests (``temperature``, ``max_new_tokens``, ...).
    """
    check_task(task)
    if rounds < 1:
        raise ConfigError(f"rounds must be at least 1, got {rounds}")
    evolutions = [
        Evolution(s.seed_id, task, s.instruction, s.output, [s.instruction if task == "complexity" else s.output])
        for s in seeds
    ]
    for evolution in evolutions:
        if not evolution.instruction.strip():
            evolution.problem = "the seed has an empty instruction"
        elif not evolution.variants[0].strip():
            evolution.problem = "the seed has no response to evolve (the quality task evolves responses)"
    plans = [operation_plan(s.seed_id, task, rounds, seed) for s in seeds]
    for round_ in range(rounds):
        going = [i for i, evolution in enumerate(evolutions) if evolution.ok]
        if not going:
            break
        conversations = []
        for i in going:
            current = evolutions[i].variants[-1]
            instruction = current if task == "complexity" else evolutions[i].instruction
            conversations.append(evol_messages(task, instruction, current, plans[i][round_]))

        def parse(reply: Reply, j: int, going: list[int] = going) -> str:
            return parse_evolved(task, reply, evolutions[going[j]].variants[-1])

        outcomes = generate_checked(
            generator, conversations, parse, retries=retries, desc=f"evol {task} {round_ + 1}/{rounds}", **overrides
        )
        for i, outcome in zip(going, outcomes):
            evolution = evolutions[i]
            if outcome.ok:
                evolution.variants.append(outcome.value)
                evolution.operations.append(plans[i][round_])
            else:
                evolution.problem = f"round {round_ + 1} ({plans[i][round_]}): {outcome.problem}"
                evolution.replies = outcome.replies
    return evolutions
