"""Dataset folders in the Hub's layout, the dataset card of a selection, and the push to the Hugging Face Hub.

The ``pool/`` and ``selected/`` folders of a run are written as Hub dataset repositories
(:func:`write_dataset_folder`): ``data/train-*.parquet`` and a ``README.md`` card whose ``configs`` metadata
names those files, so that ``datasets.load_dataset(folder)`` and ``trl sft --dataset_name folder`` read them
unchanged, in selection order, here and after a push.

The card is ``deita_hf/templates/dataset_card.md`` rendered with huggingface_hub's ``DatasetCard.from_template``:
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
from typing import TYPE_CHECKING, Any

import yaml

from .constants import CITATION, RECIPE_FILE, SUMMARY_FILE, VERSION, card_template
from .errors import AccessError, ConfigError, MissingFileError
from .report import COUNT_LABELS, PLOTS, REPORT_FILE, budget_shortfall, format_count, model_revision

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

DATASET_CARD_TEMPLATE = card_template("dataset_card.md")
# Parquet files of at most about this many bytes (the Hub's dataset viewer handles them well).
MAX_SHARD_BYTES = 500 * 1024 * 1024
# The `configs` metadata of a pushed selection's card: one "train" split, data/train-*.parquet in name order.
# Local folders leave it out (datasets finds data/train-* by itself): datasets 5 caches a local folder that has
# `configs` under a key made of the folder's name and the patterns only, so two `selected/` folders would share
# one cache entry and the second would load the first one's rows.
DATA_CONFIGS = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is an ``owner/name`` Hub repository id (checked by ``huggingface_hub``) and not a local path.

    >>> is_hub_id("hkust-nlp/deita-6k-v0"), is_hub_id("./data/pool.jsonl"), is_hub_id("bad//id")
    (True, False, False)
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.count("/") != 1 or name.startswith((".", "~", "/")) or Path(name).expanduser().exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def _model_link(model: dict[str, Any]) -> str:
    name = model["model"]
    return f"[{name}](https://huggingface.co/{name})" if is_hub_id(name) else f"`{name}`"


def _read_run(output_dir: Path) -> tuple[dict[str, Any], str]:
    summary_path = output_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise MissingFileError(f"{summary_path} does not exist: is {output_dir} the output folder of a finished run?")
    summary = json.loads(summary_path.read_text())
    if "selected" not in summary.get("counts", {}):
        raise ConfigError(f"{output_dir} holds a `deita-hf {summary.get('command')}` run: only a selection is pushed")
    recipe_text = (output_dir / RECIPE_FILE).read_text() if (output_dir / RECIPE_FILE).is_file() else ""
    return summary, recipe_text


def render_card(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    license: str | None = None,
    template_path: str | os.PathLike = DATASET_CARD_TEMPLATE,
) -> Any:
    """The ``DatasetCard`` of the selection in ``output_dir`` (a finished ``select`` or ``run``), for the Hub
    repository ``repo_id``.

    Example::

        card = render_card("outputs/smoke", "me/deita-smoke", license="apache-2.0")
        card.save("README.md")
    """
    summary, recipe_text = _read_run(Path(output_dir))
    return selection_card(summary, recipe_text, repo_id, license=license, template_path=template_path)


def selection_card(
    summary: dict[str, Any],
    recipe_text: str,
    repo_id: str,
    *,
    license: str | None = None,
    report_dir: str = "report",
    on_hub: bool = True,
    template_path: str | os.PathLike = DATASET_CARD_TEMPLATE,
) -> Any:
    """The ``DatasetCard`` of a selection from its run summary and recipe text. ``repo_id`` is what the card's
    ``load_dataset`` example loads (a Hub id, or the local selection folder); ``report_dir`` is where the
    report's plots are, relative to the card; ``on_hub`` adds the ``configs`` metadata of a Hub repository."""
    from huggingface_hub import DatasetCard, DatasetCardData

    recipe = yaml.safe_load(recipe_text) or {}
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
        source_datasets=[source["dataset"]] if is_hub_id(source["dataset"]) else None,
        tags=["deita", "data-selection", "instruction-tuning", "sft"] + (["smoke-test"] if smoke else []),
        configs=DATA_CONFIGS if on_hub else None,
    )
    source_link = (
        f"[{source['dataset']}](https://huggingface.co/datasets/{source['dataset']})"
        if is_hub_id(source["dataset"])
        else f"`{source['dataset']}`"
    )
    count_rows = [(label, format_count(counts[key])) for key, label in COUNT_LABELS if key in counts]
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
        report_dir=report_dir,
        shortfall=budget_shortfall(summary),
        has_embedding=bool(recipe.get("export_embeddings")),
        command_line=summary.get("command_line") or f"deita-hf {summary['command']} --config recipe.yaml",
        recipe=recipe_text.strip(),
        version=summary.get("deita_hf_version", VERSION),
        citation=CITATION,
    )


