"""The steps of a run: the scoring and embedding callables of a recipe, and the selection of the pool."""

from __future__ import annotations

import logging
import math
from typing import Any

from ..config import DataArguments, EmbeddingArguments, RuntimeArguments, ScoringArguments, SelectionArguments
from ..constants import COMPLEXITY_COLUMN, EMBEDDING_COLUMN, QUALITY_COLUMN, SCORE_COLUMN
from ..distributed import ProcessInfo
from ..errors import PipelineError
from ..modeling import describe_model, resolve_commit, resolve_model
from ..selection import SIMILARITY_COLUMN
from .shards import Step

logger = logging.getLogger(__name__)

# -- the steps -------------------------------------------------------------------------------------------------


def scoring_step(scoring: ScoringArguments, data: DataArguments, runtime: RuntimeArguments, info: ProcessInfo) -> Step:
    """Complexity, quality and deita_score with :class:`deita_hf.DeitaScorer`."""
    from ..tokenization import resolve_tokenization

    complexity_commit = resolve_commit(scoring.complexity_model, scoring.complexity_revision)
    quality_commit = resolve_commit(scoring.quality_model, scoring.quality_revision)
    tokenization = {
        name: resolve_tokenization(resolve_model(model), commit or revision, scoring.scorer_tokenization)
        for name, model, revision, commit in (
            ("complexity", scoring.complexity_model, scoring.complexity_revision, complexity_commit),
            ("quality", scoring.quality_model, scoring.quality_revision, quality_commit),
        )
    }
    settings = {
        "complexity_model": scoring.complexity_model,
        "complexity_revision": complexity_commit or scoring.complexity_revision,
        "quality_model": scoring.quality_model,
        "quality_revision": quality_commit or scoring.quality_revision,
        "batch_size": scoring.scorer_batch_size,
        "max_batch_tokens": scoring.scorer_max_batch_tokens,
        "max_length": scoring.scorer_max_length,
        "dtype": scoring.scorer_dtype,
        "complexity_tokenization": tokenization["complexity"],
        "quality_tokenization": tokenization["quality"],
        "format": data.dataset_format,
        "on_error": scoring.on_error,
    }

    def make() -> Any:
        from ..scoring import DeitaScorer

        scorer = DeitaScorer(
            resolve_model(scoring.complexity_model),
            resolve_model(scoring.quality_model),
            complexity_revision=settings["complexity_revision"],
            quality_revision=settings["quality_revision"],
            format=data.dataset_format,
            on_error=scoring.on_error,
            batch_size=scoring.scorer_batch_size,
            max_batch_tokens=scoring.scorer_max_batch_tokens,
            max_length=scoring.scorer_max_length,
            progress=False,
            dtype=scoring.scorer_dtype,
            device=_device(runtime, info),
            trust_remote_code=runtime.trust_remote_code,
        )
        scorer.complexity.tokenization = tokenization["complexity"]
        scorer.quality.tokenization = tokenization["quality"]
        return scorer

    models = {
        "complexity": describe_model(scoring.complexity_model, scoring.complexity_revision, complexity_commit),
        "quality": describe_model(scoring.quality_model, scoring.quality_revision, quality_commit),
    }
    for name, model in models.items():
        model["tokenization"] = tokenization[name]
    return Step("score", make, settings, (COMPLEXITY_COLUMN, QUALITY_COLUMN, SCORE_COLUMN), models)


