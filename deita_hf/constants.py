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

# Training recipes (SPEC sections 8 and 9; paper appendix A).
DEITA_6K_DATASET_ID = "hkust-nlp/deita-6k-v0"
DEITA_10K_DATASET_ID = "hkust-nlp/deita-10k-v0"
DEITA_SOTA_POOL_ID = "AndrewZeng/deita_sota_pool"
# How the released selections were made (paper section 4), quoted in the model cards of models trained on them.
RELEASED_SELECTIONS = {
    DEITA_6K_DATASET_ID: (
        "6K conversations selected from the 300K pool `AndrewZeng/deita_sota_pool` by Deita: score-first, "
        "diversity-aware selection (Repr Filter, cosine similarity threshold 0.9) with "
        "deita_score = sum over turns of complexity x quality (`hkust-nlp/deita-complexity-scorer`, "
        "`hkust-nlp/deita-quality-scorer`)."
    ),
    DEITA_10K_DATASET_ID: (
        "10K conversations selected from the 300K pool `AndrewZeng/deita_sota_pool` by Deita: score-first, "
        "diversity-aware selection (Repr Filter, cosine similarity threshold 0.9) with "
        "deita_score = sum over turns of complexity x quality (`hkust-nlp/deita-complexity-scorer`, "
        "`hkust-nlp/deita-quality-scorer`)."
    ),
}
# DPO data of Deita-7B-v1.0: 10K pairs sampled with seed 42 from UltraFeedback (binarized), split train_prefs.
DPO_DATASET_ID = "HuggingFaceH4/ultrafeedback_binarized"
DPO_DATASET_SPLIT = "train_prefs"
DPO_NUM_PAIRS = 10_000
DPO_SAMPLE_SEED = 42
# Results reported in the paper for each released model: MT-Bench score and AlpacaEval win rate (%).
PAPER_RESULTS = {
    "hkust-nlp/deita-7b-v1.0-sft": {
        "recipe": "Mistral-7B-v0.1, SFT on Deita 6K",
        "MT-Bench": 7.22,
        "AlpacaEval": 80.78,
    },
    "hkust-nlp/deita-7B-v1.0": {
        "recipe": "Mistral-7B-v0.1, SFT on Deita 6K, then DPO on 10K UltraFeedback pairs",
        "MT-Bench": 7.55,
        "AlpacaEval": 90.06,
    },
    "hkust-nlp/deita-llama2-13b-v1.0-sft": {
        "recipe": "LLaMA-2-13B, SFT on Deita 10K",
        "MT-Bench": 6.79,
        "AlpacaEval": 81.09,
    },
    "hkust-nlp/deita-llama1-13b-v1.0-sft": {
        "recipe": "LLaMA-1-13B, SFT on Deita 10K",
        "MT-Bench": 6.60,
        "AlpacaEval": 78.01,
    },
}
