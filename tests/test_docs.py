"""The option tables of docs/*.md are made from the dataclasses (`make docs`), so the defaults and meanings are
written once, in the code."""

from __future__ import annotations

from pathlib import Path

from deita_hf.config import ALL_ARGUMENTS, EvalArguments, HubArguments, update_option_tables
from deita_hf.scorers.data import ScorerDataConfig

DOCS = sorted((Path(__file__).resolve().parents[1] / "docs").glob("*.md"))


def test_the_option_tables_of_the_docs_are_up_to_date():
    stale = [path.name for path in DOCS if update_option_tables(path.read_text()) != path.read_text()]
    assert stale == [], "run `make docs` to make the option tables again"


def test_every_option_group_has_its_table():
    text = "".join(path.read_text() for path in DOCS)
    for group in [*ALL_ARGUMENTS, EvalArguments, ScorerDataConfig]:
        assert f"<!-- options: {group.__module__}.{group.__name__} -->\n" in text, group.__name__


def test_a_stale_table_is_made_again_from_the_dataclass():
    marker = "<!-- options: deita_hf.config.HubArguments:hub_private -->\n"
    stale = f"text\n{marker}| `hub_private` | `true` | old |\n<!-- end options -->\nmore"
    meaning = HubArguments.__dataclass_fields__["hub_private"].metadata["help"]
    assert update_option_tables(stale) == (
        f"text\n{marker}| option | default | meaning |\n|---|---|---|\n| `hub_private` | `false` | {meaning} |\n"
        "<!-- end options -->\nmore"
    )
