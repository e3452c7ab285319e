"""``deita-hf make-scorer-data``: seed rows -> Evol Complexity / Evol Quality -> ranking -> scorer training data.

One command makes the training data of one scorer (paper section 2)::

    deita-hf make-scorer-data --config recipes/scorers/mistral-7b-complexity/make-scorer-data.yaml
    python -m deita_hf.scorers.data --config recipes/scorers/mistral-7b-complexity/make-scorer-data.yaml   # the same

Steps: read the seed rows (any format of :mod:`deita_hf.formats`; one seed per turn); evolve each seed for
``rounds`` rounds (:mod:`deita_hf.scorers.evol`); score each seed's variants together on the 1..6 scale
(:mod:`deita_hf.scorers.ranking`); write ``scorer_data_dir``:

- ``dataset/``: a ``DatasetDict`` (``save_to_disk``) with ``train`` and ``test`` splits in TRL's
  prompt-completion format (``prompt`` = the scorer prompt, ``completion`` = the score digit; see
  :func:`deita_hf.scorers.ranking.scorer_rows`); the split is by seed, so no seed has variants on both sides;
- ``evolutions.jsonl``: every scored seed with its variants, operations, shown order and scores;
- ``rejects.jsonl``: every seed that did not make it, with the stage, the problem and the raw replies;
- ``summary.json``: counts and the settings (never the API key);
- ``generation_cache.sqlite``: every reply, so that a rerun sends no request twice and retries only the
  requests that failed.

The recipe holds the keys of :class:`ScorerDataConfig` only (``deita-hf train-scorer`` reads a recipe of its
own); an unknown key is an error with the closest known key as a hint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import option, parse_recipe
from ..constants import DEFAULT_SEED, EVOL_ROUNDS, SUMMARY_FILE
from ..errors import ConfigError, DataError
from .evol import TASKS, Evolution, Seed, check_task, evolve, seeds_from_rows
from .generation import ChatGenerator, OpenAIChat, TransformersChat
from .ranking import Ranking, rank, scorer_rows

logger = logging.getLogger(__name__)

GENERATORS = ("openai", "transformers")


@dataclass
class ScorerDataConfig:
    """Settings of ``deita-hf make-scorer-data``.

    Parameters:
        task (`str`, defaults to `"complexity"`): which scorer the data trains, ``complexity`` (evolve and score
            instructions) or ``quality`` (evolve and score responses).
        seed_dataset (`str`): the seed rows: a Hub dataset id, a local json/jsonl/csv/parquet file or a
            ``save_to_disk`` folder, in any row format; one seed per turn.
        seed_dataset_config (`str`, *optional*): configuration name of a Hub seed dataset.
        seed_split (`str`, defaults to `"train"`): split of the seed dataset.
        seed_format (`str`, *optional*): row format (``messages``, ``sharegpt``, ``alpaca``, ``prompt_response``);
            detected from the columns when not set.
        seed_sample_size (`int`, *optional*): use a random sample of this many seed rows (the paper: 2000).
        scorer_data_dir (`str`, defaults to `"outputs/scorer-data"`): output folder (read by ``train-scorer``).
        test_fraction (`float`, defaults to `0.05`): share of seeds held out in the ``test`` split.
        seed (`int`, defaults to `42`): draws the seed sample, the operations, the shown order and the split.
        rounds (`int`, defaults to `5`): evolution rounds per seed (the paper's M; 5 gives 6 variants).
        generator (`str`, defaults to `"openai"`): ``openai`` (any OpenAI-compatible endpoint) or
            ``transformers`` (a local chat model).
        generator_model (`str`): the model name the endpoint serves, or a local/Hub chat model.
        base_url (`str`, *optional*): the endpoint's API root; default ``$OPENAI_BASE_URL``, else OpenAI's.
        api_key (`str`, *optional*): the API key; default ``$OPENAI_API_KEY`` (prefer the environment).
        timeout (`float`, defaults to `120`): seconds to wait for one answer.
        max_retries (`int`, defaults to `5`): retries of a request that timed out, lost its connection or got
            408/409/429/5xx, with exponential back-off.
        backoff (`float`, defaults to `1.0`): first wait before a retry in seconds; it doubles each retry.
        concurrency (`int`, defaults to `8`): requests in flight at once (``openai``).
        batch_size (`int`, defaults to `8`): conversations per ``generate`` call (``transformers``).
        generator_dtype (`str`, *optional*): dtype of the local chat model (default bf16 on GPU, fp32 on CPU).
        temperature (`float`, defaults to `0.7`): sampling temperature of the evolution requests.
        top_p (`float`, defaults to `1.0`): nucleus sampling of all requests.
        max_new_tokens (`int`, defaults to `2048`): longest evolved text, in tokens.
        ranking_temperature (`float`, defaults to `0.0`): sampling temperature of the ranking requests.
        ranking_max_new_tokens (`int`, defaults to `256`): longest ranking reply, in tokens.
        parse_retries (`int`, defaults to `2`): how often a malformed reply is asked again before the seed is
            reported in ``rejects.jsonl``.
        cache_dir (`str`, *optional*): folder of the reply cache; default ``scorer_data_dir``.
    """

    task: Literal["complexity", "quality"] = option(
        "Which scorer the data trains: complexity or quality.", "complexity"
    )
    seed_dataset: str | None = option(
        "Seed rows (required): Hub dataset id, local json/jsonl/csv/parquet file or save_to_disk folder.", None
    )
    seed_dataset_config: str | None = option("Configuration name of a Hub seed dataset.", None)
    seed_split: str = option("Split of the seed dataset.", "train")
    seed_format: str | None = option("Row format of the seeds (messages, sharegpt, alpaca, prompt_response).", None)
    seed_sample_size: int | None = option("Use a random sample of this many seed rows (the paper: 2000).", None)
    scorer_data_dir: str = option("Output folder of the scorer training data.", "outputs/scorer-data")
    test_fraction: float = option("Share of seeds held out in the test split.", 0.05)
    seed: int = option("Random seed of the sample, the operations, the shown order and the split.", DEFAULT_SEED)
    rounds: int = option("Evolution rounds per seed (the paper's M).", EVOL_ROUNDS)
    generator: Literal["openai", "transformers"] = option(
        "Generating model backend: openai (any compatible endpoint) or transformers.", "openai"
    )
    generator_model: str | None = option(
        "Model name served by the endpoint, or a local/Hub chat model (required).", None
    )
    base_url: str | None = option("API root of the endpoint; default $OPENAI_BASE_URL, else OpenAI's.", None)
    api_key: str | None = option("API key; default $OPENAI_API_KEY (prefer the environment).", None)
    timeout: float = option("Seconds to wait for one answer.", 120.0)
    max_retries: int = option("Retries of a request that timed out or failed with 408/409/429/5xx.", 5)
    backoff: float = option("First wait before a retry in seconds; it doubles each retry.", 1.0)
    concurrency: int = option("Requests in flight at once (openai).", 8)
    batch_size: int = option("Conversations per generate call (transformers).", 8)
    generator_dtype: str | None = option("dtype of the local chat model (default bf16 on GPU, fp32 on CPU).", None)
    temperature: float = option("Sampling temperature of the evolution requests.", 0.7)
    top_p: float = option("Nucleus sampling of all requests.", 1.0)
    max_new_tokens: int = option("Longest evolved text in tokens.", 2048)
    ranking_temperature: float = option("Sampling temperature of the ranking requests.", 0.0)
    ranking_max_new_tokens: int = option("Longest ranking reply in tokens.", 256)
    parse_retries: int = option("How often a malformed reply is asked again before the seed is reported.", 2)
    cache_dir: str | None = option("Folder of the reply cache; default scorer_data_dir.", None)

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.generator not in GENERATORS:
            raise ConfigError(f"generator must be one of {GENERATORS}, got {self.generator!r}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in [0, 1), got {self.test_fraction}")

    def public(self) -> dict[str, Any]:
        """The settings without the API key, for ``summary.json``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "api_key"}