def pool_card(summary: dict[str, Any], folder: str) -> Any:
    """The short ``DatasetCard`` of a scored or embedded pool folder: what it holds and how to load it."""
    from huggingface_hub import DatasetCard, DatasetCardData

    source = summary["source"]["dataset"]
    smoke = bool(summary.get("smoke_run"))
    card_data = DatasetCardData(
        pretty_name=("Smoke run: " if smoke else "") + f"{source}, scored by deita-hf",
        task_categories=["text-generation"],
        tags=["deita", "data-selection"] + (["smoke-test"] if smoke else []),
    )
    models = ", ".join(f"{role} `{model['model']}`" for role, model in summary.get("models", {}).items())
    text = (
        f"---\n{card_data.to_yaml()}\n---\n\n# {card_data.pretty_name}\n\n"
        + ("> **Smoke run**: tiny random-weight models; the scores mean nothing.\n\n" if smoke else "")
        + f"The {summary['counts']['pool']:,} rows of `{source}` with the columns that `deita-hf "
        f"{summary['command']}` added (models: {models or 'none'}).\n\n"
        f'```python\nfrom datasets import load_dataset\n\npool = load_dataset({folder!r}, split="train")\n```\n'
    )
    return DatasetCard(text)


def write_dataset_folder(dataset: Dataset, folder: str | os.PathLike, card: Any) -> Path:
    """Write ``dataset`` in the layout of a Hub dataset repository: ``data/train-0000k-of-0000n.parquet`` (row
    order kept across the files, which sort by name) and ``card`` as ``README.md``. ``datasets.load_dataset(folder)``
    and TRL's ``--dataset_name folder`` read it as it is (one ``train`` split), and so does the Hub after a push."""
    folder = Path(folder)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    num_shards = max(1, math.ceil(dataset.data.nbytes / MAX_SHARD_BYTES))
    for k in range(num_shards):
        shard = dataset.shard(num_shards, k, contiguous=True)
        shard.to_parquet(str(data / f"train-{k:05d}-of-{num_shards:05d}.parquet"))
    card.save(folder / "README.md")
    return folder


def stage_selection(
    output_dir: str | os.PathLike, folder: str | os.PathLike, repo_id: str, license: str | None = None
) -> Path:
    """Write what a push uploads into ``folder``: ``data/train-*.parquet`` (the files of ``selected/data``),
    ``README.md`` (the card, for ``repo_id``) and ``report/``."""
    output_dir, folder = Path(output_dir), Path(folder)
    _read_run(output_dir)
    source = output_dir / "selected" / "data"
    if not source.is_dir():
        raise MissingFileError(
            f"{source} does not exist: {output_dir} was written by an older deita-hf; run the selection again"
        )
    # Only the files a run writes, and never a link: whatever else sits in these folders stays local.
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.parquet")):
        if path.is_file() and not path.is_symlink():
            shutil.copyfile(path, folder / "data" / path.name)
    report = output_dir / "report"
    for name in (REPORT_FILE, *PLOTS, "strategies.png"):  # strategies.png: with --compare
        path = report / name
        if path.is_file() and not path.is_symlink():
            (folder / "report").mkdir(exist_ok=True)
            shutil.copyfile(path, folder / "report" / name)
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
            raise AccessError(
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
