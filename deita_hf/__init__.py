"""deita-hf: Deita data selection for instruction tuning, in the Hugging Face ecosystem."""

from .constants import VERSION as __version__
from .embedding import Embedder, vicuna_text
from .pool import ParquetPool
from .released import (
    RELEASED,
    download_released,
    load_released_data,
    load_released_model,
    load_released_scorer_data,
    released,
)
from .scoring import ComplexityScorer, DeitaScorer, QualityScorer, deita_score
from .selection import SelectionResult, select_indices
from .subset import deita_select

__all__ = [
    "RELEASED",
    "ComplexityScorer",
    "DeitaScorer",
    "Embedder",
    "ParquetPool",
    "QualityScorer",
    "SelectionResult",
    "deita_score",
    "deita_select",
    "download_released",
    "load_released_data",
    "load_released_model",
    "load_released_scorer_data",
    "released",
    "select_indices",
    "vicuna_text",
    "__version__",
]