# -- the steps ------------------------------------------------------------------------------------------------------
def make_generator(config: ScorerDataConfig) -> ChatGenerator:
    """The chat model of ``config.generator``, caching its replies in ``cache_dir`` (default: the output folder)."""
    if not config.generator_model:
        raise ConfigError("set generator_model: the model name the endpoint serves, or a local/Hub chat model")
    common = dict(
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        cache_dir=config.cache_dir or config.scorer_data_dir,
    )
    if config.generator == "openai":
        return OpenAIChat(
            config.generator_model,
            base_url=config.base_url,
            api_key=config.api_key,
            timeout=config.timeout,
            max_retries=config.max_retries,
            backoff=config.backoff,
            concurrency=config.concurrency,
            **common,
        )
    return TransformersChat(
        config.generator_model, batch_size=config.batch_size, dtype=config.generator_dtype, **common
    )


def load_seeds(config: ScorerDataConfig) -> list[Seed]:
    """The seed turns of ``config.seed_dataset`` (a random sample of ``seed_sample_size`` rows if set)."""
    from ..io import load_training_data, sample_rows

    if not config.seed_dataset:
        raise ConfigError("set seed_dataset: a Hub dataset id, a local file or a save_to_disk folder of seed rows")
    rows = load_training_data(config.seed_dataset, split=config.seed_split, config=config.seed_dataset_config)
    rows = sample_rows(rows, config.seed_sample_size, seed=config.seed)
    return seeds_from_rows(rows, config.seed_format)


