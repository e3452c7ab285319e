"""The steps of a run: the scoring and embedding callables of a recipe, and the selection of the pool."""

from __future__ import annotations

import logging
import math
from typing import Any

from ..config import RuntimeArguments, SelectionArguments
from ..constants import COMPLEXITY_COLUMN, EMBEDDING_COLUMN, QUALITY_COLUMN, SCORE_COLUMN
from ..distributed import ProcessInfo
from ..errors import PipelineError
from ..modeling import describe_model, resolve_commit, resolve_model
from ..selection import SIMILARITY_COLUMN
from .config import RunConfig
from .shards import Step, resume_key

logger = logging.getLogger(__name__)

# -- the steps -------------------------------------------------------------------------------------------------


def scoring_step(config: RunConfig, info: ProcessInfo) -> Step:
    """Complexity, quality and deita_score with :class:`deita_hf.DeitaScorer`, built once from the recipe."""
    from ..scoring import DeitaScorer
    from ..tokenization import resolve_tokenization

    scoring, data, runtime = config.scoring, config.data, config.runtime
    complexity_commit = resolve_commit(scoring.complexity_model, scoring.complexity_revision)
    quality_commit = resolve_commit(scoring.quality_model, scoring.quality_revision)
    scorer = DeitaScorer(
        resolve_model(scoring.complexity_model),
        resolve_model(scoring.quality_model),
        complexity_revision=complexity_commit or scoring.complexity_revision,
        quality_revision=quality_commit or scoring.quality_revision,
        format=data.dataset_format,
        on_error=scoring.on_error,
        batch_size=scoring.scorer_batch_size,
        max_batch_tokens=scoring.scorer_max_batch_tokens,
        max_length=scoring.scorer_max_length,
        progress=False,
        dtype=scoring.scorer_dtype,
        # The device is resolved per process when the weights load (the process's GPU), so the callable and its
        # resume key are the same in every process.
        device=runtime.device,
        trust_remote_code=runtime.trust_remote_code,
    )
    models = {
        "complexity": describe_model(scoring.complexity_model, scoring.complexity_revision, complexity_commit),
        "quality": describe_model(scoring.quality_model, scoring.quality_revision, quality_commit),
    }
    for name, scorer_of in (("complexity", scorer.complexity), ("quality", scorer.quality)):
        scorer_of.tokenization = resolve_tokenization(
            scorer_of.model_name_or_path, scorer_of.revision, scoring.scorer_tokenization
        )
        models[name]["tokenization"] = scorer_of.tokenization
    key = resume_key(scorer, models, runtime.device, scoring.scorer_dtype, info)
    return Step("score", scorer, key, (COMPLEXITY_COLUMN, QUALITY_COLUMN, SCORE_COLUMN), models)


def embedding_step(config: RunConfig, info: ProcessInfo) -> Step:
    """The ``embedding`` column with :class:`deita_hf.Embedder`, built once from the recipe; a row that cannot be
    read is handled as ``embedding_on_error`` says, else as the scorers' ``on_error`` in ``run`` (an error in
    ``embed``)."""
    from ..embedding import Embedder
    from ..tokenization import resolve_tokenization

    embedding, data, runtime = config.embedding, config.data, config.runtime
    commit = resolve_commit(embedding.embedding_model, embedding.embedding_revision)
    revision = commit or embedding.embedding_revision
    model = resolve_model(embedding.embedding_model)
    tokenization = resolve_tokenization(model, revision, embedding.embedding_tokenization)
    embedder = Embedder(
        model,
        kind=embedding.embedding_kind,
        format=data.dataset_format,
        batch_size=embedding.embedding_batch_size,
        max_length=embedding.embedding_max_length,
        only_answer=embedding.only_answer,
        tokenization=tokenization,
        on_error=embedding_on_error(config),
        progress=False,
        revision=revision,
        dtype=embedding.embedding_dtype,
        device=runtime.device,
        trust_remote_code=runtime.trust_remote_code,
    )
    models = {"embedding": describe_model(embedding.embedding_model, embedding.embedding_revision, commit)}
    models["embedding"]["tokenization"] = tokenization
    key = resume_key(embedder, models, runtime.device, embedding.embedding_dtype, info)
    return Step("embed", embedder, key, (EMBEDDING_COLUMN,), models)


