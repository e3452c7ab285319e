"""Every recipe README's CPU variant runs as written, offline (recipes/*/README.md, "On a CPU")."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

REPO_ROOT = Path(__file__).resolve().parents[1]
READMES = sorted(p for p in (REPO_ROOT / "recipes").glob("*/README.md") if p.parent.name != "smoke")


def cpu_commands(readme: Path) -> list[str]:
    """The commands of the bash block of the README's "On a CPU" section, continuation lines joined."""
    text = readme.read_text()
    match = re.search(r"^## On a CPU.*?```bash\n(.*?)```", text, flags=re.S | re.M)
    assert match, f"{readme} has no '## On a CPU' section with a bash block"
    return [line.strip() for line in match.group(1).replace("\\\n", " ").splitlines() if line.strip()]


def test_every_recipe_readme_has_a_cpu_variant_writing_under_outputs():
    assert {p.parent.name for p in READMES} == {
        "deita-6k", "deita-10k", "deita-mistral-7b", "deita-llama1-13b", "deita-llama2-13b", "scorers"
    }  # fmt: skip
    for readme in READMES:
        for command in cpu_commands(readme):
            words = shlex.split(command)
            assert words[0] == "deita-hf", command
            if "--output_dir" in words:
                assert words[words.index("--output_dir") + 1].startswith("outputs/"), command


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder that looks like the repository root (recipes/, deita_hf/data/), with the scorer data of step 1 of
    the scorers recipe (made up: 24 rankings of one variant each, as make-scorer-data writes them)."""
    folder = tmp_path_factory.mktemp("readme-runs")
    (folder / "recipes").symlink_to(REPO_ROOT / "recipes")
    (folder / "deita_hf").symlink_to(REPO_ROOT / "deita_hf")
    from deita_hf.scorers.ranking import Ranking, scorer_rows

    texts = [f"Question {i}: add {i} and {i}." for i in range(24)]
    rows = scorer_rows(
        [Ranking(f"{i}:0", "complexity", t, "", [t], [], [0], [1 + i % 6]) for i, t in enumerate(texts)]
    )
    DatasetDict({"train": Dataset.from_list(rows[:18]), "test": Dataset.from_list(rows[18:])}).save_to_disk(
        folder / "outputs" / "scorer-data" / "mistral-7b-complexity" / "dataset"
    )
    return folder


def run(command: str, cwd: Path) -> str:
    words = shlex.split(command)
    result = subprocess.run(
        [sys.executable, "-m", "deita_hf.cli", *words[1:]],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command}\n{output[-4000:]}"
    return output


@pytest.mark.slow
@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.parent.name)
def test_the_cpu_variant_of_the_readme_runs_as_written(readme, workdir):
    ran = workdir / "ran.txt"
    done = set(ran.read_text().splitlines()) if ran.exists() else set()
    for command in cpu_commands(readme):
        if command in done:  # the shared smoke selection: once
            continue
        run(command, workdir)
        with open(ran, "a") as f:
            f.write(command + "\n")
        words = shlex.split(command)
        if "--output_dir" in words:
            out = workdir / words[words.index("--output_dir") + 1]
            assert (out / "summary.json").is_file() or (out / "model.safetensors").is_file(), sorted(out.iterdir())
