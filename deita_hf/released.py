"""The artifacts that the Deita authors released on the Hugging Face Hub (SPEC section 9), and loaders.

>>> RELEASED["hkust-nlp/deita-6k-v0"].kind
'selection'
>>> [artifact.repo_id for artifact in released("scorer")]
['hkust-nlp/deita-complexity-scorer', 'hkust-nlp/deita-quality-scorer']

``load_released_model`` returns a Deita chat model with its tokenizer set to the Vicuna v1.1 chat template the
models were trained with; ``load_released_data`` returns a released selection or pool (ShareGPT) with a
``messages`` column for TRL; ``load_released_scorer_data`` returns a scorer's training data;
``download_released`` fetches any of them with huggingface_hub (``deita-hf released download ID``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .constants import (
    COMPLEXITY_SCORER_ID,
    DEITA_6K_DATASET_ID,
    DEITA_10K_DATASET_ID,
    DEITA_SOTA_POOL_ID,
    PAPER_RESULTS,
    QUALITY_SCORER_ID,
)
from .errors import ConfigError, DataError
from .modeling import model_source

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ARTIFACT_KINDS = ("scorer", "chat_model", "selection", "pool", "scorer_data")


@dataclass(frozen=True)
class ReleasedArtifact:
    """One released repository: its id (exactly as published), whether it is a model or a dataset repository,
    what it is, its size, its license, and for the chat models the paper's MT-Bench and AlpacaEval results."""

    repo_id: str
    repo_type: str
    kind: str
    description: str
    size: str
    license: str

    @property
    def url(self) -> str:
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return f"https://huggingface.co/{prefix}{self.repo_id}"

    @property
    def paper_results(self) -> str:
        """``"MT-Bench 7.55, AlpacaEval 90.06%"`` for a released chat model, else ``""``."""
        results = PAPER_RESULTS.get(self.repo_id)
        return f"MT-Bench {results['MT-Bench']:.2f}, AlpacaEval {results['AlpacaEval']:.2f}%" if results else ""


def _model(repo_id: str, kind: str, description: str, size: str, license: str) -> ReleasedArtifact:
    return ReleasedArtifact(repo_id, "model", kind, description, size, license)


def _dataset(repo_id: str, kind: str, description: str, size: str, license: str = "MIT") -> ReleasedArtifact:
    return ReleasedArtifact(repo_id, "dataset", kind, description, size, license)


# SPEC section 9. Sizes: parameters of the base model, rows of a data set (paper). Licenses: the resource table of
# the hkust-nlp/deita README (commit b279f2c). Chat models' descriptions and results come from PAPER_RESULTS.
_CHAT_MODELS = {
    "hkust-nlp/deita-7b-v1.0-sft": ("7B", "Apache-2.0"),
    "hkust-nlp/deita-7B-v1.0": ("7B", "Apache-2.0"),
    "hkust-nlp/deita-llama2-13b-v1.0-sft": ("13B", "LLaMA 2 license"),
    "hkust-nlp/deita-llama1-13b-v1.0-sft": ("13B", "LLaMA license"),
}
RELEASED: dict[str, ReleasedArtifact] = {
    artifact.repo_id: artifact
    for artifact in (
        _model(
            COMPLEXITY_SCORER_ID,
            "scorer",
            "LLaMA-1 7B complexity scorer: rates an instruction 1..6",
            "7B",
            "LLaMA license",
        ),
        _model(
            QUALITY_SCORER_ID,
            "scorer",
            "LLaMA-1 7B quality scorer: rates a response to an instruction 1..6",
            "7B",
            "LLaMA license",
        ),
        *(
            _model(repo_id, "chat_model", PAPER_RESULTS[repo_id]["recipe"], *_CHAT_MODELS[repo_id])
            for repo_id in PAPER_RESULTS
        ),
        _dataset(DEITA_6K_DATASET_ID, "selection", "Deita 6K: conversations selected from the 300K pool", "6K rows"),
        _dataset(
            DEITA_10K_DATASET_ID, "selection", "Deita 10K: conversations selected from the 300K pool", "10K rows"
        ),
        _dataset(DEITA_SOTA_POOL_ID, "pool", "the pool that Deita 6K and 10K were selected from", "300K rows"),
        _dataset(
            "hkust-nlp/deita-redundant-pool-data", "pool", "the redundant pool of the paper's analysis", "100K rows"
        ),
        _dataset(
            "hkust-nlp/deita-complexity-scorer-data", "scorer_data", "training data of the complexity scorer", "-"
        ),
        _dataset("hkust-nlp/deita-quality-scorer-data", "scorer_data", "training data of the quality scorer", "-"),
    )
}


