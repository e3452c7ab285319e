"""Score the variants of each seed together on the 1..6 scale, and turn the scores into scorer training data.

All variants of one seed (the seed and its evolved versions, see :mod:`deita_hf.scorers.evol`) go into one prompt,
in a random order drawn from ``(seed, seed_id)``, so that the model compares them with each other and the
order of evolution does not show. The reply must hold one line ``Version <n>: <score>`` (``Response`` for
the quality task) for every variant shown, with a score from 1 to 6. Anything else (a missing, repeated or
unknown number, a score out of range, more text on a score line) is malformed: the request is asked again
with a note of what was wrong, and after the retries the seed is reported, never guessed.

Each scored variant becomes one row of scorer training data in TRL's prompt-completion format: ``prompt``
is the scorer prompt of SPEC section 2 (the one :class:`~deita_hf.scoring.ComplexityScorer` and
:class:`~deita_hf.scoring.QualityScorer` read) and ``completion`` the score digit.

>>> parse_ranking("Version 1: 2\\nVersion 2: 5", count=2)
[2, 5]
>>> scorer_rows([Ranking("0:0", "complexity", "Say hi", "", ["Say hi", "Say hi in French"], ["deepen"],
...                      order=[1, 0], scores=[1, 3])])[1]["completion"]
'3'
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..constants import (
    DEFAULT_SEED,
    RANKING_COMPLEXITY_PROMPT,
    RANKING_LABELS,
    RANKING_QUALITY_PROMPT,
    RANKING_VARIANT,
    SCORE_DIGITS,
)
from ..formats import Message
from ..scoring import ComplexityScorer, QualityScorer, TurnScorer
from .evol import Evolution, check_task
from .generation import ChatGenerator, MalformedReply, Reply, generate_checked

_PROMPTS = {"complexity": RANKING_COMPLEXITY_PROMPT, "quality": RANKING_QUALITY_PROMPT}
SCORERS: dict[str, type[TurnScorer]] = {"complexity": ComplexityScorer, "quality": QualityScorer}


@dataclass
class Ranking:
    """The scores of one seed's variants.

    ``variants``, ``operations``, ``instruction`` and ``output`` are those of the :class:`Evolution`.
    ``order[j]`` is the variant shown as number ``j + 1``; ``scores[k]`` is the score of ``variants[k]``
    (``None`` when ``problem`` says why the seed could not be scored); ``replies`` holds the raw replies.
    """

    seed_id: str
    task: str
    instruction: str
    output: str
    variants: list[str]
    operations: list[str]
    order: list[int] = field(default_factory=list)
    scores: list[int] | None = None
    problem: str | None = None
    replies: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def shown_order(seed_id: str, count: int, seed: int = DEFAULT_SEED) -> list[int]:
    """The order in which a seed's ``count`` variants are shown: a shuffle drawn from ``(seed, seed_id)``.

    >>> sorted(shown_order("7:0", 6))
    [0, 1, 2, 3, 4, 5]
    """
    order = list(range(count))
    random.Random(f"{seed}:{seed_id}:rank").shuffle(order)
    return order


def ranking_messages(task: str, instruction: str, variants: Sequence[str], order: Sequence[int]) -> list[Message]:
    """The request that scores one seed's variants, shown in ``order`` (a single user message)."""
    label = RANKING_LABELS[check_task(task)]
    shown = "\n\n".join(
        RANKING_VARIANT.format(label=label, number=j + 1, text=variants[k]) for j, k in enumerate(order)
    )
    prompt = _PROMPTS[task].format(count=len(order), variants=shown, instruction=instruction, label=label)
    return [{"role": "user", "content": prompt}]