def embedding_on_error(config: RunConfig) -> str:
    """The embedder's ``on_error``: ``embedding_on_error`` if set, else the scorers' in ``run``, else ``raise``."""
    if config.embedding.embedding_on_error is not None:
        return config.embedding.embedding_on_error
    return config.scoring.on_error if config.scoring is not None else "raise"


# -- selection -------------------------------------------------------------------------------------------------


def select_pool(
    pool: Any, selection: SelectionArguments, runtime: RuntimeArguments, row_format: str | None = None
) -> tuple[Any, Any, dict[str, int]]:
    """Run the selection (``selection.strategy``) on the pool's rows with a score (the others are left out).

    Returns the selected rows (selection order, with ``nearest_selected_similarity``), the report's per-row
    table of the pool (scores, ``selection_rank``, ``nearest_selected_similarity``) and the counts.
    """
    from datasets import Dataset

    from ..subset import select_subset

    for column in (
        (SCORE_COLUMN, EMBEDDING_COLUMN) if selection.strategy == "deita" or selection.compare else (SCORE_COLUMN,)
    ):
        if column not in pool.column_names:
            hint = "deita-hf score" if column == SCORE_COLUMN else "deita-hf embed"
            raise PipelineError(
                f"the input has no {column!r} column; make it with `{hint}` first (or use `deita-hf run`)"
            )
    # Rows without a score (on_error='nan') are left out for every strategy and counted: the library's rule
    # with unscored="leave_out"; the output is the one that deita_select builds.
    selected, result = select_subset(
        pool,
        selection.budget,
        selection.strategy,
        threshold=selection.threshold,
        seed=selection.seed,
        score_column=SCORE_COLUMN,
        embedding_column=EMBEDDING_COLUMN,
        row_format=row_format,
        device=runtime.device,
        unscored="leave_out",
    )
    if result.left_out:
        logger.warning(
            "%d row(s) without a score (unreadable, on_error='nan') are left out of the selection", result.left_out
        )
    rows = list(result.indices)
    similarities = [float(s) for s in result.similarities]
    scores = pool[SCORE_COLUMN]

    rank = [-1] * len(pool)
    nearest = [math.nan] * len(pool)
    for position, (row, similarity) in enumerate(zip(rows, similarities)):
        rank[row] = position
        nearest[row] = similarity
    table = {"row": list(range(len(pool))), SCORE_COLUMN: scores, "selection_rank": rank, SIMILARITY_COLUMN: nearest}
    for column in (COMPLEXITY_COLUMN, QUALITY_COLUMN):
        if column in pool.column_names:
            table[column] = pool[column]
    counts = {
        "selected": len(rows),
        "examined": int(result.examined),
        "rejected_too_similar": int(result.rejected),
        "left_out_without_score": result.left_out,
    }
    if selection.compare:
        counts["strategies"] = _compare_strategies(pool, selection, row_format)
    return selected, Dataset.from_dict(table), counts


def _compare_strategies(
    pool: Any, selection: SelectionArguments, row_format: str | None
) -> dict[str, dict[str, list[Any]]]:
    """Every strategy's subset of the same pool (``--compare``, rows without a score left out): pool rows and
    nearest-selected similarities, in selection order."""
    from ..strategies import STRATEGIES, strategy_indices

    subsets = {}
    for strategy in STRATEGIES:
        result = strategy_indices(
            pool,
            selection.budget,
            strategy,
            threshold=selection.threshold,
            seed=selection.seed,
            row_format=row_format,
            progress=False,
            unscored="leave_out",
        )
        subsets[strategy] = {"rows": list(result.indices), "similarities": [float(s) for s in result.similarities]}
    return subsets
