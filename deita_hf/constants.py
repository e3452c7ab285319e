"""Exact constants of the Deita method, in one place.

Every string here is matched to the character by the released checkpoints and data: do not reformat.
"""

# Scorer prompts: hkust-nlp/deita, deita/selection/scorer/llama_scorer.py (commit b279f2c).
COMPLEXITY_PROMPT = (
    "You are a helpful assistant. Please identify the complexity score of the following user query. "
    "\n##Query: {instruction}  \n##Complexity: "
)
QUALITY_PROMPT = (
    "You are a helpful assistant. Please identify the quality score of the Response corresponding to "
    "the Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: "
)

# The scorers were trained to answer with one of these digits (paper section 2: scores 1..6).
SCORE_DIGITS = ("1", "2", "3", "4", "5", "6")

# Vicuna v1.1 conversation template (FastChat `vicuna_v1.1`), used by the reference embedder and by the
# Deita models' chat format.
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
VICUNA_USER = "USER"
VICUNA_ASSISTANT = "ASSISTANT"
VICUNA_EOS = "</s>"

# Column names written by deita-hf (SPEC section 5).
COMPLEXITY_COLUMN = "complexity_scores"
QUALITY_COLUMN = "quality_scores"
SCORE_COLUMN = "deita_score"
EMBEDDING_COLUMN = "embedding"

# Released artifacts on the Hugging Face Hub (paper; hkust-nlp/deita README).
COMPLEXITY_SCORER_ID = "hkust-nlp/deita-complexity-scorer"
QUALITY_SCORER_ID = "hkust-nlp/deita-quality-scorer"
# The reference embedder's default model (deita/selection/embedder/base.py).
DEFAULT_EMBEDDING_MODEL_ID = "mistralai/Mistral-7B-v0.1"
# The released scorers' context length.
SCORER_CONTEXT_LENGTH = 2048
# Repr Filter threshold on cosine similarity (reference: reject if similarity > 0.9).
DEFAULT_THRESHOLD = 0.9

CITATION = """@inproceedings{liu2024what,
  title={What Makes Good Data for Alignment? A Comprehensive Study of Automatic Data Selection in Instruction Tuning},
  author={Wei Liu and Weihao Zeng and Keqing He and Yong Jiang and Junxian He},
  booktitle={The Twelfth International Conference on Learning Representations},
  year={2024},
  url={https://openreview.net/forum?id=BTKAeLqLMw}
}"""