def embedding_step(
    embedding: EmbeddingArguments,
    data: DataArguments,
    runtime: RuntimeArguments,
    info: ProcessInfo,
    on_error: str = "raise",
) -> Step:
    """The ``embedding`` column with :class:`deita_hf.Embedder` (``on_error`` as the scorers' in ``run``)."""
    from ..tokenization import resolve_tokenization

    commit = resolve_commit(embedding.embedding_model, embedding.embedding_revision)
    tokenization = resolve_tokenization(
        resolve_model(embedding.embedding_model),
        commit or embedding.embedding_revision,
        embedding.embedding_tokenization,
    )
    settings = {
        "embedding_model": embedding.embedding_model,
        "embedding_revision": commit or embedding.embedding_revision,
        "kind": embedding.embedding_kind,
        "batch_size": embedding.embedding_batch_size,
        "max_length": embedding.embedding_max_length,
        "dtype": embedding.embedding_dtype,
        "only_answer": embedding.only_answer,
        "tokenization": tokenization,
        "format": data.dataset_format,
        "on_error": on_error,
    }

    def make() -> Any:
        from ..embedding import Embedder

        return Embedder(
            resolve_model(embedding.embedding_model),
            kind=embedding.embedding_kind,
            format=data.dataset_format,
            batch_size=embedding.embedding_batch_size,
            max_length=embedding.embedding_max_length,
            only_answer=embedding.only_answer,
            tokenization=tokenization,
            on_error=on_error,
            progress=False,
            revision=settings["embedding_revision"],
            dtype=embedding.embedding_dtype,
            device=_device(runtime, info),
            trust_remote_code=runtime.trust_remote_code,
        )

    models = {"embedding": describe_model(embedding.embedding_model, embedding.embedding_revision, commit)}
    models["embedding"]["tokenization"] = tokenization
    return Step("embed", make, settings, (EMBEDDING_COLUMN,), models)


def _device(runtime: RuntimeArguments, info: ProcessInfo) -> str:
    from ..modeling import resolve_device

    return str(resolve_device(runtime.device, info.local_rank))


# -- selection -------------------------------------------------------------------------------------------------


def select_pool(
    pool: Any, selection: SelectionArguments, runtime: RuntimeArguments, row_format: str | None = None
) -> tuple[Any, Any, dict[str, int]]:
    """Run the selection (``selection.strategy``) on the pool's rows with a finite score.

    Returns the selected rows (selection order, with ``nearest_selected_similarity``), the report's per-row
    table of the pool (scores, ``selection_rank``, ``nearest_selected_similarity``) and the counts.
    """
    from datasets import Dataset, Value

    from ..strategies import strategy_indices

    for column in (
        (SCORE_COLUMN, EMBEDDING_COLUMN) if selection.strategy == "deita" or selection.compare else (SCORE_COLUMN,)
    ):
        if column not in pool.column_names:
            hint = "deita-hf score" if column == SCORE_COLUMN else "deita-hf embed"
            raise PipelineError(
                f"the input has no {column!r} column; make it with `{hint}` first (or use `deita-hf run`)"
            )
    scores = pool[SCORE_COLUMN]
    finite = [i for i, score in enumerate(scores) if score is not None and math.isfinite(score)]
    excluded = len(scores) - len(finite)
    if excluded:
        logger.warning(
            "%d row(s) without a score (unreadable, on_error='nan') are left out of the selection", excluded
        )
    candidates = pool if not excluded else pool.select(finite)
    result = strategy_indices(
        candidates,
        selection.budget,
        selection.strategy,
        threshold=selection.threshold,
        seed=selection.seed,
        score_column=SCORE_COLUMN,
        embedding_column=EMBEDDING_COLUMN,
        row_format=row_format,
        device=runtime.device,
    )
    rows = [finite[i] for i in result.indices] if excluded else list(result.indices)
    similarities = [float(s) for s in result.similarities]
    selected = pool.select(rows).add_column(SIMILARITY_COLUMN, similarities, feature=Value("float64"))

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
        "left_out_without_score": excluded,
    }
    if selection.compare:
        counts["strategies"] = _compare_strategies(candidates, finite if excluded else None, selection, row_format)
    return selected, Dataset.from_dict(table), counts


def _compare_strategies(
    candidates: Any, rows: list[int] | None, selection: SelectionArguments, row_format: str | None
) -> dict[str, dict[str, list[Any]]]:
    """Every strategy's subset of the same candidates (``--compare``): pool rows and nearest-selected
    similarities, in selection order."""
    from ..strategies import STRATEGIES, strategy_indices

    subsets = {}
    for strategy in STRATEGIES:
        result = strategy_indices(
            candidates,
            selection.budget,
            strategy,
            threshold=selection.threshold,
            seed=selection.seed,
            row_format=row_format,
            progress=False,
        )
        picked = [rows[i] for i in result.indices] if rows is not None else list(result.indices)
        subsets[strategy] = {"rows": picked, "similarities": [float(s) for s in result.similarities]}
    return subsets