def held_out_seed_ids(seeds: Sequence[Seed], fraction: float, seed: int = DEFAULT_SEED) -> set[str]:
    """The seeds held out for the test split: a seeded random ``fraction`` of all seeds, chosen before any
    request, so that a failed request does not move a seed from one split to the other."""
    ids = [s.seed_id for s in seeds]
    random.Random(f"{seed}:split").shuffle(ids)
    return set(ids[: round(fraction * len(ids))])


def _write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _reject(stage: str, item: Evolution | Ranking) -> dict[str, Any]:
    return {
        "seed_id": item.seed_id,
        "stage": stage,
        "problem": item.problem,
        "instruction": item.instruction,
        "output": item.output,
        "variants": item.variants,
        "replies": item.replies,
    }


def make_scorer_data(config: ScorerDataConfig) -> dict[str, Any]:
    """Run all steps and write ``config.scorer_data_dir``; returns the summary (also in ``summary.json``)."""
    from datasets import Dataset, DatasetDict

    out = Path(config.scorer_data_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = load_seeds(config)
    if not seeds:
        raise DataError(f"{config.seed_dataset} gave no seed turns")
    generator = make_generator(config)
    logger.info("%d seeds, %d rounds, generator %r", len(seeds), config.rounds, generator)

    evolutions = evolve(
        seeds, generator, task=config.task, rounds=config.rounds, seed=config.seed, retries=config.parse_retries
    )
    rankings = rank(
        [e for e in evolutions if e.ok],
        generator,
        seed=config.seed,
        retries=config.parse_retries,
        temperature=config.ranking_temperature,
        max_new_tokens=config.ranking_max_new_tokens,
    )
    scored = [r for r in rankings if r.ok]
    rejects = [_reject("evol", e) for e in evolutions if not e.ok] + [_reject("rank", r) for r in rankings if not r.ok]

    held_out = held_out_seed_ids(seeds, config.test_fraction, config.seed)
    rows = scorer_rows(scored)
    splits = {
        "train": [row for row in rows if row["seed_id"] not in held_out],
        "test": [row for row in rows if row["seed_id"] in held_out],
    }
    _write_jsonl(out / "rejects.jsonl", rejects)
    _write_jsonl(
        out / "evolutions.jsonl",
        [
            {
                "seed_id": r.seed_id,
                "split": "test" if r.seed_id in held_out else "train",
                "task": r.task,
                "instruction": r.instruction,
                "output": r.output,
                "variants": r.variants,
                "operations": r.operations,
                "shown_order": r.order,
                "scores": r.scores,
            }
            for r in scored
        ],
    )
    summary = {
        "task": config.task,
        "seeds": len(seeds),
        "evolved": sum(e.ok for e in evolutions),
        "scored": len(scored),
        "rejected": {"evol": sum(not e.ok for e in evolutions), "rank": sum(not r.ok for r in rankings)},
        "rows": {name: len(split) for name, split in splits.items()},
        "score_counts": {str(k): sum(row["score"] == k for row in rows) for k in range(1, 7)},
        "generator": dict(generator.stats),
        "settings": config.public(),
    }
    with open(out / SUMMARY_FILE, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    if not splits["train"]:
        raise RuntimeError(
            f"no seed made it to the training data ({len(rejects)} rejected): see {out / 'rejects.jsonl'}. "
            "Failed requests are asked again when the command is rerun; replies already received come from the cache."
        )
    dataset = DatasetDict({name: Dataset.from_list(split) for name, split in splits.items() if split})
    shutil.rmtree(out / "dataset", ignore_errors=True)
    dataset.save_to_disk(str(out / "dataset"))
    if rejects:
        logger.warning(
            "%d of %d seeds rejected (see %s); rerun the command to ask failed requests again",
            len(rejects),
            len(seeds),
            out / "rejects.jsonl",
        )
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    """``deita-hf make-scorer-data --config recipe.yaml [--flag value ...]``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # not a line per request; retries and failures are ours
    (config,) = parse_recipe(
        list(sys.argv[1:] if argv is None else argv), [ScorerDataConfig], prog="deita-hf make-scorer-data"
    )
    summary = make_scorer_data(config)
    print(
        f"{summary['task']} scorer data in {config.scorer_data_dir}: {summary['rows']['train']} train rows, "
        f"{summary['rows']['test']} test rows from {summary['scored']} of {summary['seeds']} seeds "
        f"({summary['rejected']['evol']} rejected while evolving, {summary['rejected']['rank']} while ranking); "
        f"{summary['generator']['requests']} requests, {summary['generator']['cache_hits']} from the cache."
    )


__all__ = [
    "TASKS",
    "ScorerDataConfig",
    "load_seeds",
    "main",
    "make_generator",
    "make_scorer_data",
]

if __name__ == "__main__":
    main()