def format_released(artifacts: list[ReleasedArtifact] | None = None) -> str:
    """The table that ``deita-hf released`` prints: id, kind, size, license, what it is (and paper results)."""
    artifacts = released() if artifacts is None else artifacts
    header = ("id", "kind", "size", "license", "what")
    rows = [
        (a.repo_id, a.kind, a.size, a.license, a.description + (f" ({a.paper_results})" if a.paper_results else ""))
        for a in artifacts
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4] for row in [header, *rows]
    )


def released(kind: str | None = None) -> list[ReleasedArtifact]:
    """The released artifacts, all or of one kind (``scorer``, ``chat_model``, ``selection``, ``pool``,
    ``scorer_data``), in registry order."""
    if kind is not None and kind not in ARTIFACT_KINDS:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {ARTIFACT_KINDS}")
    return [artifact for artifact in RELEASED.values() if kind is None or artifact.kind == kind]


def _artifact(repo_id: str, kinds: tuple[str, ...]) -> ReleasedArtifact:
    by_lower = {key.lower(): artifact for key, artifact in RELEASED.items()}
    artifact = by_lower.get(repo_id.lower())
    if artifact is None or artifact.kind not in kinds:
        names = ", ".join(a.repo_id for a in RELEASED.values() if a.kind in kinds)
        what = "model or data set" if set(kinds) == set(ARTIFACT_KINDS) else " or ".join(kinds)
        raise ConfigError(f"{repo_id!r} is not a released Deita {what}; the released ones are: {names}")
    return artifact


def download_released(
    repo_id: str, *, local_dir: str | None = None, revision: str | None = None, allow_patterns: Any = None
) -> str:
    """Download a released model or data set with huggingface_hub's ``snapshot_download`` (resumable; files
    already in the Hugging Face cache are not fetched again) and return its local folder. ``repo_id`` may be
    given in any case. With ``local_dir`` the files are placed there, else they stay in the cache.

    Example::

        folder = download_released("hkust-nlp/deita-6k-v0", local_dir="data/deita-6k")
    """
    import huggingface_hub

    artifact = _artifact(repo_id, ARTIFACT_KINDS)
    with model_source(artifact.repo_id, revision, repo_type=artifact.repo_type):
        return huggingface_hub.snapshot_download(
            repo_id=artifact.repo_id,
            repo_type=artifact.repo_type,
            revision=revision,
            local_dir=local_dir,
            allow_patterns=allow_patterns,
        )


def load_released_model(
    repo_id: str = "hkust-nlp/deita-7B-v1.0",
    *,
    revision: str = "main",
    dtype: Any = "auto",
    device_map: Any = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
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

    from .chat_template import load_tokenizer

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
) -> Dataset:
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
        raise DataError(
            f"{artifact.repo_id} has no 'conversations' column (its columns: {dataset.column_names}); "
            "was the repository changed?"
        )
    return dataset.map(
        to_messages_column,
        fn_kwargs={"format": "sharegpt"},
        remove_columns=["conversations"],
        desc="ShareGPT to messages",
    )


def load_released_scorer_data(
    task: str = "complexity", *, split: str = "train", revision: str | None = None
) -> Dataset:
    """The data set that the released complexity or quality scorer was trained on
    (``hkust-nlp/deita-complexity-scorer-data``, ``hkust-nlp/deita-quality-scorer-data``), as published.

    Example::

        complexity_data = load_released_scorer_data("complexity")
    """
    import datasets

    if task not in ("complexity", "quality"):
        raise ConfigError(f"task must be 'complexity' or 'quality', got {task!r}")
    artifact = _artifact(f"hkust-nlp/deita-{task}-scorer-data", ("scorer_data",))
    with model_source(artifact.repo_id, revision, repo_type="dataset") as source:
        return datasets.load_dataset(source, split=split, revision=revision)