def parse_ranking(text: str, count: int, label: str = "Version") -> list[int]:
    """The scores of a ranking reply, by shown number: ``[score of 1, score of 2, ...]``.

    Every line that starts with ``<label> <number>:`` must read exactly ``<label> <number>: <digit 1-6>``;
    every number from 1 to ``count`` needs exactly one such line. Other lines (a greeting) are ignored.
    Raises :class:`MalformedReply` saying what is wrong otherwise.
    """
    scores: dict[int, int] = {}
    for line in text.splitlines():
        line = line.strip()
        head = re.match(rf"{label}\s+(\d+)\s*:", line, flags=re.IGNORECASE)
        if head is None:
            continue
        number = int(head.group(1))
        match = re.fullmatch(rf"{label}\s+(\d+)\s*:\s*([1-6])", line, flags=re.IGNORECASE)
        if match is None:
            raise MalformedReply(f"the line {line!r} is not of the form '{label} {number}: <score from 1 to 6>'")
        if not 1 <= number <= count:
            raise MalformedReply(f"there is no {label} {number}; the numbers go from 1 to {count}")
        if number in scores:
            raise MalformedReply(f"{label} {number} is scored twice")
        scores[number] = int(match.group(2))
    missing = [n for n in range(1, count + 1) if n not in scores]
    if missing:
        raise MalformedReply(
            f"no score for {label} {', '.join(map(str, missing))}; answer with {count} lines "
            f"'{label} <number>: <score>'"
        )
    return [scores[n] for n in range(1, count + 1)]


def rank(
    evolutions: Sequence[Evolution],
    generator: ChatGenerator,
    *,
    seed: int = DEFAULT_SEED,
    retries: int = 2,
    **overrides: Any,
) -> list[Ranking]:
    """Score the variants of every evolution (all must be complete); one :class:`Ranking` each, in order.

    Args:
        evolutions: complete evolutions of one task (:func:`deita_hf.scorers.evol.evolve`; skip those with a problem).
        generator: the chat model that scores.
        seed: draws the order in which each seed's variants are shown (:func:`shown_order`).
        retries: how often a malformed reply is asked again before the seed is reported.
        overrides: sampling parameters for these requests (``temperature``, ``max_new_tokens``, ...).
    """
    unfinished = [e.seed_id for e in evolutions if not e.ok]
    if unfinished:
        raise ValueError(f"evolutions of seeds {unfinished[:10]} stopped early; rank only complete evolutions")
    tasks = {e.task for e in evolutions}
    if len(tasks) > 1:
        raise ValueError(f"rank the evolutions of one task at a time, got {sorted(tasks)}")
    rankings = [
        Ranking(
            e.seed_id,
            e.task,
            e.instruction,
            e.output,
            e.variants,
            e.operations,
            shown_order(e.seed_id, len(e.variants), seed),
        )
        for e in evolutions
    ]
    conversations = [ranking_messages(r.task, r.instruction, r.variants, r.order) for r in rankings]

    def parse(reply: Reply, i: int) -> list[int]:
        ranking = rankings[i]
        return parse_ranking(reply.text or "", len(ranking.order), RANKING_LABELS[ranking.task])

    task = tasks.pop() if tasks else "complexity"
    outcomes = generate_checked(generator, conversations, parse, retries=retries, desc=f"rank {task}", **overrides)
    for ranking, outcome in zip(rankings, outcomes):
        ranking.replies = outcome.replies
        if outcome.ok:
            scores = [0] * len(ranking.variants)
            for j, k in enumerate(ranking.order):
                scores[k] = outcome.value[j]
            ranking.scores = scores
        else:
            ranking.problem = outcome.problem
    return rankings


def scorer_rows(rankings: Sequence[Ranking]) -> list[dict[str, Any]]:
    """Scorer training rows of the scored rankings, one per variant, in variant order.

    Columns: ``prompt`` (the scorer prompt of SPEC section 2), ``completion`` (the score digit), and for
    reading and training: ``task``, ``instruction`` and ``output`` (the turn the prompt renders), ``score``,
    ``seed_id``, ``round`` (0 for the seed) and ``operation`` (``""`` for the seed).
    """
    rows = []
    for ranking in rankings:
        if not ranking.ok:
            raise ValueError(f"seed {ranking.seed_id} has no scores ({ranking.problem}); keep only scored rankings")
        scorer = SCORERS[ranking.task]
        for k, (variant, score) in enumerate(zip(ranking.variants, ranking.scores)):
            instruction, output = (variant, "") if ranking.task == "complexity" else (ranking.instruction, variant)
            rows.append(
                {
                    "prompt": scorer.render(instruction, output),
                    "completion": SCORE_DIGITS[score - 1],
                    "task": ranking.task,
                    "instruction": instruction,
                    "output": output,
                    "score": score,
                    "seed_id": ranking.seed_id,
                    "round": k,
                    "operation": ranking.operations[k - 1] if k else "",
                }
            )
    return rows
