"""The artifacts that the Deita authors released on the Hugging Face Hub (SPEC section 9), and loaders.

>>> RELEASED["hkust-nlp/deita-6k-v0"].kind
'selection'
>>> [artifact.repo_id for artifact in released("scorer")]
['hkust-nlp/deita-complexity-scorer', 'hkust-nlp/deita-quality-scorer']

``load_released_model`` returns a Deita chat model with its tokenizer set to the Vicuna v1.1 chat template the
models were trained with; ``load_released_data`` returns a released selection or pool (ShareGPT) with a
``messages`` column for TRL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .constants import (
    COMPLEXITY_SCORER_ID,
    DEITA_6K_DATASET_ID,
    DEITA_10K_DATASET_ID,
    DEITA_SOTA_POOL_ID,
    PAPER_RESULTS,
    QUALITY_SCORER_ID,
)
from .modeling import model_source

KINDS = ("scorer", "chat_model", "selection", "pool", "scorer_data")


@dataclass(frozen=True)
class ReleasedArtifact:
    """One released repository: its id, whether it is a model or a dataset repository, and what it is."""

    repo_id: str
    repo_type: str
    kind: str
    description: str

    @property
    def url(self) -> str:
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return f"https://huggingface.co/{prefix}{self.repo_id}"


def _model(repo_id: str, kind: str, description: str) -> ReleasedArtifact:
    return ReleasedArtifact(repo_id, "model", kind, description)


def _dataset(repo_id: str, kind: str, description: str) -> ReleasedArtifact:
    return ReleasedArtifact(repo_id, "dataset", kind, description)


# SPEC section 9 (paper; hkust-nlp/deita README). Chat models' descriptions come from PAPER_RESULTS.
RELEASED: dict[str, ReleasedArtifact] = {
    artifact.repo_id: artifact
    for artifact in (
        _model(COMPLEXITY_SCORER_ID, "scorer", "LLaMA-1-13B complexity scorer: rates an instruction 1..6"),
        _model(QUALITY_SCORER_ID, "scorer", "LLaMA-1-13B quality scorer: rates a response to an instruction 1..6"),
        *(_model(repo_id, "chat_model", results["recipe"]) for repo_id, results in PAPER_RESULTS.items()),
        _dataset(DEITA_6K_DATASET_ID, "selection", "Deita 6K: 6,000 conversations selected from the 300K pool"),
        _dataset(DEITA_10K_DATASET_ID, "selection", "Deita 10K: 10,000 conversations selected from the 300K pool"),
        _dataset(DEITA_SOTA_POOL_ID, "pool", "the 300K pool that Deita 6K and 10K were selected from"),
        _dataset("hkust-nlp/deita-redundant-pool-data", "pool", "the 100K redundant pool of the paper's analysis"),
        _dataset("hkust-nlp/deita-complexity-scorer-data", "scorer_data", "training data of the complexity scorer"),
        _dataset("hkust-nlp/deita-quality-scorer-data", "scorer_data", "training data of the quality scorer"),
    )
}


def released(kind: str | None = None) -> list[ReleasedArtifact]:
    """The released artifacts, all or of one kind (``scorer``, ``chat_model``, ``selection``, ``pool``,
    ``scorer_data``), in registry order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    return [artifact for artifact in RELEASED.values() if kind is None or artifact.kind == kind]


def _artifact(repo_id: str, kinds: tuple[str, ...]) -> ReleasedArtifact:
    by_lower = {key.lower(): artifact for key, artifact in RELEASED.items()}
    artifact = by_lower.get(repo_id.lower())
    if artifact is None or artifact.kind not in kinds:
        names = ", ".join(a.repo_id for a in RELEASED.values() if a.kind in kinds)
        raise ValueError(f"{repo_id!r} is not a released Deita {' or '.join(kinds)}; the released ones are: {names}")
    return artifact


def load_released_model(
    repo_id: str = "hkust-nlp/deita-7B-v1.0",
    *,
    revision: str = "main",
    dtype: Any = "auto",
    device_map: Any = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """A released Deita chat model and its tokenizer, which carries the Vicuna v1.1 chat template.

    Example::

        model, tokenizer = load_released_model("hkust-nlp/deita-7B-v1.0", dtype="bfloat16", device_map="auto")
        messages = [{"role": "user", "content": "Give me three tips for writing clear code."}]
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True).to(model.device)
        print(tokenizer.decode(model.generate(**inputs, max_new_tokens=256)[0]))

    The scorers are not chat models: load them with :class:`deita_hf.ComplexityScorer` and
    :class:`deita_hf.QualityScorer`.
    """
    from transformers import AutoModelForCausalLM

    from .training import load_tokenizer

    artifact = _artifact(repo_id, ("chat_model",))
    with model_source(artifact.repo_id, revision) as source:
        model = AutoModelForCausalLM.from_pretrained(
            source, revision=revision, dtype=dtype, device_map=device_map, trust_remote_code=trust_remote_code
        )
        tokenizer = load_tokenizer(source, revision=revision, trust_remote_code=trust_remote_code)
    return model, tokenizer


def load_released_data(
    repo_id: str = DEITA_6K_DATASET_ID,
    *,
    split: str = "train",
    revision: str | None = None,
) -> Any:
    """A released Deita selection or pool with a ``messages`` column (TRL's conversational format) in place of
    its ShareGPT ``conversations``; the other columns are kept.

    Example::

        deita_6k = load_released_data("hkust-nlp/deita-6k-v0")
        deita_6k[0]["messages"][0]   # {'role': 'user', 'content': '...'}
    """
    import datasets

    from .formats import to_messages_column

    artifact = _artifact(repo_id, ("selection", "pool"))
    with model_source(artifact.repo_id, revision, repo_type="dataset") as source:
        dataset = datasets.load_dataset(source, split=split, revision=revision)
    if "conversations" not in dataset.column_names:
        raise ValueError(
            f"{artifact.repo_id} has no 'conversations' column (its columns: {dataset.column_names}); "
            "was the repository changed?"
        )
    return dataset.map(
        to_messages_column,
        fn_kwargs={"format": "sharegpt"},
        remove_columns=["conversations"],
        desc="ShareGPT to messages",
    )
