"""deita-hf: Deita data selection for instruction tuning, in the Hugging Face ecosystem."""

from .scoring import ComplexityScorer, DeitaScorer, QualityScorer, deita_score

__version__ = "0.1.0"

__all__ = ["ComplexityScorer", "DeitaScorer", "QualityScorer", "deita_score", "__version__"]
