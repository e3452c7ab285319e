"""The dataset card of a selection, and the push to the Hugging Face Hub.

The card is ``model_cards/dataset_card.md`` rendered with huggingface_hub's ``DatasetCard.from_template``:
source pool, scorer and embedder ids and revisions, budget, threshold, counts, the report's plots, the
command and recipe that reproduce the selection, and the Deita citation.

The push sends one commit with ``data/train-*.parquet``, ``README.md`` (the card) and ``report/``. The token
is the one huggingface_hub finds (``HF_TOKEN``, or ``hf auth login``); deita-hf never reads, prints or logs it.

Example (after ``deita-hf run --config recipes/smoke/select.yaml``)::

    card = render_card("outputs/smoke", "me/deita-smoke")
    card.data.task_categories   # ['text-generation']
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .constants import CITATION, EMBEDDING_COLUMN, card_template
from .report import model_revision

logger = logging.getLogger(__name__)

DATASET_CARD_TEMPLATE = card_template("dataset_card.md")
# Parquet files of at most about this many bytes (the Hub's dataset viewer handles them well).
MAX_SHARD_BYTES = 500 * 1024 * 1024

_COUNT_LABELS = (
    ("pool", "pool rows"),
    ("turns", "turns in the pool"),
    ("selected", "selected"),
    ("examined", "examined by the selection"),
    ("rejected_too_similar", "rejected as too similar"),
    ("left_out_without_score", "left out without a score"),
    ("shortened_prompts", "shortened scorer prompts"),
    ("unreadable_rows", "unreadable rows"),
)


def _is_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and not Path(name).exists()


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def _model_link(model: dict[str, Any]) -> str:
    name = model["model"]
    return f"[{name}](https://huggingface.co/{name})" if _is_hub_id(name) else f"`{name}`"


def _format_count(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {_format_count(v)}" for key, v in value.items())
    return f"{value:,}" if isinstance(value, int) else str(value)


def _read_run(output_dir: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    summary_path = output_dir / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} does not exist: is {output_dir} the output folder of a finished run?")
    summary = json.loads(summary_path.read_text())
    if "selected" not in summary.get("counts", {}):
        raise ValueError(f"{output_dir} holds a `deita-hf {summary.get('command')}` run: only a selection is pushed")
    recipe_text = (output_dir / "recipe.yaml").read_text() if (output_dir / "recipe.yaml").is_file() else ""
    recipe = yaml.safe_load(recipe_text) or {}
    return summary, recipe, recipe_text


def render_card(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    license: str | None = None,
    template_path: str | os.PathLike = DATASET_CARD_TEMPLATE,
) -> Any:
    """The ``DatasetCard`` of the selection in ``output_dir`` (a finished ``select`` or ``run``).

    Example::

        card = render_card("outputs/smoke", "me/deita-smoke", license="apache-2.0")
        card.save("README.md")
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    output_dir = Path(output_dir)
    summary, recipe, recipe_text = _read_run(output_dir)
    counts = summary["counts"]
    source = summary["source"]
    selection = summary["selection"]
    smoke = bool(summary.get("smoke_run"))
    license = license or recipe.get("hub_license")
    pretty_name = f"Deita selection of {counts['selected']:,} rows from {source['dataset']}"
    if smoke:
        pretty_name = "Smoke run: " + pretty_name
    card_data = DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        task_categories=["text-generation"],
        size_categories=[_size_category(counts["selected"])],
        source_datasets=[source["dataset"]] if _is_hub_id(source["dataset"]) else None,
        tags=["deita", "data-selection", "instruction-tuning", "sft"] + (["smoke-test"] if smoke else []),
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
    )
    source_link = (
        f"[{source['dataset']}](https://huggingface.co/datasets/{source['dataset']})"
        if _is_hub_id(source["dataset"])
        else f"`{source['dataset']}`"
    )
    count_rows = [(label, _format_count(counts[key])) for key, label in _COUNT_LABELS if key in counts]
    return DatasetCard.from_template(
        card_data,
        template_path=str(template_path),
        pretty_name=pretty_name,
        repo_id=repo_id,
        smoke_run=smoke,
        source=source,
        source_link=source_link,
        models=summary.get("models", {}),
        model_link=_model_link,
        model_revision=model_revision,
        budget=selection["budget"],
        threshold=selection["threshold"],
        counts=counts,
        count_rows=count_rows,
        has_embedding=bool(recipe.get("export_embeddings")),
        command_line=summary.get("command_line") or f"deita-hf {summary['command']} --config recipe.yaml",
        recipe=recipe_text.strip(),
        version=summary.get("deita_hf_version", __version__),
        citation=CITATION,
    )


def stage_selection(
    output_dir: str | os.PathLike, folder: str | os.PathLike, repo_id: str, license: str | None = None
) -> Path:
    """Write what a push uploads into ``folder``: ``data/train-*.parquet``, ``README.md`` and ``report/``."""
    from datasets import load_from_disk

    output_dir, folder = Path(output_dir), Path(folder)
    summary, recipe, _ = _read_run(output_dir)
    selected = load_from_disk(str(output_dir / "selected"))
    if not recipe.get("export_embeddings") and EMBEDDING_COLUMN in selected.column_names:
        selected = selected.remove_columns(EMBEDDING_COLUMN)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    num_shards = max(1, math.ceil(selected.data.nbytes / MAX_SHARD_BYTES))
    for k in range(num_shards):
        shard = selected.shard(num_shards, k, contiguous=True)
        shard.to_parquet(str(data / f"train-{k:05d}-of-{num_shards:05d}.parquet"))
    report = output_dir / "report"
    if report.is_dir():
        shutil.copytree(report, folder / "report", ignore=shutil.ignore_patterns("*.parquet"))
    render_card(output_dir, repo_id, license=license).save(folder / "README.md")
    return folder


def push_selection(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    license: str | None = None,
    api: Any = None,
) -> str:
    """Push the selection of ``output_dir`` with its card and report to the dataset repository ``repo_id``.

    Returns the repository's URL. The token comes from huggingface_hub (``HF_TOKEN`` or ``hf auth login``).

    Example::

        push_selection("outputs/deita-6k", "me/deita-6k", license="apache-2.0")
    """
    from huggingface_hub import HfApi, get_token

    if api is None:
        if get_token() is None:
            raise PermissionError(
                "no Hugging Face token found: log in with `hf auth login` or set the HF_TOKEN environment variable"
            )
        api = HfApi()
    with tempfile.TemporaryDirectory(prefix="deita-hf-push-") as staging:
        stage_selection(output_dir, staging, repo_id, license)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=staging,
            commit_message="Deita selection made with deita-hf",
            delete_patterns=["data/*"],
        )
    url = f"https://huggingface.co/datasets/{repo_id}"
    logger.info("pushed the selection to %s", url)
    return url
